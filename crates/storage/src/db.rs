//! The public face of the engine: [`Db`] and what it promises. Each
//! method hands its work to the module that holds the concept:
//!
//! * open: `recovery.rs` (manifest, WAL replay, orphans), then `workers.rs`;
//! * writes: `group_commit.rs` (the queue and its leader) and `wal_sync.rs`
//!   (when a group reaches the disk);
//! * point reads and snapshots: `read.rs`; scans: `scan.rs`;
//! * flush and compaction: `flush.rs`, `compaction.rs`;
//! * checkpoints and installs: `checkpoint.rs`;
//! * the shared state all of them work on: `engine.rs`.
//!
//! Write path in brief: a writer queues its batch; the first writer that
//! finds no leader leads one group: it takes queued batches (bounded in
//! bytes and count), assigns consecutive sequence numbers, writes one WAL
//! record, and (durable preset) fsyncs once, then inserts the group into
//! the memtable, publishes the new sequence number and acknowledges
//! everyone. It then hands leadership to the first waiting writer, so no
//! writer leads twice in a row while others wait.

use crate::batch::WriteBatch;
use crate::compaction;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::lock::lock;
use crate::options::Options;
use crate::read::resolve_entry;
use crate::recovery;
use crate::scan::ScanIter;
use crate::stats::{add, StatsSnapshot};
use bytes::Bytes;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use crate::filename::{table_path, wal_dir};
pub use crate::read::Snapshot;
pub use crate::recovery::RecoveryReport;

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
    pub(crate) engine: Arc<Engine>,
    report: RecoveryReport,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.engine.dir).finish()
    }
}

