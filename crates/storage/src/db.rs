//! The engine: open and recovery, the group-commit write path, point reads,
//! snapshots and scans, flush, sync and close.
//!
//! Write path: a writer queues its batch; the first writer that finds no
//! leader leads one group: it takes queued batches (bounded in bytes and
//! count), assigns consecutive sequence numbers, writes one WAL record, and
//! (durable preset) fsyncs once, then inserts the group into the memtable,
//! publishes the new sequence number and acknowledges everyone. It then
//! hands leadership to the first waiting writer, so no writer leads twice
//! in a row while others wait.

use crate::batch::{decode_group, encode_group, WriteBatch};
use crate::compaction;
use crate::error::{Error, Result};
use crate::flush;
use crate::fs::{self, DynFile, DynFs, IoOp};
use crate::key::{lookup_key, parse_internal_key, SeqNo, ValueKind};
use crate::manifest::{self, VersionSet};
use crate::memtable::{MemKey, MemTable};
use crate::options::{Background, FsyncPolicy, Options};
use crate::scan::ScanIter;
use crate::stats::{add, LevelStats, Stats, StatsSnapshot};
use crate::table::BlockCache;
use crate::version::Version;
use crate::wal::{self, Wal, WalOptions};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::{oneshot, Notify};

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
    /// A torn tail that was cut: (segment, offset, bytes dropped).
    pub truncated_tail: Option<(u64, u64, u64)>,
    /// Microseconds the WAL replay took.
    pub replay_us: u64,
    /// Microseconds spent repairing a torn tail and creating the new WAL
    /// segment (with preallocation, zero-filling it).
    pub new_segment_us: u64,
    /// Orphan files deleted.
    pub orphans_removed: u64,
}

/// The memtables and tables a reader sees, swapped as a unit.
#[derive(Debug)]
pub(crate) struct SuperVersion {
    pub mem: Arc<MemTable>,
    /// Newest first.
    pub imms: Vec<Arc<MemTable>>,
    pub version: Arc<Version>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub mem: Arc<MemTable>,
    /// Oldest first.
    pub imms: VecDeque<Arc<MemTable>>,
    pub version: Arc<Version>,
}

enum LeaderMsg {
    Done(Result<()>),
    Lead,
}

struct Waiter {
    batch: WriteBatch,
    rotate: bool,
    /// Waits to lead alone (a snapshot install): never taken into another
    /// leader's group, and no group forms behind it while it leads.
    exclusive: bool,
    tx: Option<oneshot::Sender<LeaderMsg>>,
}

#[derive(Default)]
struct WriteQueue {
    leader_active: bool,
    waiters: VecDeque<Waiter>,
}

/// Shared engine state.
pub(crate) struct Inner {
    /// This engine, for tasks the planted-bug paths spawn.
    me: std::sync::Weak<Inner>,
    pub dir: PathBuf,
    pub opts: Options,
    pub fs: DynFs,
    pub cache: Arc<BlockCache>,
    pub stats: Stats,
    queue: Mutex<WriteQueue>,
    queue_space: Notify,
    pub wal: Mutex<Option<Wal>>,
    /// Highest sequence number assigned (written by the group leader only).
    pub(crate) last_seq: AtomicU64,
    /// Highest sequence number readers may see.
    pub visible_seq: AtomicU64,
    pub state: Mutex<State>,
    sv: RwLock<Arc<SuperVersion>>,
    pub versions: tokio::sync::Mutex<VersionSet>,
    pub next_file_number: AtomicU64,
    /// The group leader's reusable encode buffer.
    scratch: Mutex<Vec<u8>>,
    /// Set when a durability step failed: no more writes until reopen.
    stopped: Mutex<Option<Error>>,
    /// True once `stopped` is set; read on every write without the lock.
    stopped_flag: AtomicBool,
    pub closed: AtomicBool,
    pub shutdown: AtomicBool,
    /// Wakes the flush worker.
    pub flush_wanted: Notify,
    /// Wakes the compaction worker.
    pub compaction_wanted: Notify,
    /// Wakes the WAL timer.
    pub timer_wake: Notify,
    /// Signalled whenever memtables or versions change (wakes stalled writers).
    pub state_changed: Notify,
    pub snapshots: Mutex<BTreeMap<SeqNo, usize>>,
    pub graveyard: Arc<Mutex<Vec<u64>>>,
    /// Per level, the largest user key of the last compaction input, so
    /// compactions walk the key space round-robin.
    pub compact_pointers: Mutex<[Vec<u8>; crate::options::LEVELS]>,
    /// Held while a compaction runs: one at a time.
    pub compaction_lock: tokio::sync::Mutex<()>,
    /// Held while a memtable flush runs (and by a snapshot install, which
    /// must not meet a flush halfway).
    pub flush_lock: tokio::sync::Mutex<()>,
    workers: Mutex<Vec<WorkerHandle>>,
    _lock: Option<DynFile>,
    /// `Options::expire_by_horizon`, switchable (a planted bug turns it
    /// off in tests).
    expire_by_horizon: AtomicBool,
    /// The time of the last applied entry, in replicated mode: expired
    /// keys at or below it may be dropped.
    expiry_horizon_ms: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

enum WorkerHandle {
    Task(tokio::task::JoinHandle<()>),
    /// Signalled when the thread's work is done.
    Thread(oneshot::Receiver<()>),
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it
/// (every critical section leaves the data consistent before it can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The path of SSTable `number` in `dir`.
pub fn table_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:06}.sst"))
}

/// The WAL directory of an engine in `dir`.
pub fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

/// An open storage engine.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use ballast_storage::{Db, Options, Preset};
/// let dir = tempfile::tempdir().unwrap();
/// let db = Db::open(dir.path(), Options::preset(Preset::Durable)).await.unwrap();
/// db.put(b"greeting", b"hello").await.unwrap();
/// assert_eq!(db.get(b"greeting").unwrap().as_deref(), Some(&b"hello"[..]));
/// db.delete(b"greeting").await.unwrap();
/// assert_eq!(db.get(b"greeting").unwrap(), None);
/// db.close().await.unwrap();
/// # });
/// ```
pub struct Db {
    pub(crate) inner: Arc<Inner>,
    report: RecoveryReport,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish()
    }
}

