//! The seed runner's cluster commands: run seeds (or replay one), sweep,
//! and the planted bugs. `sim/src/main.rs` parses the arguments.

use super::matrix::ClusterMatrix;
use super::scenario::{ClusterConfig, ClusterFault, ClusterOutcome, ClusterScenario};
use ballast_raft::planted::NodeBug;
use ballast_storage::planted::PlantedBug;
use ballast_storage::Preset;
use std::time::{Duration, Instant};

/// The scenarios `name` selects (`all`, `cluster-{preset}-{fault}`,
/// `cluster-{preset}-all` or `cluster-all-{fault}`), with `bug` on: a node
/// bug is carried by the scenarios; a storage bug
/// (`ballast_storage::planted`) is switched on for this thread, where the
/// runner runs every seed.
pub fn scenarios(name: &str, bug: Option<&str>) -> Result<Vec<ClusterScenario>, String> {
    let bug = match bug {
        None => None,
        Some(b) => match (NodeBug::parse(b), PlantedBug::parse(b)) {
            (Some(n), _) => Some(n),
            (None, Some(storage)) => {
                ballast_storage::planted::set(Some(storage));
                None
            }
            (None, None) => {
                let names: Vec<_> = NodeBug::ALL.iter().map(|b| b.name()).collect();
                return Err(format!(
                    "unknown bug `{b}`: a node bug ({}) or a storage bug (see `planted`)",
                    names.join(", ")
                ));
            }
        },
    };
    let all = ClusterScenario::all();
    let mut v: Vec<ClusterScenario> = match name {
        "all" | "cluster-all" => all,
        _ => {
            let rest = name.strip_prefix("cluster-").unwrap_or(name);
            let (preset, fault) = rest.split_once('-').unwrap_or((rest, ""));
            let picked: Vec<ClusterScenario> = all
                .into_iter()
                .filter(|s| {
                    (preset == "all" || s.preset.name() == preset)
                        && (fault == "all" || s.fault.name() == fault)
                })
                .collect();
            if picked.is_empty() {
                return Err(format!(
                    "unknown cluster scenario `{name}`: use cluster-{{durable,balanced,throughput,all}}-{{{},all}} or all",
                    ClusterFault::ALL.map(|k| k.name()).join(",")
                ));
            }
            picked
        }
    };
    for s in &mut v {
        s.bug = bug;
    }
    Ok(v)
}

fn report_failure(o: &ClusterOutcome) {
    println!(
        "FAIL {} seed {}: {}\n  repro: {}",
        o.scenario.name(),
        o.seed,
        o.violations.first().map_or("", String::as_str),
        o.repro()
    );
}

/// Replays one seed of each scenario with its trace on stdout; false if
/// any violated.
pub fn replay(list: &[ClusterScenario], seed: u64) -> bool {
    let cfg = ClusterConfig {
        keep_trace: true,
        echo: true,
        ..ClusterConfig::default()
    };
    let mut ok = true;
    for s in list {
        let o = super::run(*s, seed, cfg);
        println!(
            "{} seed {seed}: {} operations, fired {}, {:.1}s simulated, trace hash {:016x} ({} events)",
            s.name(),
            o.operations,
            o.fired,
            o.simulated.as_secs_f64(),
            o.trace.hash(),
            o.trace.len()
        );
        for v in &o.violations {
            println!("  violation: {v}");
        }
        ok &= o.violations.is_empty();
    }
    ok
}

/// Progress for long runs: a line every few seconds.
struct Progress {
    started: Instant,
    last: Instant,
    simulated: Duration,
    done: u64,
    failures: u64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            started: Instant::now(),
            last: Instant::now(),
            simulated: Duration::ZERO,
            done: 0,
            failures: 0,
        }
    }

    fn add(&mut self, o: &ClusterOutcome, total: Option<u64>) {
        self.done += 1;
        self.simulated += o.simulated;
        if !o.violations.is_empty() {
            self.failures += 1;
            report_failure(o);
        }
        if self.last.elapsed() >= Duration::from_secs(5) {
            self.last = Instant::now();
            println!("{}", self.line(total));
        }
    }

    fn line(&self, total: Option<u64>) -> String {
        let el = self.started.elapsed().as_secs_f64();
        format!(
            "{}{} seeds in {el:.0}s ({:.1} seeds/s), simulated time {:.0}x real, {} failing",
            self.done,
            total.map(|t| format!("/{t}")).unwrap_or_default(),
            self.done as f64 / el,
            self.simulated.as_secs_f64() / el,
            self.failures
        )
    }
}

/// Runs seeds `start..start+seeds` of every scenario in `list`; prints the
/// matrix; false if any seed violated.
pub fn run_seeds(list: &[ClusterScenario], start: u64, seeds: u64) -> bool {
    let mut m = ClusterMatrix::default();
    let mut p = Progress::new();
    let total = seeds * list.len() as u64;
    for seed in start..start + seeds {
        for s in list {
            let o = super::run(*s, seed, ClusterConfig::default());
            p.add(&o, Some(total));
            m.add(&o);
        }
    }
    println!("{m}");
    println!(
        "{}; {} client operations checked",
        p.line(Some(total)),
        m.operations()
    );
    p.failures == 0
}

