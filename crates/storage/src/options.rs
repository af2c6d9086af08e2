//! Engine options, the three durability presets, and their TOML form.
//!
//! Every knob has a default (the `durable` preset's) and a validated range;
//! [`Options::validate`] refuses a bad value with an error naming the field.
//! The files `config/durable.toml`, `config/balanced.toml` and
//! `config/throughput.toml` spell the presets out and load with
//! [`Options::from_toml`].

use crate::error::{Error, Result};
use crate::fs::{DynFs, StdFs};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The three durability presets. Their crash contracts are in the README
/// and DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// A write is acknowledged once its group commit is fsynced.
    Durable,
    /// A write is acknowledged once written to the OS; the WAL is fsynced
    /// every `sync_interval_ms`.
    Balanced,
    /// A write is acknowledged once in memory; a write-back buffer reaches the
    /// OS every `write_buffer_flush_interval_ms` and is fsynced on memtable
    /// flush and on close.
    Throughput,
}

impl Preset {
    /// Parses "durable", "balanced" or "throughput".
    pub fn parse(s: &str) -> Result<Preset> {
        match s {
            "durable" => Ok(Preset::Durable),
            "balanced" => Ok(Preset::Balanced),
            "throughput" => Ok(Preset::Throughput),
            _ => Err(Error::invalid_option(
                "preset",
                format!("`{s}` is not one of durable, balanced, throughput"),
            )),
        }
    }

    /// The preset's name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Durable => "durable",
            Preset::Balanced => "balanced",
            Preset::Throughput => "throughput",
        }
    }

    /// All presets, in order of decreasing durability.
    pub const ALL: [Preset; 3] = [Preset::Durable, Preset::Balanced, Preset::Throughput];
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When the WAL is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every group commit is written and fsynced before its writers are
    /// acknowledged (one fsync per group).
    Group,
    /// Groups are written to the OS before acknowledgement; a timer fsyncs
    /// the WAL every `sync_interval_ms`.
    Interval {
        /// Milliseconds between WAL fsyncs.
        sync_interval_ms: u64,
    },
    /// Groups go to an in-memory write-back buffer; the buffer is written to
    /// the OS when full or every `flush_interval_ms`, and fsynced on memtable
    /// flush and close.
    WriteBack {
        /// Bytes the buffer holds before it is written to the OS.
        buffer_bytes: u64,
        /// Milliseconds between timed writes of the buffer to the OS.
        flush_interval_ms: u64,
    },
}

/// Block compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Blocks stored as is.
    None,
    /// Blocks compressed with snappy when that saves at least 1/8.
    Snappy,
}

/// Where background work (flush, compaction, timed syncs) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// tokio tasks on the caller's runtime: no threads of the engine's own.
    /// Required under simulation.
    Tasks,
    /// One dedicated OS thread per engine for flush and compaction, so CPU
    /// work never blocks the caller's async workers. Production default.
    Thread,
}

/// Supplies wall-clock time in milliseconds since the Unix epoch, for TTLs.
/// Simulation supplies its own; the engine never reads the system clock
/// directly.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told; for tests and simulation.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock(std::sync::atomic::AtomicU64::new(now_ms)))
    }
    /// Sets the time.
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, std::sync::atomic::Ordering::SeqCst);
    }
    /// Moves the time forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Everything that configures an engine.
