//! The transfer stream of a snapshot, receiving side: a
//! [`SnapshotReceiver`] writes the stream into a fresh staging directory
//! of the node's [`SnapshotInbox`], checking every piece as it arrives
//! (header CRC, descriptor, each table's CRC32), and hands back a durable
//! [`SnapshotData`] the state machine can install.
//!
//! Limits: header and descriptor bytes held are bounded by
//! `STREAM_HEADER_LEN + DESCRIPTOR_BYTES_MAX`; a stream over the inbox's
//! `snapshot_bytes_max` is refused before anything is written; at most
//! [`CLAIM_ATTEMPTS_MAX`] staging directory names are tried.

use super::data::SnapshotData;
use super::format::{
    decode_error, invalid, Descriptor, DESCRIPTOR_BYTES_MAX, STREAM_FORMAT_VERSION,
    STREAM_HEADER_LEN, STREAM_MAGIC,
};
use super::transfer::{check_announced_len, check_chunk, SnapshotInbox};
use crate::byte_reader::ByteReader;
use crate::planted::{NodeBug, Planted};
use crate::typ::SnapshotMeta;
use ballast_storage::fs::{self, DynFile, DynFs, OpenMode};
use std::io;
use std::path::{Path, PathBuf};

/// Receiving side of one snapshot stream: writes into a fresh directory
/// under the inbox, checking every piece as it arrives. Dropped before
/// [`super::SnapshotTransfer::finish_receive`] succeeds, it removes that
/// directory.
pub struct SnapshotReceiver {
    fs: DynFs,
    dir: PathBuf,
    expected: SnapshotMeta,
    total: u64,
    received: u64,
    /// Header and descriptor bytes so far (bounded by
    /// `STREAM_HEADER_LEN + DESCRIPTOR_BYTES_MAX`).
    header: Vec<u8>,
    /// Descriptor length, once the fixed header is in.
    descriptor_len: Option<usize>,
    descriptor: Option<Descriptor>,
    /// The table being written: index, bytes so far, open file, running CRC.
    file_index: usize,
    file_written: u64,
    file: Option<DynFile>,
    hasher: crc32fast::Hasher,
    failed: Option<String>,
    done: bool,
    /// The node's planted bugs (see [`SnapshotInbox::planted`]).
    planted: Planted,
}

impl std::fmt::Debug for SnapshotReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReceiver")
            .field("dir", &self.dir)
            .field("received", &self.received)
            .field("total", &self.total)
            .finish()
    }
}

impl Drop for SnapshotReceiver {
    fn drop(&mut self) {
        if !self.done {
            self.file = None;
            if let Err(e) = fs::remove_dir_with_files(&*self.fs, &self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove an unfinished snapshot");
            }
        }
    }
}

/// Prefix of the staging directories receivers create in the inbox.
const RECEIVE_PREFIX: &str = "recv-";
/// A file every receiving directory holds, created exclusively so that two
/// receivers never share a directory.
const CLAIM_FILE: &str = "CLAIM";
/// Attempts at finding a free staging directory name.
pub const CLAIM_ATTEMPTS_MAX: u64 = 1024;

