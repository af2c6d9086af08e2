//! Recovery at open: the manifest's state, then the WAL replayed into
//! memtables (flushing as they fill, so memory stays bounded), then the
//! files nothing refers to deleted.
//!
//! Which WAL tail rule applies depends on the preset (see `FORMAT-wal.md`,
//! "Recovery"): only the durable preset fsyncs every group before writing
//! the next, so only there is a bad record followed by valid ones proof of
//! corruption. Limits: [`RECOVERY_CHUNK_ENTRIES_MAX`] entries are sorted
//! and inserted at a time; at most `immutable_memtables_max` recovered
//! memtables wait before the oldest is flushed.

use crate::batch::decode_group;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::filename::{self, lock_path, wal_dir};
use crate::flush;
use crate::fs;
use crate::key::SeqNo;
use crate::lock::lock;
use crate::manifest::{self, VersionSet};
use crate::memtable::{MemKey, MemTable};
use crate::options::{Background, FsyncPolicy, Options};
use crate::table::BlockCache;
use crate::wal::{self, TornTail, Wal, WalOptions};
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// What one open reported about recovery.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// WAL segments read.
    pub wal_segments: u64,
    /// WAL records replayed.
    pub wal_records: u64,
    /// WAL bytes read.
    pub wal_bytes: u64,
    /// Entries inserted into memtables.
    pub entries: u64,
    /// A torn tail that was cut: where, and how many bytes it dropped.
    pub truncated_tail: Option<TornTail>,
    /// Microseconds the WAL replay took.
    pub replay_us: u64,
    /// Microseconds spent repairing a torn tail and creating the new WAL
    /// segment (with preallocation, zero-filling it).
    pub new_segment_us: u64,
    /// Orphan files deleted.
    pub orphans_removed: u64,
}

/// Opens the engine in `dir` as far as recovery goes: takes the lock,
/// reads the manifest and opens its tables, starts a fresh manifest,
/// replays the WAL and deletes orphans. The caller starts the workers.
pub(crate) async fn recover(dir: PathBuf, opts: Options) -> Result<(Arc<Engine>, RecoveryReport)> {
    let span = tracing::info_span!(
        "recovery",
        dir = %dir.display(),
        tables = tracing::field::Empty,
        table_bytes = tracing::field::Empty,
        wal_segments = tracing::field::Empty,
        wal_records = tracing::field::Empty,
        wal_bytes = tracing::field::Empty,
        entries = tracing::field::Empty,
        orphans_removed = tracing::field::Empty,
        duration_us = tracing::field::Empty,
    );
    let started = tokio::time::Instant::now();
    let (engine, report) = open_and_replay(dir, opts).instrument(span.clone()).await?;
    let (tables, table_bytes) = {
        let st = lock(&engine.writer_view);
        let descs = st.version.descs();
        (
            descs.len() as u64,
            descs.iter().map(|d| d.size).sum::<u64>(),
        )
    };
    span.record("tables", tables);
    span.record("table_bytes", table_bytes);
    span.record("wal_segments", report.wal_segments);
    span.record("wal_records", report.wal_records);
    span.record("wal_bytes", report.wal_bytes);
    span.record("entries", report.entries);
    span.record("orphans_removed", report.orphans_removed);
    span.record("duration_us", started.elapsed().as_micros() as u64);
    Ok((engine, report))
}

