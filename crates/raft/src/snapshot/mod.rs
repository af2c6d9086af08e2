//! Raft snapshots as SSTable sets on disk, and their transfer stream.
//!
//! A snapshot is a directory holding the engine's tables at one applied
//! log id (hard links made by `Db::checkpoint`) and a small descriptor
//! file, `SNAPSHOT`, with the snapshot's meta (last log id, membership) and,
//! per table, its name, level, length, CRC32 and key range. The state
//! machine keeps its snapshots under `<state machine dir>/snapshots/`; a
//! snapshot received from a leader is staged in the node's
//! [`SnapshotInbox`] first.
//!
//! The transfer stream ([`SnapshotTransfer`]) is a simple archive: a
//! header (magic, version, descriptor length, header CRC), the descriptor
//! (CRC-checked itself), then every table's bytes in descriptor order,
//! each checked against the descriptor's CRC32. Byte layouts are in
//! `FORMAT-snapshot.md` beside this crate.
//!
//! * [`mod@format`]: the descriptor and the stream header (pure).
//! * [`data`]: [`SnapshotData`], a shared handle to one snapshot
//!   directory, deleted with its last handle once superseded.
//! * [`stream`]: the sending side of the stream.
//! * [`receive`]: the receiving side, into the [`SnapshotInbox`].
//! * [`transfer`]: what the network needs from snapshot data (also
//!   `ballast_raft::transfer`).

pub mod data;
pub mod format;
pub mod receive;
pub mod stream;
pub mod transfer;

pub(crate) use data::{file_crc, link_snapshot};
pub use data::{Snapshot, SnapshotData};
pub use format::{
    Descriptor, SnapshotFile, DESCRIPTOR_BYTES_MAX, DESCRIPTOR_FILE, DESCRIPTOR_FORMAT_VERSION,
    DESCRIPTOR_MAGIC, STREAM_FORMAT_VERSION, STREAM_HEADER_LEN, STREAM_MAGIC,
};
pub use receive::{clear_inbox, SnapshotReceiver};
pub use transfer::{SnapshotInbox, SnapshotTransfer};