/// The speed of the simulation for a 3-node cluster under load: `seeds`
/// fault-free runs per preset with `clients` clients (every oracle still
/// judges them); prints, per preset, the simulated and real time, their
/// ratio, and client operations per simulated and per real second. False
/// if a run violated.
pub fn speed(seeds: u64, clients: u32) -> bool {
    let cfg = ClusterConfig {
        clients,
        faults: false,
        ..ClusterConfig::default()
    };
    println!("{clients} clients, {seeds} fault-free seeds per preset");
    let mut ok = true;
    let (mut sim_all, mut real_all) = (0.0, 0.0);
    for preset in [Preset::Durable, Preset::Balanced, Preset::Throughput] {
        // The fault kind only names the run; no plan is applied.
        let s = ClusterScenario {
            preset,
            fault: ClusterFault::Partition,
            bug: None,
        };
        let started = Instant::now();
        let (mut simulated, mut ops) = (Duration::ZERO, 0usize);
        for seed in 0..seeds {
            let o = super::run(s, seed, cfg);
            simulated += o.simulated;
            ops += o.operations;
            if !o.violations.is_empty() {
                ok = false;
                report_failure(&o);
            }
        }
        let real = started.elapsed().as_secs_f64();
        let sim = simulated.as_secs_f64();
        (sim_all, real_all) = (sim_all + sim, real_all + real);
        println!(
            "{:<10} {sim:7.1}s simulated in {real:6.1}s real: {:5.1}x; {:6.0} operations per simulated second, {:7.0} per real second",
            preset.name(),
            sim / real,
            ops as f64 / sim,
            ops as f64 / real
        );
    }
    println!("all        simulated time {:.1}x real", sim_all / real_all);
    ok
}

/// Runs fresh seeds over `list` until `secs` pass (or forever); false if
/// any seed violated.
pub fn sweep(list: &[ClusterScenario], mut seed: u64, secs: Option<u64>) -> bool {
    println!("cluster sweep from seed {seed}");
    let mut m = ClusterMatrix::default();
    let mut p = Progress::new();
    loop {
        for s in list {
            let o = super::run(*s, seed, ClusterConfig::default());
            p.add(&o, None);
            m.add(&o);
        }
        seed = seed.wrapping_add(1);
        if secs.is_some_and(|s| p.started.elapsed().as_secs() >= s) {
            break;
        }
    }
    println!("{m}");
    println!("{}", p.line(None));
    p.failures == 0
}

/// The scenario each planted node bug is hunted in.
pub fn scenario_for(bug: NodeBug) -> Option<ClusterScenario> {
    let (preset, fault) = match bug {
        NodeBug::LeaderRestoreUnpersistedCommit => (Preset::Durable, ClusterFault::LeaderRestart),
        NodeBug::AckBeforeLogFsync => (Preset::Durable, ClusterFault::PowerLossAll),
        NodeBug::UncleanNodeVotes => (Preset::Balanced, ClusterFault::PowerLossOne),
        NodeBug::WipedNodeRebootstraps => (Preset::Durable, ClusterFault::DiskWipe),
        NodeBug::TruncateBelowApplied => (Preset::Durable, ClusterFault::LeaderIsolated),
        NodeBug::SyncTicketBySegment => (Preset::Durable, ClusterFault::DiskStall),
        NodeBug::ReadWithoutReadIndex => (Preset::Durable, ClusterFault::LeaderIsolated),
        NodeBug::FlushBarrierSkipped => (Preset::Throughput, ClusterFault::PowerLossAll),
        NodeBug::SkipRequestValidation => (Preset::Durable, ClusterFault::BadPeer),
        NodeBug::ExpireByLocalClock => (Preset::Durable, ClusterFault::ClockSkew),
        NodeBug::ApplyChecksLocalLimits => (Preset::Durable, ClusterFault::Partition),
        NodeBug::VoteNotFsynced => (Preset::Durable, ClusterFault::PowerLossOne),
        NodeBug::TruncationNotDurable => (Preset::Durable, ClusterFault::Mixed),
        NodeBug::SnapshotInstallWithoutFsync => (Preset::Durable, ClusterFault::PowerLossOne),
        NodeBug::SnapshotLinkUnverified => (Preset::Durable, ClusterFault::CorruptRead),
        _ => return None,
    };
    Some(ClusterScenario {
        preset,
        fault,
        bug: Some(bug),
    })
}

/// The first seed (below `max_seeds`) at which `s` violates.
pub fn catch(s: ClusterScenario, max_seeds: u64) -> Option<ClusterOutcome> {
    (0..max_seeds).find_map(|seed| {
        let o = super::run(s, seed, ClusterConfig::default());
        (!o.violations.is_empty()).then_some(o)
    })
}

/// Hunts every planted node bug that has a cluster scenario; false if one
/// was not caught.
pub fn planted(max_seeds: u64) -> bool {
    let mut ok = true;
    for bug in NodeBug::ALL {
        let Some(s) = scenario_for(bug) else {
            println!(
                "{:<40} (no cluster scenario; caught by the node tests)",
                bug.name()
            );
            continue;
        };
        let started = Instant::now();
        match catch(s, max_seeds) {
            Some(o) => println!(
                "{:<40} caught by {} after {} seeds ({:.1}s): {}\n  repro: {}",
                bug.name(),
                s.name(),
                o.seed + 1,
                started.elapsed().as_secs_f64(),
                o.violations[0],
                o.repro()
            ),
            None => {
                ok = false;
                println!(
                    "{:<40} NOT caught by {} in {max_seeds} seeds",
                    bug.name(),
                    s.name()
                );
            }
        }
    }
    ok
}
