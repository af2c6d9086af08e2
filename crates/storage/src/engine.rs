//! The engine's shared state ([`Engine`]), the two views of its memtables
//! and tables, and the step that installs a new version once the manifest
//! holds it.
//!
//! Writers, flush, compaction and snapshot installs change the
//! [`WriterView`] under one lock; every change is then published to readers
//! as an immutable [`ReadView`] they take without waiting. The behaviour
//! lives beside it, one concept per file: group commit
//! (`group_commit.rs`), the WAL sync policy (`wal_sync.rs`), recovery
//! (`recovery.rs`), reads and snapshots (`read.rs`), background workers
//! (`workers.rs`), flush and compaction. Those modules use this one; this
//! one uses none of them, so the imports run one way.

use crate::error::{Error, Result};
use crate::filename::table_path;
use crate::fs::{DynFile, DynFs};
use crate::key::SeqNo;
use crate::lock::{self, lock};
use crate::manifest::{Recovered, VersionSet};
use crate::memtable::MemTable;
use crate::options::Options;
use crate::range_floor::RangeFloor;
use crate::stats::{add, LevelStats, Stats, StatsSnapshot};
use crate::table::BlockCache;
use crate::version::{FileMeta, Version, VersionEdit};
use crate::wal::Wal;
use crate::write_queue::WriteQueue;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{oneshot, Notify};

/// The writers' view: the active memtable, the frozen ones **oldest first**
/// (the order flush takes them in), and the current version. Changed under
/// [`Engine::writer_view`]'s lock.
#[derive(Debug)]
pub(crate) struct WriterView {
    pub mem: Arc<MemTable>,
    /// Oldest first.
    pub imms: VecDeque<Arc<MemTable>>,
    pub version: Arc<Version>,
}

/// The readers' view: the same memtables and tables, frozen memtables
/// **newest first** (the order a read searches them in), swapped as a unit
/// and never changed in place.
#[derive(Debug)]
pub(crate) struct ReadView {
    pub mem: Arc<MemTable>,
    /// Newest first.
    pub imms: Vec<Arc<MemTable>>,
    pub version: Arc<Version>,
}

impl ReadView {
    /// Every range delete a reader through this view applies: the
    /// flushed ones (in the version) and those still in memtables.
    pub(crate) fn floors(&self) -> Vec<RangeFloor> {
        let mut floors = self.version.floors.clone();
        floors.extend(self.mem.range_floors());
        for m in &self.imms {
            floors.extend(m.range_floors());
        }
        floors
    }
}

