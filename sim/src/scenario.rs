//! What a seed runs: a fault kind and a preset ([`Scenario`]), the run's
//! sizes ([`RunConfig`]) and what it found ([`Outcome`]). The engine
//! scenarios that drive them live in [`crate::engine`].

use crate::trace::Trace;
use ballast_storage::planted::PlantedBug;
use ballast_storage::Preset;
use std::fmt;

/// A fault kind: what a scenario does to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The process dies (`bounce`): unsynced data written to the OS survives.
    ProcessCrash,
    /// Power loss (`crash` then `bounce`): everything unsynced is dropped,
    /// un-dir-synced creates and renames are undone.
    PowerLoss,
    /// Power loss on a disk that tears pending writes at 512-byte blocks.
    TornWrite,
    /// Power loss timed on purpose while the engine waits on an fsync with
    /// written but unsynced data.
    LostFsync,
    /// Injected write, fsync and read errors, then power loss.
    IoError,
    /// The disk fills up, then power loss.
    DiskFull,
    /// Reads return flipped bytes, then power loss.
    CorruptRead,
    /// Fsyncs take milliseconds, then power loss.
    SlowDisk,
    /// Several faults in one run on a disk that tears pending writes: the
    /// first crash is a process crash, the second a power loss, the third
    /// either. A process crash leaves unsynced data in the page cache for
    /// the next boot to recover; the power loss then tests that nothing
    /// recovery read from there can vanish behind newer durable writes.
    Mixed,
    /// Power loss under the workload, then the recovery itself crashed
    /// (power loss or process crash, by coin) once or twice at a seeded
    /// await point of `Db::open` (manifest write, replay flushes, WAL
    /// segment creation), then recovered again.
    RecoveryCrash,
    /// Bit rot at rest: after each power loss one byte of one file (a
    /// table, the manifest, CURRENT, a WAL segment) is flipped on the disk,
    /// durably, before the engine opens.
    BitRot,
    /// Latent sector errors: 2% of reads find their sectors bad, and every
    /// later read of them fails, in recovery too, until rewritten.
    LatentSector,
    /// Misdirected writes: 1% of data writes report success but land
    /// 1-8 sectors away, or at their offset in another open file.
    MisdirectedWrite,
}