/// A point-in-time view: reads through it see exactly the writes
/// acknowledged before it was taken. Compaction keeps what it needs.
#[derive(Debug)]
pub struct Snapshot {
    seq: SeqNo,
    inner: Arc<Inner>,
}

impl Snapshot {
    /// The sequence number the snapshot reads at.
    pub fn seq(&self) -> SeqNo {
        self.seq
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut s = lock(&self.inner.snapshots);
        if let Some(n) = s.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                s.remove(&self.seq);
            }
        }
    }
}

impl Db {
    /// Opens (or creates) the engine in `dir`, recovering from the manifest
    /// and the WAL.
    pub async fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let fs = opts.fs.clone();
        fs.create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        fs::sync_parent(&*fs, &dir).map_err(|e| Error::io(&dir, e))?;
        let lock_path = dir.join("LOCK");
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
        }

        // Start a fresh manifest holding the recovered state, so every open
        // bounds the manifest's size and drops a torn tail for good.
        let next_file_number = AtomicU64::new(recovered.next_file_number.max(1));
        let versions = VersionSet::create(
            fs.clone(),
            &dir,
            &recovered,
            next_file_number.fetch_add(1, Ordering::SeqCst),
        )
        .await?;

        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            dir: dir.clone(),
            fs: fs.clone(),
            cache,
            stats: Stats::default(),
            queue: Mutex::new(WriteQueue::default()),
            queue_space: Notify::new(),
            wal: Mutex::new(None),
            last_seq: AtomicU64::new(recovered.last_seq),
            visible_seq: AtomicU64::new(recovered.last_seq),
            state: Mutex::new(State {
                mem: MemTable::new(0),
                imms: VecDeque::new(),
                version: Arc::new(recovered.version.clone()),
            }),
            sv: RwLock::new(Arc::new(SuperVersion {
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
            expire_by_horizon: AtomicBool::new(opts.expire_by_horizon),
            expiry_horizon_ms: AtomicU64::new(0),
            opts,
        });

        // Readers must see the memtable writes go into (replay installs its
        // own view; without a WAL nothing else would, and reads missed every
        // write until the first memtable switch).
        inner.install_super_version(&lock(&inner.state));
        if inner.opts.wal {
            inner.replay_wal(&recovered, &mut report).await?;
        }
        report.orphans_removed = inner.remove_orphans()?;
        inner.start_workers();
        inner.flush_wanted.notify_one();
        inner.compaction_wanted.notify_one();
        tracing::info!(
            dir = %dir.display(),
            wal_records = report.wal_records,
            entries = report.entries,
            truncated = ?report.truncated_tail,
            replay_us = report.replay_us,
            "opened"
        );
        Ok(Db { inner, report })
    }

    /// The applied marker of the newest flushed memtable, as recorded in the
    /// manifest: everything applied up to it is in SSTables. In replicated
    /// mode (`Options::wal == false`) the Raft log is replayed from here
    /// after a restart.
    pub async fn applied_marker(&self) -> Option<Vec<u8>> {
        self.inner.versions.lock().await.applied_marker()
    }

    /// What recovery did when this engine was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Stores `value` under `key`.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(b).await
    }

    /// Stores `value` under `key` until `expire_at_ms` (milliseconds since the
    /// Unix epoch by the engine's clock); from then on the key reads as absent
    /// and compaction drops it.
    pub async fn put_expiring(&self, key: &[u8], value: &[u8], expire_at_ms: u64) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put_expiring(key, value, expire_at_ms);
        self.write(b).await
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(b).await
    }

    /// Applies `batch` atomically: after a crash either all of it is there or
    /// none of it.
    pub async fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_within(batch, Inner::check_limits).await
    }

    /// Like [`Db::write`], but without this engine's configured key, value
    /// and batch size limits: for a replicated engine applying its log,
    /// where the request was checked where it entered the cluster (with
    /// the limits of the node that took it) and every replica must apply
    /// the entry alike whatever its own settings say. Still refused: an
    /// empty key (a rule of the engine, the same on every node) and a
    /// batch larger than a log record can hold (u32 lengths).
    pub async fn write_from_log(&self, batch: WriteBatch) -> Result<()> {
        self.write_within(batch, |_, b| {
            if b.iter().any(|e| e.key.is_empty()) {
                return Err(Error::EmptyKey);
            }
            if b.encoded_len() as u64 > u64::from(u32::MAX) {
                return Err(Error::BatchTooLarge {
                    len: b.encoded_len(),
                    max: u32::MAX as usize,
                });
            }
            Ok(())
        })
        .await
    }

    async fn write_within(
        &self,
        mut batch: WriteBatch,
        check: impl FnOnce(&Inner, &WriteBatch) -> Result<()>,
    ) -> Result<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        if batch.is_empty() && batch.applied_marker().is_none() {
            return Ok(());
        }
        check(inner, &batch)?;
        batch.coalesce();
        // Most writes complete without waiting on anything, so a task writing
        // in a loop would never yield: another writer woken onto the same
        // runtime worker (tokio's non-stealable LIFO slot) then waited for
        // seconds. Spend one unit of the task's cooperative budget per write;
        // it yields only when the budget runs out.
        tokio::task::coop::consume_budget().await;
        let started = tokio::time::Instant::now();
        let bytes = batch.encoded_len() as u64;
        let res = inner.commit(batch, false).await;
        if res.is_ok() {
            add(&inner.stats.writes, 1);
            add(&inner.stats.write_bytes, bytes);
            inner
                .stats
                .record_write_latency_us(started.elapsed().as_micros() as u64);
        }
        res
    }

    /// Reads the newest value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let seq = self.inner.visible_seq.load(Ordering::Acquire);
        self.inner.get_at(key, seq)
    }

    /// Reads the newest value of `key` and its expiry (ms since the Unix
    /// epoch; `None` for a key that never expires). A key whose expiry is
    /// at or before the engine's clock reads as absent, as with [`Db::get`].
    pub fn get_entry(&self, key: &[u8]) -> Result<Option<(Bytes, Option<u64>)>> {
        self.get_entry_as_of(key, self.inner.read_now_ms())
    }

    /// Like [`Db::get_entry`], but as of `now_ms` instead of the engine's
    /// clock: a key whose expiry is at or before `now_ms` reads as absent.
    /// The replicated state machine reads this way, as of the time the
    /// leader stamped on the entry, so that every replica answers alike
    /// whatever its own clock says.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use ballast_storage::{Db, ManualClock, Options, Preset};
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut o = Options::preset(Preset::Durable);
    /// o.clock = ManualClock::new(1_000);
    /// let db = Db::open(dir.path(), o).await.unwrap();
    /// db.put_expiring(b"k", b"v", 5_000).await.unwrap();
    /// assert_eq!(db.get_entry(b"k").unwrap().map(|(_, at)| at), Some(Some(5_000)));
    /// assert!(db.get_entry_as_of(b"k", 4_999).unwrap().is_some());
    /// assert!(db.get_entry_as_of(b"k", 5_000).unwrap().is_none());
    /// db.close().await.unwrap();
    /// # });
    /// ```
    pub fn get_entry_as_of(&self, key: &[u8], now_ms: u64) -> Result<Option<(Bytes, Option<u64>)>> {
        let seq = self.inner.visible_seq.load(Ordering::Acquire);
        Ok(self
            .inner
            .find(key, seq)?
            .and_then(|(kind, value)| resolve_entry(kind, value, || now_ms)))
    }

    /// Whether [`Db::write`] would accept `batch` as far as its own content
    /// goes (empty keys, key, value and batch size limits), without
    /// writing it: the error `write` would give, or `Ok`.
    pub fn check_batch(&self, batch: &WriteBatch) -> Result<()> {
        self.inner.check_limits(batch)
    }

    /// Moves the expiry horizon up to `at_ms` (never down): in replicated
    /// mode (`Options::expire_by_horizon`) flush and compaction drop keys
    /// expired at or before it, and only those. The state machine calls
    /// this with the time of each entry it applies.
    pub fn set_expiry_horizon_ms(&self, at_ms: u64) {
        self.inner
            .expiry_horizon_ms
            .fetch_max(at_ms, Ordering::AcqRel);
    }

    /// The expiry horizon (see [`Db::set_expiry_horizon_ms`]).
    pub fn expiry_horizon_ms(&self) -> u64 {
        self.inner.expiry_horizon_ms.load(Ordering::Acquire)
    }

    /// Switches between expiry by horizon (`true`) and by the engine's
    /// clock (`false`) at run time; `Options::expire_by_horizon` sets it at
    /// open. Only tests of the replicated node's planted bugs need this.
    pub fn set_expire_by_horizon(&self, on: bool) {
        self.inner.expire_by_horizon.store(on, Ordering::Release);
    }

    /// Iterates every live key with its value and expiry as of `now_ms`
    /// (a key expired at or before `now_ms` is absent), in key order: what
    /// a replica's state hash is computed from.
    pub fn scan_with_expiry_as_of(
        &self,
        now_ms: u64,
    ) -> Result<impl Iterator<Item = Result<(Bytes, Bytes, Option<u64>)>> + Send> {
        let snap = self.inner.snapshot();
        Ok(ScanIter::new::<&[u8]>(self.inner.clone(), snap, ..)?.with_expiry_as_of(now_ms))
    }

    /// The longest key and value [`Db::write`] accepts (`key_bytes_max`,
    /// `value_bytes_max`): what a replicated node validates requests
    /// against where they enter.
    pub fn kv_bytes_max(&self) -> (u64, u64) {
        (
            self.inner.opts.key_bytes_max,
            self.inner.opts.value_bytes_max,
        )
    }

    /// The largest encoded batch [`Db::write`] accepts (`batch_bytes_max`).
    pub fn batch_bytes_max(&self) -> u64 {
        self.inner.opts.batch_bytes_max
    }

    /// Reads `key` as of `snapshot`.
    pub fn get_at(&self, snapshot: &Snapshot, key: &[u8]) -> Result<Option<Bytes>> {
        self.inner.get_at(key, snapshot.seq)
    }

    /// Reads `key` and its expiry as of `snapshot` (expiry judged by the
    /// engine's clock, as [`Db::get_entry`] does).
    pub fn get_entry_at(
        &self,
        snapshot: &Snapshot,
        key: &[u8],
    ) -> Result<Option<(Bytes, Option<u64>)>> {
        Ok(self
            .inner
            .find(key, snapshot.seq)?
            .and_then(|(kind, value)| resolve_entry(kind, value, || self.inner.read_now_ms())))
    }

    /// Takes a snapshot of everything acknowledged so far.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.snapshot()
    }

    /// Iterates the live keys in `range` (user keys, bytewise order) as of now.
    pub fn scan<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Result<ScanIter> {
        let snap = self.inner.snapshot();
        ScanIter::new(self.inner.clone(), snap, range)
    }

    /// Iterates the live keys in `range` as of `snapshot`.
    pub fn scan_at<K: AsRef<[u8]>>(
        &self,
        snapshot: &Snapshot,
        range: impl RangeBounds<K>,
    ) -> Result<ScanIter> {
        let snap = Snapshot {
            seq: snapshot.seq,
            inner: self.inner.clone(),
        };
        *lock(&self.inner.snapshots).entry(snap.seq).or_insert(0) += 1;
        ScanIter::new(self.inner.clone(), snap, range)
    }

    /// Freezes the memtable and waits until it (and every older one) is in an
    /// SSTable.
    pub async fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        inner.commit(WriteBatch::new(), true).await?;
        inner.wait_for_flush(|st| st.imms.is_empty()).await
    }

    /// Compacts until no level is over its target and L0 is empty; returns
    /// when done.
    pub async fn compact(&self) -> Result<()> {
        self.flush().await?;
        compaction::compact_all(&self.inner).await
    }

    /// Makes every acknowledged write durable now (for the balanced and
    /// throughput presets; a no-op cost for durable).
    pub async fn sync(&self) -> Result<()> {
        self.inner.check_writable()?;
        self.inner.sync_wal().await
    }

    /// Statistics.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats_snapshot()
    }

    /// Waits for in-flight writes, makes the WAL durable, stops background
    /// work and releases the directory.
    pub async fn close(self) -> Result<()> {
        let inner = self.inner.clone();
        // Drain the write queue: a rotate-free empty commit runs after every
        // queued group.
        let drained = inner.commit(WriteBatch::new(), false).await;
        inner.closed.store(true, Ordering::SeqCst);
        let synced = if inner.stopped_error().is_none() {
            inner.sync_wal().await
        } else {
            Ok(())
        };
        inner.stop_workers().await;
        drained.and(synced)
    }
}

