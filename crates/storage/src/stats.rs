//! Engine statistics: counters, histograms, and a snapshot for display.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Live counters, updated by the engine.
#[derive(Debug)]
pub struct Stats {
    pub(crate) writes: AtomicU64,
    pub(crate) write_bytes: AtomicU64,
    pub(crate) wal_bytes: AtomicU64,
    pub(crate) groups: AtomicU64,
    pub(crate) stalls: AtomicU64,
    pub(crate) stall_us: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) flush_bytes: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) compaction_bytes_in: AtomicU64,
    pub(crate) compaction_bytes_out: AtomicU64,
    pub(crate) score_compactions: AtomicU64,
    pub(crate) trivial_moves: AtomicU64,
    pub(crate) manifest_rotations: AtomicU64,
    pub(crate) gets: AtomicU64,
    group_batches: Mutex<Histogram<u64>>,
    write_latency_us: Mutex<Histogram<u64>>,
}

fn histogram(max: u64) -> Mutex<Histogram<u64>> {
    // Two significant figures; bounds keep memory fixed (a few KiB each).
    // Invariant: these constant bounds are valid, so `new_with_bounds` cannot fail.
    Mutex::new(Histogram::new_with_bounds(1, max, 2).expect("valid histogram bounds"))
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            writes: AtomicU64::new(0),
            write_bytes: AtomicU64::new(0),
            wal_bytes: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            stall_us: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flush_bytes: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            compaction_bytes_in: AtomicU64::new(0),
            compaction_bytes_out: AtomicU64::new(0),
            score_compactions: AtomicU64::new(0),
            trivial_moves: AtomicU64::new(0),
            manifest_rotations: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            group_batches: histogram(1 << 20),
            write_latency_us: histogram(60_000_000),
        }
    }
}

pub(crate) fn add(c: &AtomicU64, v: u64) {
    c.fetch_add(v, Ordering::Relaxed);
}

impl Stats {
    pub(crate) fn record_group(&self, batches: u64) {
        add(&self.groups, 1);
        if let Ok(mut h) = self.group_batches.lock() {
            h.saturating_record(batches.max(1));
        }
    }

    pub(crate) fn record_write_latency_us(&self, us: u64) {
        if let Ok(mut h) = self.write_latency_us.lock() {
            h.saturating_record(us.max(1));
        }
    }
}

/// Files and bytes in one level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Number of SSTables.
    pub files: u64,
    /// Total size.
    pub bytes: u64,
}

/// A point-in-time copy of the statistics.
#[derive(Debug, Clone, Default)]
pub struct StatsSnapshot {
    /// Acknowledged write batches.
    pub writes: u64,
    /// Bytes of keys and values written.
    pub write_bytes: u64,
    /// Bytes appended to the WAL.
    pub wal_bytes: u64,
    /// WAL segment fdatasyncs since open (group commits, timed syncs,
    /// seals at segment roll, segment creation).
    pub wal_fsyncs: u64,
    /// Group commits.
    pub groups: u64,
    /// Batches per group: (p50, p99, max).
    pub group_batches_p50_p99_max: (u64, u64, u64),
    /// Groups by size, as (upper bound of batches, count) buckets in powers of two.
    pub group_batches_histogram: Vec<(u64, u64)>,
    /// Times a writer waited for flush or compaction to catch up.
    pub stalls: u64,
    /// Microseconds spent stalled.
    pub stall_us: u64,
    /// Memtable flushes.
    pub flushes: u64,
    /// Bytes written by flushes.
    pub flush_bytes: u64,
    /// Compactions run.
    pub compactions: u64,
    /// Bytes read by compactions.
    pub compaction_bytes_in: u64,
    /// Bytes written by compactions.
    pub compaction_bytes_out: u64,
    /// Compactions of level 1 or deeper, picked because the level was
    /// over its target size (trivial moves included).
    pub score_compactions: u64,
    /// Compactions that moved a table down a level without rewriting it
    /// (nothing in the next level overlapped it).
    pub trivial_moves: u64,
    /// Manifests replaced by a fresh one after passing
    /// `Options::manifest_bytes_max`.
    pub manifest_rotations: u64,
    /// Point lookups.
    pub gets: u64,
    /// Block cache hits.
    pub cache_hits: u64,
    /// Block cache misses.
    pub cache_misses: u64,
    /// Files and bytes per level.
    pub levels: Vec<LevelStats>,
    /// Frozen memtables waiting for flush.
    pub immutable_memtables: u64,
    /// Write latency in microseconds: p50, p99, p999.
    pub write_latency_us_p50_p99_p999: (u64, u64, u64),
}

impl StatsSnapshot {
    /// Cache hit rate in [0, 1] (0 when the cache was never asked).
    pub fn cache_hit_rate(&self) -> f64 {
        let total = self.cache_hits + self.cache_misses;
        if total == 0 {
            0.0
        } else {
            self.cache_hits as f64 / total as f64
        }
    }
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (gp50, gp99, gmax, buckets) = match self.group_batches.lock() {
            Ok(h) => {
                let mut buckets = Vec::new();
                let mut bound = 1u64;
                let mut below = 0u64;
                while bound <= h.max().max(1) {
                    let upto = h.count_between(1, bound);
                    buckets.push((bound, upto - below));
                    below = upto;
                    bound *= 2;
                }
                (
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.max(),
                    buckets,
                )
            }
            Err(_) => (0, 0, 0, Vec::new()),
        };
        let lat = match self.write_latency_us.lock() {
            Ok(h) => (
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
            ),
            Err(_) => (0, 0, 0),
        };
        StatsSnapshot {
            writes: l(&self.writes),
            write_bytes: l(&self.write_bytes),
            wal_bytes: l(&self.wal_bytes),
            groups: l(&self.groups),
            group_batches_p50_p99_max: (gp50, gp99, gmax),
            group_batches_histogram: buckets,
            stalls: l(&self.stalls),
            stall_us: l(&self.stall_us),
            flushes: l(&self.flushes),
            flush_bytes: l(&self.flush_bytes),
            compactions: l(&self.compactions),
            compaction_bytes_in: l(&self.compaction_bytes_in),
            compaction_bytes_out: l(&self.compaction_bytes_out),
            score_compactions: l(&self.score_compactions),
            trivial_moves: l(&self.trivial_moves),
            manifest_rotations: l(&self.manifest_rotations),
            gets: l(&self.gets),
            write_latency_us_p50_p99_p999: lat,
            ..StatsSnapshot::default()
        }
    }
}
