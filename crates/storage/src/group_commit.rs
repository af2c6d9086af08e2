//! Group commit: the write path from a queued batch to an acknowledged one.
//!
//! A writer queues its batch (`write_queue.rs`); the first writer that
//! finds no leader leads one group: it takes queued batches (bounded in
//! bytes and count), assigns consecutive sequence numbers, writes one WAL
//! record and, with the durable preset, fsyncs once (`wal_sync.rs`), then
//! inserts the group into the memtable, publishes the new sequence number
//! and acknowledges everyone. It then hands leadership to the first waiting
//! writer, so no writer leads twice in a row while others wait.
//!
//! Limits: `Options::write_queue_max` waiting writers,
//! `group_commit_batches_max` batches and `group_commit_bytes_max` bytes
//! per group, [`SCRATCH_BYTES_MAX`] kept between groups; the leader stalls
//! while `immutable_memtables_max` memtables wait for flush or L0 holds
//! `l0_stop_writes_trigger` tables.

use crate::batch::{decode_group, encode_group, WriteBatch};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::key::SeqNo;
use crate::lock::lock;
use crate::memtable::{MemKey, MemTable};
use crate::stats::add;
use crate::write_queue::{LeaderMsg, Turn};
use bytes::Bytes;
use std::sync::atomic::Ordering;

/// Largest encode buffer kept between groups (bigger ones are freed).
const SCRATCH_BYTES_MAX: usize = 1 << 20;

