//! The seed runner: `run`, `sweep` and `planted`. See `sim/README.md`.
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use ballast_sim::{run, FaultKind, Matrix, Outcome, RunConfig, Scenario};
use ballast_storage::planted::PlantedBug;
use clap::{Parser, Subcommand};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Deterministic crash simulation of the ballast storage engine")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs N seeds of a scenario (or `all`), or replays one seed.
    Run {
        /// `{preset}-{fault}` (e.g. durable-power-loss) or `all`.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// A planted bug to switch on (see `planted`).
        #[arg(long)]
        bug: Option<String>,
        /// Seeds per scenario.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Replay this one seed with its trace.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Runs fresh seeds over every scenario until stopped (or for --secs).
    Sweep {
        /// `{preset}-{fault}` or `all`.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Stop after this many seconds.
        #[arg(long)]
        secs: Option<u64>,
        /// First seed (default: from the clock).
        #[arg(long)]
        start: Option<u64>,
    },
    /// Cluster scenarios: runs N seeds (or replays one) of the 3-node
    /// cluster under a fault kind.
    Cluster {
        /// `cluster-{preset}-{fault}` (either part may be `all`), or `all`.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// A planted bug to switch on: a node bug (see `cluster-planted`) or a
        /// storage bug (see `planted`).
        #[arg(long)]
        bug: Option<String>,
        /// Seeds per scenario.
        #[arg(long, default_value_t = 5)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Replay this one seed with its trace.
        #[arg(long)]
        seed: Option<u64>,
        /// Run fresh seeds for this many seconds instead (the nightly sweep).
        #[arg(long)]
        sweep_secs: Option<u64>,
    },
    /// How fast the simulation runs a 3-node cluster under client load
    /// (no faults), per preset.
    ClusterSpeed {
        /// Seeds per preset.
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Client hosts.
        #[arg(long, default_value_t = 4)]
        clients: u32,
    },
    /// Hunts every planted node bug in its cluster scenario and reports the
    /// seeds it took to catch.
    ClusterPlanted {
        /// Give up on a bug after this many seeds.
        #[arg(long, default_value_t = 2000)]
        max_seeds: u64,
    },
    /// The Raft log store alone on the simulated disk: runs N seeds of a
    /// scenario (or `all`), replays one, or (`--planted`) hunts the planted
    /// node bugs the log store acts on.
    Log {
        /// `{log,log-throughput,replicated}-{process-crash,power-loss,fsync-error}` or `all`.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// A planted node bug to switch on.
        #[arg(long)]
        bug: Option<String>,
        /// Seeds per scenario.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Replay this one seed with its trace.
        #[arg(long)]
        seed: Option<u64>,
        /// Hunt the planted bugs instead (up to `--seeds` seeds each).
        #[arg(long)]
        planted: bool,
    },
    /// Runs every planted bug against its scenario and reports the seeds it
    /// took to catch.
    Planted {
        /// Give up on a bug after this many seeds.
        #[arg(long, default_value_t = 1000)]
        max_seeds: u64,
    },
}

fn scenarios(name: &str, bug: Option<&str>) -> Result<Vec<Scenario>> {
    let bug = match bug {
        None => None,
        Some(b) => Some(PlantedBug::parse(b).with_context(|| {
            let names: Vec<_> = PlantedBug::ALL.iter().map(|b| b.name()).collect();
            format!("unknown bug `{b}`; one of {}", names.join(", "))
        })?),
    };
    let mut v = if name == "all" {
        Scenario::all()
    } else {
        match Scenario::parse(name) {
            Some(s) => vec![s],
            None => bail!(
                "unknown scenario `{name}`: use {{durable,balanced,throughput}}-{{{}}} or all",
                FaultKind::ALL.map(|k| k.name()).join(",")
            ),
        }
    };
    for s in &mut v {
        s.bug = bug;
    }
    Ok(v)
}

fn report_failure(o: &Outcome) {
    let line =
        ballast_sim::trace::failure_line(&o.scenario.name(), o.seed, &o.violations, &o.repro());
    println!("{line}");
}

