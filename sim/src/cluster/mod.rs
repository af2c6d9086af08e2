//! Cluster scenarios: three node hosts running the production node (Raft
//! log on the WAL segments, the engine as the state machine, snapshots,
//! the RPC layer, the RESP server), client hosts sending GET, SET, DEL,
//! INCR, CAS and MSET over RESP, and a driver that applies a seeded fault
//! schedule, then heals everything and checks the oracles:
//!
//! - **linearizable**: the client history, key by key (Wing-Gong-Lowe,
//!   `ballast-history`), judged by the preset's cluster contract for what
//!   the run did (durable: as it happened; balanced: writes acknowledged
//!   within one sync interval plus one fsync before a power loss of all
//!   nodes may be lost; throughput: such a loss may roll back to any
//!   earlier state, then all is normal);
//! - **liveness**: a leader within 10 simulated seconds of the heal, no
//!   request sent after the heal left unanswered, every key read back;
//! - **convergence**: every member reaches the same applied index and
//!   state hash within 30 simulated seconds of the heal;
//! - **no panic**, and no failed node whose disk had no injected fault.
//!
//! Every random choice comes from the seed: the schedule, the clients,
//! turmoil's network and disk, and openraft's timeouts (each node boot
//! runs in a [`BallastRuntime::seeded`] scope). A seed replays exactly.
//!
//! [`BallastRuntime::seeded`]: ballast_raft::runtime::BallastRuntime::seeded

pub mod cli;
mod copying_fs;
mod driver;
pub mod faults;
pub mod matrix;
pub mod node_host;
mod oracle;
pub mod resp;
pub mod scenario;
pub mod transport;
pub mod workload;
pub mod world;

pub use driver::run;
pub use matrix::ClusterMatrix;
pub use scenario::{ClusterConfig, ClusterFault, ClusterOutcome, ClusterScenario};

/// Runs `seed` twice and compares the traces; `Err` shows the first
/// difference.
pub fn check_determinism(
    scenario: ClusterScenario,
    seed: u64,
    cfg: ClusterConfig,
) -> Result<ClusterOutcome, String> {
    let cfg = ClusterConfig {
        keep_trace: true,
        ..cfg
    };
    let a = run(scenario, seed, cfg);
    let b = run(scenario, seed, cfg);
    match crate::trace::first_difference(&a.trace, &b.trace) {
        None => Ok(a),
        Some(d) => Err(format!(
            "{} seed {seed} is not deterministic: {d}",
            scenario.name()
        )),
    }
}
