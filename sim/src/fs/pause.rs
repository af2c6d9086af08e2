//! What the engine waits on: the disk's latency model ([`Latency`]), the
//! kind of file an operation touches ([`Tag`]), and the pause it sits in
//! ([`Pause`]); the crash triggers aim at these.

use ballast_storage::fs::IoOp;
use std::path::Path;
use std::time::Duration;

/// Simulated latency ranges, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Fsync of a file.
    pub sync_us: (u64, u64),
    /// Fsync of a directory, rename, create, remove.
    pub meta_us: (u64, u64),
}

impl Latency {
    /// An ordinary SSD-ish disk.
    pub const NORMAL: Latency = Latency {
        sync_us: (200, 1_500),
        meta_us: (100, 800),
    };
    /// A slow disk: fsyncs take milliseconds.
    pub const SLOW: Latency = Latency {
        sync_us: (1_000, 8_000),
        meta_us: (500, 4_000),
    };
    /// The longest fsync this disk takes.
    pub fn max_sync(&self) -> Duration {
        Duration::from_micros(self.sync_us.1.max(self.meta_us.1))
    }
}

/// What the file being worked on is, for crash triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tag {
    /// A WAL segment.
    Wal,
    /// An SSTable (flush or compaction output).
    Table,
    /// A manifest log.
    Manifest,
    /// CURRENT or CURRENT.tmp (the manifest switch).
    Current,
    /// Anything else.
    Other,
}

pub(super) fn tag_of(path: &Path) -> Tag {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".sst") {
        Tag::Table
    } else if name.starts_with("MANIFEST") {
        Tag::Manifest
    } else if name.starts_with("CURRENT") {
        Tag::Current
    } else if path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|p| p == "wal")
    {
        Tag::Wal
    } else {
        Tag::Other
    }
}

/// A pause the engine is sitting in (an `io_delay` it awaits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// What is about to happen after the pause.
    pub op: IoOp,
    /// The file last touched before it.
    pub tag: Tag,
    /// Simulated time the pause ends.
    pub until: Duration,
}