impl Db {
    /// Stops background work (flush, compaction) without flushing or
    /// syncing anything, and refuses writes from now on: what a process
    /// crash leaves on disk, for tests that crash an engine in-process and
    /// open it again. Another handle can open the directory once this
    /// returns and the last handle is dropped.
    pub async fn halt(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.stop_workers().await;
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        if !inner.shutdown.swap(true, Ordering::SeqCst) {
            // Hand buffered WAL bytes to the OS so a process that drops the
            // engine without closing it loses nothing a process crash would
            // not; no fsync here.
            if let Some(w) = lock(&inner.wal).as_mut() {
                let _ = w.write_pending();
            }
            inner.wake_workers();
        }
    }
}

impl Inner {
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

    fn check_limits(&self, batch: &WriteBatch) -> Result<()> {
        let (kmax, vmax) = batch.max_lens();
        if kmax as u64 > self.opts.key_bytes_max {
            return Err(Error::KeyTooLarge {
                len: kmax,
                max: self.opts.key_bytes_max as usize,
            });
        }
        if vmax as u64 > self.opts.value_bytes_max {
            return Err(Error::ValueTooLarge {
                len: vmax,
                max: self.opts.value_bytes_max as usize,
            });
        }
        if batch.iter().any(|e| e.key.is_empty()) {
            return Err(Error::EmptyKey);
        }
        if batch.encoded_len() as u64 > self.opts.batch_bytes_max {
            return Err(Error::BatchTooLarge {
                len: batch.encoded_len(),
                max: self.opts.batch_bytes_max as usize,
            });
        }
        Ok(())
    }

