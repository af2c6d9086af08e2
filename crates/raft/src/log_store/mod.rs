//! The Raft log store: openraft's [`openraft::storage::RaftLogStorage`] and [`openraft::RaftLogReader`]
//! on the storage engine's WAL segment code. The Raft log *is* a WAL: one
//! record per entry, the entry in our own encoding (see [`crate::codec`] and
//! `FORMAT-raftlog.md`).
//!
//! Directory layout (`dir` given to [`LogStore::open`]):
//!
//! ```text
//! dir/LOCK             advisory lock (production file systems only)
//! dir/raft-meta        vote and last purged log id (see crate::meta)
//! dir/log/NNNN.wal     WAL segments holding the entries
//! ```
//!
//! Memory is bounded by the index: one `(leader id, record position)` per
//! live entry. Entry payloads are read back from the segments on demand.
//!
//! Durability follows the node's preset (the engine's [`FsyncPolicy`],
//! reused as is; DESIGN.md
//! "Durability presets and their contracts"):
//!
//! * durable ([`FsyncPolicy::Group`]): [`openraft::storage::RaftLogStorage::append`]
//!   writes all the entries of one call with one positional write and
//!   returns (they are readable, so openraft replicates them at once); the
//!   store's flusher task then fsyncs and only then calls the `IOFlushed`
//!   callback. Appends that arrive while an fsync runs share the next one
//!   (group commit of the log).
//! * balanced ([`FsyncPolicy::Interval`]): an append is written to the OS
//!   before `IOFlushed` (a process crash loses nothing); a timer task
//!   fsyncs the log every `sync_interval_ms` when it has unsynced bytes.
//! * throughput ([`FsyncPolicy::WriteBack`]): an append is acknowledged
//!   from memory; the buffer reaches the OS when it holds `buffer_bytes`
//!   or every `flush_interval_ms`, and is fsynced by [`LogSyncer::sync`]
//!   (the node calls it on clean shutdown) and when a segment is sealed.
//!
//! In every preset an append holding a membership entry is fsynced before
//! it is acknowledged (the membership is the cluster's manifest: a
//! cluster-wide power loss must not leave a node without voters), and
//! `save_vote` and `purge` replace the meta file
//! (temporary file, fsync, rename, directory fsync) before returning, and
//! truncation is made durable before it returns.
//!
//! Every fsync of the log (the flusher's, the balanced timer's, a sync on
//! demand, the seal of a rolled segment) runs without the store's lock:
//! readers (replication, apply) and appends go on meanwhile. A sync ticket
//! names its segment file by a generation that never repeats, so an fsync
//! of a segment a truncation removed never counts for the segment created
//! in its place (issue 9, hole 5). The next segment is prepared ahead by a
//! task (created, zero-filled, fsynced off the lock), so a roll inside an
//! append only switches files (hole 9).
//!
//! openraft's committed log id (`save_committed`) is a commit record in the
//! WAL stream, after the entries it covers: no fsync of its own, durable
//! with them, and never naming an entry beyond the durable log (hole 1).
//! A truncation below the state machine's applied index is refused and
//! stops the store (hole 7; see [`AppliedIndex`]).
//!
//! Nothing here reads clocks, spawns threads or draws random numbers, and
//! all I/O goes through the [`ballast_storage::fs::FileSystem`] seam, so the simulation can run
//! it. Simulated disk latency is awaited before each step, never while the
//! store's lock is held.
//!
//! * `store`: [`LogStore`], [`LogReader`] and openraft's traits.
//! * `open`: opening, that is recovery.
//! * `index`: where each live entry is.
//! * `state`: what the store, readers and syncer share, and the unlocked
//!   sync path.
//! * `sync`: the presets' flusher and timer, [`LogSyncer`], and the
//!   segment preparer.
//! * `applied`: the state machine's [`AppliedIndex`].

mod applied;
mod index;
mod open;
mod state;
mod store;
mod sync;

#[cfg(test)]
mod tests;

pub use crate::codec::{COMMIT_RECORD_KIND, COMMIT_RECORD_LEN};
pub use applied::{AppliedIndex, DurableAcks};
pub use ballast_storage::FsyncPolicy;
pub use open::{OpenReport, LOCK_FILE, LOG_DIR};
pub use store::{LogReader, LogStore};
pub use sync::LogSyncer;
