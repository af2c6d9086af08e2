//! Checkpoints and installs: the engine's whole content as a set of tables
//! in a directory, taken out of a running engine and put into another one.
//!
//! [`Db::checkpoint`] flushes the memtables (so every write so far, and the
//! applied marker, is in tables), then places the live tables in a
//! directory, hard-linked where the file system can, so that the checkpoint
//! costs no copy and stays valid while compaction deletes those tables from
//! the engine. The replicated state machine builds its Raft snapshots this
//! way.
//!
//! [`Db::install`] does the opposite: it replaces everything the engine
//! holds with a checkpoint's tables in one manifest edit. A crash at any
//! point leaves either the old content or the new one after reopen (see
//! FORMAT.md, "Install").

use crate::compaction::table_options;
use crate::db::Db;
use crate::engine::{Engine, Memtables};
use crate::error::{Error, Result};
use crate::filename::{self, table_path};
use crate::fs::{self, IoOp, OpenMode};
use crate::iter::InternalIterator;
use crate::key::{parse_internal_key, SeqNo, SEQ_MAX};
use crate::lock::lock;
use crate::memtable::MemTable;
use crate::options::LEVELS;
use crate::range_floor::RangeFloor;
use crate::table::Table;
use crate::table::TableBuilder;
use crate::version::{FileDesc, FileMeta, Version, VersionEdit};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A consistent set of tables in a directory: the engine's whole content as
/// of one applied marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The directory holding the tables, each named `{number:06}.sst`
    /// after its [`FileDesc::number`] (see [`Checkpoint::table_path`]).
    pub dir: PathBuf,
    /// The tables with their levels and key ranges.
    pub tables: Vec<FileDesc>,
    /// The applied marker the tables hold everything up to (see
    /// [`Db::applied_marker`]); `None` for an engine that never had one.
    pub applied_marker: Option<Vec<u8>>,
    /// The highest sequence number in the tables (at least): an engine
    /// that installs them moves its own sequence number past it, so its
    /// later writes shadow every installed entry.
    pub max_seq: SeqNo,
}

impl Checkpoint {
    /// Where the table `desc` is in the checkpoint's directory.
    pub fn table_path(&self, desc: &FileDesc) -> PathBuf {
        table_path(&self.dir, desc.number)
    }

    /// Total size of the tables in bytes.
    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.size).sum()
    }
}

impl Db {
    /// Flushes the memtables, then places the live tables in `dir` (created
    /// if missing; it must hold no table yet) as hard links where the file
    /// system can, copies where it cannot, and makes the directory durable.
    ///
    /// The checkpoint holds every write acknowledged before the call (and
    /// possibly some that raced with it), and exactly what its applied
    /// marker says: the tables and the marker are read from one manifest
    /// state. Its files stay valid however the engine compacts afterwards.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use ballast_storage::{Db, Options, Preset};
    /// let dir = tempfile::tempdir().unwrap();
    /// let a = Db::open(dir.path().join("a"), Options::preset(Preset::Durable)).await.unwrap();
    /// a.put(b"k", b"v").await.unwrap();
    /// let cp = a.checkpoint(&dir.path().join("cp")).await.unwrap();
    /// let b = Db::open(dir.path().join("b"), Options::preset(Preset::Durable)).await.unwrap();
    /// b.put(b"gone", b"x").await.unwrap();
    /// b.install(&cp).await.unwrap();
    /// assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    /// assert_eq!(b.get(b"gone").unwrap(), None);
    /// # });
    /// ```
    pub async fn checkpoint(&self, dir: &Path) -> Result<Checkpoint> {
        let engine = &self.engine;
        flush_current(engine).await?;
        // The tables and the marker from one manifest state: every edit
        // changes both under the version-set lock.
        let (version, applied_marker, flushed_seq) = {
            let vs = engine.versions.lock().await;
            let version = lock(&engine.writer_view).version.clone();
            (version, vs.applied_marker(), vs.flushed_seq())
        };
        // Holding `version` keeps its tables from being deleted until they
        // are linked, whatever compaction does meanwhile.
        let fs = &*engine.fs;
        fs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let existing = fs.list_dir(dir).map_err(|e| Error::io(dir, e))?;
        if let Some(name) = existing.iter().find(|n| filename::is_table_file_name(n)) {
            return Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("a checkpoint needs a directory without tables; it holds {name}"),
                ),
            ));
        }
        let mut tables = Vec::new();
        for f in version.levels.iter().flatten() {
            let t = &f.desc;
            let covers =
                |fl: &RangeFloor| fl.may_cover(t.smallest_user(), t.largest_user(), t.smallest_seq);
            if version.floors.iter().any(covers) {
                // A checkpoint carries no range deletes (its format has no
                // place for them, and an install replaces everything
                // anyway): it gets this table without what they cover.
                tables.extend(copy_uncovered(engine, f, &version.floors, dir).await?);
                continue;
            }
            let from = table_path(&engine.dir, t.number);
            let to = table_path(dir, t.number);
            fs::pause(fs, IoOp::Metadata).await;
            fs.hard_link(&from, &to).map_err(|e| Error::io(&to, e))?;
            tables.push(t.clone());
        }
        fs::pause(fs, IoOp::SyncDir).await;
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        fs::sync_parent(fs, dir).map_err(|e| Error::io(dir, e))?;
        let max_seq = tables
            .iter()
            .map(|t| t.largest_seq)
            .fold(flushed_seq, SeqNo::max);
        tracing::info!(
            dir = %dir.display(),
            tables = tables.len(),
            bytes = tables.iter().map(|t| t.size).sum::<u64>(),
            "checkpoint taken"
        );
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            tables,
            applied_marker,
            max_seq,
        })
    }

    /// Replaces the engine's whole content with `checkpoint`'s tables: its
    /// applied marker becomes the engine's, its tables the only ones, and
    /// the memtables (with every write not in them) are dropped.
    ///
    /// Writes queued before the call are committed first; writes queued
    /// during it wait and land on top of the new content. Flush and
    /// compaction pause meanwhile. The tables are linked (or copied) into
    /// the engine's directory under fresh file numbers, so the checkpoint's
    /// directory is left as it was. One manifest edit switches from the
    /// old table set to the new one: a crash before it is durable reopens
    /// with the old content, a crash after it with the new one.
    ///
    /// Readers holding a [`crate::Snapshot`] or a scan from before the
    /// install keep what they hold: a scan keeps reading the old tables;
    /// point reads through an old snapshot see the new content (filtered
    /// by the snapshot's sequence number).
    ///
    /// A table that is missing, has the wrong size or fails its checks is
    /// refused before anything changes. If the manifest edit itself fails,
    /// the engine no longer knows which state is durable and stops
    /// accepting writes (reopen it).
    pub async fn install(&self, checkpoint: &Checkpoint) -> Result<()> {
        let engine = &self.engine;
        engine.check_writable()?;
        engine
            .lead_exclusively(install_as_leader(engine, checkpoint))
            .await?;
        engine.compaction_wanted.notify_one();
        Ok(())
    }
}

