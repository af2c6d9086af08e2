//! What the benchmarks print: the header, one result line per benchmark
//! with its engine statistics, the comparison with rawsync, and the number
//! formats they share.

use crate::args::{Args, Bench};
use ballast_storage::{FsyncPolicy, Options, StatsSnapshot};
use hdrhistogram::Histogram;
use std::path::Path;

/// What one benchmark measured, for the summary.
#[derive(Debug)]
pub struct Outcome {
    pub bench: Bench,
    pub ops_per_sec: f64,
    pub fsyncs_per_write: Option<f64>,
}

/// A latency histogram in nanoseconds (1 ns to 1 hour, 3 significant figures).
pub fn histogram() -> Histogram<u64> {
    // Invariant: constant, valid bounds.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// `n` with thousands separators.
pub fn commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in nanoseconds, in the unit that reads best.
pub fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e6 {
        format!("{:.1} us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A byte count in MiB or GiB.
pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

pub fn print_header(args: &Args, opts: &Options, dir: &Path, temporary: bool) {
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

/// The start of a result line: the benchmark, ops/s, MB/s (from
/// `bytes_per_sec`) and the latency percentiles.
pub fn result_head(name: &str, ops_per_sec: f64, bytes_per_sec: f64, h: &Histogram<u64>) -> String {
    format!(
        "{:<12} : {:>10} ops/s {:>8.1} MB/s   {}",
        name,
        commas(ops_per_sec as u64),
        bytes_per_sec / 1e6,
        percentiles(h)
    )
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
pub fn group_percentiles(before: &StatsSnapshot, after: &StatsSnapshot) -> String {
    if before.groups == 0 {
        let (p50, p99, max) = after.group_batches_p50_p99_max;
        return format!("p50 {p50} p99 {p99} max {max}");
    }
    let delta = group_delta(before, after);
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

/// This benchmark's groups per power-of-two size bucket, as (bucket
/// bound, groups): the engine's cumulative histogram after, less before.
fn group_delta(before: &StatsSnapshot, after: &StatsSnapshot) -> Vec<(u64, u64)> {
    let prev = |bound: u64| {
        before
            .group_batches_histogram
            .iter()
            .find(|(b, _)| *b == bound)
            .map_or(0, |(_, c)| *c)
    };
    after
        .group_batches_histogram
        .iter()
        .map(|(b, c)| (*b, c.saturating_sub(prev(*b))))
        .collect()
}

/// This benchmark's groups per power-of-two size bucket.
pub fn group_buckets(before: &StatsSnapshot, after: &StatsSnapshot) -> String {
    let parts: Vec<String> = group_delta(before, after)
        .into_iter()
        .filter(|(_, c)| *c > 0)
        .map(|(b, c)| format!("<={b}: {}", commas(c)))
        .collect();
    parts.join(", ")
}

pub fn levels(s: &StatsSnapshot) -> String {
    let parts: Vec<String> = s
        .levels
        .iter()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.files > 0)
        .map(|(i, l)| format!("L{i} {} ({})", l.files, fmt_bytes(l.bytes)))
        .collect();
    parts.join(", ")
}

pub fn cache_line(before: &StatsSnapshot, after: &StatsSnapshot) -> String {
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

/// Prints each write benchmark's ops/s against rawsync's.
pub fn print_rawsync_comparison(outcomes: &[Outcome]) {
    let Some(raw) = outcomes
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
    for o in outcomes.iter().filter(|o| o.bench.is_write()) {
        println!(
            "  {:<12} : {:>8.2}x rawsync   ({} ops/s, fsyncs/write {:.4})",
            o.bench.name(),
            o.ops_per_sec / raw,
            commas(o.ops_per_sec as u64),
            o.fsyncs_per_write.unwrap_or(0.0)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(commas(1234567), "1,234,567");
        assert_eq!(commas(123), "123");
    }
}