/// Shared engine state: one per open engine, held by the [`crate::Db`]
/// handle, its snapshots and scans, and the background workers.
pub(crate) struct Engine {
    /// This engine, for tasks the planted-bug paths spawn.
    pub(crate) me: std::sync::Weak<Engine>,
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    pub(crate) fs: DynFs,
    pub(crate) cache: Arc<BlockCache>,
    pub(crate) stats: Stats,
    /// Writers waiting for the group-commit leader.
    pub(crate) queue: Mutex<WriteQueue>,
    /// Signalled when a group takes writers out of a full queue.
    pub(crate) queue_space: Notify,
    pub(crate) wal: Mutex<Option<Wal>>,
    /// Highest sequence number assigned (written by the group leader only).
    pub(crate) last_seq: AtomicU64,
    /// Highest sequence number readers may see.
    pub(crate) visible_seq: AtomicU64,
    /// What writers, flush, compaction and installs change, under this lock.
    pub(crate) writer_view: Mutex<WriterView>,
    /// What readers see: rebuilt from `writer_view` by
    /// [`Engine::publish_read_view`] whenever that changes.
    pub(crate) read_view: RwLock<Arc<ReadView>>,
    pub(crate) versions: tokio::sync::Mutex<VersionSet>,
    pub(crate) next_file_number: AtomicU64,
    /// The group leader's reusable encode buffer.
    pub(crate) scratch: Mutex<Vec<u8>>,
    /// Set when a durability step failed: no more writes until reopen.
    pub(crate) stopped: Mutex<Option<Error>>,
    /// True once `stopped` is set; read on every write without the lock.
    pub(crate) stopped_flag: AtomicBool,
    pub(crate) closed: AtomicBool,
    pub(crate) shutdown: AtomicBool,
    /// Wakes the flush worker.
    pub(crate) flush_wanted: Notify,
    /// Wakes the compaction worker.
    pub(crate) compaction_wanted: Notify,
    /// Wakes the WAL timer.
    pub(crate) timer_wake: Notify,
    /// Signalled whenever memtables or versions change (wakes stalled writers).
    pub(crate) state_changed: Notify,
    pub(crate) snapshots: Mutex<BTreeMap<SeqNo, usize>>,
    pub(crate) graveyard: Arc<Mutex<Vec<u64>>>,
    /// Per level, the largest user key of the last compaction input, so
    /// compactions walk the key space round-robin.
    pub(crate) compact_pointers: Mutex<[Vec<u8>; crate::options::LEVELS]>,
    /// Held while a compaction runs: one at a time.
    pub(crate) compaction_lock: tokio::sync::Mutex<()>,
    /// Held while a memtable flush runs (and by a snapshot install, which
    /// must not meet a flush halfway).
    pub(crate) flush_lock: tokio::sync::Mutex<()>,
    pub(crate) workers: Mutex<Vec<WorkerHandle>>,
    pub(crate) _lock: Option<DynFile>,
    /// False only while the planted `range-delete-ignored-by-compaction`
    /// is on (`Db::set_range_deletes_compacted`): compaction then keeps
    /// the entries range deletes cover.
    pub(crate) compaction_drops_covered: AtomicBool,
    /// `Options::expire_by_horizon`, switchable (a planted bug turns it
    /// off in tests).
    pub(crate) expire_by_horizon: AtomicBool,
    /// The time of the last applied entry, in replicated mode: expired
    /// keys at or below it may be dropped.
    pub(crate) expiry_horizon_ms: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A background worker (see `workers.rs`), awaited at close.
pub(crate) enum WorkerHandle {
    Task(tokio::task::JoinHandle<()>),
    /// Signalled when the thread's work is done.
    Thread(oneshot::Receiver<()>),
}

/// What an edit does to the memtables when it takes effect.
pub(crate) enum Memtables {
    /// Nothing (compaction).
    Keep,
    /// The oldest frozen memtable is now in a table (flush).
    PopFlushed,
    /// Every memtable goes; `0` becomes the active one (snapshot install:
    /// the new tables replace everything).
    Replace(Arc<MemTable>),
}

impl Engine {
    /// The state of an engine just opened on `recovered` (memtables empty;
    /// recovery replays the WAL into them next).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        dir: PathBuf,
        opts: Options,
        cache: Arc<BlockCache>,
        recovered: &Recovered,
        versions: VersionSet,
        next_file_number: AtomicU64,
        graveyard: Arc<Mutex<Vec<u64>>>,
        lock_file: Option<DynFile>,
    ) -> Arc<Engine> {
        Arc::new_cyclic(|me| Engine {
            me: me.clone(),
            dir,
            fs: opts.fs.clone(),
            cache,
            stats: Stats::default(),
            queue: Mutex::new(WriteQueue::default()),
            queue_space: Notify::new(),
            wal: Mutex::new(None),
            last_seq: AtomicU64::new(recovered.last_seq),
            visible_seq: AtomicU64::new(recovered.last_seq),
            writer_view: Mutex::new(WriterView {
                mem: MemTable::new(0),
                imms: VecDeque::new(),
                version: Arc::new(recovered.version.clone()),
            }),
            read_view: RwLock::new(Arc::new(ReadView {
                mem: MemTable::new(0),
                imms: Vec::new(),
                version: Arc::new(recovered.version.clone()),
            })),
            versions: tokio::sync::Mutex::new(versions),
            next_file_number,
            scratch: Mutex::new(Vec::new()),
            stopped: Mutex::new(None),
            stopped_flag: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            flush_wanted: Notify::new(),
            compaction_wanted: Notify::new(),
            timer_wake: Notify::new(),
            state_changed: Notify::new(),
            snapshots: Mutex::new(BTreeMap::new()),
            graveyard,
            compact_pointers: Mutex::new(Default::default()),
            compaction_lock: tokio::sync::Mutex::new(()),
            flush_lock: tokio::sync::Mutex::new(()),
            workers: Mutex::new(Vec::new()),
            _lock: lock_file,
            compaction_drops_covered: AtomicBool::new(true),
            expire_by_horizon: AtomicBool::new(opts.expire_by_horizon),
            expiry_horizon_ms: AtomicU64::new(0),
            opts,
        })
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        if let Some(e) = self.stopped_error() {
            return Err(e);
        }
        Ok(())
    }

