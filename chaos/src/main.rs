//! `ballast-chaos`: run named fault scenarios against a `ballast` binary.
//!
//! ```text
//! ballast-chaos list
//! ballast-chaos run leader-quick-restart --duration 60s --preset durable
//! ballast-chaos standard --duration 30s --preset durable
//! ```
//!
//! The binary is taken, never built: `--bin` (default
//! `target/release/ballast`; build it first with
//! `cargo build --release -p ballast-node`). Each run writes its directory
//! (configs, node logs, `summary.txt`, `history.json`, `faults.json`,
//! `report.svg`) under `--out` (default `target/chaos`).
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use ballast_chaos::run::{run, Options};
use ballast_chaos::scenario::{self, Scenario, STANDARD};
use ballast_chaos::workload::Shape;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "ballast-chaos",
    version,
    about = "Fault scenarios against real ballast processes"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// How long the faults go on, e.g. 60s or 2m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Durability preset: durable, balanced or throughput.
    #[arg(long, default_value = "durable")]
    preset: String,
    /// The `ballast` binary to run.
    #[arg(long, default_value = "target/release/ballast")]
    bin: PathBuf,
    /// Where run directories go.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
    /// Seed of the workload and the fault timing.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Planted bugs for the nodes (`BALLAST_PLANTED_BUGS`; the binary must
    /// be built with the `planted-bugs` feature).
    #[arg(long)]
    planted: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    clients: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the scenarios.
    List,
    /// Run one scenario.
    Run {
        /// Its name (see `list`).
        name: String,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Run the standard set: every scenario whose contract covers the preset.
    Standard {
        #[command(flatten)]
        args: RunArgs,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s}: expected a number then s or m"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!("{s}: unit must be ms, s or m")),
    }
}

fn options(a: &RunArgs) -> Result<Options> {
    if !a.bin.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p ballast-node`, or pass --bin",
            a.bin.display()
        );
    }
    Ok(Options {
        bin: a.bin.canonicalize().context("--bin")?,
        preset: a.preset.clone(),
        duration: a.duration,
        out: a.out.clone(),
        seed: a.seed,
        planted: a.planted.clone(),
        shape: Shape {
            clients: a.clients,
            ..Shape::default()
        },
    })
}

fn one(s: &Scenario, opts: &Options) -> Result<bool> {
    eprintln!(
        "== {} ({}), preset {}, {:?}",
        s.name, s.about, opts.preset, opts.duration
    );
    let out = run(s, opts, |line| {
        eprint!("\r  {line:<70}");
        let _ = std::io::stderr().flush();
    })?;
    eprintln!();
    print!("{}", out.summary);
    println!("  report: {}", out.dir.join("report.svg").display());
    Ok(out.checks.passed())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::List => {
            for s in STANDARD {
                println!("{:<22} {:<64} {}", s.name, s.about, s.presets.join(", "));
            }
            Ok(())
        }
        Cmd::Run { name, args } => {
            let s =
                scenario::find(&name).with_context(|| format!("no scenario {name}; see `list`"))?;
            let opts = options(&args)?;
            if !s.presets.contains(&opts.preset.as_str()) {
                eprintln!(
                    "note: the {} contract does not promise that every acknowledged write survives {}; violations may be allowed",
                    opts.preset, s.name
                );
            }
            if !one(&s, &opts)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Standard { args } => {
            let opts = options(&args)?;
            let mut failed = Vec::new();
            let set: Vec<&Scenario> = STANDARD
                .iter()
                .filter(|s| s.presets.contains(&opts.preset.as_str()))
                .collect();
            for s in &set {
                match one(s, &opts) {
                    Ok(true) => {}
                    Ok(false) => failed.push(s.name),
                    Err(e) => {
                        println!("FAIL {} preset {}: {e:#}", s.name, opts.preset);
                        failed.push(s.name);
                    }
                }
            }
            println!(
                "{} scenarios, {} failed {:?}",
                set.len(),
                failed.len(),
                failed
            );
            if !failed.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
