//! The state one engine run shares between its driver, its boots and its
//! clients: the model, the trace, the violations found, and the phase.

use crate::fs::{Latency, SimIo, TurmoilFs};
use crate::model::Model;
use crate::scenario::{FaultKind, TreeCounts};
use crate::trace::Trace;
use ballast_storage::{Background, FsyncPolicy, Options, Preset};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Booting,
    Running,
    Idle,
    Done,
}

pub(crate) struct Shared {
    pub(crate) model: Model,
    pub(crate) trace: Trace,
    pub(crate) violations: Vec<String>,
    pub(crate) epoch: u32,
    pub(crate) phase: Phase,
    pub(crate) final_boot: bool,
    /// Simulated time and kind (power loss?) of the last crash.
    pub(crate) last_crash: Option<(Duration, bool)>,
    /// Crashes inside `Db::open` since the last verified recovery: time and
    /// kind (power loss?).
    pub(crate) recovery_crashes: Vec<(Duration, bool)>,
    /// The current boot's `Db::open` returned.
    pub(crate) opened: bool,
    /// Fault time bound of the crashed boot.
    pub(crate) crashed_first_fault: Option<Duration>,
    pub(crate) torn_tails: u32,
    pub(crate) started_at: Duration,
    pub(crate) ops_this_boot: u64,
    /// The run's simulated disk.
    pub(crate) io: Arc<Mutex<SimIo>>,
    /// The tree's shape and work over the boots that ended.
    pub(crate) tree: TreeCounts,
    /// The same for the current boot, as of its last sample.
    pub(crate) boot_tree: TreeCounts,
    /// The current boot's counters when its workload (and its faults)
    /// began.
    pub(crate) boot_base: TreeCounts,
    /// The last checkpoint that restored correctly (see `checkpoint.rs`).
    pub(crate) checkpoint: Option<SavedCheckpoint>,
    /// Checkpoints taken, restored and checked.
    pub(crate) checkpoints_checked: u64,
    /// Checkpoints installed into the node's engine.
    pub(crate) installs: u64,
    /// The bulk client's next key never written (its range grows).
    pub(crate) bulk_next: u32,
    /// The tree work of the run done under the faults (each boot's
    /// workload; not recovery, not the first boot's fault-free preload).
    pub(crate) tree_faulted: TreeCounts,
    /// The engine refused with a named error after damage at rest.
    pub(crate) refused: bool,
    /// `Fired::wal_damage` at the last check.
    pub(crate) wal_damage_checked: u64,
    /// The WAL was damaged since the last check in a way that can take
    /// acknowledged records unseen: this recovery is held to a prefix.
    pub(crate) wal_damaged: bool,
    /// And this recovery cut the WAL as a torn tail: the cut may reach
    /// records it had made durable, which a single copy cannot tell from
    /// an unsynced torn write. Recorded, counted, and allowed.
    pub(crate) wal_cut_after_damage: bool,
}

impl Shared {
    /// Samples the tree shape and the work counters of `db` for the
    /// current boot (its statistics count from its open, and a crash ends
    /// the boot at any moment, so the clients sample after every write).
    pub(crate) fn note_tree(&mut self, db: &ballast_storage::Db) {
        let st = db.stats();
        let b = &mut self.boot_tree;
        if let Some(l) = st.levels.iter().rposition(|l| l.files > 0) {
            b.deepest_level = b.deepest_level.max(l);
        }
        b.stalls = st.stalls;
        b.score_compactions = st.score_compactions;
        b.trivial_moves = st.trivial_moves;
        b.manifest_rotations = st.manifest_rotations;
    }

    /// The current boot's workload (and its faults) begins: what the boot
    /// did before (recovery; the first boot's preload) is not counted as
    /// done under the faults.
    pub(crate) fn start_counting(&mut self, db: &ballast_storage::Db) {
        self.note_tree(db);
        self.boot_base = self.boot_tree;
    }

