//! The command line: which benchmarks, on which engine options, with how
//! many keys, threads and bytes; and the count and size parsers it uses.

use anyhow::{bail, Context, Result};
use ballast_storage::{Options, Preset};
use clap::Parser;
use std::path::PathBuf;

pub const BENCHMARKS: &str =
    "fillseq, fillrandom, overwrite, readrandom, readseq, seekrandom, rawsync, reopen";
/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(
    name = "ballast-bench",
    about = "db_bench-style benchmarks of ballast's storage engine",
    after_help = "Benchmarks: fillseq, fillrandom, overwrite, readrandom, readseq, seekrandom, rawsync, reopen.\nExample: ballast-bench rawsync,fillrandom --preset durable --threads 64 --num 200000 --compare-rawsync"
)]
pub struct Args {
    /// Benchmarks to run in order on the same database (comma- or space-separated).
    #[arg(required = true, num_args = 1..)]
    pub benchmarks: Vec<String>,
    /// Durability preset: durable, balanced or throughput.
    #[arg(long)]
    pub preset: Option<String>,
    /// TOML options file (as config/*.toml); overrides --preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Concurrent writers (tokio tasks) or readers (OS threads).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Number of keys.
    #[arg(long, default_value = "1000000", value_parser = parse_count)]
    pub num: u64,
    /// Key size in bytes (at least 8).
    #[arg(long, default_value_t = 16)]
    pub key_bytes: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Entries per WriteBatch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Database directory (default: a fresh temporary directory).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Keep the temporary database directory at exit.
    #[arg(long)]
    pub keep: bool,
    /// Seed for key order and values.
    #[arg(long, default_value_t = 301)]
    pub seed: u64,
    /// Reads for readrandom and seekrandom (default: --num).
    #[arg(long, value_parser = parse_count)]
    pub reads: Option<u64>,
    /// Override the memtable size (bytes; KiB/MiB/GiB suffixes accepted).
    #[arg(long, value_parser = parse_bytes)]
    pub memtable_bytes: Option<u64>,
    /// Override the block cache size (bytes; KiB/MiB/GiB suffixes accepted).
    #[arg(long, value_parser = parse_bytes)]
    pub cache_bytes: Option<u64>,
    /// Stop each benchmark after this many seconds.
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// `reopen` drops the engine without close(), so the WAL must be replayed.
    #[arg(long)]
    pub crash_before_reopen: bool,
    /// After the run, compare each write benchmark's ops/s with rawsync's.
    #[arg(long)]
    pub compare_rawsync: bool,
    /// Entries read after each seek in seekrandom.
    #[arg(long, default_value_t = 10)]
    pub seek_nexts: usize,
    /// rawsync operations (default: min(--num, 20000)).
    #[arg(long, value_parser = parse_count)]
    pub rawsync_ops: Option<u64>,
    /// Size of the preallocated rawsync file in MiB.
    #[arg(long, default_value_t = 64)]
    pub rawsync_file_mib: u64,
    /// After each write benchmark, print the group-commit size histogram
    /// (groups per power-of-two bucket of batches per group).
    #[arg(long)]
    pub group_histogram: bool,
    /// Worker threads of the tokio runtime the writers run on.
    #[arg(long, default_value_t = 2)]
    pub runtime_workers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bench {
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
    pub fn parse(s: &str) -> Result<Bench> {
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

    pub fn name(self) -> &'static str {
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

    pub fn is_write(self) -> bool {
        matches!(self, Bench::FillSeq | Bench::FillRandom | Bench::Overwrite)
    }
}

/// The benchmarks `args` lists, in order, after checking the arguments
/// that every benchmark needs.
pub fn benchmarks(args: &Args) -> Result<Vec<Bench>> {
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
    Ok(benches)
}

pub fn build_options(args: &Args) -> Result<Options> {
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

/// Parses a count: `1000000`, `1,000,000`, `1_000_000`, `1M`, `20k`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let t: String = s.chars().filter(|c| *c != ',' && *c != '_').collect();
    let (digits, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000),
        Some('g' | 'G') => (&t[..t.len() - 1], 1_000_000_000),
        _ => (&t[..], 1),
    };
    digits
        .parse::<u64>()
        .map(|n| n * mult)
        .map_err(|e| format!("`{s}` is not a count: {e}"))
}

/// Parses a byte size: a count, or with a `KiB`/`MiB`/`GiB` suffix.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    for (suffix, mult) in [("kib", 1u64 << 10), ("mib", 1 << 20), ("gib", 1 << 30)] {
        if let Some(d) = lower.strip_suffix(suffix) {
            return parse_count(d.trim()).map(|n| n * mult);
        }
    }
    parse_count(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_sizes_parse() {
        assert_eq!(parse_count("1,000,000"), Ok(1_000_000));
        assert_eq!(parse_count("20k"), Ok(20_000));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert!(parse_count("x").is_err());
    }
}
