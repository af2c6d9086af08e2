//! What the network needs from a snapshot's data to move it between nodes.
//!
//! The state machine decides what a snapshot *is* (its `SnapshotData`);
//! the network only moves it. It does so as one byte stream read in bounded
//! chunks on the sender and written chunk by chunk on the receiver, so a
//! snapshot of any size costs at most one chunk of memory on each side.
//!
//! The receiver side is opened from a [`SnapshotInbox`]: a directory where
//! incoming snapshots are staged, and the largest stream it accepts. A
//! receiver checks every chunk (offsets must follow each other, nothing past
//! the announced length) and [`SnapshotTransfer::finish_receive`] verifies
//! the whole stream before it hands back data the state machine can install.

use crate::planted::Planted;
use crate::typ::SnapshotMeta;
use ballast_storage::fs::FileSystem;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Where incoming snapshots are staged, and how large one may be.
#[derive(Clone)]
pub struct SnapshotInbox {
    /// The file system (the simulation's seam in tests, std in production).
    pub fs: Arc<dyn FileSystem>,
    /// A directory owned by the node for staging incoming snapshots.
    pub dir: PathBuf,
    /// The largest snapshot stream accepted, in bytes; a sender announcing
    /// more is refused before anything is written.
    pub snapshot_bytes_max: u64,
    /// The node's planted bugs (`SnapshotInstallWithoutFsync` skips the
    /// received tables' fsyncs); [`Planted::NONE`] outside tests.
    pub planted: Planted,
}

impl std::fmt::Debug for SnapshotInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotInbox")
            .field("dir", &self.dir)
            .field("snapshot_bytes_max", &self.snapshot_bytes_max)
            .finish()
    }
}

/// A snapshot's data as the network sees it: a byte stream of known length.
pub trait SnapshotTransfer: Sized + Send + Sync + 'static {
    /// The state of one snapshot being received.
    type Receiver: Send + 'static;

    /// Length in bytes of the stream that represents this snapshot.
    fn stream_len(&self) -> u64;

    /// Up to `max` bytes of the stream starting at `offset` (fewer only at
    /// the end of the stream; empty at or past the end).
    fn read_chunk(&self, offset: u64, max: usize) -> io::Result<Vec<u8>>;

    /// Starts receiving the snapshot described by `meta`, whose stream is
    /// `len` bytes. Refuses (`InvalidInput`) a stream longer than
    /// `inbox.snapshot_bytes_max`.
    fn begin_receive(
        inbox: &SnapshotInbox,
        meta: &SnapshotMeta,
        len: u64,
    ) -> io::Result<Self::Receiver>;

    /// Accepts the chunk at `offset`. Chunks arrive in order: `offset` must
    /// be where the previous chunk ended, and the chunk must not run past
    /// the announced length (`InvalidData` otherwise).
    fn receive_chunk(rx: &mut Self::Receiver, offset: u64, bytes: &[u8]) -> io::Result<()>;

    /// Ends the stream: checks that every announced byte arrived and that
    /// the stream is a well-formed snapshot, makes it durable where it is
    /// kept on disk, and returns data ready for `install_snapshot`.
    fn finish_receive(rx: Self::Receiver) -> io::Result<Self>;
}

/// Refuses a stream longer than the inbox accepts.
pub fn check_announced_len(inbox: &SnapshotInbox, len: u64) -> io::Result<()> {
    if len > inbox.snapshot_bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "snapshot of {len} bytes refused: this node accepts at most {} (snapshot_max_bytes)",
                inbox.snapshot_bytes_max
            ),
        ));
    }
    Ok(())
}

/// Checks that a chunk of `chunk_len` bytes at `offset` continues a stream
/// that has `received` of `total` bytes so far.
pub fn check_chunk(received: u64, total: u64, offset: u64, chunk_len: usize) -> io::Result<()> {
    if offset != received {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snapshot chunk at offset {offset}, expected {received}"),
        ));
    }
    if received.saturating_add(chunk_len as u64) > total {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "snapshot chunk of {chunk_len} bytes at {offset} runs past the announced {total}"
            ),
        ));
    }
    Ok(())
}
