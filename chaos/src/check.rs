//! What is checked after every run.
//!
//! - **Linearizable, per key** (`ballast-history`, the checker the cluster
//!   simulation uses): every reply a client got, and the final read of
//!   every key after the faults, explained by one order that respects real
//!   time. A lost acknowledged write shows here: a later read (at the
//!   latest the final one) cannot be placed.
//! - **A leader within 10 s** after the last fault was repaired.
//! - **Converged**: every node reports the same applied index and state
//!   hash on `/status` (within 30 s of the repair).
//! - **No panic** in any node's log.
//! - **Every key read back** at the end.

pub use ballast_history::judge::{
    allow_losses, failing_window, linearizability, linearizability_across_cuts, op_text,
    outcome_text, LossWindow, STEPS_MAX,
};
use serde::Serialize;

/// The checks' results.
#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    /// Keys checked.
    pub keys: usize,
    /// Operations in the history.
    pub operations: usize,
    /// Operations whose outcome stayed unknown.
    pub unknown: usize,
    /// Keys that are not linearizable, with the operations involved.
    pub violations: Vec<String>,
    /// Keys the search gave up on.
    pub gave_up: Vec<String>,
    /// Seconds from the repair to an elected leader (`None`: none within 10 s).
    pub leader_after_s: Option<f64>,
    /// Every node agreed on applied index and state hash.
    pub converged: bool,
    /// What each node reported last, when they did not agree.
    pub divergence: Vec<String>,
    /// Panics found in node logs.
    pub panics: Vec<String>,
    /// Keys the final read could not read.
    pub unread_keys: usize,
    /// Power cuts whose preset lets recent writes be lost.
    pub loss_windows: usize,
    /// Operations relaxed for those windows (see [`allow_losses`]).
    pub relaxed: usize,
    /// Power cuts the history was judged across, epoch by epoch (see
    /// [`linearizability_across_cuts`]).
    pub rollback_cuts: usize,
}

impl Checks {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
            && self.gave_up.is_empty()
            && self.leader_after_s.is_some()
            && self.converged
            && self.panics.is_empty()
            && self.unread_keys == 0
    }

    /// The failures, one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .violations
            .iter()
            .map(|v| format!("not linearizable: {v}"))
            .collect();
        out.extend(
            self.gave_up
                .iter()
                .map(|k| format!("checker gave up on key {k}")),
        );
        if self.leader_after_s.is_none() {
            out.push("no leader within 10 s after the faults stopped".into());
        }
        if !self.converged {
            out.push(format!(
                "replicas did not converge: {}",
                self.divergence.join("; ")
            ));
        }
        out.extend(self.panics.iter().map(|p| format!("panic: {p}")));
        if self.unread_keys > 0 {
            out.push(format!(
                "{} keys could not be read back at the end",
                self.unread_keys
            ));
        }
        out
    }
}