async fn open_and_replay(dir: PathBuf, opts: Options) -> Result<(Arc<Engine>, RecoveryReport)> {
    let fs = opts.fs.clone();
    fs.create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    fs::sync_parent(&*fs, &dir).map_err(|e| Error::io(&dir, e))?;
    let lock_path = lock_path(&dir);
    let lock_file = fs.lock(&lock_path).map_err(|e| Error::Locked {
        path: lock_path.clone(),
        reason: e.to_string(),
    })?;
    let cache = BlockCache::new(opts.block_cache_bytes);
    let graveyard = Arc::new(Mutex::new(Vec::new()));
    let recovered = manifest::recover(&*fs, &dir, &cache, &graveyard)?;
    let mut report = RecoveryReport::default();
    if opts.wal {
        let wal_dir = wal_dir(&dir);
        fs.create_dir_all(&wal_dir)
            .map_err(|e| Error::io(&wal_dir, e))?;
        fs::sync_parent(&*fs, &wal_dir).map_err(|e| Error::io(&wal_dir, e))?;
        // After a process crash the WAL may sit only in the page cache.
        // `Wal::open` fsyncs it too, but only after the manifest switch and
        // the replay (several fsyncs later), and a power loss in between
        // lost writes acknowledged more than a sync interval and an fsync
        // before it (the engine simulation's `balanced-mixed` seed 43).
        use crate::planted::{active, PlantedBug};
        if !active(PlantedBug::LateRecoveryWalSync) && !active(PlantedBug::SkipRecoveryWalSync) {
            crate::wal::sync_existing_segments(&*fs, &wal_dir)?;
        }
    }

    // Start a fresh manifest holding the recovered state, so every open
    // bounds the manifest's size and drops a torn tail for good.
    let next_file_number = AtomicU64::new(recovered.next_file_number.max(1));
    let manifest_number = next_file_number.fetch_add(1, Ordering::SeqCst);
    remove_leftover_manifest(&*fs, &dir, manifest_number)?;
    let versions = VersionSet::create(fs.clone(), &dir, &recovered, manifest_number).await?;

    let engine = Engine::new(
        dir,
        opts,
        cache,
        &recovered,
        versions,
        next_file_number,
        graveyard,
        lock_file,
    );

    // Readers must see the memtable writes go into (replay installs its
    // own view; without a WAL nothing else would, and reads missed every
    // write until the first memtable switch).
    engine.publish_read_view(&lock(&engine.writer_view));
    if engine.opts.wal {
        engine.replay_wal(&recovered, &mut report).await?;
    }
    report.orphans_removed = engine.remove_orphans()?;
    Ok((engine, report))
}

impl Engine {
    /// Replays the WAL into memtables, flushing when they fill, then opens a
    /// new WAL segment for writing.
    async fn replay_wal(
        self: &Arc<Self>,
        recovered: &manifest::Recovered,
        report: &mut RecoveryReport,
    ) -> Result<()> {
        let started = tokio::time::Instant::now();
        let wal_dir = wal_dir(&self.dir);
        let parallel = self.opts.background == Background::Thread;
        // Only the durable preset fsyncs every group before writing the next,
        // so only there is "a bad record, then a valid one" proof of
        // corruption; the others may have lost an earlier unsynced write and
        // kept a later one (found by the simulation, seed in sim/tests).
        let policy = if self.opts.fsync == FsyncPolicy::Group {
            wal::TailPolicy::Strict
        } else {
            wal::TailPolicy::PointInTime
        };
        let recovery = wal::recover_with(
            &*self.fs,
            &wal_dir,
            recovered.wal_min_segment,
            parallel,
            policy,
        )?;
        self.check_wal_continuity(recovered.wal_min_segment)?;
        let mut max_seq = self.last_seq.load(Ordering::Acquire);
        let mut mem: Option<Arc<MemTable>> = None;
        // Entries decoded but not yet inserted into `mem`.
        let mut pending: Vec<(MemKey, SeqNo)> = Vec::new();
        let mut pending_bytes = 0u64;
        for (pos, payload) in &recovery.records {
            let group = decode_group(payload).ok_or_else(|| {
                Error::corruption(
                    wal::segment_path(&wal_dir, pos.segment),
                    pos.offset,
                    "WAL record is not a valid write group",
                )
            })?;
            report.wal_records += 1;
            if group.last_seq() <= recovered.flushed_seq {
                continue;
            }
            let m = mem
                .get_or_insert_with(|| MemTable::new(pos.segment))
                .clone();
            let mut previous_seq: Option<SeqNo> = None;
            for (seq, e) in group.entries() {
                // The read side of group commit's check: a group's entries
                // come back numbered in strictly increasing order.
                debug_assert!(
                    previous_seq.is_none_or(|p| seq > p),
                    "WAL group at {pos:?}: sequence {seq} after {previous_seq:?}"
                );
                previous_seq = Some(seq);
                if seq <= recovered.flushed_seq {
                    continue;
                }
                let mut buf = crate::key::internal_key(e.key, seq, e.kind);
                let klen = buf.len();
                buf.extend_from_slice(e.value);
                pending_bytes += buf.len() as u64 + 80;
                pending.push((MemKey::new(Bytes::from(buf), klen), seq));
                report.entries += 1;
            }
            max_seq = max_seq.max(group.last_seq());
            let full = m.approx_bytes() + pending_bytes >= self.opts.memtable_bytes;
            if full || pending.len() >= RECOVERY_CHUNK_ENTRIES_MAX {
                m.insert_sorted(&mut pending);
                pending_bytes = 0;
            }
            if full {
                let m = mem.take().ok_or(Error::Closed)?;
                self.push_recovered(m).await?;
            }
        }
        if let Some(m) = &mem {
            m.insert_sorted(&mut pending);
        }
        let rep = &recovery.report;
        report.wal_segments = rep.segments;
        report.wal_bytes = rep.bytes;
        report.truncated_tail = rep.truncated;
        if let Some(m) = mem.take() {
            self.push_recovered(m).await?;
        }
        self.last_seq.store(max_seq, Ordering::Release);
        self.visible_seq.store(max_seq, Ordering::Release);
        report.replay_us = started.elapsed().as_micros() as u64;

        let opened = tokio::time::Instant::now();
        let wal_opts = WalOptions {
            segment_bytes: self.opts.wal_segment_bytes,
            preallocate: self.opts.wal_preallocate,
            compression_threshold_bytes: self.opts.wal_compression_threshold_bytes,
        };
        // Repairs the torn tail (if any) and starts a new segment.
        let wal = Wal::open(self.fs.clone(), &wal_dir, wal_opts, &recovery.report)?;
        let mut st = lock(&self.writer_view);
        st.mem = MemTable::new(wal.current_segment());
        self.publish_read_view(&st);
        drop(st);
        *lock(&self.wal) = Some(wal);
        report.new_segment_us = opened.elapsed().as_micros() as u64;
        Ok(())
    }

