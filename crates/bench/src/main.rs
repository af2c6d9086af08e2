//! ballast-bench: db_bench-style benchmarks of ballast's storage engine.
//!
//! `ballast-bench fillrandom,readrandom --preset throughput --num 1000000`
//! runs the listed benchmarks in order on one database and prints one line
//! per benchmark (ops/s, MB/s, latency percentiles measured here, fsyncs
//! per write from the engine's counters), then an indented line of engine
//! statistics. `rawsync` measures the disk's own durable-write limit in the
//! same directory, so durable numbers can be read against it.

mod gen;

// The engine allocates per memtable entry; like RocksDB's db_bench with
// jemalloc, the benchmark binary picks a fast allocator (the library itself
// leaves that choice to the program embedding it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{anyhow, bail, Context, Result};
use ballast_storage::{
    Db, Error as DbError, FsyncPolicy, Options, Preset, StatsSnapshot, WriteBatch,
};
use clap::Parser;
use gen::{commas, encode_key, fmt_bytes, fmt_ns, histogram, key_buf, ValueGen};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BENCHMARKS: &str =
    "fillseq, fillrandom, overwrite, readrandom, readseq, seekrandom, rawsync, reopen";

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(
    name = "ballast-bench",
    about = "db_bench-style benchmarks of ballast's storage engine",
    after_help = "Benchmarks: fillseq, fillrandom, overwrite, readrandom, readseq, seekrandom, rawsync, reopen.\nExample: ballast-bench rawsync,fillrandom --preset durable --threads 64 --num 200000 --compare-rawsync"
)]
struct Args {
    /// Benchmarks to run in order on the same database (comma- or space-separated).
    #[arg(required = true, num_args = 1..)]
    benchmarks: Vec<String>,
    /// Durability preset: durable, balanced or throughput.
    #[arg(long)]
    preset: Option<String>,
    /// TOML options file (as config/*.toml); overrides --preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Concurrent writers (tokio tasks) or readers (OS threads).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Number of keys.
    #[arg(long, default_value = "1000000", value_parser = gen::parse_count)]
    num: u64,
    /// Key size in bytes (at least 8).
    #[arg(long, default_value_t = 16)]
    key_bytes: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Entries per WriteBatch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Database directory (default: a fresh temporary directory).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Keep the temporary database directory at exit.
    #[arg(long)]
    keep: bool,
    /// Seed for key order and values.
    #[arg(long, default_value_t = 301)]
    seed: u64,
    /// Reads for readrandom and seekrandom (default: --num).
    #[arg(long, value_parser = gen::parse_count)]
    reads: Option<u64>,
    /// Override the memtable size (bytes; KiB/MiB/GiB suffixes accepted).
    #[arg(long, value_parser = gen::parse_bytes)]
    memtable_bytes: Option<u64>,
    /// Override the block cache size (bytes; KiB/MiB/GiB suffixes accepted).
    #[arg(long, value_parser = gen::parse_bytes)]
    cache_bytes: Option<u64>,
    /// Stop each benchmark after this many seconds.
    #[arg(long)]
    duration_secs: Option<f64>,
    /// `reopen` drops the engine without close(), so the WAL must be replayed.
    #[arg(long)]
    crash_before_reopen: bool,
    /// After the run, compare each write benchmark's ops/s with rawsync's.
    #[arg(long)]
    compare_rawsync: bool,
    /// Entries read after each seek in seekrandom.
    #[arg(long, default_value_t = 10)]
    seek_nexts: usize,
    /// rawsync operations (default: min(--num, 20000)).
    #[arg(long, value_parser = gen::parse_count)]
    rawsync_ops: Option<u64>,
    /// Size of the preallocated rawsync file in MiB.
    #[arg(long, default_value_t = 64)]
    rawsync_file_mib: u64,
    /// After each write benchmark, print the group-commit size histogram
    /// (groups per power-of-two bucket of batches per group).
    #[arg(long)]
    group_histogram: bool,
    /// Worker threads of the tokio runtime the writers run on.
    #[arg(long, default_value_t = 2)]
    runtime_workers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bench {
    FillSeq,
    FillRandom,
    Overwrite,
    ReadRandom,
    ReadSeq,
    SeekRandom,
    RawSync,
    Reopen,
}

impl Bench {
    fn parse(s: &str) -> Result<Bench> {
        Ok(match s {
            "fillseq" => Bench::FillSeq,
            "fillrandom" => Bench::FillRandom,
            "overwrite" => Bench::Overwrite,
            "readrandom" => Bench::ReadRandom,
            "readseq" => Bench::ReadSeq,
            "seekrandom" => Bench::SeekRandom,
            "rawsync" => Bench::RawSync,
            "reopen" => Bench::Reopen,
            _ => bail!("unknown benchmark `{s}` (known: {BENCHMARKS})"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Bench::FillSeq => "fillseq",
            Bench::FillRandom => "fillrandom",
            Bench::Overwrite => "overwrite",
            Bench::ReadRandom => "readrandom",
            Bench::ReadSeq => "readseq",
            Bench::SeekRandom => "seekrandom",
            Bench::RawSync => "rawsync",
            Bench::Reopen => "reopen",
        }
    }

    fn is_write(self) -> bool {
        matches!(self, Bench::FillSeq | Bench::FillRandom | Bench::Overwrite)
    }
}

/// What one benchmark measured, for the summary.
#[derive(Debug)]
struct Outcome {
    bench: Bench,
    ops_per_sec: f64,
    fsyncs_per_write: Option<f64>,
}

/// The run: arguments, engine options, the open engine and its directory.
struct Runner {
    args: Args,
    opts: Options,
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    db: Option<Arc<Db>>,
    values: Arc<ValueGen>,
    outcomes: Vec<Outcome>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let benches = args
        .benchmarks
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Bench::parse)
        .collect::<Result<Vec<_>>>()?;
    if args.key_bytes < 8 {
        bail!("--key-bytes must be at least 8 (keys hold a big-endian u64)");
    }
    if args.threads == 0 || args.batch == 0 || args.num == 0 {
        bail!("--threads, --batch and --num must be at least 1");
    }
    let opts = build_options(&args)?;

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

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.runtime_workers.max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;

    print_header(&args, &opts, &dir, tmp.is_some());
    let started = Instant::now();
    let db = rt
        .block_on(Db::open(&dir, opts.clone()))
        .with_context(|| format!("opening the engine in {}", dir.display()))?;
    println!(
        "open         :  {:.3} s (fresh: creates the WAL segment{})",
        started.elapsed().as_secs_f64(),
        if opts.wal_preallocate {
            ", zero-filled to wal_segment_bytes"
        } else {
            ""
        }
    );
    let values = Arc::new(ValueGen::new(args.seed, args.value_bytes));
    let mut runner = Runner {
        args,
        opts,
        dir,
        rt,
        db: Some(Arc::new(db)),
        values,
        outcomes: Vec::new(),
    };

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

fn build_options(args: &Args) -> Result<Options> {
    let mut opts = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let o = Options::from_toml(&text).with_context(|| format!("in {}", path.display()))?;
            if let Some(p) = &args.preset {
                if Preset::parse(p)? != o.preset {
                    eprintln!(
                        "note: --config {} sets preset {}; ignoring --preset {p}",
                        path.display(),
                        o.preset
                    );
                }
            }
            o
        }
        None => Options::preset(Preset::parse(args.preset.as_deref().unwrap_or("durable"))?),
    };
    if let Some(m) = args.memtable_bytes {
        opts.memtable_bytes = m;
    }
    if let Some(c) = args.cache_bytes {
        opts.block_cache_bytes = c;
    }
    opts.validate()?;
    Ok(opts)
}

fn print_header(args: &Args, opts: &Options, dir: &Path, temporary: bool) {
    let fsync = match opts.fsync {
        FsyncPolicy::Group => "fsync per group commit".to_string(),
        FsyncPolicy::Interval { sync_interval_ms } => format!("fsync every {sync_interval_ms} ms"),
        FsyncPolicy::WriteBack {
            buffer_bytes,
            flush_interval_ms,
        } => format!(
            "write-back buffer {} / {flush_interval_ms} ms, no fsync on the write path",
            fmt_bytes(buffer_bytes)
        ),
    };
    println!(
        "ballast-bench: preset {} ({fsync}), keys {} B, values {} B (~50% compressible), num {}, threads {}, batch {}",
        opts.preset,
        args.key_bytes,
        args.value_bytes,
        commas(args.num),
        args.threads,
        args.batch
    );
    println!(
        "engine       : memtable {}, block cache {}, wal segment {} (preallocate {}), compression {:?}, bloom {} bits/key, background {:?}",
        fmt_bytes(opts.memtable_bytes),
        fmt_bytes(opts.block_cache_bytes),
        fmt_bytes(opts.wal_segment_bytes),
        opts.wal_preallocate,
        opts.compression,
        opts.bloom_bits_per_key,
        opts.background,
    );
    println!(
        "machine      : {} cpus, tokio runtime with {} workers; db {}{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.runtime_workers,
        dir.display(),
        if temporary && !args.keep {
            " (temporary, removed at exit)"
        } else {
            ""
        }
    );
}

/// The percentile part of a result line.
fn percentiles(h: &Histogram<u64>) -> String {
    format!(
        "p50 {}  p99 {}  p999 {}  max {}",
        fmt_ns(h.value_at_quantile(0.50)),
        fmt_ns(h.value_at_quantile(0.99)),
        fmt_ns(h.value_at_quantile(0.999)),
        fmt_ns(h.max())
    )
}

/// Per-benchmark group-commit percentiles. The engine's histogram is
/// cumulative over the engine's life; when this benchmark is not the first
/// to write on this engine, they are rebuilt from the difference of its
/// power-of-two buckets and shown as upper bounds.
fn group_percentiles(before: &StatsSnapshot, after: &StatsSnapshot) -> String {
    if before.groups == 0 {
        let (p50, p99, max) = after.group_batches_p50_p99_max;
        return format!("p50 {p50} p99 {p99} max {max}");
    }
    let prev = |bound: u64| {
        before
            .group_batches_histogram
            .iter()
            .find(|(b, _)| *b == bound)
            .map_or(0, |(_, c)| *c)
    };
    let delta: Vec<(u64, u64)> = after
        .group_batches_histogram
        .iter()
        .map(|(b, c)| (*b, c.saturating_sub(prev(*b))))
        .collect();
    let total: u64 = delta.iter().map(|(_, c)| c).sum();
    if total == 0 {
        return "none".to_string();
    }
    let q = |q: f64| {
        let want = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, c) in &delta {
            seen += c;
            if seen >= want {
                return *b;
            }
        }
        delta.last().map_or(0, |(b, _)| *b)
    };
    let max = delta
        .iter()
        .rev()
        .find(|(_, c)| *c > 0)
        .map_or(0, |(b, _)| *b);
    format!(
        "p50 <={} p99 <={} max <={} (pow2 buckets)",
        q(0.5),
        q(0.99),
        max
    )
}

