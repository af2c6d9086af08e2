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

pub mod coding;
pub mod error;
pub mod fs;
pub mod iter;
pub mod key;
pub mod options;
pub mod table;
pub mod wal;

pub use error::{Error, Result};
pub use options::{
    Background, Clock, Compression, FsyncPolicy, ManualClock, Options, Preset, SystemClock,
};