    fn snapshot(self: &Arc<Self>) -> Snapshot {
        let mut s = lock(&self.snapshots);
        // Read the sequence under the lock so compaction, which reads the
        // oldest snapshot under the same lock, never misses this one.
        let seq = self.visible_seq.load(Ordering::Acquire);
        *s.entry(seq).or_insert(0) += 1;
        Snapshot {
            seq,
            inner: self.clone(),
        }
    }

    /// The oldest sequence number any reader may still ask for.
    pub(crate) fn oldest_snapshot(&self) -> SeqNo {
        let s = lock(&self.snapshots);
        let visible = self.visible_seq.load(Ordering::Acquire);
        s.keys().next().copied().unwrap_or(visible).min(visible)
    }

    pub(crate) fn super_version(&self) -> Arc<SuperVersion> {
        self.sv.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes the memtables and version of `st` to readers.
    pub(crate) fn install_super_version(&self, st: &State) {
        let sv = Arc::new(SuperVersion {
            mem: st.mem.clone(),
            imms: st.imms.iter().rev().cloned().collect(),
            version: st.version.clone(),
        });
        *self.sv.write().unwrap_or_else(|e| e.into_inner()) = sv;
        self.state_changed.notify_waiters();
    }

    fn get_at(&self, key: &[u8], seq: SeqNo) -> Result<Option<Bytes>> {
        Ok(self.find(key, seq)?.and_then(|(kind, value)| {
            resolve_entry(kind, value, || self.read_now_ms()).map(|(v, _)| v)
        }))
    }

    /// The newest entry for `key` at or below `seq`: its kind and stored
    /// value (tombstones and expired entries included).
    fn find(&self, key: &[u8], seq: SeqNo) -> Result<Option<(ValueKind, Bytes)>> {
        add(&self.stats.gets, 1);
        let sv = self.super_version();
        let lookup = lookup_key(key, seq);
        let kind = |ikey: &[u8]| parse_internal_key(ikey).map(|p| p.kind);
        if let Some(e) = sv.mem.get(&lookup) {
            return Ok(kind(e.ikey()).map(|k| (k, e.value_bytes())));
        }
        for m in &sv.imms {
            if let Some(e) = m.get(&lookup) {
                return Ok(kind(e.ikey()).map(|k| (k, e.value_bytes())));
            }
        }
        Ok(sv
            .version
            .get(&lookup)?
            .and_then(|f| kind(&f.ikey).map(|k| (k, f.value))))
    }

    /// Wakes the flush worker until `done` holds for the memtables (or a
    /// failed durability step stops the engine).
    pub(crate) async fn wait_for_flush(&self, done: impl Fn(&State) -> bool) -> Result<()> {
        loop {
            let notified = self.state_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.stopped_error() {
                return Err(e);
            }
            if done(&lock(&self.state)) {
                return Ok(());
            }
            self.flush_wanted.notify_one();
            notified.await;
        }
    }

    /// Freezes the active memtable if it holds anything (after every write
    /// queued before this call).
    pub(crate) async fn commit_rotate(&self) -> Result<()> {
        self.commit(WriteBatch::new(), true).await
    }

    /// Starts a new WAL segment (if the engine has a WAL) and returns its
    /// number, for memtables that start over after a snapshot install; 0
    /// without a WAL. Called by the exclusive write leader only.
    pub(crate) fn roll_wal_for_install(&self) -> Result<u64> {
        if !self.opts.wal {
            return Ok(0);
        }
        let mut g = lock(&self.wal);
        let wal = g.as_mut().ok_or(Error::Closed)?;
        wal.roll().map_err(|e| self.stop_on("WAL roll", e))
    }

    /// Deletes WAL segments below `segment` (no-op without a WAL).
    pub(crate) fn remove_wal_below(&self, segment: u64) -> Result<()> {
        if let Some(w) = lock(&self.wal).as_mut() {
            w.remove_segments_below(segment)?;
        }
        Ok(())
    }

    /// Queues `batch` for a group commit and waits for its outcome.
    async fn commit(&self, batch: WriteBatch, rotate: bool) -> Result<()> {
        enum Next {
            Lead(WriteBatch),
            Wait(oneshot::Receiver<LeaderMsg>),
            Full(WriteBatch),
        }
        let mut batch = Some(batch);
        let rx = loop {
            let notified = self.queue_space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(b) = batch.take() else {
                return Err(Error::Closed);
            };
            let next = {
                let mut q = lock(&self.queue);
                if !q.leader_active && q.waiters.is_empty() {
                    q.leader_active = true;
                    Next::Lead(b)
                } else if (q.waiters.len() as u64) < self.opts.write_queue_max {
                    let (tx, rx) = oneshot::channel();
                    q.waiters.push_back(Waiter {
                        batch: b,
                        rotate,
                        exclusive: false,
                        tx: Some(tx),
                    });
                    Next::Wait(rx)
                } else {
                    Next::Full(b)
                }
            };
            match next {
                Next::Lead(b) => return self.lead(Some((b, rotate))).await,
                Next::Wait(rx) => break rx,
                Next::Full(b) => {
                    // The queue is full: wait for a group to take some of it.
                    batch = Some(b);
                    add(&self.stats.stalls, 1);
                    notified.await;
                }
            }
        };
        match rx.await {
            Ok(LeaderMsg::Done(r)) => r,
            Ok(LeaderMsg::Lead) => {
                // Leadership came by hand-off, so writers are contending.
                // Yield once so that the writers the last group just
                // acknowledged can queue their next batches and join this
                // group (no timed wait: an idle engine never gets here).
                tokio::task::yield_now().await;
                self.lead(None).await
            }
            Err(_) => Err(self.stopped_error().unwrap_or(Error::Closed)),
        }
    }

    /// Runs `work` as the write leader, alone: every write queued before it
    /// is committed first, every write queued after it waits until it is
    /// done, and no group commit runs meanwhile. For a snapshot install,
    /// which replaces the memtables and must not lose a concurrent write.
    pub(crate) async fn lead_exclusively<T>(
        &self,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let rx = loop {
            let notified = self.queue_space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let mut q = lock(&self.queue);
                if !q.leader_active && q.waiters.is_empty() {
                    q.leader_active = true;
                    Some(None)
                } else if (q.waiters.len() as u64) < self.opts.write_queue_max {
                    let (tx, rx) = oneshot::channel();
                    q.waiters.push_back(Waiter {
                        batch: WriteBatch::new(),
                        rotate: false,
                        exclusive: true,
                        tx: Some(tx),
                    });
                    Some(Some(rx))
                } else {
                    None
                }
            };
            match next {
                Some(rx) => break rx,
                None => {
                    add(&self.stats.stalls, 1);
                    notified.await;
                }
            }
        };
        if let Some(rx) = rx {
            match rx.await {
                // Leadership came by hand-off: this waiter is at the front.
                Ok(LeaderMsg::Lead) => {
                    lock(&self.queue).waiters.pop_front();
                }
                Ok(LeaderMsg::Done(r)) => {
                    // Only a cancelled leader answers an exclusive waiter
                    // this way, and then always with an error.
                    return Err(r.err().unwrap_or(Error::Closed));
                }
                Err(_) => return Err(self.stopped_error().unwrap_or(Error::Closed)),
            }
        }
        let mut guard = LeaderGuard {
            inner: self,
            armed: true,
        };
        let result = work.await;
        self.hand_off().await;
        guard.armed = false;
        result
    }