/// This benchmark's groups per power-of-two size bucket.
fn group_buckets(before: &StatsSnapshot, after: &StatsSnapshot) -> String {
    let prev = |bound: u64| {
        before
            .group_batches_histogram
            .iter()
            .find(|(b, _)| *b == bound)
            .map_or(0, |(_, c)| *c)
    };
    let parts: Vec<String> = after
        .group_batches_histogram
        .iter()
        .map(|(b, c)| (*b, c.saturating_sub(prev(*b))))
        .filter(|(_, c)| *c > 0)
        .map(|(b, c)| format!("<={b}: {}", commas(c)))
        .collect();
    parts.join(", ")
}

fn levels(s: &StatsSnapshot) -> String {
    let parts: Vec<String> = s
        .levels
        .iter()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.files > 0)
        .map(|(i, l)| format!("L{i} {} ({})", l.files, fmt_bytes(l.bytes)))
        .collect();
    parts.join(", ")
}

fn cache_line(before: &StatsSnapshot, after: &StatsSnapshot) -> String {
    let hits = after.cache_hits.saturating_sub(before.cache_hits);
    let misses = after.cache_misses.saturating_sub(before.cache_misses);
    if hits + misses == 0 {
        "block cache not used".to_string()
    } else {
        format!(
            "block cache hit rate {:.1}% ({} hits, {} misses)",
            100.0 * hits as f64 / (hits + misses) as f64,
            commas(hits),
            commas(misses)
        )
    }
}

