//! Planted bugs: switches that each break one durability step, so the
//! simulation can prove its oracles catch them. Compiled in only with the
//! `planted-bugs` feature (the simulation crate enables it); without the
//! feature every check is a constant `false`.
//!
//! The switch is thread-local: a simulation run is single-threaded, and
//! runs on different threads stay independent.

/// One broken durability step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlantedBug {
    /// WAL fsyncs do nothing.
    SkipWalFsync,
    /// The durable preset acknowledges a group before its fsync.
    AckBeforeGroupFsync,
    /// A new WAL segment's directory entry is never fsynced.
    SkipSegmentDirSync,
    /// The switch of CURRENT is not made durable: `CURRENT.tmp` is not
    /// fsynced before the rename and the directory is not fsynced after it.
    /// (Skipping only the directory fsync loses nothing here: later
    /// directory fsyncs make the rename durable too, as the simulation
    /// showed; an unsynced file renamed into place is what loses data.)
    SkipManifestDirSync,
    /// A flush deletes the WAL segments it covers before its table and
    /// manifest edit are durable.
    TruncateWalBeforeFlushDurable,
    /// Checksum mismatches in WAL records and table blocks are ignored.
    IgnoreCrcMismatch,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 6] = [
        PlantedBug::SkipWalFsync,
        PlantedBug::AckBeforeGroupFsync,
        PlantedBug::SkipSegmentDirSync,
        PlantedBug::SkipManifestDirSync,
        PlantedBug::TruncateWalBeforeFlushDurable,
        PlantedBug::IgnoreCrcMismatch,
    ];

    /// A short name for reports and flags.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::SkipWalFsync => "skip-wal-fsync",
            PlantedBug::AckBeforeGroupFsync => "ack-before-group-fsync",
            PlantedBug::SkipSegmentDirSync => "skip-segment-dir-sync",
            PlantedBug::SkipManifestDirSync => "skip-manifest-dir-sync",
            PlantedBug::TruncateWalBeforeFlushDurable => "truncate-wal-before-flush-durable",
            PlantedBug::IgnoreCrcMismatch => "ignore-crc-mismatch",
        }
    }

    /// Parses [`PlantedBug::name`].
    pub fn parse(s: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == s)
    }
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<PlantedBug>> = const { std::cell::Cell::new(None) };
}

/// Activates `bug` (or none) for engines running on this thread.
#[cfg(feature = "planted-bugs")]
pub fn set(bug: Option<PlantedBug>) {
    ACTIVE.with(|a| a.set(bug));
}

/// True if `bug` is active on this thread.
#[inline]
pub fn active(bug: PlantedBug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        ACTIVE.with(|a| a.get() == Some(bug))
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}