/// Writes the entries of `f` that no floor of `floors` covers into a new
/// table in `dir`, under a fresh file number, fsynced; `None` if nothing
/// is left.
async fn copy_uncovered(
    engine: &Arc<Engine>,
    f: &FileMeta,
    floors: &[RangeFloor],
    dir: &Path,
) -> Result<Option<FileDesc>> {
    let number = engine.next_file_number.fetch_add(1, Ordering::SeqCst);
    let path = table_path(dir, number);
    let file = engine
        .fs
        .open(&path, OpenMode::CreateNew)
        .map_err(|e| Error::io(&path, e))?;
    let mut builder = TableBuilder::new(file, path.clone(), table_options(engine));
    let mut iter = f.table.iter();
    iter.seek_to_first()?;
    while iter.valid() {
        let p = parse_internal_key(iter.key()).ok_or_else(|| {
            Error::corruption(f.table.path(), 0, "unparsable internal key in a checkpoint")
        })?;
        if !crate::range_floor::hides(floors, p.user_key, p.seq, SEQ_MAX) {
            builder.add(iter.key(), iter.value())?;
        }
        iter.next()?;
    }
    if builder.entries() == 0 {
        drop(builder);
        engine
            .fs
            .remove_file(&path)
            .map_err(|e| Error::io(&path, e))?;
        return Ok(None);
    }
    fs::pause(&*engine.fs, IoOp::Sync).await;
    let s = builder.finish()?;
    Ok(Some(FileDesc {
        level: f.desc.level,
        number,
        size: s.file_size,
        smallest: s.smallest,
        largest: s.largest,
        smallest_seq: s.smallest_seq,
        largest_seq: s.largest_seq,
    }))
}

/// Freezes the active memtable (if it holds anything) and waits until it,
/// and every memtable frozen before it, is in a table.
async fn flush_current(engine: &Arc<Engine>) -> Result<()> {
    engine.check_writable()?;
    engine.commit_rotate().await?;
    let frozen: Vec<Arc<MemTable>> = lock(&engine.writer_view).imms.iter().cloned().collect();
    engine
        .wait_for_flush(|st| {
            !st.imms
                .iter()
                .any(|m| frozen.iter().any(|f| Arc::ptr_eq(f, m)))
        })
        .await
}