#[derive(Clone)]
pub struct Options {
    /// The preset these options started from.
    pub preset: Preset,
    /// WAL fsync policy (set by the preset).
    pub fsync: FsyncPolicy,
    /// Keep a WAL. False in replicated mode, where the Raft log is the WAL.
    pub wal: bool,
    /// Size at which a WAL segment is closed and the next one started.
    pub wal_segment_bytes: u64,
    /// Zero-fill each new WAL segment to its full size before use, so that
    /// fdatasync need not update file metadata on every commit.
    pub wal_preallocate: bool,
    /// WAL records with payloads at least this large are snappy-compressed
    /// (0 disables compression).
    pub wal_compression_threshold_bytes: u64,
    /// Most bytes one group commit writes (a single larger batch still
    /// forms a group of its own).
    pub group_commit_bytes_max: u64,
    /// Largest encoded write batch accepted (it must fit one WAL record).
    pub batch_bytes_max: u64,
    /// Most write batches one group commit takes.
    pub group_commit_batches_max: u64,
    /// Most writers waiting for a group commit before new writers stall.
    pub write_queue_max: u64,
    /// Size at which the active memtable is frozen and queued for flush.
    pub memtable_bytes: u64,
    /// Frozen memtables waiting for flush before writes stall.
    pub immutable_memtables_max: u64,
    /// Uncompressed size of an SSTable data block.
    pub block_bytes: u64,
    /// Data block compression.
    pub compression: Compression,
    /// Bloom filter bits per key (0 disables the filter).
    pub bloom_bits_per_key: u64,
    /// Capacity of the decompressed block cache.
    pub block_cache_bytes: u64,
    /// Target size of SSTables written by compaction.
    pub table_target_bytes: u64,
    /// Number of L0 tables that triggers an L0 -> L1 compaction.
    pub l0_compaction_trigger: u64,
    /// Number of L0 tables at which writes stall until compaction catches up.
    pub l0_stop_writes_trigger: u64,
    /// Size limit of L1; each deeper level is `level_size_multiplier` times larger.
    pub level_base_bytes: u64,
    /// Growth factor between levels.
    pub level_size_multiplier: u64,
    /// A manifest that grows past this is replaced by a fresh one holding
    /// a snapshot of the tree (default [`crate::MANIFEST_BYTES_MAX`]).
    pub manifest_bytes_max: u64,
    /// Longest key accepted.
    pub key_bytes_max: u64,
    /// Longest value accepted.
    pub value_bytes_max: u64,
    /// Where background work runs.
    pub background: Background,
    /// The file system (the seam).
    pub fs: DynFs,
    /// Wall clock for TTLs.
    pub clock: Arc<dyn Clock>,
    /// Replicated mode's expiry: flush and compaction drop expired keys
    /// only at or below the expiry horizon the state machine feeds with
    /// the time of each applied entry ([`crate::Db::set_expiry_horizon_ms`]),
    /// never by `clock`, so every replica drops the same keys whatever its
    /// clock says; reads hide keys expired by the later of `clock` and the
    /// horizon. False (the default): expiry follows `clock`.
    pub expire_by_horizon: bool,
    /// Run before a memtable flush is recorded in the manifest (`None`:
    /// nothing). In replicated mode the node makes its Raft log durable
    /// here, so that a flushed applied marker never covers log entries a
    /// power loss could still take away.
    pub flush_barrier: Option<Arc<dyn FlushBarrier>>,
}

/// What a flush waits for before it records a memtable as durable; see
/// [`Options::flush_barrier`].
pub trait FlushBarrier: Send + Sync + 'static {
    /// Completes once whatever the memtables hold may be made durable. An
    /// error fails the flush (and stops writes, as a failed flush does).
    fn before_flush(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send + '_>>;
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("preset", &self.preset)
            .field("fsync", &self.fsync)
            .field("wal", &self.wal)
            .field("memtable_bytes", &self.memtable_bytes)
            .field("block_bytes", &self.block_bytes)
            .field("compression", &self.compression)
            .field("bloom_bits_per_key", &self.bloom_bits_per_key)
            .field("block_cache_bytes", &self.block_cache_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::preset(Preset::Durable)
    }
}

/// The default of [`Options::manifest_bytes_max`]: a manifest larger
/// than this is replaced by a fresh snapshot.
pub const MANIFEST_BYTES_MAX: u64 = 4 << 20;

/// The number of levels (L0..L6).
pub const LEVELS: usize = 7;

impl Options {
    /// The options of a preset.
    pub fn preset(preset: Preset) -> Options {
        let fsync = match preset {
            Preset::Durable => FsyncPolicy::Group,
            Preset::Balanced => FsyncPolicy::Interval {
                sync_interval_ms: 5,
            },
            Preset::Throughput => FsyncPolicy::WriteBack {
                buffer_bytes: 4 * MIB,
                flush_interval_ms: 100,
            },
        };
        Options {
            preset,
            fsync,
            wal: true,
            wal_segment_bytes: 128 * MIB,
            wal_preallocate: preset == Preset::Durable,
            wal_compression_threshold_bytes: 4 * KIB,
            group_commit_bytes_max: 4 * MIB,
            batch_bytes_max: 64 * MIB,
            group_commit_batches_max: 4096,
            write_queue_max: 16384,
            memtable_bytes: 64 * MIB,
            immutable_memtables_max: 2,
            block_bytes: 4 * KIB,
            compression: Compression::Snappy,
            bloom_bits_per_key: 10,
            block_cache_bytes: 256 * MIB,
            table_target_bytes: 32 * MIB,
            l0_compaction_trigger: 4,
            l0_stop_writes_trigger: 12,
            level_base_bytes: 256 * MIB,
            level_size_multiplier: 10,
            manifest_bytes_max: MANIFEST_BYTES_MAX,
            key_bytes_max: 64 * KIB,
            value_bytes_max: 16 * MIB,
            background: Background::Thread,
            fs: StdFs::shared(),
            clock: Arc::new(SystemClock),
            expire_by_horizon: false,
            flush_barrier: None,
        }
    }