    /// A manifest whose last edit was lost (a damaged final record reads as
    /// a torn tail) would point below WAL segments that were already deleted
    /// after that edit became durable. Refuse to open rather than silently
    /// lose what those segments held.
    fn check_wal_continuity(&self, wal_min_segment: u64) -> Result<()> {
        let wal_dir = wal_dir(&self.dir);
        let segments = wal::list_segments(&*self.fs, &wal_dir)?;
        let has_min = segments.contains(&wal_min_segment);
        let has_later = segments.iter().any(|&s| s > wal_min_segment);
        if has_later && !has_min && wal_min_segment > 0 {
            return Err(Error::corruption(
                wal::segment_path(&wal_dir, wal_min_segment),
                0,
                "the manifest needs this WAL segment but it is gone: the manifest lost an edit",
            ));
        }
        Ok(())
    }

    /// Queues a recovered memtable for flush; flushes the oldest right away
    /// when the queue is full, so recovery memory stays bounded.
    async fn push_recovered(self: &Arc<Self>, m: Arc<MemTable>) -> Result<()> {
        let full = {
            let mut st = lock(&self.writer_view);
            st.imms.push_back(m);
            self.publish_read_view(&st);
            st.imms.len() as u64 > self.opts.immutable_memtables_max
        };
        if full {
            flush::flush_oldest(self).await?;
        }
        Ok(())
    }

    /// Deletes files no version, manifest or WAL needs: tables left by an
    /// interrupted flush or compaction, old manifests, temporary files.
    pub(crate) fn remove_orphans(&self) -> Result<u64> {
        let live: std::collections::BTreeSet<u64> = lock(&self.writer_view)
            .version
            .live_files()
            .into_iter()
            .collect();
        let current_manifest = self
            .versions
            .try_lock()
            .map(|v| v.manifest_name())
            .unwrap_or_default();
        let names = self
            .fs
            .list_dir(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        let mut removed = 0;
        for name in names {
            let orphan = if filename::is_table_file_name(&name) {
                filename::parse_table_file_name(&name).is_some_and(|n| !live.contains(&n))
            } else if filename::is_manifest_file_name(&name) {
                name != current_manifest
            } else {
                filename::is_temp_file_name(&name)
            };
            if orphan {
                let p = self.dir.join(&name);
                self.fs.remove_file(&p).map_err(|e| Error::io(&p, e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| Error::io(&self.dir, e))?;
        }
        Ok(removed)
    }
}

/// Removes a manifest numbered `number` left by an open (or a manifest
/// rotation) that crashed before switching CURRENT to it. CURRENT never
/// names it: every manifest records a next file number above its own, so
/// the number recovery starts from is above the one CURRENT names. Without
/// this the new manifest's exclusive create fails and the engine can never
/// open again after a crash at that point (found by the simulation's
/// `recovery-crash` scenario).
fn remove_leftover_manifest(
    fs: &dyn fs::FileSystem,
    dir: &std::path::Path,
    number: u64,
) -> Result<()> {
    if crate::planted::active(crate::planted::PlantedBug::KeepLeftoverManifest) {
        return Ok(());
    }
    let path = dir.join(filename::manifest_file_name(number));
    if !fs.exists(&path).map_err(|e| Error::io(&path, e))? {
        return Ok(());
    }
    tracing::warn!(path = %path.display(), "removing a manifest a crashed open left behind");
    fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))
}

/// Entries recovery sorts and inserts at a time.
const RECOVERY_CHUNK_ENTRIES_MAX: usize = 1 << 17;