    /// Leads one group: `own` is the leader's batch when it did not queue;
    /// otherwise its batch is at the front of the queue.
    async fn lead(&self, own: Option<(WriteBatch, bool)>) -> Result<()> {
        let mut guard = LeaderGuard {
            inner: self,
            armed: true,
        };
        let result = self.lead_one_group(own).await;
        self.hand_off().await;
        guard.armed = false;
        result
    }

    async fn lead_one_group(&self, own: Option<(WriteBatch, bool)>) -> Result<()> {
        let own = match own {
            Some((b, r)) if lock(&self.queue).waiters.is_empty() => {
                // Nobody else is waiting: a group of one, no bookkeeping.
                return self.commit_group(std::slice::from_ref(&b), r).await;
            }
            other => other,
        };
        let mut batches: Vec<WriteBatch> = Vec::new();
        let mut txs: Vec<Option<oneshot::Sender<LeaderMsg>>> = Vec::new();
        let mut rotate = false;
        let mut bytes: u64 = 0;
        {
            let mut q = lock(&self.queue);
            match own {
                Some((b, r)) => {
                    bytes += b.encoded_len() as u64;
                    rotate |= r;
                    batches.push(b);
                    txs.push(None);
                }
                None => {
                    if let Some(w) = q.waiters.pop_front() {
                        bytes += w.batch.encoded_len() as u64;
                        rotate |= w.rotate;
                        batches.push(w.batch);
                        txs.push(None);
                    }
                }
            }
            while let Some(w) = q.waiters.front() {
                let len = w.batch.encoded_len() as u64;
                if w.exclusive
                    || batches.len() as u64 >= self.opts.group_commit_batches_max
                    || bytes + len > self.opts.group_commit_bytes_max
                {
                    break;
                }
                let Some(w) = q.waiters.pop_front() else {
                    break;
                };
                bytes += len;
                rotate |= w.rotate;
                batches.push(w.batch);
                txs.push(w.tx);
            }
        }
        if txs.len() > 1 {
            // Writers blocked on a full queue can only exist if it held some.
            self.queue_space.notify_waiters();
        }
        let result = self.commit_group(&batches, rotate).await;
        for tx in txs.into_iter().skip(1).flatten() {
            let _ = tx.send(LeaderMsg::Done(result.clone()));
        }
        result
    }

