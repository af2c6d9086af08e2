//! One run of one scenario, start to verdict.
//!
//! Fresh cluster, workload, the scenario's faults until the duration is
//! spent, repair, then: a leader within 10 s, the clients stopped (each
//! finishes or gives up on its last request within its reply timeout),
//! convergence, a final read of every key, the linearizability check, the
//! node logs searched for panics, and the report written. The cluster is
//! killed when the run ends, whatever happened.

use crate::check::{self, Checks, LossWindow};
use crate::cluster::{self, Cluster, Spec};
use crate::report::RunReport;
use crate::scenario::{Driver, Fault, FaultEvent, Scenario};
use crate::workload::{self, Recorder, Shape};
use anyhow::Result;
use ballast_history::{History, Outcome};
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `ballast` binary.
    pub bin: PathBuf,
    /// Durability preset.
    pub preset: String,
    /// How long the faults go on.
    pub duration: Duration,
    /// Where the run's directory is made (the run gets `NAME-PRESET-SEED/`).
    pub out: PathBuf,
    /// The seed of the workload and the fault timing.
    pub seed: u64,
    /// `BALLAST_PLANTED_BUGS` for the nodes.
    pub planted: Option<String>,
    /// The workload's shape.
    pub shape: Shape,
}

/// What a run found.
pub struct RunOutcome {
    /// The checks.
    pub checks: Checks,
    /// The report's one-paragraph summary.
    pub summary: String,
    /// The run's directory (configs, node logs, report).
    pub dir: PathBuf,
    /// The history.
    pub history: History,
    /// The faults.
    pub faults: Vec<FaultEvent>,
}

/// Runs `scenario`; `progress` gets a short line now and then.
pub fn run(
    scenario: &Scenario,
    opts: &Options,
    mut progress: impl FnMut(&str),
) -> Result<RunOutcome> {
    let started = Instant::now();
    let dir = opts
        .out
        .join(format!("{}-{}-{}", scenario.name, opts.preset, opts.seed));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let mut cluster = Cluster::start(Spec {
        bin: opts.bin.clone(),
        dir: dir.clone(),
        preset: opts.preset.clone(),
        volatile_fs: scenario.power_loss,
        planted: opts.planted.clone(),
        nodes: 3,
    })?;
    let rec = Recorder::new(opts.shape);
    let clients = workload::start(cluster.client_addrs(), &rec, opts.seed);
    let until = Instant::now() + opts.duration;
    let faults = {
        let rec2 = rec.clone();
        let mut driver = Driver {
            cluster: &mut cluster,
            rng: rand::rngs::StdRng::seed_from_u64(opts.seed),
            zero: rec.started(),
            timeline: Vec::new(),
            on_fault: Box::new(|what: &str| {
                let t = rec2.now() as f64 / 1e9;
                let n = rec2.len();
                progress(&format!("{:>6.1}s  {n:>6} ops  {what}", t));
            }),
        };
        driver.run(scenario.fault, until)?;
        driver.timeline
    };
    let repaired = Instant::now();
    let leader_after_s = cluster
        .wait_for_leader(Duration::from_secs(10))
        .ok()
        .map(|_| repaired.elapsed().as_secs_f64());
    rec.stop();
    for c in clients {
        let _ = c.join();
    }
    let (converged, seen) = cluster.wait_converged(Duration::from_secs(30));
    let leader = cluster.leader().unwrap_or(1);
    let unread_keys =
        workload::final_reads(&format!("127.0.0.1:{}", cluster.ports(leader).client), &rec);
    let history = rec.history();
    let windows = loss_windows(scenario, &opts.preset, &faults);
    let (judged, relaxed) = check::allow_losses(&history, &windows);
    let cuts = rollback_cuts(scenario, &opts.preset, &faults);
    let (violations, gave_up) = if cuts.is_empty() {
        check::linearizability(&judged)
    } else {
        check::linearizability_across_cuts(&history, &cuts)
    };
    let checks = Checks {
        keys: rec.keys().len(),
        operations: history.len(),
        unknown: history
            .operations()
            .iter()
            .filter(|o| o.outcome == Outcome::Unknown)
            .count(),
        violations,
        gave_up,
        leader_after_s,
        converged,
        divergence: if converged {
            Vec::new()
        } else {
            seen.iter()
                .map(|(id, s)| match s {
                    Some(s) => format!(
                        "node {id}: applied {} hash {:.12}",
                        s.applied_index, s.state_hash
                    ),
                    None => format!("node {id}: no status"),
                })
                .collect()
        },
        panics: cluster::panics_in(&cluster.logs()),
        unread_keys,
        loss_windows: windows.len(),
        relaxed,
        rollback_cuts: cuts.len(),
    };
    drop(cluster);
    let report = RunReport {
        scenario: scenario.name,
        preset: &opts.preset,
        seed: opts.seed,
        planted: opts.planted.as_deref(),
        history: &history,
        faults: &faults,
        checks: &checks,
        seconds: started.elapsed().as_secs_f64(),
    };
    report.write(&dir)?;
    let summary = report.summary();
    Ok(RunOutcome {
        checks,
        summary,
        dir,
        history,
        faults,
    })
}

/// How long before a cluster-wide power cut the balanced preset may lose
/// acknowledged writes: its default `sync_interval_ms` (5 ms) plus one
/// fsync, allowed 200 ms on a loaded disk.
pub const BALANCED_LOSS_NS: u64 = 205_000_000;

/// The spans in which the preset's contract lets a cluster-wide power cut
/// lose acknowledged writes within a time bound: balanced only (durable
/// loses nothing; throughput's bound has no time limit, see
/// [`rollback_cuts`]).
pub fn loss_windows(scenario: &Scenario, preset: &str, faults: &[FaultEvent]) -> Vec<LossWindow> {
    if !scenario.power_loss
        || !matches!(scenario.fault, Fault::KillAll { .. })
        || preset != "balanced"
    {
        return Vec::new();
    }
    faults
        .iter()
        .map(|f| LossWindow {
            from_ns: f.start_ns.saturating_sub(BALANCED_LOSS_NS),
            // The kills land a little after the fault starts: whatever
            // completed before the restart came before the cut.
            to_ns: f.end_ns,
        })
        .collect()
}

/// The cluster-wide power cuts after which the preset may roll back to an
/// earlier state with no time bound (throughput): the history is judged
/// per epoch between them (see `check::linearizability_across_cuts`).
pub fn rollback_cuts(scenario: &Scenario, preset: &str, faults: &[FaultEvent]) -> Vec<u64> {
    if !scenario.power_loss
        || !matches!(scenario.fault, Fault::KillAll { .. })
        || preset != "throughput"
    {
        return Vec::new();
    }
    // The kills land a little after the fault starts, and nothing answers
    // until the restart: an operation invoked before the restart belongs
    // to the epoch before the cut.
    faults.iter().map(|f| f.end_ns).collect()
}