impl FaultKind {
    /// Every fault kind.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::ProcessCrash,
        FaultKind::PowerLoss,
        FaultKind::TornWrite,
        FaultKind::LostFsync,
        FaultKind::IoError,
        FaultKind::DiskFull,
        FaultKind::CorruptRead,
        FaultKind::SlowDisk,
        FaultKind::Mixed,
        FaultKind::RecoveryCrash,
        FaultKind::BitRot,
        FaultKind::LatentSector,
        FaultKind::MisdirectedWrite,
    ];

    /// The kind's name in scenario names.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::ProcessCrash => "process-crash",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::TornWrite => "torn-write",
            FaultKind::LostFsync => "lost-fsync",
            FaultKind::IoError => "io-error",
            FaultKind::DiskFull => "disk-full",
            FaultKind::CorruptRead => "corrupt-read",
            FaultKind::SlowDisk => "slow-disk",
            FaultKind::Mixed => "mixed",
            FaultKind::RecoveryCrash => "recovery-crash",
            FaultKind::BitRot => "bit-rot",
            FaultKind::LatentSector => "latent-sector",
            FaultKind::MisdirectedWrite => "misdirected-write",
        }
    }

    /// Whether crash number `cycle` (from 0) is a power loss; `coin` decides
    /// where the kind leaves it open.
    pub(crate) fn power_loss(self, cycle: u32, coin: impl FnOnce() -> bool) -> bool {
        match self {
            FaultKind::ProcessCrash => false,
            FaultKind::Mixed => match cycle {
                0 => false,
                1 => true,
                _ => coin(),
            },
            _ => true,
        }
    }

    /// Whether the disk tears pending writes at 512-byte blocks.
    pub(crate) fn torn_blocks(self) -> bool {
        matches!(self, FaultKind::TornWrite | FaultKind::Mixed)
    }

    /// Kinds whose injected errors the engine may report to clients.
    pub(crate) fn errors_expected(self) -> bool {
        matches!(
            self,
            FaultKind::IoError
                | FaultKind::DiskFull
                | FaultKind::CorruptRead
                | FaultKind::BitRot
                | FaultKind::LatentSector
                | FaultKind::MisdirectedWrite
        )
    }

    /// Kinds that damage data at rest: the engine may refuse to open or to
    /// serve, with a named error, instead of answering.
    pub(crate) fn at_rest(self) -> bool {
        matches!(
            self,
            FaultKind::BitRot | FaultKind::LatentSector | FaultKind::MisdirectedWrite
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A preset, a fault kind and optionally a planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Durability preset under test.
    pub preset: Preset,
    /// The fault injected.
    pub fault: FaultKind,
    /// A planted engine bug to switch on.
    pub bug: Option<PlantedBug>,
}

impl Scenario {
    /// `{preset}-{fault}`, e.g. `durable-power-loss`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.preset, self.fault)
    }

    /// Parses [`Scenario::name`].
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::all().into_iter().find(|sc| sc.name() == s)
    }

    /// Every preset x fault kind.
    pub fn all() -> Vec<Scenario> {
        let mut v = Vec::new();
        for preset in Preset::ALL {
            for fault in FaultKind::ALL {
                v.push(Scenario {
                    preset,
                    fault,
                    bug: None,
                });
            }
        }
        v
    }

    /// The storage switches the engine scenarios can catch. Left out:
    /// `install-without-verify` (the engine runs install no checkpoint;
    /// `crates/storage/tests/checkpoint_install.rs` catches it).
    pub fn engine_bugs() -> impl Iterator<Item = PlantedBug> {
        PlantedBug::ALL
            .into_iter()
            .filter(|b| *b != PlantedBug::InstallWithoutVerify)
    }

    /// The scenario that must catch `bug`.
    pub fn for_bug(bug: PlantedBug) -> Scenario {
        let preset = match bug {
            // Durable fsyncs every group, so recovery never finds unsynced
            // WAL data after a process crash; balanced can.
            PlantedBug::SkipRecoveryWalSync | PlantedBug::SkipIntervalSync => Preset::Balanced,
            PlantedBug::SkipWriteBackTimer => Preset::Throughput,
            PlantedBug::WalNumberFromListing | PlantedBug::LateRecoveryWalSync => Preset::Balanced,
            PlantedBug::IgnoreSegmentLink => Preset::Balanced,
            _ => Preset::Durable,
        };
        let fault = match bug {
            PlantedBug::SkipWalFsync => FaultKind::PowerLoss,
            PlantedBug::AckBeforeGroupFsync => FaultKind::LostFsync,
            PlantedBug::SkipSegmentDirSync => FaultKind::PowerLoss,
            PlantedBug::SkipManifestDirSync => FaultKind::PowerLoss,
            PlantedBug::TruncateWalBeforeFlushDurable => FaultKind::PowerLoss,
            PlantedBug::IgnoreCrcMismatch => FaultKind::CorruptRead,
            PlantedBug::RetryFailedFsync => FaultKind::IoError,
            PlantedBug::SkipRecoveryWalSync => FaultKind::Mixed,
            PlantedBug::KeepLeftoverManifest => FaultKind::RecoveryCrash,
            PlantedBug::SkipIntervalSync => FaultKind::PowerLoss,
            PlantedBug::SkipWriteBackTimer => FaultKind::ProcessCrash,
            PlantedBug::ReadErrorAsEndOfLog => FaultKind::LatentSector,
            PlantedBug::WalNumberFromListing => FaultKind::BitRot,
            PlantedBug::InstallWithoutVerify => FaultKind::CorruptRead,
            PlantedBug::LateRecoveryWalSync => FaultKind::Mixed,
            PlantedBug::IgnoreSegmentLink => FaultKind::MisdirectedWrite,
            // Caught by the reads, which every kind has: the plainest.
            PlantedBug::ExpiredDroppedAboveBase | PlantedBug::CompactionIgnoresSnapshots => {
                FaultKind::ProcessCrash
            }
        };
        Scenario {
            preset,
            fault,
            bug: Some(bug),
        }
    }
}