    /// Passes leadership to the first waiting writer, or releases it.
    async fn hand_off(&self) {
        while !self.try_hand_off() {
            // That writer stopped waiting; its batch is still queued, so
            // commit it on its behalf.
            let _ = Box::pin(self.lead_one_group(None)).await;
        }
    }

    /// True when leadership was passed on or released; false when the front
    /// waiter is gone and its batch must be committed by the current leader.
    fn try_hand_off(&self) -> bool {
        let mut q = lock(&self.queue);
        match q.waiters.front_mut() {
            None => {
                q.leader_active = false;
                true
            }
            Some(w) => match w.tx.take() {
                Some(tx) => tx.send(LeaderMsg::Lead).is_ok(),
                None => false,
            },
        }
    }

    /// Writes one group to the WAL and the memtable.
    async fn commit_group(&self, batches: &[WriteBatch], mut rotate: bool) -> Result<()> {
        if let Some(e) = self.stopped_error() {
            return Err(e);
        }
        self.wait_for_room().await?;
        let count: u64 = batches.iter().map(|b| u64::from(b.count())).sum();
        let base = self.last_seq.load(Ordering::Acquire) + 1;
        if count > 0 {
            if self.opts.wal {
                // The leader is alone here, so one buffer serves every group.
                let mut payload = std::mem::take(&mut *lock(&self.scratch));
                payload.clear();
                encode_group(&mut payload, base, batches);
                let appended = self.append_to_wal(&payload).await;
                if payload.capacity() <= SCRATCH_BYTES_MAX {
                    *lock(&self.scratch) = payload;
                }
                appended?;
            }
            let full = self.insert_group(batches, base);
            rotate |= full;
            self.set_marker(batches);
            self.last_seq.store(base + count - 1, Ordering::Release);
            self.visible_seq.store(base + count - 1, Ordering::Release);
            self.stats.record_group(batches.len() as u64);
        } else {
            self.set_marker(batches);
        }
        if rotate && lock(&self.state).mem.has_content() {
            self.switch_memtable()?;
        }
        Ok(())
    }

    async fn append_to_wal(&self, payload: &[u8]) -> Result<()> {
        let policy = self.opts.fsync;
        {
            let mut g = lock(&self.wal);
            let wal = g.as_mut().ok_or(Error::Closed)?;
            wal.add_record(payload)
                .map_err(|e| self.stop_on("write", e))?;
            let write_now = match policy {
                FsyncPolicy::Group | FsyncPolicy::Interval { .. } => true,
                FsyncPolicy::WriteBack { buffer_bytes, .. } => {
                    wal.pending_bytes() as u64 >= buffer_bytes
                }
            };
            if write_now {
                wal.write_pending().map_err(|e| self.stop_on("write", e))?;
            }
        }
        add(&self.stats.wal_bytes, payload.len() as u64);
        if policy == FsyncPolicy::Group
            && crate::planted::active(crate::planted::PlantedBug::AckBeforeGroupFsync)
        {
            // The bug: acknowledge now, fsync later in the background.
            if let Some(inner) = self.me.upgrade() {
                tokio::spawn(async move {
                    fs::pause(&*inner.fs, IoOp::Sync).await;
                    if let Some(w) = lock(&inner.wal).as_mut() {
                        let _ = w.sync();
                    }
                });
            }
            return Ok(());
        }
        if policy == FsyncPolicy::Group {
            fs::pause(&*self.fs, IoOp::Sync).await;
            let contended = !lock(&self.queue).waiters.is_empty();
            let synced = match (self.opts.background, self.me.upgrade()) {
                // With writers waiting, fsync on the blocking pool so that
                // both async workers keep running them (and they queue up
                // for the next group) while the disk works. A lone writer
                // fsyncs inline: the thread hand-off would only add latency.
                (Background::Thread, Some(inner)) if contended => {
                    tokio::task::spawn_blocking(move || inner.sync_wal_now())
                        .await
                        .unwrap_or_else(|e| {
                            Err(Error::WritesStopped {
                                op: "fsync",
                                reason: format!("the fsync task failed: {e}"),
                            })
                        })
                }
                _ => self.sync_wal_now(),
            };
            synced.map_err(|e| self.stop_on("fsync", e))?;
        }
        Ok(())
    }

    fn sync_wal_now(&self) -> Result<()> {
        let mut g = lock(&self.wal);
        g.as_mut().ok_or(Error::Closed)?.sync()
    }

    fn stop_on(&self, op: &'static str, e: Error) -> Error {
        self.stop_writes(op, &e);
        e
    }

    /// Inserts a group's entries into the active memtable (all entries share
    /// one allocation); true if the memtable is now full.
    fn insert_group(&self, batches: &[WriteBatch], base: SeqNo) -> bool {
        let total: usize = batches
            .iter()
            .map(|b| b.encoded_len() + 8 * b.count() as usize)
            .sum();
        let mem = lock(&self.state).mem.clone();
        if let [only] = batches {
            if only.count() == 1 {
                // The common single write: no span bookkeeping, no sort.
                if let Some(e) = only.iter().next() {
                    let mut buf = Vec::with_capacity(total);
                    crate::key::append_internal_key(&mut buf, e.key, base, e.kind);
                    let klen = buf.len();
                    buf.extend_from_slice(e.value);
                    mem.insert(MemKey::new(Bytes::from(buf), klen), base);
                }
                return mem.approx_bytes() >= self.opts.memtable_bytes;
            }
        }
        let mut buf = Vec::with_capacity(total);
        let mut spans = Vec::with_capacity(batches.iter().map(|b| b.len()).sum());
        let mut seq = base;
        for b in batches {
            for e in b.iter() {
                let start = buf.len();
                crate::key::append_internal_key(&mut buf, e.key, seq, e.kind);
                let klen = buf.len() - start;
                buf.extend_from_slice(e.value);
                spans.push((start, buf.len(), klen, seq));
                seq += 1;
            }
        }
        let buf = Bytes::from(buf);
        let mut entries: Vec<(MemKey, SeqNo)> = spans
            .into_iter()
            .map(|(start, end, klen, seq)| (MemKey::new(buf.slice(start..end), klen), seq))
            .collect();
        insert_sorted(&mem, &mut entries);
        mem.approx_bytes() >= self.opts.memtable_bytes
    }

