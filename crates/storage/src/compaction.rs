//! Leveled compaction, and the table-writing routine that flush shares.
//!
//! L0 -> L1 when L0 holds `l0_compaction_trigger` tables; Ln -> Ln+1 when
//! Ln is over its target size (`level_base_bytes * multiplier^(n-1)`), one
//! file at a time, round-robin through the key space. Compaction drops
//! values shadowed for every reader, tombstones at the bottom of their key's
//! history, and expired entries.

use crate::engine::{Engine, Memtables};
use crate::error::{Error, Result};
use crate::filename::table_path;
use crate::fs::{self, IoOp, OpenMode};
use crate::iter::InternalIterator;
use crate::key::{parse_internal_key, SeqNo, ValueKind};
use crate::lock::lock;
use crate::merge::MergingIterator;
use crate::options::LEVELS;
use crate::planted::PlantedBug;
use crate::range_floor::RangeFloor;
use crate::stats::add;
use crate::table::{Table, TableBuilder, TableOptions};
use crate::version::{FileDesc, FileMeta, Version, VersionEdit};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing::Instrument;

/// What a flush or compaction wrote: tables and their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TablesWritten {
    pub files: u64,
    pub bytes: u64,
}

/// What to do with one entry on its way to a new table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Keep,
    Drop,
    /// Write a tombstone instead (an expired value above the bottom level
    /// must still hide older versions below it).
    Tombstone,
}

/// Answers "does no level below the output hold this user key?".
pub(crate) type IsBaseLevel<'a> = Box<dyn Fn(&[u8]) -> bool + Send + 'a>;

/// Decides, entry by entry in internal-key order, what survives.
pub(crate) struct EntryFilter<'a> {
    smallest_snapshot: SeqNo,
    now_ms: u64,
    /// True if no level below the output holds `user_key`; `None` means
    /// "never" (flush to L0).
    is_base: Option<IsBaseLevel<'a>>,
    current: Vec<u8>,
    has_current: bool,
    last_seq_for_key: SeqNo,
    /// Range deletes whose covered entries may go (only those at or below
    /// the oldest snapshot take effect: an older reader still sees the
    /// data).
    floors: Vec<RangeFloor>,
}

impl<'a> EntryFilter<'a> {
    pub(crate) fn new(
        smallest_snapshot: SeqNo,
        now_ms: u64,
        is_base: Option<IsBaseLevel<'a>>,
    ) -> Self {
        EntryFilter {
            smallest_snapshot,
            now_ms,
            is_base,
            current: Vec::new(),
            has_current: false,
            last_seq_for_key: u64::MAX,
            floors: Vec::new(),
        }
    }

    /// Drops, from now on, the entries `floors` cover for every reader
    /// (see [`crate::range_floor`]); not while the planted
    /// `range-delete-ignored-by-compaction` is on.
    pub(crate) fn with_floors(mut self, engine: &Engine, floors: Vec<RangeFloor>) -> Self {
        if engine.compaction_drops_covered.load(Ordering::Acquire) {
            self.floors = floors;
        }
        self
    }

    pub(crate) fn decide(
        &mut self,
        user_key: &[u8],
        seq: SeqNo,
        kind: ValueKind,
        value: &[u8],
    ) -> Decision {
        if !self.has_current || self.current != user_key {
            self.current.clear();
            self.current.extend_from_slice(user_key);
            self.has_current = true;
            self.last_seq_for_key = u64::MAX;
        }
        let decision = if self.last_seq_for_key <= self.smallest_snapshot {
            // A newer entry of this key is visible to every reader.
            Decision::Drop
        } else if crate::range_floor::hides(&self.floors, user_key, seq, self.smallest_snapshot) {
            // Gone for every reader, and so is every older version of the
            // key (lower sequence numbers, covered too).
            Decision::Drop
        } else if seq <= self.smallest_snapshot {
            let base = || self.is_base.as_ref().is_some_and(|f| f(user_key));
            match kind {
                ValueKind::Delete if base() => Decision::Drop,
                ValueKind::PutExpiring
                    if value.len() >= 8 && crate::coding::get_fixed64(value) <= self.now_ms =>
                {
                    if base() || crate::planted::active(PlantedBug::ExpiredDroppedAboveBase) {
                        Decision::Drop
                    } else {
                        Decision::Tombstone
                    }
                }
                _ => Decision::Keep,
            }
        } else {
            Decision::Keep
        };
        self.last_seq_for_key = seq;
        decision
    }
}

pub(crate) fn table_options(engine: &Engine) -> TableOptions {
    TableOptions {
        block_bytes: engine.opts.block_bytes as usize,
        compression: engine.opts.compression,
        bloom_bits_per_key: engine.opts.bloom_bits_per_key as u32,
        restart_interval: 16,
    }
}

