//! ballast-sim: deterministic simulation of ballast on turmoil: the storage
//! engine alone on a simulated disk, and the replicated 3-node cluster on
//! simulated hosts, disks and network.
//!
//! - [`cluster`]: the 3-node cluster (the production node on simulated
//!   hosts and network), its fault schedules and oracles.
//! - [`fs`]: the engine's file seam on `turmoil::fs::shim`, with seeded
//!   latencies and switchable fault injectors.
//! - [`scenario`]: fault kinds, the workload of concurrent clients, the crash
//!   driver.
//! - [`logstore`]: the Raft log store alone on the simulated disk, checked
//!   against its own contract.
//! - [`model`]: the oracle that checks each preset's durability contract.
//! - [`matrix`]: preset x fault kind results.
//! - [`trace`]: hashed event traces for the determinism check.
//!
//! See `sim/README.md`.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod engine;
pub mod fs;
pub mod logstore;
pub mod matrix;
pub mod model;
pub mod scenario;
pub mod trace;

pub use engine::run;
pub use matrix::{Matrix, TreeCell, TREE_WORK};
pub use scenario::{FaultKind, Outcome, RunConfig, Scenario};

/// One step of `sim`, with a panic in a simulated task turned into an
/// error: built with `--cfg tokio_unstable`, turmoil shuts a host's runtime
/// down on a task's unhandled panic and the panic unwinds out of `step`.
pub fn step_catching_panics(sim: &mut turmoil::Sim<'_>) -> Result<bool, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.step())) {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!(
            "a task panicked: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
        )),
    }
}

/// Runs `seed` twice and compares the traces; `Err` shows the first
/// difference.
pub fn check_determinism(scenario: Scenario, seed: u64, cfg: RunConfig) -> Result<Outcome, String> {
    let cfg = RunConfig {
        keep_trace: true,
        ..cfg
    };
    let a = run(scenario, seed, cfg);
    let b = run(scenario, seed, cfg);
    match trace::first_difference(&a.trace, &b.trace) {
        None => Ok(a),
        Some(d) => Err(format!(
            "{} seed {seed} is not deterministic: {d}",
            scenario.name()
        )),
    }
}