    /// Checks every field against its range; the error names the field.
    pub fn validate(&self) -> Result<()> {
        fn range(field: &str, v: u64, lo: u64, hi: u64) -> Result<()> {
            if v < lo || v > hi {
                return Err(Error::invalid_option(
                    field,
                    format!("{v} is outside the allowed range {lo}..={hi}"),
                ));
            }
            Ok(())
        }
        match self.fsync {
            FsyncPolicy::Group => {}
            FsyncPolicy::Interval { sync_interval_ms } => {
                range("sync_interval_ms", sync_interval_ms, 1, 60_000)?
            }
            FsyncPolicy::WriteBack {
                buffer_bytes,
                flush_interval_ms,
            } => {
                range("write_buffer_bytes", buffer_bytes, 4 * KIB, GIB)?;
                range(
                    "write_buffer_flush_interval_ms",
                    flush_interval_ms,
                    1,
                    60_000,
                )?;
            }
        }
        range(
            "wal_segment_bytes",
            self.wal_segment_bytes,
            64 * KIB,
            4 * GIB,
        )?;
        range(
            "wal_compression_threshold_bytes",
            self.wal_compression_threshold_bytes,
            0,
            64 * MIB,
        )?;
        range(
            "group_commit_bytes_max",
            self.group_commit_bytes_max,
            4 * KIB,
            GIB,
        )?;
        range(
            "group_commit_batches_max",
            self.group_commit_batches_max,
            1,
            1 << 20,
        )?;
        range("write_queue_max", self.write_queue_max, 1, 1 << 24)?;
        range("memtable_bytes", self.memtable_bytes, 64 * KIB, 16 * GIB)?;
        range(
            "immutable_memtables_max",
            self.immutable_memtables_max,
            1,
            64,
        )?;
        range("block_bytes", self.block_bytes, 256, 4 * MIB)?;
        range("bloom_bits_per_key", self.bloom_bits_per_key, 0, 64)?;
        range("block_cache_bytes", self.block_cache_bytes, 0, 256 * GIB)?;
        range(
            "table_target_bytes",
            self.table_target_bytes,
            64 * KIB,
            4 * GIB,
        )?;
        range("l0_compaction_trigger", self.l0_compaction_trigger, 1, 1000)?;
        range(
            "l0_stop_writes_trigger",
            self.l0_stop_writes_trigger,
            self.l0_compaction_trigger.saturating_add(1),
            10_000,
        )?;
        range("level_base_bytes", self.level_base_bytes, 64 * KIB, 1 << 50)?;
        range("level_size_multiplier", self.level_size_multiplier, 2, 1000)?;
        range("manifest_bytes_max", self.manifest_bytes_max, 512, GIB)?;
        range("key_bytes_max", self.key_bytes_max, 1, 16 * MIB)?;
        range("value_bytes_max", self.value_bytes_max, 1, GIB)?;
        range(
            "batch_bytes_max",
            self.batch_bytes_max,
            64 * KIB,
            4 * GIB - 1,
        )?;
        Ok(())
    }

    /// Reads options from TOML text: `preset = "..."` picks the base, and any
    /// other key overrides one field. Unknown keys are refused.
    ///
    /// ```
    /// use ballast_storage::{Options, Preset};
    /// let o = Options::from_toml("preset = \"balanced\"\nsync_interval_ms = 10\n").unwrap();
    /// assert_eq!(o.preset, Preset::Balanced);
    /// let err = Options::from_toml("preset = \"durable\"\nblock_bytes = 1\n").unwrap_err();
    /// assert!(err.to_string().contains("block_bytes"));
    /// ```
    pub fn from_toml(text: &str) -> Result<Options> {
        let file: OptionsFile = toml::from_str(text)
            .map_err(|e| Error::invalid_option(field_of(text, &e), e.message().to_string()))?;
        file.into_options()
    }
}

/// The key on the line where toml located the error, so that the message
/// names the field even when the value is what is wrong.
fn field_of(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return "config".to_string();
    };
    let line_start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    match line.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() => key.trim().to_string(),
        _ => "config".to_string(),
    }
}