/// Writes the entries of `iter` that `filter` keeps into new tables at
/// `level`, starting a new table past `split_bytes` (never between two
/// versions of one user key). Each table is fsynced; the caller records
/// them in the manifest (which fsyncs the directory first).
pub(crate) async fn write_tables(
    engine: &Arc<Engine>,
    level: u32,
    iter: &mut dyn InternalIterator,
    filter: &mut EntryFilter<'_>,
    split_bytes: Option<u64>,
) -> Result<Vec<Arc<FileMeta>>> {
    let mut outputs = Vec::new();
    let mut builder: Option<(u64, std::path::PathBuf, TableBuilder)> = None;
    let mut last_user_key: Vec<u8> = Vec::new();
    let mut tombstone = Vec::new();
    iter.seek_to_first()?;
    while iter.valid() {
        let ikey = iter.key();
        let p = parse_internal_key(ikey).ok_or_else(|| {
            Error::corruption(&engine.dir, 0, "unparsable internal key during compaction")
        })?;
        let decision = filter.decide(p.user_key, p.seq, p.kind, iter.value());
        if decision != Decision::Drop {
            if let (Some(split), Some((_, _, b))) = (split_bytes, builder.as_ref()) {
                if b.estimated_size() >= split && last_user_key != p.user_key {
                    let (number, path, b) = builder.take().ok_or(Error::Closed)?;
                    outputs.push(finish_table(engine, level, number, path, b).await?);
                }
            }
            if builder.is_none() {
                let number = engine.next_file_number.fetch_add(1, Ordering::SeqCst);
                let path = table_path(&engine.dir, number);
                let file = engine
                    .fs
                    .open(&path, OpenMode::CreateNew)
                    .map_err(|e| Error::io(&path, e))?;
                builder = Some((
                    number,
                    path.clone(),
                    TableBuilder::new(file, path, table_options(engine)),
                ));
            }
            let (_, _, b) = builder.as_mut().ok_or(Error::Closed)?;
            match decision {
                Decision::Tombstone => {
                    tombstone.clear();
                    crate::key::append_internal_key(
                        &mut tombstone,
                        p.user_key,
                        p.seq,
                        ValueKind::Delete,
                    );
                    b.add(&tombstone, &[])?;
                }
                _ => b.add(ikey, iter.value())?,
            }
            last_user_key.clear();
            last_user_key.extend_from_slice(p.user_key);
        }
        iter.next()?;
    }
    if let Some((number, path, b)) = builder.take() {
        if b.entries() > 0 {
            outputs.push(finish_table(engine, level, number, path, b).await?);
        } else {
            drop(b);
            let _ = engine.fs.remove_file(&path);
        }
    }
    Ok(outputs)
}

async fn finish_table(
    engine: &Arc<Engine>,
    level: u32,
    number: u64,
    path: std::path::PathBuf,
    builder: TableBuilder,
) -> Result<Arc<FileMeta>> {
    fs::pause(&*engine.fs, IoOp::Sync).await;
    let summary = builder.finish()?;
    let file = engine
        .fs
        .open(&path, OpenMode::Read)
        .map_err(|e| Error::io(&path, e))?;
    let table = Table::open(file, path, number, summary.file_size, engine.cache.clone())?;
    let desc = FileDesc {
        level,
        number,
        size: summary.file_size,
        smallest: summary.smallest,
        largest: summary.largest,
        smallest_seq: summary.smallest_seq,
        largest_seq: summary.largest_seq,
    };
    Ok(FileMeta::new(desc, table, engine.graveyard.clone()))
}

/// One planned compaction.
struct Compaction {
    level: usize,
    inputs: Vec<Arc<FileMeta>>,
    /// Overlapping files of `level + 1`.
    next: Vec<Arc<FileMeta>>,
    version: Arc<Version>,
    /// Rewrite even a lone file (never a trivial move): the compaction is
    /// there to drop what a range delete covers.
    rewrite: bool,
}

fn level_target_bytes(engine: &Engine, level: usize) -> u64 {
    let mut t = engine.opts.level_base_bytes;
    for _ in 1..level {
        t = t.saturating_mul(engine.opts.level_size_multiplier);
    }
    t
}

