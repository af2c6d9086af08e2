//! The oracles a cluster run is judged by; see the module docs of
//! [`super`]. Each returns readable violations.

use super::world::World;
use ballast_history::judge::{
    allow_losses, linearizability, linearizability_across_cuts, LossWindow,
};
use ballast_storage::Preset;
use std::cell::Cell as StdCell;
use std::collections::BTreeSet;
use std::sync::Once;
use std::time::Duration;

/// Liveness: a leader within this long of the heal.
pub const LEADER_WITHIN: Duration = Duration::from_secs(10);
/// Convergence: every member alike within this long of the heal.
pub const CONVERGED_WITHIN: Duration = Duration::from_secs(30);

/// A power loss of every node: when, and when they came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The power loss.
    pub at: Duration,
    /// The restart.
    pub restart: Duration,
}

/// What the driver saw, beside the history.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The preset.
    pub preset: Preset,
    /// Power losses of every node.
    pub cuts: Vec<Cut>,
    /// When everything was healed.
    pub healed: Duration,
    /// How long after the heal a leader was known (`None`: not within the
    /// liveness bound).
    pub leader_after: Option<Duration>,
    /// Every client finished its last request.
    pub clients_done: bool,
    /// Keys the final read could not read (`None`: it never finished).
    pub unread: Option<usize>,
    /// Every member reached the same applied index and state hash.
    pub converged: bool,
    /// What the members reported when they did not.
    pub divergence: Option<String>,
    /// Nodes whose disk had injected faults.
    pub disk_faulted: BTreeSet<u64>,
    /// Panics during the run.
    pub panics: u64,
    /// Failures of the simulation itself.
    pub errors: Vec<String>,
    /// Balanced's loss bound before a power loss of every node.
    pub sync_window: Duration,
}

thread_local! {
    static PANICS: StdCell<u64> = const { StdCell::new(0) };
}

/// Installs (once per process) a panic hook that counts panics on the
/// panicking thread; the simulation runs every host on the driver's
/// thread, so a node's panic counts against the run that made it.
pub fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.set(p.get() + 1));
            previous(info);
        }));
    });
}

/// Panics counted on this thread so far.
pub fn panics() -> u64 {
    PANICS.with(StdCell::get)
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// Every oracle. Returns whether the history was linearizable under the
/// contract, and every violation.
pub fn judge(world: &World, o: &Observed) -> (bool, Vec<String>) {
    let w = world.0.borrow();
    let mut v: Vec<String> = o.errors.clone();
    // Linearizability, as the preset's contract judges the run.
    let (violations, gave_up) = match (o.preset, o.cuts.is_empty()) {
        (_, true) | (Preset::Durable, _) => linearizability(&w.history),
        (Preset::Balanced, false) => {
            let windows: Vec<LossWindow> = o
                .cuts
                .iter()
                .map(|c| LossWindow {
                    from_ns: ns(c.at.saturating_sub(o.sync_window)),
                    to_ns: ns(c.restart),
                })
                .collect();
            let (judged, _) = allow_losses(&w.history, &windows);
            linearizability(&judged)
        }
        (Preset::Throughput, false) => {
            let restarts: Vec<u64> = o.cuts.iter().map(|c| ns(c.restart)).collect();
            linearizability_across_cuts(&w.history, &restarts)
        }
    };
    let linearizable = violations.is_empty() && gave_up.is_empty();
    v.extend(
        violations
            .into_iter()
            .map(|x| format!("not linearizable: {x}")),
    );
    v.extend(gave_up.into_iter().map(|x| format!("checker gave up: {x}")));
    // Liveness.
    if o.leader_after.is_none() {
        v.push(format!(
            "no leader within {} s after the faults stopped",
            LEADER_WITHIN.as_secs()
        ));
    }
    if !o.clients_done {
        v.push("a client was still waiting for a reply after the faults stopped".into());
    }
    v.extend(w.unanswered.iter().cloned());
    match o.unread {
        None => v.push("the final reads did not finish".into()),
        Some(0) => {}
        Some(n) => v.push(format!(
            "{n} keys could not be read back after the faults stopped"
        )),
    }
    // Convergence.
    if !o.converged {
        v.push(format!(
            "replicas did not converge within {} s: {}",
            CONVERGED_WITHIN.as_secs(),
            o.divergence.clone().unwrap_or_default()
        ));
    }
    // No panic; no failure where the disk was healthy.
    if o.panics > 0 {
        v.push(format!("{} panics", o.panics));
    }
    for (id, what) in &w.failures {
        if !o.disk_faulted.contains(id) && !refused_as_wiped(&w, *id, what) {
            v.push(format!("n{id} failed with a healthy disk: {what}"));
        }
    }
    // What a log acknowledged as durable survives a power loss of its
    // node (a disk with injected faults may lie about its fsyncs).
    for (id, what) in &w.lost_acked {
        if !o.disk_faulted.contains(id) {
            v.push(format!(
                "n{id} lost what it acknowledged as durable, {what}"
            ));
        }
    }
    let _ = o.healed;
    (linearizable, v)
}

/// The refusal a node whose disk was wiped owes: a member that lost its
/// data may not start again as itself (it would vote with an empty log);
/// it waits for an operator to replace it.
pub fn refused_as_wiped(w: &super::world::State, id: u64, what: &str) -> bool {
    w.wiped.contains(&id) && what.contains(WIPED_REFUSAL)
}

/// What `Node::start` says when its data directory is new but the
/// cluster already exists.
pub const WIPED_REFUSAL: &str = "data directory is new";