/// Keys in one batch of the bulk client.
pub const BULK_BATCH_KEYS: u32 = 16;

/// Size knobs of a run.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Keys per client.
    pub keys: u32,
    /// Operations each client attempts per boot.
    pub ops_per_boot: usize,
    /// Crash/recover cycles per run.
    pub crashes: u32,
    /// Keys of the bulk client, written in full before the first boot's
    /// workload (faults disarmed) so that the tree reaches level 2 and
    /// deeper in every run.
    pub bulk_keys: u32,
    /// Batches of [`BULK_BATCH_KEYS`] keys the bulk client rewrites in
    /// each boot's workload, at random places of its key range, so that
    /// deep levels are merged under the faults, not only built.
    pub bulk_batches: usize,
    /// Keep every trace line (for comparison and replay).
    pub keep_trace: bool,
    /// Log every trace line through `tracing`.
    pub echo: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            clients: 3,
            keys: 6,
            ops_per_boot: 40,
            crashes: 3,
            bulk_keys: 144,
            bulk_batches: 6,
            keep_trace: false,
            echo: false,
        }
    }
}

/// What the engine's tree went through in one run, summed over its boots
/// (each boot's statistics sampled after every write of the workload).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeCounts {
    /// The deepest LSM level that held a table (0: L0 only).
    pub deepest_level: usize,
    /// Write stalls (writers waiting for flush or compaction).
    pub stalls: u64,
    /// Compactions of level 1 or deeper picked by the level's size score.
    pub score_compactions: u64,
    /// Tables moved down a level without a rewrite.
    pub trivial_moves: u64,
    /// Manifests replaced after passing `manifest_bytes_max`.
    pub manifest_rotations: u64,
}

impl TreeCounts {
    /// Adds what `now` counted beyond `base` (one boot's counters, which
    /// start at zero at its open); the deepest level is the deeper one.
    pub fn add(&mut self, now: &TreeCounts, base: &TreeCounts) {
        self.deepest_level = self.deepest_level.max(now.deepest_level);
        self.stalls += now.stalls.saturating_sub(base.stalls);
        self.score_compactions += now.score_compactions.saturating_sub(base.score_compactions);
        self.trivial_moves += now.trivial_moves.saturating_sub(base.trivial_moves);
        self.manifest_rotations += now
            .manifest_rotations
            .saturating_sub(base.manifest_rotations);
    }
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario run.
    pub scenario: Scenario,
    /// Its seed.
    pub seed: u64,
    /// Contract violations (empty: the run passed).
    pub violations: Vec<String>,
    /// The scenario's fault actually fired (at least once).
    pub fired: bool,
    /// Crash/recover cycles completed.
    pub cycles: u32,
    /// The event trace.
    pub trace: Trace,
    /// The tree's shape and the work the engine did over the run.
    pub tree: TreeCounts,
    /// The part of it done under the faults (the boots' workloads).
    pub tree_faulted: TreeCounts,
    /// Checkpoints taken under the faults, restored and checked.
    pub checkpoints: u64,
    /// Checkpoints installed into the node's engine at a boot.
    pub installs: u64,
    /// The engine refused to open or to serve with a named corruption
    /// error after damage at rest (accepted: no wrong value was returned).
    pub refused: bool,
}

impl Outcome {
    /// A command that replays this run.
    pub fn repro(&self) -> String {
        let bug = self.scenario.bug.map(|b| b.name());
        crate::trace::repro_line("run", &self.scenario.name(), bug, self.seed)
    }
}
