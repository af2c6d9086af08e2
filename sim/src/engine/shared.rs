//! The state one engine run shares between its driver, its boots and its
//! clients: the model, the trace, the violations found, and the phase.

use crate::fs::{Latency, SimIo};
use crate::model::Model;
use crate::scenario::FaultKind;
use crate::trace::Trace;
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
    /// Deepest level seen holding a table.
    pub(crate) deepest_level: usize,
    /// Write stalls seen.
    pub(crate) stalls: u64,
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
    /// Notes the tree shape and stalls of `db` (its statistics count from
    /// its open).
    pub(crate) fn note_tree(&mut self, db: &ballast_storage::Db) {
        let st = db.stats();
        if let Some(l) = st.levels.iter().rposition(|l| l.files > 0) {
            self.deepest_level = self.deepest_level.max(l);
        }
        self.stalls += st.stalls;
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