    /// The current boot ended (crash or run end): adds its counts to the
    /// run's.
    pub(crate) fn end_boot(&mut self) {
        let b = std::mem::take(&mut self.boot_tree);
        let base = std::mem::take(&mut self.boot_base);
        self.tree.add(&b, &TreeCounts::default());
        self.tree_faulted.add(&b, &base);
    }
}

impl Shared {
    pub(crate) fn event(&mut self, line: String) {
        self.trace.event(line);
    }
    pub(crate) fn violation(&mut self, v: String) {
        self.trace.event(format!("VIOLATION {v}"));
        self.violations.push(v);
    }
}

pub(crate) type Sh = Rc<RefCell<Shared>>;

pub(crate) const DB_DIR: &str = "/ballast";
/// The throughput preset's write-back interval in these runs
/// (`flush_interval_ms`).
pub(crate) const WRITE_BACK_INTERVAL: Duration = Duration::from_millis(10);
pub(crate) const KIB: u64 = 1024;

pub(crate) fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Where the engine's clock starts (ms since the Unix epoch).
pub(crate) const CLOCK_BASE_MS: u64 = 1_700_000_000_000;

/// The engine's clock: simulated time since the run began, from
/// [`CLOCK_BASE_MS`], so TTLs run out as simulated time passes, during a
/// boot and while the node is down.
#[derive(Debug)]
pub(crate) struct SimClock;

impl ballast_storage::Clock for SimClock {
    fn now_ms(&self) -> u64 {
        clock_ms()
    }
}

/// What [`SimClock`] reads now.
pub(crate) fn clock_ms() -> u64 {
    CLOCK_BASE_MS + now().as_millis() as u64
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1e3)
}

/// The disk latency model of a fault kind.
pub(crate) fn latency(fault: FaultKind) -> Latency {
    if fault == FaultKind::SlowDisk {
        Latency::SLOW
    } else {
        Latency::NORMAL
    }
}

/// A checkpoint that restored correctly, and the clients' histories up
/// to its cut: installing it rolls the model back to them.
#[derive(Debug, Clone)]
pub(crate) struct SavedCheckpoint {
    pub(crate) cp: ballast_storage::Checkpoint,
    pub(crate) lineage: Vec<Vec<crate::model::OpRec>>,
}

/// The engine options a scenario runs with: small memtables and tables so
/// that flushes and compactions happen under the workload.
pub fn options(preset: Preset, io: Arc<Mutex<SimIo>>) -> Options {
    let mut o = Options::preset(preset);
    o.background = Background::Tasks;
    o.fs = TurmoilFs::new(io);
    o.clock = Arc::new(SimClock);
    // The smallest sizes the options allow, a level multiplier of 2, and
    // the bulk client's data (about 250 KiB live) give a tree that reaches
    // level 2 or 3 in every run, with score-based compactions and trivial
    // moves (into levels still empty in a key range).
    o.memtable_bytes = 64 * KIB;
    o.wal_segment_bytes = 64 * KIB;
    o.table_target_bytes = 64 * KIB;
    o.level_base_bytes = 64 * KIB;
    o.level_size_multiplier = 2;
    // Writes stall at 3 L0 tables or with one frozen memtable waiting:
    // the bulk client's bursts run into both.
    o.l0_compaction_trigger = 2;
    o.l0_stop_writes_trigger = 3;
    o.immutable_memtables_max = 1;
    // A manifest replaced every few edits, so rotations (and crashes in
    // them) happen in every run.
    o.manifest_bytes_max = 512;
    o.block_bytes = 1024;
    // No cache: every table read reaches the simulated disk, and hashing
    // inside the cache cannot influence which reads happen.
    o.block_cache_bytes = 0;
    o.group_commit_bytes_max = 64 * KIB;
    o.batch_bytes_max = 64 * KIB;
    if preset == Preset::Throughput {
        o.fsync = FsyncPolicy::WriteBack {
            buffer_bytes: 16 * KIB,
            flush_interval_ms: WRITE_BACK_INTERVAL.as_millis() as u64,
        };
    }
    o
}