/// One writer's keys.
enum KeyOrder {
    Range(u64, u64),
    Slice(Arc<Vec<u64>>, usize, usize),
    Random { rng: Box<StdRng>, n: u64, left: u64 },
}

impl Iterator for KeyOrder {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        match self {
            KeyOrder::Range(lo, hi) => (*lo < *hi).then(|| {
                *lo += 1;
                *lo - 1
            }),
            KeyOrder::Slice(v, lo, hi) => (*lo < *hi).then(|| {
                *lo += 1;
                v[*lo - 1]
            }),
            KeyOrder::Random { rng, n, left } => (*left > 0).then(|| {
                *left -= 1;
                rng.gen_range(0..*n)
            }),
        }
    }
}

/// What one writer or reader did.
struct Part {
    hist: Histogram<u64>,
    ops: u64,
    found: u64,
    bytes: u64,
}

impl Part {
    fn new() -> Part {
        Part {
            hist: histogram(),
            ops: 0,
            found: 0,
            bytes: 0,
        }
    }
}

fn merge(parts: Vec<Part>) -> Part {
    let mut all = Part::new();
    for p in parts {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = all.hist.add(&p.hist);
        all.ops += p.ops;
        all.found += p.found;
        all.bytes += p.bytes;
    }
    all
}

async fn writer(
    db: Arc<Db>,
    keys: KeyOrder,
    batch: usize,
    key_bytes: usize,
    values: Arc<ValueGen>,
    mut vpos: usize,
    deadline: Option<Instant>,
) -> Result<Part> {
    let mut part = Part::new();
    let mut key = key_buf(key_bytes);
    let mut keys = keys;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let mut b = WriteBatch::new();
        let mut bytes = 0;
        for i in keys.by_ref().take(batch) {
            encode_key(&mut key, i);
            let v = values.next(&mut vpos);
            bytes += (key.len() + v.len()) as u64;
            b.put(&key, v);
        }
        if b.is_empty() {
            break;
        }
        let n = b.len() as u64;
        let t = Instant::now();
        db.write(b).await?;
        part.hist.saturating_record(t.elapsed().as_nanos() as u64);
        part.ops += n;
        part.bytes += bytes;
    }
    Ok(part)
}

