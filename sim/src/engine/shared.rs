//! The state one engine run shares between its driver, its boots and its
//! clients: the model, the trace, the violations found, and the phase.

use crate::fs::Latency;
use crate::model::Model;
use crate::scenario::FaultKind;
use crate::trace::Trace;
use std::cell::RefCell;
use std::rc::Rc;
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
    /// Fault time bound of the crashed boot.
    pub(crate) crashed_first_fault: Option<Duration>,
    pub(crate) torn_tails: u32,
    pub(crate) started_at: Duration,
    pub(crate) ops_this_boot: u64,
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