impl Engine {
    /// The engine's own limits on a batch: key, value and batch sizes, and
    /// no empty key.
    pub(crate) fn check_limits(&self, batch: &WriteBatch) -> Result<()> {
        let (key_bytes, value_bytes) = batch.longest_key_and_value_bytes();
        if key_bytes as u64 > self.opts.key_bytes_max {
            return Err(Error::KeyTooLarge {
                len: key_bytes,
                max: self.opts.key_bytes_max as usize,
            });
        }
        if value_bytes as u64 > self.opts.value_bytes_max {
            return Err(Error::ValueTooLarge {
                len: value_bytes,
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
    pub(crate) async fn commit(&self, batch: WriteBatch, rotate: bool) -> Result<()> {
        let rx = match self.enqueue(batch, rotate, false).await {
            Turn::Lead(b) => return self.lead(Some((b, rotate))).await,
            Turn::Wait(rx) => rx,
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

    /// Takes leadership or a place in the queue, waiting while the queue is
    /// full (each such wait counts as a stall).
    async fn enqueue(&self, mut batch: WriteBatch, rotate: bool, exclusive: bool) -> Turn {
        loop {
            let notified = self.queue_space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let queued =
                lock(&self.queue).enqueue(batch, rotate, exclusive, self.opts.write_queue_max);
            match queued {
                Ok(turn) => return turn,
                Err(b) => {
                    // The queue is full: wait for a group to take some of it.
                    batch = b;
                    add(&self.stats.stalls, 1);
                    notified.await;
                }
            }
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
        if let Turn::Wait(rx) = self.enqueue(WriteBatch::new(), false, true).await {
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
        self.as_leader(work).await
    }

    /// Leads one group: `own` is the leader's batch when it did not queue;
    /// otherwise its batch is at the front of the queue.
    async fn lead(&self, own: Option<(WriteBatch, bool)>) -> Result<()> {
        self.as_leader(self.lead_one_group(own)).await
    }

    /// Runs `work` holding leadership, then hands it on; if `work` is
    /// dropped halfway, [`LeaderGuard`] stops writes and releases the queue.
    async fn as_leader<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let mut guard = LeaderGuard {
            engine: self,
            armed: true,
        };
        let result = work.await;
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
        let group = lock(&self.queue).take_group(
            own,
            self.opts.group_commit_batches_max,
            self.opts.group_commit_bytes_max,
        );
        if group.txs.len() > 1 {
            // Writers blocked on a full queue can only exist if it held some.
            self.queue_space.notify_waiters();
        }
        let result = self.commit_group(&group.batches, group.rotate).await;
        for tx in group.txs.into_iter().skip(1).flatten() {
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
                debug_assert_group_seqs(&payload, base, count);
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
        if rotate && lock(&self.writer_view).mem.has_content() {
            self.switch_memtable()?;
        }
        Ok(())
    }

    /// Inserts a group's entries into the active memtable (all entries share
    /// one allocation); true if the memtable is now full.
    fn insert_group(&self, batches: &[WriteBatch], base: SeqNo) -> bool {
        let total: usize = batches
            .iter()
            .map(|b| b.encoded_len() + 8 * b.count() as usize)
            .sum();
        let mem = lock(&self.writer_view).mem.clone();
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
        mem.insert_sorted(&mut entries);
        mem.approx_bytes() >= self.opts.memtable_bytes
    }

    /// Records the last applied marker of the group in the active memtable.
    fn set_marker(&self, batches: &[WriteBatch]) {
        if let Some(m) = batches.iter().rev().find_map(|b| b.applied_marker()) {
            lock(&self.writer_view).mem.set_applied_marker(m);
        }
    }

    /// Stalls the leader (and so every writer) while too many memtables wait
    /// for flush or L0 has too many tables.
    async fn wait_for_room(&self) -> Result<()> {
        if self.has_room() {
            return Ok(());
        }
        let mut stalled_since: Option<tokio::time::Instant> = None;
        self.wait_for_views(
            || {
                if self.closed.load(Ordering::SeqCst) && self.shutdown.load(Ordering::SeqCst) {
                    return Some(Err(Error::Closed));
                }
                let (imms, l0) = {
                    let st = lock(&self.writer_view);
                    (st.imms.len() as u64, st.version.levels[0].len() as u64)
                };
                if imms < self.opts.immutable_memtables_max && l0 < self.opts.l0_stop_writes_trigger
                {
                    if let Some(t) = stalled_since {
                        add(&self.stats.stall_us, t.elapsed().as_micros() as u64);
                    }
                    return Some(Ok(()));
                }
                if stalled_since.is_none() {
                    stalled_since = Some(tokio::time::Instant::now());
                    add(&self.stats.stalls, 1);
                    tracing::debug!(imms, l0, "write stall");
                }
                None
            },
            || {
                self.flush_wanted.notify_one();
                self.compaction_wanted.notify_one();
            },
        )
        .await
    }

    fn has_room(&self) -> bool {
        let st = lock(&self.writer_view);
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
        let mut st = lock(&self.writer_view);
        let old = std::mem::replace(&mut st.mem, MemTable::new(segment));
        st.imms.push_back(old);
        self.publish_read_view(&st);
        drop(st);
        self.flush_wanted.notify_one();
        Ok(())
    }
}

/// The write side of the pair with recovery's check: the group about to be
/// written reads back as `count` entries numbered `base`, `base + 1`, ...
/// (strictly increasing, none skipped). Debug builds only.
fn debug_assert_group_seqs(payload: &[u8], base: SeqNo, count: u64) {
    if cfg!(debug_assertions) {
        let group = decode_group(payload);
        debug_assert!(group.is_some(), "an encoded write group does not decode");
        if let Some(group) = group {
            let seqs: Vec<SeqNo> = group.entries().map(|(seq, _)| seq).collect();
            debug_assert!(
                seqs.len() as u64 == count
                    && seqs.first() == Some(&base)
                    && seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "a write group's sequence numbers are not {base}.. in steps of one: {seqs:?}"
            );
        }
    }
}

/// The error every writer gets once a leader was cancelled mid-commit.
fn leader_cancelled() -> Error {
    Error::WritesStopped {
        op: "group commit",
        reason: "the leading writer was cancelled in the middle of a commit".into(),
    }
}

/// Keeps the group commit from wedging if the leading writer's future is
/// dropped mid-group (only possible at its fsync pause, under simulation):
/// the WAL's state is then unknown, so writes stop, and leadership passes on
/// so that queued writers get that error instead of waiting forever.
struct LeaderGuard<'a> {
    engine: &'a Engine,
    armed: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.engine.stop_writes("group commit", &leader_cancelled());
        let mut q = lock(&self.engine.queue);
        for w in q.waiters.drain(..) {
            if let Some(tx) = w.tx {
                let _ = tx.send(LeaderMsg::Done(Err(leader_cancelled())));
            }
        }
        q.leader_active = false;
    }
}