impl Db {
    /// Opens (or creates) the engine in `dir`, recovering from the manifest
    /// and the WAL.
    pub async fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let (engine, report) = recovery::recover(dir.clone(), opts).await?;
        engine.start_workers();
        engine.flush_wanted.notify_one();
        engine.compaction_wanted.notify_one();
        tracing::info!(
            dir = %dir.display(),
            wal_records = report.wal_records,
            entries = report.entries,
            truncated = ?report.truncated_tail,
            replay_us = report.replay_us,
            "opened"
        );
        Ok(Db { engine, report })
    }

    /// The applied marker of the newest flushed memtable, as recorded in the
    /// manifest: everything applied up to it is in SSTables. In replicated
    /// mode (`Options::wal == false`) the Raft log is replayed from here
    /// after a restart.
    pub async fn applied_marker(&self) -> Option<Vec<u8>> {
        self.engine.versions.lock().await.applied_marker()
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

    /// Removes every key from `start` (non-empty) up to `end` (exclusive;
    /// `None`: no end) in one record, whatever the range holds: a range
    /// delete (see [`WriteBatch::delete_range`]). Keys written afterwards
    /// are not affected.
    pub async fn delete_range(&self, start: &[u8], end: Option<&[u8]>) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete_range(start, end);
        self.write(b).await
    }

    /// Applies `batch` atomically: after a crash either all of it is there or
    /// none of it.
    pub async fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_within(batch, Engine::check_limits).await
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
        check: impl FnOnce(&Engine, &WriteBatch) -> Result<()>,
    ) -> Result<()> {
        let engine = &self.engine;
        engine.check_writable()?;
        if batch.is_empty() && batch.applied_marker().is_none() {
            return Ok(());
        }
        check(engine, &batch)?;
        batch.coalesce();
        // Most writes complete without waiting on anything, so a task writing
        // in a loop would never yield: another writer woken onto the same
        // runtime worker (tokio's non-stealable LIFO slot) then waited for
        // seconds. Spend one unit of the task's cooperative budget per write;
        // it yields only when the budget runs out.
        tokio::task::coop::consume_budget().await;
        let started = tokio::time::Instant::now();
        let bytes = batch.encoded_len() as u64;
        let res = engine.commit(batch, false).await;
        if res.is_ok() {
            add(&engine.stats.writes, 1);
            add(&engine.stats.write_bytes, bytes);
            engine
                .stats
                .record_write_latency_us(started.elapsed().as_micros() as u64);
        }
        res
    }

    /// Reads the newest value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let seq = self.engine.visible_seq.load(Ordering::Acquire);
        self.engine.get_at(key, seq)
    }

    /// Reads the newest value of `key` and its expiry (ms since the Unix
    /// epoch; `None` for a key that never expires). A key whose expiry is
    /// at or before the engine's clock reads as absent, as with [`Db::get`].
    pub fn get_entry(&self, key: &[u8]) -> Result<Option<(Bytes, Option<u64>)>> {
        self.get_entry_as_of(key, self.engine.read_now_ms())
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
        let seq = self.engine.visible_seq.load(Ordering::Acquire);
        Ok(self
            .engine
            .find(key, seq)?
            .and_then(|(kind, value)| resolve_entry(kind, value, || now_ms)))
    }

    /// Whether [`Db::write`] would accept `batch` as far as its own content
    /// goes (empty keys, key, value and batch size limits), without
    /// writing it: the error `write` would give, or `Ok`.
    pub fn check_batch(&self, batch: &WriteBatch) -> Result<()> {
        self.engine.check_limits(batch)
    }

    /// Moves the expiry horizon up to `at_ms` (never down): in replicated
    /// mode (`Options::expire_by_horizon`) flush and compaction drop keys
    /// expired at or before it, and only those. The state machine calls
    /// this with the time of each entry it applies.
    pub fn set_expiry_horizon_ms(&self, at_ms: u64) {
        self.engine
            .expiry_horizon_ms
            .fetch_max(at_ms, Ordering::AcqRel);
    }

    /// The expiry horizon (see [`Db::set_expiry_horizon_ms`]).
    pub fn expiry_horizon_ms(&self) -> u64 {
        self.engine.expiry_horizon_ms.load(Ordering::Acquire)
    }

    /// Switches between expiry by horizon (`true`) and by the engine's
    /// clock (`false`) at run time; `Options::expire_by_horizon` sets it at
    /// open. Only tests of the replicated node's planted bugs need this.
    pub fn set_expire_by_horizon(&self, on: bool) {
        self.engine.expire_by_horizon.store(on, Ordering::Release);
    }

    /// Switches whether flush and compaction drop the entries range
    /// deletes cover (on unless switched off). Only the planted bug
    /// `range-delete-ignored-by-compaction` and its test switch it off.
    pub fn set_range_deletes_compacted(&self, on: bool) {
        self.engine
            .compaction_drops_covered
            .store(on, Ordering::Release);
    }

    /// The range deletes in force now, flushed or not (see
    /// [`crate::range_floor`]): what tests and `/status` can show.
    pub fn range_floors(&self) -> Vec<crate::range_floor::RangeFloor> {
        self.engine.read_view().floors()
    }

    /// Iterates every live key with its value and expiry as of `now_ms`
    /// (a key expired at or before `now_ms` is absent), in key order: what
    /// a replica's state hash is computed from.
    pub fn scan_with_expiry_as_of(
        &self,
        now_ms: u64,
    ) -> Result<impl Iterator<Item = Result<(Bytes, Bytes, Option<u64>)>> + Send> {
        let snap = self.engine.snapshot();
        Ok(ScanIter::new::<&[u8]>(self.engine.clone(), snap, ..)?.with_expiry_as_of(now_ms))
    }

    /// The longest key and value [`Db::write`] accepts (`key_bytes_max`,
    /// `value_bytes_max`): what a replicated node validates requests
    /// against where they enter.
    pub fn kv_bytes_max(&self) -> (u64, u64) {
        (
            self.engine.opts.key_bytes_max,
            self.engine.opts.value_bytes_max,
        )
    }

    /// The largest encoded batch [`Db::write`] accepts (`batch_bytes_max`).
    pub fn batch_bytes_max(&self) -> u64 {
        self.engine.opts.batch_bytes_max
    }

    /// Reads `key` as of `snapshot`.
    pub fn get_at(&self, snapshot: &Snapshot, key: &[u8]) -> Result<Option<Bytes>> {
        self.engine.get_at(key, snapshot.seq())
    }

    /// Reads `key` and its expiry as of `snapshot` (expiry judged by the
    /// engine's clock, as [`Db::get_entry`] does).
    pub fn get_entry_at(
        &self,
        snapshot: &Snapshot,
        key: &[u8],
    ) -> Result<Option<(Bytes, Option<u64>)>> {
        Ok(self
            .engine
            .find(key, snapshot.seq())?
            .and_then(|(kind, value)| resolve_entry(kind, value, || self.engine.read_now_ms())))
    }

    /// Takes a snapshot of everything acknowledged so far.
    pub fn snapshot(&self) -> Snapshot {
        self.engine.snapshot()
    }

    /// Iterates the live keys in `range` (user keys, bytewise order) as of now.
    pub fn scan<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Result<ScanIter> {
        let snap = self.engine.snapshot();
        ScanIter::new(self.engine.clone(), snap, range)
    }

    /// Iterates the live keys in `range` as of `snapshot`.
    pub fn scan_at<K: AsRef<[u8]>>(
        &self,
        snapshot: &Snapshot,
        range: impl RangeBounds<K>,
    ) -> Result<ScanIter> {
        let snap = self.engine.snapshot_at(snapshot.seq());
        ScanIter::new(self.engine.clone(), snap, range)
    }

    /// Freezes the memtable and waits until it (and every older one) is in an
    /// SSTable.
    pub async fn flush(&self) -> Result<()> {
        let engine = &self.engine;
        engine.check_writable()?;
        engine.commit(WriteBatch::new(), true).await?;
        engine.wait_for_flush(|st| st.imms.is_empty()).await
    }

    /// Compacts until no level is over its target and L0 is empty; returns
    /// when done.
    pub async fn compact(&self) -> Result<()> {
        self.flush().await?;
        compaction::compact_all(&self.engine).await
    }

    /// Makes every acknowledged write durable now (for the balanced and
    /// throughput presets; a no-op cost for durable).
    pub async fn sync(&self) -> Result<()> {
        self.engine.check_writable()?;
        self.engine.sync_wal().await
    }

    /// Statistics.
    pub fn stats(&self) -> StatsSnapshot {
        self.engine.stats_snapshot()
    }

    /// Waits for in-flight writes, makes the WAL durable, stops background
    /// work and releases the directory.
    pub async fn close(self) -> Result<()> {
        let engine = self.engine.clone();
        // Drain the write queue: a rotate-free empty commit runs after every
        // queued group.
        let drained = engine.commit(WriteBatch::new(), false).await;
        engine.closed.store(true, Ordering::SeqCst);
        let synced = if engine.stopped_error().is_none() {
            engine.sync_wal().await
        } else {
            Ok(())
        };
        engine.stop_workers().await;
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
        self.engine.closed.store(true, Ordering::SeqCst);
        self.engine.stop_workers().await;
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let engine = &self.engine;
        engine.closed.store(true, Ordering::SeqCst);
        if !engine.shutdown.swap(true, Ordering::SeqCst) {
            // Hand buffered WAL bytes to the OS so a process that drops the
            // engine without closing it loses nothing a process crash would
            // not; no fsync here.
            if let Some(w) = lock(&engine.wal).as_mut() {
                let _ = w.write_pending();
            }
            engine.wake_workers();
        }
    }
}