/// The install proper; runs as the exclusive write leader.
async fn install_as_leader(engine: &Arc<Engine>, cp: &Checkpoint) -> Result<()> {
    // No compaction or flush may run across the switch.
    let _compacting = engine.compaction_lock.lock().await;
    let _flushing = engine.flush_lock.lock().await;
    let fs = &*engine.fs;

    // Bring the tables in under fresh numbers; any failure here leaves the
    // engine as it was (the links made so far are removed).
    let mut linked: Vec<PathBuf> = Vec::with_capacity(cp.tables.len());
    let brought = bring_in(engine, cp, &mut linked).await;
    let added = match brought {
        Ok(added) => added,
        Err(e) => {
            for p in &linked {
                let _ = fs.remove_file(p);
            }
            return Err(e);
        }
    };

    let old = lock(&engine.writer_view).version.clone();
    let candidate = Version::default().apply(&[], added.clone());
    if let Err(why) = candidate.check_invariants() {
        for p in &linked {
            let _ = fs.remove_file(p);
        }
        return Err(Error::corruption(
            &cp.dir,
            0,
            format!("checkpoint tables overlap: {why}"),
        ));
    }

    // From here on the switch is under way: a failure leaves the disk in
    // the old or the new state, and the engine cannot tell which.
    let switched = switch(engine, cp, &old, added).await;
    if let Err(e) = &switched {
        engine.stop_writes("snapshot install", e);
        return switched;
    }
    for level in &old.levels {
        for f in level {
            f.mark_obsolete();
        }
    }
    drop(old);
    engine.collect_garbage();
    tracing::info!(
        from = %cp.dir.display(),
        tables = cp.tables.len(),
        bytes = cp.bytes(),
        "checkpoint installed"
    );
    Ok(())
}

/// Links (or copies) every table of `cp` into the engine's directory under
/// a fresh number and opens it; `linked` collects the new paths.
async fn bring_in(
    engine: &Arc<Engine>,
    cp: &Checkpoint,
    linked: &mut Vec<PathBuf>,
) -> Result<Vec<Arc<FileMeta>>> {
    let fs = &*engine.fs;
    let mut added = Vec::with_capacity(cp.tables.len());
    for t in &cp.tables {
        let from = cp.table_path(t);
        if t.level as usize >= LEVELS {
            return Err(Error::corruption(
                &from,
                0,
                format!("level {} out of range", t.level),
            ));
        }
        let number = engine.next_file_number.fetch_add(1, Ordering::SeqCst);
        let to = table_path(&engine.dir, number);
        fs::pause(fs, IoOp::Metadata).await;
        fs.hard_link(&from, &to).map_err(|e| Error::io(&to, e))?;
        linked.push(to.clone());
        let file = fs
            .open(&to, OpenMode::Read)
            .map_err(|e| Error::io(&to, e))?;
        let len = file.len().map_err(|e| Error::io(&to, e))?;
        if len != t.size {
            return Err(Error::corruption(
                &from,
                0,
                format!("table has {len} bytes, the checkpoint says {}", t.size),
            ));
        }
        let table = Table::open(file, to, number, t.size, engine.cache.clone())?;
        // Where the file system copies instead of linking, a corrupting
        // read during the copy writes the damage into the engine's own
        // file: check every block before the manifest makes it ours.
        if !crate::planted::active(crate::planted::PlantedBug::InstallWithoutVerify) {
            table.verify_blocks()?;
        }
        let desc = FileDesc {
            number,
            ..t.clone()
        };
        added.push(FileMeta::new(desc, table, engine.graveyard.clone()));
    }
    Ok(added)
}

/// Moves the sequence number past the checkpoint's, writes the one edit
/// that swaps the table sets (it fsyncs the directory first, since it adds
/// tables), and drops the memtables with the old tables, for readers in
/// one step.
async fn switch(
    engine: &Arc<Engine>,
    cp: &Checkpoint,
    old: &Version,
    added: Vec<Arc<FileMeta>>,
) -> Result<()> {
    let last = engine.last_seq.load(Ordering::Acquire).max(cp.max_seq);
    engine.last_seq.store(last, Ordering::Release);
    engine.visible_seq.store(last, Ordering::Release);
    // With a WAL, the old memtables' segments must never be replayed over
    // the new tables: start a new segment and record it as the first one
    // needed (flushed_seq alone would skip the old groups too).
    let segment = engine.roll_wal_for_install()?;
    let edit = VersionEdit {
        deleted: old
            .levels
            .iter()
            .flatten()
            .map(|f| (f.desc.level, f.desc.number))
            .collect(),
        added: added.iter().map(|f| f.desc.clone()).collect(),
        flushed_seq: Some(last),
        wal_min_segment: engine.opts.wal.then_some(segment),
        // An empty marker records "none" (a fold over edits cannot unset).
        applied_marker: Some(cp.applied_marker.clone().unwrap_or_default()),
        // The checkpoint's tables replace everything, range deletes too.
        range_floors: Some(Vec::new()),
        ..VersionEdit::default()
    };
    engine
        .log_and_apply(edit, added, Memtables::Replace(MemTable::new(segment)))
        .await?;
    engine.remove_wal_below(segment)
}