    pub(crate) fn stopped_error(&self) -> Option<Error> {
        if !self.stopped_flag.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.stopped).clone()
    }

    /// Records a failed durability step: from now on writes are refused.
    pub(crate) fn stop_writes(&self, op: &'static str, err: &Error) {
        if op == "fsync" && crate::planted::active(crate::planted::PlantedBug::RetryFailedFsync) {
            return;
        }
        let mut s = lock(&self.stopped);
        if s.is_none() {
            tracing::error!(op, error = %err, "stopping writes after a failed durability step");
            *s = Some(Error::WritesStopped {
                op,
                reason: err.to_string(),
            });
            self.stopped_flag.store(true, Ordering::Release);
        }
        drop(s);
        self.state_changed.notify_waiters();
    }

    /// [`Engine::stop_writes`], giving the error back for `?`.
    pub(crate) fn stop_on(&self, op: &'static str, e: Error) -> Error {
        self.stop_writes(op, &e);
        e
    }

    /// The time flush and compaction drop expired keys as of: the expiry
    /// horizon in replicated mode (a pure function of the applied log, the
    /// same on every replica), the engine's clock otherwise.
    pub(crate) fn expiry_drop_ms(&self) -> u64 {
        if self.expire_by_horizon.load(Ordering::Acquire) {
            self.expiry_horizon_ms.load(Ordering::Acquire)
        } else {
            self.opts.clock.now_ms()
        }
    }

    /// The time reads hide expired keys as of: the engine's clock, and in
    /// replicated mode at least the horizon, so that a key flush may have
    /// dropped never shows up on the replicas that have not dropped it yet.
    pub(crate) fn read_now_ms(&self) -> u64 {
        let now = self.opts.clock.now_ms();
        if self.expire_by_horizon.load(Ordering::Acquire) {
            now.max(self.expiry_horizon_ms.load(Ordering::Acquire))
        } else {
            now
        }
    }

    /// What a reader sees now.
    pub(crate) fn read_view(&self) -> Arc<ReadView> {
        lock::read(&self.read_view).clone()
    }

    /// Publishes the memtables and version of `st` to readers.
    pub(crate) fn publish_read_view(&self, st: &WriterView) {
        let view = Arc::new(ReadView {
            mem: st.mem.clone(),
            imms: st.imms.iter().rev().cloned().collect(),
            version: st.version.clone(),
        });
        *lock::write(&self.read_view) = view;
        self.state_changed.notify_waiters();
    }

    /// Waits until `ready` gives an outcome, asking again whenever the
    /// memtables or versions change; before each wait `wake` pokes the
    /// background work that changes them. A failed durability step ends
    /// the wait with its error. Registers for the wake-up before it checks,
    /// so a change between the check and the wait is never missed.
    pub(crate) async fn wait_for_views<T>(
        &self,
        mut ready: impl FnMut() -> Option<Result<T>>,
        wake: impl Fn(),
    ) -> Result<T> {
        loop {
            let notified = self.state_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.stopped_error() {
                return Err(e);
            }
            if let Some(outcome) = ready() {
                return outcome;
            }
            wake();
            notified.await;
        }
    }

    /// Wakes the flush worker until `done` holds for the memtables (or a
    /// failed durability step stops the engine).
    pub(crate) async fn wait_for_flush(&self, done: impl Fn(&WriterView) -> bool) -> Result<()> {
        self.wait_for_views(
            || done(&lock(&self.writer_view)).then_some(Ok(())),
            || self.flush_wanted.notify_one(),
        )
        .await
    }

    /// Records `edit` durably in the manifest, then installs the new version
    /// (and changes the memtables as `mems` says) for readers, in one step.
    /// The manifest makes the edit durable; installing it is the engine's.
    pub(crate) async fn log_and_apply(
        &self,
        mut edit: VersionEdit,
        added: Vec<Arc<FileMeta>>,
        mems: Memtables,
    ) -> Result<()> {
        let mut vs = self.versions.lock().await;
        edit.next_file_number = Some(self.next_file_number.load(Ordering::SeqCst));
        edit.last_seq = Some(self.visible_seq.load(Ordering::Acquire));
        // Versions change only here, under the version-set lock, so the
        // next one can be made before the edit is logged: the edit must
        // name the range floors it leaves (those the new tables may still
        // need; see `Version::floors_still_needed`).
        let mut next = lock(&self.writer_view).version.apply(&edit.deleted, added);
        let floors = edit
            .range_floors
            .take()
            .unwrap_or_else(|| next.floors.clone());
        next.floors = next.floors_still_needed(&floors);
        if next.floors != lock(&self.writer_view).version.floors {
            edit.range_floors = Some(next.floors.clone());
        }
        vs.log_edit(&edit).await?;
        let version = {
            let mut st = lock(&self.writer_view);
            st.version = Arc::new(next);
            match mems {
                Memtables::Keep => {}
                Memtables::PopFlushed => {
                    st.imms.pop_front();
                }
                Memtables::Replace(mem) => {
                    st.mem = mem;
                    st.imms.clear();
                }
            }
            debug_assert!(
                st.version.check_invariants().is_ok(),
                "{:?}",
                st.version.check_invariants()
            );
            self.publish_read_view(&st);
            st.version.clone()
        };
        if vs.wants_new_manifest(self.opts.manifest_bytes_max) {
            let number = self.next_file_number.fetch_add(1, Ordering::SeqCst);
            vs.start_new_manifest(
                number,
                self.next_file_number.load(Ordering::SeqCst),
                self.visible_seq.load(Ordering::Acquire),
                &version,
            )
            .await?;
            add(&self.stats.manifest_rotations, 1);
        }
        Ok(())
    }

    /// Deletes the files of obsolete tables that no reader holds any more.
    pub(crate) fn collect_garbage(&self) {
        let numbers: Vec<u64> = std::mem::take(&mut *lock(&self.graveyard));
        for n in numbers {
            let p = table_path(&self.dir, n);
            if let Err(e) = self.fs.remove_file(&p) {
                // Harmless: the next open removes orphans.
                tracing::warn!(path = %p.display(), error = %e, "could not delete obsolete table");
            }
        }
    }

    /// The counters, with the WAL's, the block cache's and the levels'.
    pub(crate) fn stats_snapshot(&self) -> StatsSnapshot {
        let mut s = self.stats.snapshot();
        // The WAL counts every fdatasync it does (group syncs, timed syncs,
        // seals at roll, segment creation).
        s.wal_fsyncs = lock(&self.wal).as_ref().map_or(0, |w| w.syncs());
        s.cache_hits = self.cache.hits();
        s.cache_misses = self.cache.misses();
        let st = lock(&self.writer_view);
        s.levels = st
            .version
            .levels
            .iter()
            .map(|l| LevelStats {
                files: l.len() as u64,
                bytes: l.iter().map(|f| f.desc.size).sum(),
            })
            .collect();
        s.immutable_memtables = st.imms.len() as u64;
        s
    }
}
