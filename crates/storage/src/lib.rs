//! ballast-storage: an LSM storage engine with durability presets.
//!
//! WAL with group commit, a skiplist memtable, SSTables with bloom filters
//! and a block cache, a manifest of version edits, and leveled compaction.
//! Every file operation goes through the [`fs`] seam so that the
//! deterministic simulation can run the engine on a simulated disk.
//!
//! On-disk formats are described byte by byte in `FORMAT.md` beside this crate.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
mod checkpoint;
pub mod coding;
mod compaction;
mod db;
pub mod error;
mod flush;
pub mod fs;
pub mod iter;
pub mod key;
mod manifest;
pub mod memtable;
pub mod merge;
pub mod options;
pub mod planted;
mod scan;
pub mod stats;
pub mod table;
pub mod version;
pub mod wal;

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