    /// Records the last applied marker of the group in the active memtable.
    fn set_marker(&self, batches: &[WriteBatch]) {
        if let Some(m) = batches.iter().rev().find_map(|b| b.applied_marker()) {
            lock(&self.state).mem.set_applied_marker(m);
        }
    }

    /// Stalls the leader (and so every writer) while too many memtables wait
    /// for flush or L0 has too many tables.
    async fn wait_for_room(&self) -> Result<()> {
        if self.has_room() {
            return Ok(());
        }
        let mut stalled_since = None;
        loop {
            let notified = self.state_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.stopped_error() {
                return Err(e);
            }
            if self.closed.load(Ordering::SeqCst) && self.shutdown.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            let (imms, l0) = {
                let st = lock(&self.state);
                (st.imms.len() as u64, st.version.levels[0].len() as u64)
            };
            if imms < self.opts.immutable_memtables_max && l0 < self.opts.l0_stop_writes_trigger {
                if let Some(t) = stalled_since {
                    let t: tokio::time::Instant = t;
                    add(&self.stats.stall_us, t.elapsed().as_micros() as u64);
                }
                return Ok(());
            }
            if stalled_since.is_none() {
                stalled_since = Some(tokio::time::Instant::now());
                add(&self.stats.stalls, 1);
                tracing::debug!(imms, l0, "write stall");
            }
            self.flush_wanted.notify_one();
            self.compaction_wanted.notify_one();
            notified.await;
        }
    }

    fn has_room(&self) -> bool {
        let st = lock(&self.state);
        (st.imms.len() as u64) < self.opts.immutable_memtables_max
            && (st.version.levels[0].len() as u64) < self.opts.l0_stop_writes_trigger
    }

    /// Freezes the active memtable and starts a new one (and a new WAL
    /// segment, so the frozen memtable's segments can be deleted once it is
    /// flushed). Called by the group leader only.
    pub(crate) fn switch_memtable(&self) -> Result<()> {
        let segment = if self.opts.wal {
            let mut g = lock(&self.wal);
            let wal = g.as_mut().ok_or(Error::Closed)?;
            wal.roll().map_err(|e| self.stop_on("WAL roll", e))?
        } else {
            0
        };
        let mut st = lock(&self.state);
        let old = std::mem::replace(&mut st.mem, MemTable::new(segment));
        st.imms.push_back(old);
        self.install_super_version(&st);
        drop(st);
        self.flush_wanted.notify_one();
        Ok(())
    }

    async fn sync_wal(&self) -> Result<()> {
        if !self.opts.wal {
            return Ok(());
        }
        fs::pause(&*self.fs, IoOp::Sync).await;
        let mut g = lock(&self.wal);
        let Some(wal) = g.as_mut() else {
            return Ok(());
        };
        wal.write_pending().map_err(|e| self.stop_on("write", e))?;
        wal.sync().map_err(|e| self.stop_on("fsync", e))?;
        Ok(())
    }

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
            for (seq, e) in group.entries() {
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
            if full || pending.len() >= RECOVERY_CHUNK_ENTRIES {
                insert_sorted(&m, &mut pending);
                pending_bytes = 0;
            }
            if full {
                let m = mem.take().ok_or(Error::Closed)?;
                self.push_recovered(m).await?;
            }
        }
        if let Some(m) = &mem {
            insert_sorted(m, &mut pending);
        }
        let rep = &recovery.report;
        report.wal_segments = rep.segments;
        report.wal_bytes = rep.bytes;
        report.truncated_tail = rep
            .truncated
            .map(|t| (t.segment, t.offset, t.bytes_dropped));
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
        let mut st = lock(&self.state);
        st.mem = MemTable::new(wal.current_segment());
        self.install_super_version(&st);
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
            let mut st = lock(&self.state);
            st.imms.push_back(m);
            self.install_super_version(&st);
            st.imms.len() as u64 > self.opts.immutable_memtables_max
        };
        if full {
            flush::flush_oldest(self).await?;
        }
        Ok(())
    }

    /// Deletes files no version, manifest or WAL needs: tables left by an
    /// interrupted flush or compaction, old manifests, temporary files.
    fn remove_orphans(&self) -> Result<u64> {
        let live: std::collections::BTreeSet<u64> =
            lock(&self.state).version.live_files().into_iter().collect();
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
            let orphan = if let Some(num) = name.strip_suffix(".sst") {
                num.parse::<u64>()
                    .map(|n| !live.contains(&n))
                    .unwrap_or(false)
            } else if name.starts_with("MANIFEST-") {
                name != current_manifest
            } else {
                name.ends_with(".tmp")
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

    fn stats_snapshot(&self) -> StatsSnapshot {
        let mut s = self.stats.snapshot();
        // The WAL counts every fdatasync it does (group syncs, timed syncs,
        // seals at roll, segment creation).
        s.wal_fsyncs = lock(&self.wal).as_ref().map_or(0, |w| w.syncs());
        s.cache_hits = self.cache.hits();
        s.cache_misses = self.cache.misses();
        let st = lock(&self.state);
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

    fn start_workers(self: &Arc<Self>) {
        let mut handles = lock(&self.workers);
        let spawn =
            |name: &'static str,
             fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
                match self.opts.background {
                    Background::Tasks => WorkerHandle::Task(tokio::spawn(fut)),
                    Background::Thread => {
                        let (done_tx, done_rx) = oneshot::channel();
                        let h = std::thread::Builder::new().name(name.to_string()).spawn(move || {
                        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                            Ok(rt) => rt.block_on(fut),
                            Err(e) => tracing::error!(error = %e, "could not start a background runtime"),
                        }
                        let _ = done_tx.send(());
                    });
                        match h {
                            Ok(_detached) => WorkerHandle::Thread(done_rx),
                            Err(e) => {
                                tracing::error!(error = %e, "could not start a background thread; using a task");
                                WorkerHandle::Task(tokio::spawn(async {}))
                            }
                        }
                    }
                }
            };
        handles.push(spawn(
            "ballast-flush",
            Box::pin(flush::flush_worker(self.clone())),
        ));
        handles.push(spawn(
            "ballast-compact",
            Box::pin(compaction::compaction_worker(self.clone())),
        ));
        if self.opts.wal && self.opts.fsync != FsyncPolicy::Group {
            handles.push(spawn(
                "ballast-wal-timer",
                Box::pin(wal_timer(self.clone())),
            ));
        }
    }

    fn wake_workers(&self) {
        self.flush_wanted.notify_one();
        self.compaction_wanted.notify_one();
        self.timer_wake.notify_one();
        self.state_changed.notify_waiters();
    }

    async fn stop_workers(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.wake_workers();
        let handles: Vec<WorkerHandle> = std::mem::take(&mut *lock(&self.workers));
        for h in handles {
            match h {
                WorkerHandle::Task(t) => {
                    let _ = t.await;
                }
                WorkerHandle::Thread(done) => {
                    let _ = done.await;
                }
            }
        }
    }
}