/// Removes what interrupted receives left in the inbox (`recv-*`
/// directories). Call it when the node starts, before any receive.
pub fn clear_inbox(inbox: &SnapshotInbox) -> io::Result<u64> {
    if !inbox.fs.exists(&inbox.dir)? {
        return Ok(0);
    }
    let mut removed = 0;
    for name in inbox.fs.list_dir(&inbox.dir)? {
        if name.starts_with(RECEIVE_PREFIX) {
            fs::remove_dir_with_files(&*inbox.fs, &inbox.dir.join(&name))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Creates and claims a fresh staging directory under the inbox.
fn claim_dir(inbox: &SnapshotInbox) -> io::Result<PathBuf> {
    let fs = &inbox.fs;
    fs.create_dir_all(&inbox.dir)?;
    let next = fs
        .list_dir(&inbox.dir)?
        .iter()
        .filter_map(|n| n.strip_prefix(RECEIVE_PREFIX)?.parse::<u64>().ok())
        .max()
        .map_or(1, |n| n + 1);
    for n in next..next + CLAIM_ATTEMPTS_MAX {
        let dir = inbox.dir.join(format!("{RECEIVE_PREFIX}{n:06}"));
        fs.create_dir_all(&dir)?;
        match fs.open(&dir.join(CLAIM_FILE), OpenMode::CreateNew) {
            Ok(_) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "no free staging directory in {} after {CLAIM_ATTEMPTS_MAX} attempts",
        inbox.dir.display()
    )))
}

impl SnapshotReceiver {
    /// Takes header and descriptor bytes from the front of `bytes`.
    fn take_header<'a>(&mut self, mut bytes: &'a [u8]) -> io::Result<&'a [u8]> {
        while self.descriptor.is_none() && !bytes.is_empty() {
            let want = match self.descriptor_len {
                None => STREAM_HEADER_LEN,
                Some(n) => STREAM_HEADER_LEN + n,
            };
            let n = (want - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < want {
                break;
            }
            match self.descriptor_len {
                None => self.check_fixed_header()?,
                Some(_) => self.check_descriptor()?,
            }
        }
        Ok(bytes)
    }

    fn check_fixed_header(&mut self) -> io::Result<()> {
        let h = &self.header;
        // `take_header` gathered all STREAM_HEADER_LEN bytes: no read below
        // runs short (if one did, it would be refused, not a panic).
        let mut r = ByteReader::new(&h[..STREAM_HEADER_LEN]);
        let fields = (|| {
            Ok::<_, crate::byte_reader::DecodeError>((
                r.take(STREAM_MAGIC.len(), "stream magic")?,
                r.u8("stream version")?,
                r.u32("descriptor length")?,
                r.u32("stream header CRC")?,
            ))
        })();
        let (magic, version, len, crc) =
            fields.map_err(|e| decode_error(Path::new("snapshot stream header"), e))?;
        if magic != STREAM_MAGIC {
            return Err(invalid("not a ballast snapshot stream (bad magic)"));
        }
        if version == 0 || version > STREAM_FORMAT_VERSION {
            return Err(invalid(format!(
                "snapshot stream format version {version} is unknown (this build reads up to {STREAM_FORMAT_VERSION}): upgrade ballast"
            )));
        }
        if crc32fast::hash(&h[..13]) != crc {
            return Err(invalid("snapshot stream header CRC mismatch"));
        }
        if len > DESCRIPTOR_BYTES_MAX {
            return Err(invalid(format!(
                "snapshot descriptor of {len} bytes exceeds the {DESCRIPTOR_BYTES_MAX}-byte limit"
            )));
        }
        if STREAM_HEADER_LEN as u64 + u64::from(len) > self.total {
            return Err(invalid(
                "snapshot descriptor runs past the announced stream",
            ));
        }
        self.descriptor_len = Some(len as usize);
        Ok(())
    }

    fn check_descriptor(&mut self) -> io::Result<()> {
        let d = Descriptor::decode(&self.header[STREAM_HEADER_LEN..])
            .map_err(|e| decode_error(Path::new("snapshot stream descriptor"), e))?;
        let want = self.header.len() as u64 + d.files_len();
        if want != self.total {
            return Err(invalid(format!(
                "snapshot stream announced {} bytes, its descriptor makes {want}",
                self.total
            )));
        }
        if d.meta != self.expected {
            return Err(invalid(format!(
                "snapshot stream holds {:?}, the sender announced {:?}",
                d.meta.last_log_id, self.expected.last_log_id
            )));
        }
        self.descriptor = Some(d);
        self.hasher = crc32fast::Hasher::new();
        self.close_finished_files()
    }

    /// Writes table bytes from `bytes`, ending tables as they complete.
    fn take_files(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let Some(d) = &self.descriptor else {
                return Err(invalid("table bytes before the descriptor"));
            };
            let Some(f) = d.files.get(self.file_index) else {
                return Err(invalid("bytes past the last table"));
            };
            let n = ((f.len - self.file_written) as usize).min(bytes.len());
            let file = match &self.file {
                Some(file) => file.clone(),
                None => {
                    let file = self.fs.open(&self.dir.join(&f.name), OpenMode::CreateNew)?;
                    self.file = Some(file.clone());
                    file
                }
            };
            file.write_all_at(&bytes[..n], self.file_written)?;
            self.hasher.update(&bytes[..n]);
            self.file_written += n as u64;
            bytes = &bytes[n..];
            self.close_finished_files()?;
        }
        Ok(())
    }

    /// Ends every table that has all its bytes (empty ones included):
    /// checks its CRC and fsyncs it.
    fn close_finished_files(&mut self) -> io::Result<()> {
        let Some(d) = &self.descriptor else {
            return Ok(());
        };
        while let Some(f) = d.files.get(self.file_index) {
            if self.file_written < f.len {
                return Ok(());
            }
            let file = match self.file.take() {
                Some(file) => file,
                None => self.fs.open(&self.dir.join(&f.name), OpenMode::CreateNew)?,
            };
            let crc = std::mem::take(&mut self.hasher).finalize();
            if crc != f.crc32 {
                return Err(invalid(format!(
                    "snapshot table {} fails its CRC (got {crc:#010x}, descriptor says {:#010x})",
                    f.name, f.crc32
                )));
            }
            if !self.planted.has(NodeBug::SnapshotInstallWithoutFsync) {
                file.sync_data()?;
            }
            self.file_index += 1;
            self.file_written = 0;
        }
        Ok(())
    }

    /// Starts receiving the snapshot `meta` announced as a stream of `len`
    /// bytes ([`super::SnapshotTransfer::begin_receive`]).
    pub(super) fn begin(
        inbox: &SnapshotInbox,
        meta: &SnapshotMeta,
        len: u64,
    ) -> io::Result<SnapshotReceiver> {
        check_announced_len(inbox, len)?;
        if len < STREAM_HEADER_LEN as u64 {
            return Err(invalid(format!(
                "a snapshot stream of {len} bytes is shorter than its header"
            )));
        }
        let dir = claim_dir(inbox)?;
        Ok(SnapshotReceiver {
            fs: inbox.fs.clone(),
            dir,
            expected: meta.clone(),
            total: len,
            received: 0,
            header: Vec::new(),
            descriptor_len: None,
            descriptor: None,
            file_index: 0,
            file_written: 0,
            file: None,
            hasher: crc32fast::Hasher::new(),
            failed: None,
            done: false,
            planted: inbox.planted,
        })
    }

    /// Takes the chunk at `offset` ([`super::SnapshotTransfer::receive_chunk`]).
    pub(super) fn receive_chunk(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let rx = self;
        if let Some(why) = &rx.failed {
            return Err(invalid(format!("snapshot stream already refused: {why}")));
        }
        let res = check_chunk(rx.received, rx.total, offset, bytes.len()).and_then(|()| {
            let rest = rx.take_header(bytes)?;
            rx.take_files(rest)
        });
        match res {
            Ok(()) => {
                rx.received += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                rx.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Ends the stream ([`super::SnapshotTransfer::finish_receive`]).
    pub(super) fn finish(self) -> io::Result<SnapshotData> {
        let mut rx = self;
        if let Some(why) = &rx.failed {
            return Err(invalid(format!("snapshot stream already refused: {why}")));
        }
        if rx.received != rx.total {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "snapshot stream ended after {} of {} bytes",
                    rx.received, rx.total
                ),
            ));
        }
        let Some(d) = rx.descriptor.clone() else {
            return Err(invalid("snapshot stream ended before its descriptor"));
        };
        if rx.file_index != d.files.len() {
            return Err(invalid("snapshot stream ended inside a table"));
        }
        rx.fs.remove_file(&rx.dir.join(CLAIM_FILE))?;
        let data = SnapshotData::create(rx.fs.clone(), &rx.dir, d)?;
        // A received snapshot is staging only: the state machine links it
        // into its own directory when it installs it, so the inbox copy
        // goes with its last handle, installed or not.
        data.mark_obsolete();
        rx.done = true;
        Ok(data)
    }
}