impl Runner {
    fn db(&self) -> Result<&Arc<Db>> {
        self.db
            .as_ref()
            .ok_or_else(|| anyhow!("the engine is not open"))
    }

    fn deadline(&self) -> Option<Instant> {
        self.args
            .duration_secs
            .map(|s| Instant::now() + Duration::from_secs_f64(s))
    }

    fn run(&mut self, b: Bench, index: u64) -> Result<()> {
        match b {
            Bench::FillSeq | Bench::FillRandom | Bench::Overwrite => self.write_bench(b, index),
            Bench::ReadRandom | Bench::ReadSeq | Bench::SeekRandom => self.read_bench(b, index),
            Bench::RawSync => self.rawsync(),
            Bench::Reopen => self.reopen(),
        }
        .with_context(|| format!("benchmark {}", b.name()))
    }

    fn write_bench(&mut self, b: Bench, index: u64) -> Result<()> {
        let a = &self.args;
        let threads = a.threads as u64;
        let seed = a
            .seed
            .wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let perm = (b == Bench::FillRandom).then(|| {
            let mut v: Vec<u64> = (0..a.num).collect();
            v.shuffle(&mut StdRng::seed_from_u64(seed));
            Arc::new(v)
        });
        let db = self.db()?.clone();
        let before = db.stats();
        let deadline = self.deadline();
        let started = Instant::now();
        let mut handles = Vec::new();
        for t in 0..threads {
            let (lo, hi) = (a.num * t / threads, a.num * (t + 1) / threads);
            let keys = match (&perm, b) {
                (Some(p), _) => KeyOrder::Slice(p.clone(), lo as usize, hi as usize),
                (None, Bench::FillSeq) => KeyOrder::Range(lo, hi),
                _ => KeyOrder::Random {
                    rng: Box::new(StdRng::seed_from_u64(seed ^ (t + 1))),
                    n: a.num,
                    left: hi - lo,
                },
            };
            let vpos = (t as usize * 7919 * a.value_bytes.max(1)) % (1 << 20);
            handles.push(self.rt.spawn(writer(
                db.clone(),
                keys,
                a.batch,
                a.key_bytes,
                self.values.clone(),
                vpos,
                deadline,
            )));
        }
        let mut parts = Vec::new();
        let mut first_err = None;
        for h in handles {
            match self.rt.block_on(h) {
                Ok(Ok(p)) => parts.push(p),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(anyhow!("a writer task failed: {e}"));
                }
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        if let Some(e) = first_err {
            return Err(e);
        }
        let after = db.stats();
        let all = merge(parts);
        let ops_per_sec = all.ops as f64 / elapsed;
        let writes = after.writes.saturating_sub(before.writes);
        let fsyncs = after.wal_fsyncs.saturating_sub(before.wal_fsyncs);
        let fpw = if writes == 0 {
            0.0
        } else {
            fsyncs as f64 / writes as f64
        };
        let per = if a.batch > 1 { "batch" } else { "write" };
        println!(
            "{:<12} : {:>10} ops/s {:>8.1} MB/s   {}   fsyncs/{per} {:.4}   ({} ops in {:.2} s, preset {}, {} threads, batch {}{})",
            b.name(),
            commas(ops_per_sec as u64),
            all.bytes as f64 / elapsed / 1e6,
            percentiles(&all.hist),
            fpw,
            commas(all.ops),
            elapsed,
            self.opts.preset,
            a.threads,
            a.batch,
            if a.batch > 1 {
                ", latency per batch"
            } else {
                ""
            }
        );
        let groups = after.groups.saturating_sub(before.groups);
        let stalls = after.stalls.saturating_sub(before.stalls);
        let stall_us = after.stall_us.saturating_sub(before.stall_us);
        let (lp50, lp99, lp999) = after.write_latency_us_p50_p99_p999;
        println!(
            "               group commit: {} groups, {:.2} writes/group, {}; {} fsyncs; stalls {} ({:.3} s); flushes {}, compactions {}; {}; engine write latency p50/p99/p999 {}/{}/{} us (since open)",
            commas(groups),
            if groups == 0 { 0.0 } else { writes as f64 / groups as f64 },
            group_percentiles(&before, &after),
            commas(fsyncs),
            commas(stalls),
            stall_us as f64 / 1e6,
            after.flushes.saturating_sub(before.flushes),
            after.compactions.saturating_sub(before.compactions),
            levels(&after),
            lp50,
            lp99,
            lp999
        );
        if a.group_histogram {
            println!(
                "               groups by batches/group: {}",
                group_buckets(&before, &after)
            );
        }
        self.outcomes.push(Outcome {
            bench: b,
            ops_per_sec,
            fsyncs_per_write: Some(fpw),
        });
        Ok(())
    }

    fn read_bench(&mut self, b: Bench, index: u64) -> Result<()> {
        let a = &self.args;
        let db = self.db()?.clone();
        let threads = a.threads as u64;
        let reads = a.reads.unwrap_or(a.num);
        let num = a.num;
        let key_bytes = a.key_bytes;
        let nexts = a.seek_nexts;
        let seed = a
            .seed
            .wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let deadline = self.deadline();
        let before = db.stats();
        let started = Instant::now();
        let results: Vec<Result<Part>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let db = &db;
                    s.spawn(move || -> Result<Part> {
                        let mut part = Part::new();
                        let mut key = key_buf(key_bytes);
                        let mut rng = StdRng::seed_from_u64(seed ^ (t + 1));
                        match b {
                            Bench::ReadRandom => {
                                let n = reads * (t + 1) / threads - reads * t / threads;
                                for i in 0..n {
                                    if i.is_multiple_of(64)
                                        && deadline.is_some_and(|d| Instant::now() >= d)
                                    {
                                        break;
                                    }
                                    encode_key(&mut key, rng.gen_range(0..num));
                                    let t0 = Instant::now();
                                    let v = db.get(&key)?;
                                    part.hist.saturating_record(t0.elapsed().as_nanos() as u64);
                                    part.ops += 1;
                                    if let Some(v) = v {
                                        part.found += 1;
                                        part.bytes += (key.len() + v.len()) as u64;
                                    }
                                }
                            }
                            Bench::SeekRandom => {
                                let n = reads * (t + 1) / threads - reads * t / threads;
                                for i in 0..n {
                                    if i.is_multiple_of(64)
                                        && deadline.is_some_and(|d| Instant::now() >= d)
                                    {
                                        break;
                                    }
                                    encode_key(&mut key, rng.gen_range(0..num));
                                    let t0 = Instant::now();
                                    let mut got = 0;
                                    for e in db.scan(key.as_slice()..)?.take(nexts) {
                                        let (k, v) = e?;
                                        part.bytes += (k.len() + v.len()) as u64;
                                        got += 1;
                                    }
                                    part.hist.saturating_record(t0.elapsed().as_nanos() as u64);
                                    part.ops += 1;
                                    if got > 0 {
                                        part.found += 1;
                                    }
                                }
                            }
                            _ => {
                                // readseq: thread t scans its share of the key space.
                                let (lo, hi) = (num * t / threads, num * (t + 1) / threads);
                                encode_key(&mut key, lo);
                                let mut end = key_buf(key_bytes);
                                encode_key(&mut end, hi);
                                let start: &[u8] = if t == 0 { &[] } else { &key };
                                let iter = if t + 1 == threads {
                                    db.scan(start..)?
                                } else {
                                    db.scan(start..end.as_slice())?
                                };
                                let mut t0 = Instant::now();
                                for (i, e) in iter.enumerate() {
                                    let (k, v) = e?;
                                    let t1 = Instant::now();
                                    part.hist.saturating_record((t1 - t0).as_nanos() as u64);
                                    t0 = t1;
                                    part.ops += 1;
                                    part.found += 1;
                                    part.bytes += (k.len() + v.len()) as u64;
                                    if i.is_multiple_of(64) && deadline.is_some_and(|d| t1 >= d) {
                                        break;
                                    }
                                }
                            }
                        }
                        Ok(part)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a reader thread panicked")))
                })
                .collect()
        });
        let elapsed = started.elapsed().as_secs_f64();
        let parts = results.into_iter().collect::<Result<Vec<_>>>()?;
        let after = db.stats();
        let all = merge(parts);
        let ops_per_sec = all.ops as f64 / elapsed;
        let what = match b {
            Bench::ReadRandom => format!("found {} of {}", commas(all.found), commas(all.ops)),
            Bench::SeekRandom => format!(
                "{} seeks reading up to {nexts} entries, {} found a key",
                commas(all.ops),
                commas(all.found)
            ),
            _ => format!("{} entries scanned", commas(all.ops)),
        };
        println!(
            "{:<12} : {:>10} ops/s {:>8.1} MB/s   {}   ({what}, in {:.2} s, {} threads{})",
            b.name(),
            commas(ops_per_sec as u64),
            all.bytes as f64 / elapsed / 1e6,
            percentiles(&all.hist),
            elapsed,
            a.threads,
            if b == Bench::ReadSeq {
                ", latency per entry"
            } else if b == Bench::SeekRandom {
                ", latency per seek + nexts"
            } else {
                ""
            }
        );
        println!(
            "               {}; {}; memtables waiting for flush {}",
            cache_line(&before, &after),
            levels(&after),
            after.immutable_memtables
        );
        self.outcomes.push(Outcome {
            bench: b,
            ops_per_sec,
            fsyncs_per_write: None,
        });
        Ok(())
    }

    /// The disk's own limit for one durable writer: overwrite 4 KiB blocks of
    /// a preallocated file, fdatasync after each.
    fn rawsync(&mut self) -> Result<()> {
        let a = &self.args;
        let ops = a.rawsync_ops.unwrap_or(a.num.min(20_000));
        let path = self.dir.join("rawsync.dat");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let chunk = vec![0u8; 1 << 20];
        let mib = a.rawsync_file_mib.max(1);
        for i in 0..mib {
            f.write_all_at(&chunk, i << 20)?;
        }
        f.sync_all()?;
        let slots = mib * 256;
        let mut block = vec![0xa5u8; 4096];
        let mut hist = histogram();
        let deadline = self.deadline();
        let started = Instant::now();
        let mut done = 0;
        for i in 0..ops {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            block[..8].copy_from_slice(&i.to_le_bytes());
            let t0 = Instant::now();
            f.write_all_at(&block, (i % slots) * 4096)?;
            f.sync_data()?;
            hist.saturating_record(t0.elapsed().as_nanos() as u64);
            done += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        drop(f);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        let ops_per_sec = done as f64 / elapsed;
        println!(
            "{:<12} : {:>10} ops/s {:>8.1} MB/s   {}   fsyncs/write 1.0000   ({} x (4 KiB pwrite + fdatasync) in {:.2} s, {} MiB preallocated file, 1 thread)",
            "rawsync",
            commas(ops_per_sec as u64),
            done as f64 * 4096.0 / elapsed / 1e6,
            percentiles(&hist),
            commas(done),
            elapsed,
            mib
        );
        self.outcomes.push(Outcome {
            bench: Bench::RawSync,
            ops_per_sec,
            fsyncs_per_write: Some(1.0),
        });
        Ok(())
    }

    /// Closes (or, with --crash-before-reopen, drops) the engine and opens it
    /// again, reporting what recovery did.
    fn reopen(&mut self) -> Result<()> {
        let db = self
            .db
            .take()
            .ok_or_else(|| anyhow!("the engine is not open"))?;
        let db = Arc::try_unwrap(db).map_err(|_| anyhow!("the engine is still shared"))?;
        let crash = self.args.crash_before_reopen;
        let t0 = Instant::now();
        if crash {
            drop(db);
        } else {
            self.rt.block_on(db.close()).context("closing the engine")?;
        }
        let shut = t0.elapsed();
        // After a drop the background workers may still hold the engine (and
        // its directory lock) for a moment: retry while the lock is held.
        let t1 = Instant::now();
        let mut lock_waits = 0u64;
        let db = loop {
            match self.rt.block_on(Db::open(&self.dir, self.opts.clone())) {
                Ok(db) => break db,
                Err(DbError::Locked { .. }) if t1.elapsed() < Duration::from_secs(60) => {
                    lock_waits += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e).context("reopening the engine"),
            }
        };
        let open = t1.elapsed();
        let r = db.recovery_report().clone();
        println!(
            "{:<12} :  open {:.3} s (WAL replay {:.3} s, new segment {:.3} s), replayed {} records, {} entries, {} from {} WAL segments   ({} took {:.3} s{}; torn tail {}; orphans removed {})",
            "reopen",
            open.as_secs_f64(),
            r.replay_us as f64 / 1e6,
            r.new_segment_us as f64 / 1e6,
            commas(r.wal_records),
            commas(r.entries),
            fmt_bytes(r.wal_bytes),
            r.wal_segments,
            if crash { "drop without close" } else { "close" },
            shut.as_secs_f64(),
            if lock_waits > 0 {
                format!(", directory lock still held: {lock_waits} retries")
            } else {
                String::new()
            },
            match r.truncated_tail {
                Some(t) => format!("segment {} at {}, {} bytes dropped", t.segment, t.offset, t.bytes_dropped),
                None => "none".to_string(),
            },
            r.orphans_removed
        );
        let s = db.stats();
        println!(
            "               after open: {}; memtables waiting for flush {}",
            levels(&s),
            s.immutable_memtables
        );
        self.db = Some(Arc::new(db));
        Ok(())
    }

    fn print_rawsync_comparison(&self) {
        let Some(raw) = self
            .outcomes
            .iter()
            .find(|o| o.bench == Bench::RawSync)
            .map(|o| o.ops_per_sec)
        else {
            println!("compare-rawsync: no rawsync in this run (add rawsync to the benchmarks)");
            return;
        };
        println!(
            "compared with rawsync ({} fsyncs/s on this disk, one writer):",
            commas(raw as u64)
        );
        for o in self.outcomes.iter().filter(|o| o.bench.is_write()) {
            println!(
                "  {:<12} : {:>8.2}x rawsync   ({} ops/s, fsyncs/write {:.4})",
                o.bench.name(),
                o.ops_per_sec / raw,
                commas(o.ops_per_sec as u64),
                o.fsyncs_per_write.unwrap_or(0.0)
            );
        }
    }

    fn close(&mut self) -> Result<()> {
        let Some(db) = self.db.take() else {
            return Ok(());
        };
        let db = Arc::try_unwrap(db).map_err(|_| anyhow!("the engine is still shared"))?;
        let t = Instant::now();
        self.rt.block_on(db.close()).context("closing the engine")?;
        println!("close        :  {:.3} s", t.elapsed().as_secs_f64());
        Ok(())
    }
}
