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
    /// A failed fsync of the WAL or a log file does not stop writes: the
    /// next fsync is trusted, though Linux dropped the failed group's pages
    /// and reports the retry as a success (the PostgreSQL fsync lesson).
    RetryFailedFsync,
    /// Opening the WAL does not fsync the segments recovery replayed (the
    /// old behaviour): after a process crash their data may sit only in the
    /// page cache while new writes go to new, fsynced segments, so a later
    /// power loss keeps the newer writes and loses the older ones.
    SkipRecoveryWalSync,
    /// Recovery leaves a manifest that a crashed open created but never
    /// switched CURRENT to (the old behaviour): the next open's exclusive
    /// create of that name fails, and the engine cannot open again.
    KeepLeftoverManifest,
    /// Balanced: the WAL timer never fsyncs, so acknowledged writes stay
    /// unsynced far longer than one interval (until a roll or a flush).
    SkipIntervalSync,
    /// Throughput: the write-back timer never hands the buffer to the OS,
    /// so it reaches the OS only when full: a process crash loses writes
    /// acknowledged long before it.
    SkipWriteBackTimer,
    /// Recovery reads a WAL segment up to its first unreadable sector and
    /// takes the error for the end of the log, so a latent sector error
    /// silently cuts acknowledged records (the engine must fail the open
    /// with the I/O error instead).
    ReadErrorAsEndOfLog,
    /// `Wal::open` numbers the new segment from the directory listing
    /// alone (the old behaviour): when recovery removed the only segment
    /// (its header damaged), numbering restarts at 1, below the manifest's
    /// first live segment, and the next recovery skips those segments and
    /// their acknowledged records.
    WalNumberFromListing,
    /// A checkpoint install trusts the tables it linked or copied without
    /// reading their blocks, so a copy made through a corrupting read
    /// becomes the engine's content.
    InstallWithoutVerify,
    /// Compaction drops a value whose TTL ran out above the bottom of its
    /// key's history instead of writing a tombstone there, so an older
    /// value of the key in a deeper level comes back.
    ExpiredDroppedAboveBase,
    /// Flush and compaction ignore the read snapshots held open: they keep
    /// only the newest version of each key, so a snapshot reads values
    /// written after it was taken.
    CompactionIgnoresSnapshots,
    /// Recovery makes the WAL it replays durable only when it opens the
    /// WAL for new writes, after the manifest switch (the old order): a
    /// power loss during that switch, after a process crash, loses
    /// balanced writes acknowledged more than one sync interval and one
    /// fsync before it.
    LateRecoveryWalSync,
    /// Recovery ignores each segment's link record (the behaviour before
    /// format version 2): a record lost at the end of a segment (a
    /// misdirected write) reads as that segment's clean end, and the next
    /// segment is replayed over the hole.
    IgnoreSegmentLink,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 18] = [
        PlantedBug::SkipWalFsync,
        PlantedBug::AckBeforeGroupFsync,
        PlantedBug::SkipSegmentDirSync,
        PlantedBug::SkipManifestDirSync,
        PlantedBug::TruncateWalBeforeFlushDurable,
        PlantedBug::IgnoreCrcMismatch,
        PlantedBug::RetryFailedFsync,
        PlantedBug::SkipRecoveryWalSync,
        PlantedBug::KeepLeftoverManifest,
        PlantedBug::SkipIntervalSync,
        PlantedBug::SkipWriteBackTimer,
        PlantedBug::ReadErrorAsEndOfLog,
        PlantedBug::WalNumberFromListing,
        PlantedBug::InstallWithoutVerify,
        PlantedBug::ExpiredDroppedAboveBase,
        PlantedBug::CompactionIgnoresSnapshots,
        PlantedBug::LateRecoveryWalSync,
        PlantedBug::IgnoreSegmentLink,
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
            PlantedBug::RetryFailedFsync => "retry-failed-fsync",
            PlantedBug::SkipRecoveryWalSync => "skip-recovery-wal-sync",
            PlantedBug::KeepLeftoverManifest => "keep-leftover-manifest",
            PlantedBug::SkipIntervalSync => "skip-interval-sync",
            PlantedBug::SkipWriteBackTimer => "skip-write-back-timer",
            PlantedBug::ReadErrorAsEndOfLog => "read-error-as-end-of-log",
            PlantedBug::WalNumberFromListing => "wal-number-from-listing",
            PlantedBug::InstallWithoutVerify => "install-without-verify",
            PlantedBug::ExpiredDroppedAboveBase => "expired-dropped-above-base",
            PlantedBug::CompactionIgnoresSnapshots => "compaction-ignores-snapshots",
            PlantedBug::LateRecoveryWalSync => "late-recovery-wal-sync",
            PlantedBug::IgnoreSegmentLink => "ignore-segment-link",
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