/// Inserts `entries` into `mem` in key order. Every entry has its own
/// sequence number and readers see none of them before the caller publishes
/// the new visible sequence, so insertion order is free; sorted insertion
/// keeps consecutive skiplist searches on warm cache lines, several times
/// cheaper than random order for large groups and for recovery.
fn insert_sorted(mem: &MemTable, entries: &mut Vec<(MemKey, SeqNo)>) {
    if entries.len() > 8 {
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
    for (k, seq) in entries.drain(..) {
        mem.insert(k, seq);
    }
}

/// Turns a found entry into what the user sees: the value and its expiry,
/// or `None` for a tombstone or an entry expired at or before `now_ms()`
/// (called only for expiring entries, so plain reads never touch a clock).
fn resolve_entry(
    kind: ValueKind,
    value: Bytes,
    now_ms: impl FnOnce() -> u64,
) -> Option<(Bytes, Option<u64>)> {
    match kind {
        ValueKind::Delete => None,
        ValueKind::Put => Some((value, None)),
        ValueKind::PutExpiring => {
            // Every writer puts the 8-byte expiry first (tables and the WAL
            // are CRC-checked, so a shorter value cannot come from disk).
            if value.len() < 8 {
                return None;
            }
            let at = crate::coding::get_fixed64(&value);
            (at > now_ms()).then(|| (value.slice(8..), Some(at)))
        }
    }
}

/// Largest encode buffer kept between groups (bigger ones are freed).
const SCRATCH_BYTES_MAX: usize = 1 << 20;

/// Entries recovery sorts and inserts at a time.
const RECOVERY_CHUNK_ENTRIES: usize = 1 << 17;

/// Keeps the group commit from wedging if the leading writer's future is
/// dropped mid-group (only possible at its fsync pause, under simulation):
/// the WAL's state is then unknown, so writes stop, and leadership passes on
/// so that queued writers get that error instead of waiting forever.
struct LeaderGuard<'a> {
    inner: &'a Inner,
    armed: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.inner.stop_writes(
            "group commit",
            &Error::WritesStopped {
                op: "group commit",
                reason: "the leading writer was cancelled in the middle of a commit".into(),
            },
        );
        let mut q = lock(&self.inner.queue);
        for w in q.waiters.drain(..) {
            if let Some(tx) = w.tx {
                let _ = tx.send(LeaderMsg::Done(Err(Error::WritesStopped {
                    op: "group commit",
                    reason: "the leading writer was cancelled in the middle of a commit".into(),
                })));
            }
        }
        q.leader_active = false;
    }
}

/// Balanced: fsync the WAL every `sync_interval_ms`. Throughput: hand the
/// write-back buffer to the OS every `flush_interval_ms`.
async fn wal_timer(inner: Arc<Inner>) {
    let interval_ms = match inner.opts.fsync {
        FsyncPolicy::Group => return,
        FsyncPolicy::Interval { sync_interval_ms } => sync_interval_ms,
        FsyncPolicy::WriteBack {
            flush_interval_ms, ..
        } => flush_interval_ms,
    };
    let period = std::time::Duration::from_millis(interval_ms);
    loop {
        tokio::select! {
            // Fixed polling order: an unbiased select! draws from tokio's
            // runtime RNG, which only `--cfg tokio_unstable` can seed.
            biased;
            _ = tokio::time::sleep(period) => {}
            _ = inner.timer_wake.notified() => {}
        }
        if inner.shutdown.load(Ordering::SeqCst) || inner.stopped_error().is_some() {
            return;
        }
        match inner.opts.fsync {
            FsyncPolicy::Interval { .. } => {
                fs::pause(&*inner.fs, IoOp::Sync).await;
                let mut g = lock(&inner.wal);
                if let Some(w) = g.as_mut() {
                    if !w.is_synced() {
                        if let Err(e) = w.sync() {
                            inner.stop_writes("fsync", &e);
                        }
                    }
                }
            }
            FsyncPolicy::WriteBack { .. } => {
                let mut g = lock(&inner.wal);
                if let Some(w) = g.as_mut() {
                    if let Err(e) = w.write_pending() {
                        inner.stop_writes("write", &e);
                    }
                }
            }
            FsyncPolicy::Group => return,
        }
    }
}