fn pick(engine: &Engine, force_l0: bool) -> Option<Compaction> {
    let version = lock(&engine.writer_view).version.clone();
    let l0 = &version.levels[0];
    if !l0.is_empty() && (force_l0 || l0.len() as u64 >= engine.opts.l0_compaction_trigger) {
        let inputs: Vec<_> = l0.clone();
        let lo = inputs
            .iter()
            .map(|f| f.desc.smallest_user().to_vec())
            .min()?;
        let hi = inputs
            .iter()
            .map(|f| f.desc.largest_user().to_vec())
            .max()?;
        let next = version.overlapping(1, &lo, &hi);
        return Some(Compaction {
            level: 0,
            inputs,
            next,
            version,
            rewrite: false,
        });
    }
    let mut best: Option<(f64, usize)> = None;
    for level in 1..LEVELS - 1 {
        let score = version.level_bytes(level) as f64 / level_target_bytes(engine, level) as f64;
        if score >= 1.0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, level));
        }
    }
    let Some((_, level)) = best else {
        return pick_for_floors(engine, version);
    };
    let files = &version.levels[level];
    let pointer = lock(&engine.compact_pointers)[level].clone();
    let f = files
        .iter()
        .find(|f| pointer.is_empty() || f.desc.smallest_user() > pointer.as_slice())
        .or_else(|| files.first())?
        .clone();
    let next = version.overlapping(level + 1, f.desc.smallest_user(), f.desc.largest_user());
    Some(Compaction {
        level,
        inputs: vec![f],
        next,
        version,
        rewrite: false,
    })
}

/// When nothing else is due: a table holding entries a range delete covers
/// for every reader, merged into the next level without them (L0: all of
/// L0). Tables of the last level keep theirs (and the floor stays).
fn pick_for_floors(engine: &Engine, version: Arc<Version>) -> Option<Compaction> {
    if !engine.compaction_drops_covered.load(Ordering::Acquire) {
        return None;
    }
    let oldest = engine.oldest_snapshot();
    let floors: Vec<&RangeFloor> = version.floors.iter().filter(|f| f.seq <= oldest).collect();
    if floors.is_empty() {
        return None;
    }
    let level = (0..LEVELS - 1).find(|&level| {
        version.levels[level]
            .iter()
            .any(|f| floors.iter().any(|fl| holds_covered(f, fl)))
    })?;
    let inputs: Vec<Arc<FileMeta>> = if level == 0 {
        version.levels[0].clone()
    } else {
        let f = version.levels[level]
            .iter()
            .find(|f| floors.iter().any(|fl| holds_covered(f, fl)))?;
        vec![f.clone()]
    };
    let lo = inputs
        .iter()
        .map(|f| f.desc.smallest_user())
        .min()?
        .to_vec();
    let hi = inputs.iter().map(|f| f.desc.largest_user()).max()?.to_vec();
    let next = version.overlapping(level + 1, &lo, &hi);
    Some(Compaction {
        level,
        inputs,
        next,
        version,
        rewrite: true,
    })
}

/// Whether table `f` holds an entry `floor` covers. A table inside the
/// floor's range holds one exactly when its oldest entry is at or below the
/// floor; one that only meets the range is searched there (so a rewritten
/// table, whose keys outside the range may be old, is not picked again).
fn holds_covered(f: &FileMeta, floor: &RangeFloor) -> bool {
    let d = &f.desc;
    if !floor.may_cover(d.smallest_user(), d.largest_user(), d.smallest_seq) {
        return false;
    }
    if floor.contains(d.smallest_user()) && floor.contains(d.largest_user()) {
        return true;
    }
    let mut iter = f.table.iter();
    iter.set_fill_cache(false);
    let found = (|| -> Result<bool> {
        iter.seek(&crate::key::lookup_key(&floor.start, crate::key::SEQ_MAX))?;
        while iter.valid() {
            let Some(p) = parse_internal_key(iter.key()) else {
                return Ok(false);
            };
            if !floor.contains(p.user_key) {
                return Ok(false);
            }
            if p.seq <= floor.seq {
                return Ok(true);
            }
            iter.next()?;
        }
        Ok(false)
    })();
    // A read error here only postpones dropping covered data; the
    // compaction that reads the table reports it.
    found.unwrap_or(false)
}

/// Runs compactions while any is due, whenever woken.
pub(crate) async fn compaction_worker(engine: Arc<Engine>) {
    loop {
        if engine.shutdown.load(Ordering::SeqCst) {
            return;
        }
        while !engine.shutdown.load(Ordering::SeqCst) && engine.stopped_error().is_none() {
            match run_one(&engine, false).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    engine.stop_writes("compaction", &e);
                    break;
                }
            }
        }
        engine.compaction_wanted.notified().await;
    }
}

/// Compacts L0 away and every level down to its target.
pub(crate) async fn compact_all(engine: &Arc<Engine>) -> Result<()> {
    while run_one(engine, true).await? {
        if let Some(e) = engine.stopped_error() {
            return Err(e);
        }
    }
    Ok(())
}