/// Logs a replay's trace (and what `RUST_LOG` adds) to stderr; `default`
/// is the filter when `RUST_LOG` is unset.
fn init_replay_log(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .without_time()
        .init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            scenario,
            bug,
            seeds,
            start,
            seed,
        } => {
            let list = scenarios(&scenario, bug.as_deref())?;
            if let Some(seed) = seed {
                init_replay_log("ballast_sim=info,ballast_storage=info");
                let cfg = RunConfig {
                    keep_trace: true,
                    echo: true,
                    ..RunConfig::default()
                };
                let mut failed = false;
                for s in list {
                    let o = run(s, seed, cfg);
                    ballast_sim::trace::print_replay(
                        &s.name(),
                        seed,
                        o.cycles as u64,
                        o.fired as u64,
                        &o.trace,
                        &o.violations,
                    );
                    failed |= !o.violations.is_empty();
                }
                if failed {
                    std::process::exit(1);
                }
                return Ok(());
            }
            let mut m = Matrix::default();
            let started = Instant::now();
            let mut failures = 0;
            for s in &list {
                for seed in start..start + seeds {
                    let o = run(*s, seed, RunConfig::default());
                    if !o.violations.is_empty() {
                        failures += 1;
                        report_failure(&o);
                    }
                    m.add(&o);
                }
            }
            let secs = started.elapsed().as_secs_f64();
            println!("{m}");
            println!(
                "{} seeds, {} crash-recover cycles in {secs:.2}s: {:.0} cycles/s, {failures} failing seeds",
                seeds * list.len() as u64,
                m.cycles(),
                m.cycles() as f64 / secs
            );
            if failures > 0 {
                std::process::exit(1);
            }
        }
        Cmd::Sweep {
            scenario,
            secs,
            start,
        } => {
            let list = scenarios(&scenario, None)?;
            let mut seed = start.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
            });
            println!("sweep from seed {seed}");
            let mut m = Matrix::default();
            let started = Instant::now();
            let mut last = Instant::now();
            let (mut done, mut failures) = (0u64, 0u64);
            loop {
                for s in &list {
                    let o = run(*s, seed, RunConfig::default());
                    done += 1;
                    if !o.violations.is_empty() {
                        failures += 1;
                        report_failure(&o);
                    }
                    m.add(&o);
                }
                seed = seed.wrapping_add(1);
                let el = started.elapsed().as_secs_f64();
                if last.elapsed().as_secs() >= 2 {
                    last = Instant::now();
                    println!(
                        "{done} seeds, {:.0} seeds/s, {:.0} cycles/s, {failures} failures",
                        done as f64 / el,
                        m.cycles() as f64 / el
                    );
                }
                if secs.is_some_and(|s| el >= s as f64) {
                    break;
                }
            }
            println!("{m}");
            if failures > 0 {
                std::process::exit(1);
            }
        }
        Cmd::Cluster {
            scenario,
            bug,
            seeds,
            start,
            seed,
            sweep_secs,
        } => {
            use ballast_sim::cluster::cli;
            let list = cli::scenarios(&scenario, bug.as_deref()).map_err(anyhow::Error::msg)?;
            let ok = match (seed, sweep_secs) {
                (Some(seed), _) => {
                    init_replay_log("ballast_sim=info");
                    cli::replay(&list, seed)
                }
                (None, Some(secs)) => cli::sweep(&list, start, Some(secs)),
                (None, None) => cli::run_seeds(&list, start, seeds),
            };
            if !ok {
                std::process::exit(1);
            }
        }
        Cmd::ClusterSpeed { seeds, clients } => {
            if !ballast_sim::cluster::cli::speed(seeds, clients) {
                std::process::exit(1);
            }
        }
        Cmd::ClusterPlanted { max_seeds } => {
            if !ballast_sim::cluster::cli::planted(max_seeds) {
                std::process::exit(1);
            }
        }
        Cmd::Log {
            scenario,
            bug,
            seeds,
            start,
            seed,
            planted,
        } => {
            use ballast_sim::logstore::cli;
            let list = cli::scenarios(&scenario, bug.as_deref()).map_err(anyhow::Error::msg)?;
            let ok = if planted {
                cli::planted(seeds)
            } else if let Some(seed) = seed {
                init_replay_log("ballast_sim=info");
                cli::replay(&list, seed)
            } else {
                cli::run_seeds(&list, start, seeds)
            };
            if !ok {
                std::process::exit(1);
            }
        }
        Cmd::Planted { max_seeds } => {
            let mut missed = 0;
            for bug in Scenario::engine_bugs() {
                let s = Scenario::for_bug(bug);
                let started = Instant::now();
                let caught = (0..max_seeds).find_map(|seed| {
                    let o = run(s, seed, RunConfig::default());
                    (!o.violations.is_empty()).then_some(o)
                });
                match caught {
                    Some(o) => println!(
                        "{:<36} caught by {} after {} seeds ({:.2}s): {}\n  repro: {}",
                        bug.name(),
                        s.name(),
                        o.seed + 1,
                        started.elapsed().as_secs_f64(),
                        o.violations[0],
                        o.repro()
                    ),
                    None => {
                        missed += 1;
                        println!(
                            "{:<36} NOT caught by {} in {max_seeds} seeds",
                            bug.name(),
                            s.name()
                        );
                    }
                }
            }
            if missed > 0 {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
