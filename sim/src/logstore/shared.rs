//! The state one log-store run shares between the driver (crashes), the
//! boot (recovery and its checks) and the workload (openraft's side).

use super::model::LogModel;
use crate::trace::Trace;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// Operations the workload issues per boot.
pub(super) const OPS_PER_BOOT: u32 = 40;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Recovering and checking.
    Booting,
    /// The workload runs.
    Running,
    /// The run is over.
    Done,
}

/// The run's model, trace and bookkeeping.
pub(super) struct Shared {
    pub(super) model: LogModel,
    pub(super) trace: Trace,
    pub(super) violations: Vec<String>,
    pub(super) phase: Phase,
    pub(super) epoch: u32,
    pub(super) ops: u32,
    pub(super) final_boot: bool,
    /// Replicated mode: the term of every entry applied to the engine.
    pub(super) applied: BTreeMap<u64, u64>,
    /// Throughput: when each append was acknowledged, by (index, term);
    /// the driver turns those older than `WRITE_BACK_BOUND` at a process
    /// crash into promises.
    pub(super) acked_at: BTreeMap<(u64, u64), Duration>,
    /// Throughput: acknowledged appends not promised at the last crash.
    pub(super) unpromised: Vec<(u64, u64)>,
    /// Throughput: acknowledged appends a crash took within the bound.
    pub(super) lost_within_bound: u64,
}

impl Shared {
    pub(super) fn event(&mut self, line: String) {
        self.trace.event(line);
    }
    pub(super) fn violation(&mut self, v: String) {
        self.trace.event(format!("VIOLATION {v}"));
        self.violations.push(v);
    }
}

/// Shared by the run's tasks (one thread: the simulation).
pub(super) type Sh = Rc<RefCell<Shared>>;