/// Picks and runs one compaction; false if none was due.
async fn run_one(engine: &Arc<Engine>, force_l0: bool) -> Result<bool> {
    let _running = engine.compaction_lock.lock().await;
    let Some(c) = pick(engine, force_l0) else {
        return Ok(false);
    };
    run(engine, c).await?;
    Ok(true)
}

/// Runs compaction `c` in a `compaction` span that records, when it is
/// done, the tables and bytes written and how long it took.
async fn run(engine: &Arc<Engine>, c: Compaction) -> Result<()> {
    let bytes_in: u64 = c.inputs.iter().chain(&c.next).map(|f| f.desc.size).sum();
    let span = tracing::debug_span!(
        "compaction",
        level = c.level,
        files_in = c.inputs.len() + c.next.len(),
        bytes_in,
        files_out = tracing::field::Empty,
        bytes_out = tracing::field::Empty,
        duration_us = tracing::field::Empty,
    );
    in_span_recording_output(span, merge_into_next_level(engine, c, bytes_in)).await
}

/// Runs `work` (a flush or a compaction) in `span`, then records on the
/// span's `files_out`, `bytes_out` and `duration_us` fields what it wrote
/// and how long it took (`tokio::time`, so simulated under the simulator).
pub(crate) async fn in_span_recording_output(
    span: tracing::Span,
    work: impl std::future::Future<Output = Result<TablesWritten>>,
) -> Result<()> {
    let started = tokio::time::Instant::now();
    let out = work.instrument(span.clone()).await?;
    span.record("files_out", out.files);
    span.record("bytes_out", out.bytes);
    span.record("duration_us", started.elapsed().as_micros() as u64);
    Ok(())
}

/// Merges the inputs of `c` into the next level (or moves a lone file
/// down); returns the tables and bytes written.
async fn merge_into_next_level(
    engine: &Arc<Engine>,
    c: Compaction,
    bytes_in: u64,
) -> Result<TablesWritten> {
    let out_level = c.level + 1;
    let mut edit = VersionEdit::default();
    for f in c.inputs.iter().chain(&c.next) {
        edit.deleted.push((f.desc.level, f.desc.number));
    }
    if let Some(last) = c
        .inputs
        .iter()
        .map(|f| f.desc.largest_user().to_vec())
        .max()
    {
        lock(&engine.compact_pointers)[c.level] = last;
    }
    let moved = !c.rewrite && c.level > 0 && c.inputs.len() == 1 && c.next.is_empty();
    let added = if moved {
        // Trivial move: nothing to merge with, so the file changes level only.
        let f = &c.inputs[0];
        let mut desc = f.desc.clone();
        desc.level = out_level as u32;
        vec![FileMeta::new(
            desc,
            f.table.clone(),
            engine.graveyard.clone(),
        )]
    } else {
        let children: Vec<Box<dyn InternalIterator>> = c
            .inputs
            .iter()
            .chain(&c.next)
            .map(|f| Box::new(f.table.iter()) as Box<dyn InternalIterator>)
            .collect();
        let mut merged = MergingIterator::new(children);
        let version = c.version.clone();
        let is_base = move |ukey: &[u8]| {
            version.levels[out_level + 1..]
                .iter()
                .all(|l| l.iter().all(|f| !f.desc.overlaps(ukey, ukey)))
        };
        let mut filter = EntryFilter::new(
            engine.oldest_snapshot(),
            // The horizon in replicated mode: see `Engine::expiry_drop_ms`.
            engine.expiry_drop_ms(),
            Some(Box::new(is_base)),
        )
        .with_floors(engine, c.version.floors.clone());
        write_tables(
            engine,
            out_level as u32,
            &mut merged,
            &mut filter,
            Some(engine.opts.table_target_bytes),
        )
        .await?
    };
    let bytes_out: u64 = added.iter().map(|f| f.desc.size).sum();
    let files_out = added.len() as u64;
    edit.added = added.iter().map(|f| f.desc.clone()).collect();
    engine.log_and_apply(edit, added, Memtables::Keep).await?;
    if !moved {
        for f in c.inputs.iter().chain(&c.next) {
            f.mark_obsolete();
        }
    }
    add(&engine.stats.compactions, 1);
    if c.level > 0 {
        add(&engine.stats.score_compactions, 1);
    }
    if moved {
        add(&engine.stats.trivial_moves, 1);
    }
    add(&engine.stats.compaction_bytes_in, bytes_in);
    add(&engine.stats.compaction_bytes_out, bytes_out);
    tracing::debug!(level = c.level, bytes_in, bytes_out, "compaction done");
    drop(c);
    engine.collect_garbage();
    engine.state_changed.notify_waiters();
    Ok(TablesWritten {
        files: files_out,
        bytes: bytes_out,
    })
}
