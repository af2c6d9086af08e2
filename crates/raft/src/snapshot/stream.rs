//! The transfer stream of a snapshot, sending side: the stream header and
//! descriptor, then every table's bytes in descriptor order, read in
//! bounded chunks ([`SnapshotTransfer`] for [`SnapshotData`]); the receiving
//! side is [`super::receive`]. Byte layout in `FORMAT-snapshot.md`.
//!
//! Limits: one chunk of at most the asked `max` bytes in memory at a time.

use super::data::SnapshotData;
use super::format::{encode_stream_header, STREAM_HEADER_LEN};
use super::receive::SnapshotReceiver;
use super::transfer::{SnapshotInbox, SnapshotTransfer};
use crate::typ::SnapshotMeta;
use ballast_storage::fs::OpenMode;
use std::io;

impl SnapshotData {
    /// Stream length of the header and descriptor.
    fn header_len(&self) -> u64 {
        (STREAM_HEADER_LEN + self.0.encoded.len()) as u64
    }

    fn stream_header(&self) -> Vec<u8> {
        encode_stream_header(&self.0.encoded)
    }
}

impl SnapshotTransfer for SnapshotData {
    type Receiver = SnapshotReceiver;

    fn stream_len(&self) -> u64 {
        self.header_len() + self.0.descriptor.files_len()
    }

    fn read_chunk(&self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let total = self.stream_len();
        let want = (total.saturating_sub(offset)).min(max as u64) as usize;
        let mut out = Vec::with_capacity(want);
        let mut pos = offset;
        let header_len = self.header_len();
        if pos < header_len && out.len() < want {
            let h = self.stream_header();
            let start = pos as usize;
            let n = (h.len() - start).min(want);
            out.extend_from_slice(&h[start..start + n]);
            pos += n as u64;
        }
        let mut file_start = header_len;
        for f in &self.0.descriptor.files {
            if out.len() == want {
                break;
            }
            let file_end = file_start + f.len;
            if pos < file_end {
                let at = pos - file_start;
                let n = ((file_end - pos) as usize).min(want - out.len());
                let old = out.len();
                out.resize(old + n, 0);
                let path = self.dir().join(&f.name);
                self.0
                    .fs
                    .open(&path, OpenMode::Read)?
                    .read_exact_at(&mut out[old..], at)?;
                pos += n as u64;
            }
            file_start = file_end;
        }
        Ok(out)
    }

    fn begin_receive(
        inbox: &SnapshotInbox,
        meta: &SnapshotMeta,
        len: u64,
    ) -> io::Result<SnapshotReceiver> {
        SnapshotReceiver::begin(inbox, meta, len)
    }

    fn receive_chunk(rx: &mut SnapshotReceiver, offset: u64, bytes: &[u8]) -> io::Result<()> {
        rx.receive_chunk(offset, bytes)
    }

    fn finish_receive(rx: SnapshotReceiver) -> io::Result<SnapshotData> {
        rx.finish()
    }
}