/// The TOML shape of [`Options`]: every field optional over the preset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsFile {
    preset: Preset,
    sync_interval_ms: Option<u64>,
    write_buffer_bytes: Option<u64>,
    write_buffer_flush_interval_ms: Option<u64>,
    wal_segment_bytes: Option<u64>,
    wal_preallocate: Option<bool>,
    wal_compression_threshold_bytes: Option<u64>,
    group_commit_bytes_max: Option<u64>,
    batch_bytes_max: Option<u64>,
    group_commit_batches_max: Option<u64>,
    write_queue_max: Option<u64>,
    memtable_bytes: Option<u64>,
    immutable_memtables_max: Option<u64>,
    block_bytes: Option<u64>,
    compression: Option<Compression>,
    bloom_bits_per_key: Option<u64>,
    block_cache_bytes: Option<u64>,
    table_target_bytes: Option<u64>,
    l0_compaction_trigger: Option<u64>,
    l0_stop_writes_trigger: Option<u64>,
    level_base_bytes: Option<u64>,
    level_size_multiplier: Option<u64>,
    manifest_bytes_max: Option<u64>,
    key_bytes_max: Option<u64>,
    value_bytes_max: Option<u64>,
}

impl OptionsFile {
    fn into_options(self) -> Result<Options> {
        let mut o = Options::preset(self.preset);
        match &mut o.fsync {
            FsyncPolicy::Group => {
                for (name, set) in [
                    ("sync_interval_ms", self.sync_interval_ms.is_some()),
                    ("write_buffer_bytes", self.write_buffer_bytes.is_some()),
                    (
                        "write_buffer_flush_interval_ms",
                        self.write_buffer_flush_interval_ms.is_some(),
                    ),
                ] {
                    if set {
                        return Err(Error::invalid_option(
                            name,
                            "does not apply to the durable preset (it fsyncs every group commit)",
                        ));
                    }
                }
            }
            FsyncPolicy::Interval { sync_interval_ms } => {
                if let Some(v) = self.sync_interval_ms {
                    *sync_interval_ms = v;
                }
                if self.write_buffer_bytes.is_some()
                    || self.write_buffer_flush_interval_ms.is_some()
                {
                    return Err(Error::invalid_option(
                        "write_buffer_bytes",
                        "applies only to the throughput preset",
                    ));
                }
            }
            FsyncPolicy::WriteBack {
                buffer_bytes,
                flush_interval_ms,
            } => {
                if let Some(v) = self.write_buffer_bytes {
                    *buffer_bytes = v;
                }
                if let Some(v) = self.write_buffer_flush_interval_ms {
                    *flush_interval_ms = v;
                }
                if self.sync_interval_ms.is_some() {
                    return Err(Error::invalid_option(
                        "sync_interval_ms",
                        "applies only to the balanced preset",
                    ));
                }
            }
        }
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { o.$f = v; } )* };
        }
        set!(
            wal_segment_bytes,
            wal_preallocate,
            wal_compression_threshold_bytes,
            group_commit_bytes_max,
            batch_bytes_max,
            group_commit_batches_max,
            write_queue_max,
            memtable_bytes,
            immutable_memtables_max,
            block_bytes,
            compression,
            bloom_bits_per_key,
            block_cache_bytes,
            table_target_bytes,
            l0_compaction_trigger,
            l0_stop_writes_trigger,
            level_base_bytes,
            level_size_multiplier,
            manifest_bytes_max,
            key_bytes_max,
            value_bytes_max
        );
        o.validate()?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate() {
        for p in Preset::ALL {
            Options::preset(p).validate().unwrap();
        }
    }

    #[test]
    fn out_of_range_and_unknown_fields_name_the_field() {
        let e = Options::from_toml("preset = \"durable\"\nmemtable_bytes = 10\n").unwrap_err();
        assert!(e.to_string().contains("memtable_bytes"), "{e}");
        let e = Options::from_toml("preset = \"durable\"\nmemtable_byte = 10\n").unwrap_err();
        assert!(e.to_string().contains("memtable_byte"), "{e}");
        let e = Options::from_toml("preset = \"fast\"\n").unwrap_err();
        assert!(e.to_string().contains("preset"), "{e}");
        let e = Options::from_toml("preset = \"durable\"\nsync_interval_ms = 3\n").unwrap_err();
        assert!(e.to_string().contains("sync_interval_ms"), "{e}");
    }

    #[test]
    fn overrides_apply_over_the_preset() {
        let o = Options::from_toml(
            "preset = \"throughput\"\nwrite_buffer_bytes = 65536\nblock_bytes = 8192\n",
        )
        .unwrap();
        assert_eq!(o.block_bytes, 8192);
        assert!(matches!(
            o.fsync,
            FsyncPolicy::WriteBack {
                buffer_bytes: 65536,
                ..
            }
        ));
    }
}
