//! ballast-storage: an LSM storage engine with durability presets.
//!
//! WAL with group commit, a skiplist memtable, SSTables with bloom filters
//! and a block cache, a manifest of version edits, and leveled compaction.
//! Every file operation goes through the [`fs`] seam so that the
//! deterministic simulation can run the engine on a simulated disk.
//!
//! On-disk formats are described byte by byte in `FORMAT.md` beside this crate.
//!
//! Modules in layers, lowest first; a module imports only from its own
//! layer or the layers before it, never from a later one, and the imports
//! form no cycle (`scripts/check-import-cycles crates/storage/src`):
//!
//! 1. pieces with no engine in them: [`coding`], [`key`], [`batch`],
//!    [`memtable`], [`merge`], [`range_floor`], [`iter`], [`table`], [`wal`], [`version`],
//!    [`fs`], [`options`], [`error`], [`filename`], [`stats`], [`planted`],
//!    `lock` (mutexes that survive a panic), `write_queue` (the writers
//!    waiting for the group-commit leader);
//! 2. `manifest`: makes a version edit durable;
//! 3. `engine`: the shared state, the writers' and readers' views of the
//!    memtables and tables, and installing a new version;
//! 4. what works on the engine: `read` (point reads, snapshots),
//!    `group_commit`, `wal_sync` (the fsync policy), `compaction`, `flush`,
//!    `scan`, `recovery` (open), `workers`;
//! 5. `db`, the public [`Db`], and `checkpoint`, which adds
//!    [`Db::checkpoint`] and [`Db::install`] to it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
mod checkpoint;
pub mod coding;
mod compaction;
mod db;
mod engine;
pub mod error;
pub mod filename;
mod flush;
pub mod fs;
mod group_commit;
pub mod iter;
pub mod key;
mod lock;
mod manifest;
pub mod memtable;
pub mod merge;
pub mod options;
pub mod planted;
pub mod range_floor;
mod read;
mod recovery;
mod scan;
pub mod stats;
pub mod table;
pub mod version;
pub mod wal;
mod wal_sync;
mod workers;
mod write_queue;

pub use batch::WriteBatch;
pub use checkpoint::Checkpoint;
pub use db::{table_path, wal_dir, Db, RecoveryReport, Snapshot};
pub use error::{Error, Result};
pub use manifest::{MANIFEST_BYTES_MAX, MANIFEST_MAGIC};
pub use options::{
    Background, Clock, Compression, FlushBarrier, FsyncPolicy, ManualClock, Options, Preset,
    SystemClock,
};
pub use scan::ScanIter;
pub use stats::{LevelStats, StatsSnapshot};
pub use version::FileDesc;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
