//! ballast-bench: db_bench-style benchmarks of ballast's storage engine.
//!
//! `ballast-bench fillrandom,readrandom --preset throughput --num 1000000`
//! runs the listed benchmarks in order on one database and prints one line
//! per benchmark (ops/s, MB/s, latency percentiles measured here, fsyncs
//! per write from the engine's counters), then an indented line of engine
//! statistics. `rawsync` measures the disk's own durable-write limit in the
//! same directory, so durable numbers can be read against it.
//!
//! The files: `args.rs` (the command line), `runner.rs` (one engine, the
//! benchmarks in order), `workloads.rs` (what each benchmark does),
//! `keys_values.rs` (the keys and values they write), `report.rs` (what
//! they print).

mod args;
mod keys_values;
mod report;
mod runner;
mod workloads;

// The engine allocates per memtable entry; like RocksDB's db_bench with
// jemalloc, the benchmark binary picks a fast allocator (the library itself
// leaves that choice to the program embedding it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use args::Args;
use clap::Parser;
use runner::Runner;

fn main() -> Result<()> {
    let args = Args::parse();
    let benches = args::benchmarks(&args)?;
    let opts = args::build_options(&args)?;

    // The directory: given, or a fresh temporary one.
    let (dir, tmp) = match &args.db {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("ballast-bench-")
                .tempdir()
                .context("creating a temporary directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut runner = Runner::open(args, opts, dir, tmp.is_some())?;

    let mut result = Ok(());
    for (i, b) in benches.iter().enumerate() {
        result = runner.run(*b, i as u64);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() && runner.args.compare_rawsync {
        runner.print_rawsync_comparison();
    }
    let closed = runner.close();
    match tmp {
        Some(t) if runner.args.keep => {
            let p = t.keep();
            println!("kept the database in {}", p.display());
        }
        Some(t) => drop(t),
        None => {}
    }
    result.and(closed)
}
