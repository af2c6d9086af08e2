//! The store itself: [`LogStore`] (openraft's one writer), [`LogReader`]
//! (replication's readers), their public operations (append by policy,
//! read, vote, truncate, purge, the committed log id) and openraft's
//! [`RaftLogStorage`] and [`RaftLogReader`] on top of them.

use super::applied::{AppliedIndex, DurableAcks};
use super::state::Shared;
use super::sync::{flusher, Flush, LogSyncer, FLUSHES_QUEUED_MAX};
use crate::codec::{self, encode_commit_record};
use crate::error::{Error, Result};
use crate::meta::{self, Meta};
use crate::planted::{NodeBug, Planted};
use crate::typ::{Entry, LogId, TypeConfig, Vote};
use ballast_storage::fs::{self, IoOp};
use ballast_storage::FsyncPolicy;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use std::fmt::{self, Debug};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The Raft log store. Deliberately not `Clone`: openraft owns the one
/// writer, and its read-modify-write of the meta file assumes no other.
/// Readers come from [`LogStore::reader`].
pub struct LogStore {
    pub(super) shared: Arc<Shared>,
    /// Where openraft's appends (durable policy) wait for their fsync;
    /// started by the first such append.
    pub(super) flusher: Option<mpsc::Sender<Flush>>,
}

/// A reader of the log, for openraft's replication tasks. Shares the log
/// with the [`LogStore`] that made it.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl Debug for LogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogReader")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl LogStore {
    /// Writes `entries` and has the flusher fsync them and call
    /// `callback` (the durable policy's openraft append). It returns once
    /// the entries are written to the OS and readable, so openraft
    /// replicates them while the fsync runs; appends that queue up
    /// meanwhile share the next fsync. The flusher is a task: it blocks
    /// its runtime thread for the fsync and starts no thread of its own
    /// (measured no slower than tokio's blocking pool on 2 cores, and what
    /// the simulation needs).
    async fn append_then_flush(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<()> {
        let written = self.add_entries(entries);
        if written.is_ok() {
            fs::pause(&*self.shared.fs, IoOp::Write).await;
        }
        let written = written.and_then(|()| {
            let mut inner = self.shared.lock()?;
            let ticket = inner.wal.begin_sync().map_err(|e| inner.stop(e.into()))?;
            Ok((ticket, inner.durable_mark()))
        });
        let (ticket, acked) = match written {
            Ok(written) => written,
            Err(e) => {
                callback.io_completed(Err(io::Error::other(e.to_string())));
                return Err(e);
            }
        };
        let shared = &self.shared;
        let tx = self.flusher.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(FLUSHES_QUEUED_MAX);
            tokio::spawn(flusher(Arc::downgrade(shared), rx));
            tx
        });
        if let Err(mpsc::error::SendError((_, callback, _))) =
            tx.send((ticket, callback, acked)).await
        {
            let e = Error::Stopped("the log store's flusher stopped".into());
            callback.io_completed(Err(io::Error::other(e.to_string())));
            return Err(e);
        }
        Ok(())
    }

    /// What this store acknowledged as durable (see [`DurableAcks`]).
    pub fn durable_acks(&self) -> Result<DurableAcks> {
        Ok(self.shared.lock()?.durable_acks.clone())
    }

    /// A handle that makes the log durable on demand.
    pub fn syncer(&self) -> LogSyncer {
        LogSyncer {
            shared: self.shared.clone(),
        }
    }

    /// The sync policy the store runs with.
    pub fn sync_policy(&self) -> FsyncPolicy {
        self.shared.policy
    }

    /// Whether every appended entry is durable (nothing buffered, nothing
    /// written since the last fsync).
    pub fn is_synced(&self) -> Result<bool> {
        let inner = self.shared.lock()?;
        Ok(inner.wal.pending_bytes() == 0 && inner.wal.is_synced())
    }

    /// Appends `entries` following the store's [`FsyncPolicy`]: returns
    /// once they are durable (durable preset), written to the OS
    /// (balanced), or buffered (throughput).
    pub async fn append_by_policy(&self, entries: impl IntoIterator<Item = Entry>) -> Result<()> {
        let buffer_bytes = match self.shared.policy {
            FsyncPolicy::Group => return self.append_durably(entries).await,
            FsyncPolicy::Interval { .. } => 0,
            FsyncPolicy::WriteBack { buffer_bytes, .. } => buffer_bytes,
        };
        self.add_entries(entries)?;
        let full = {
            let inner = self.shared.lock()?;
            inner.wal.pending_bytes() as u64 > buffer_bytes
        };
        if full {
            fs::pause(&*self.shared.fs, IoOp::Write).await;
            self.shared.write_to_os().await?;
        }
        Ok(())
    }

    /// A reader sharing this log.
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    /// The log state: last purged and last log ids.
    pub fn log_state(&self) -> Result<LogState<TypeConfig>> {
        let inner = self.shared.lock()?;
        Ok(LogState {
            last_purged_log_id: inner.meta.last_purged,
            last_log_id: inner.last_log_id(),
        })
    }

    /// The saved vote.
    pub fn vote(&self) -> Result<Option<Vote>> {
        Ok(self.shared.lock()?.meta.vote)
    }

    /// Entries with log index in `range`, clamped to the live log.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>> {
        let (start, end) = bounds(range);
        self.shared.read_range(start, end)
    }

    /// The segment made ready for the next roll, if one is (for tests and
    /// diagnostics).
    pub fn prepared_segment(&self) -> Result<Option<u64>> {
        Ok(self.shared.lock()?.wal.prepared_segment())
    }

    /// The WAL segment numbers on disk (for tests and diagnostics).
    pub fn segments(&self) -> Result<Vec<u64>> {
        Ok(self.shared.lock()?.wal.segments()?)
    }

    /// Durably saves `vote` (meta file replaced and directory fsynced).
    pub async fn save_vote_durably(&self, vote: &Vote) -> Result<()> {
        let mut next = {
            let inner = self.shared.lock()?;
            inner.check()?;
            inner.meta
        };
        next.vote = Some(*vote);
        self.store_meta(next).await
    }

    async fn store_meta(&self, next: Meta) -> Result<()> {
        let durable = {
            let inner = self.shared.lock()?;
            !(inner.planted.has(NodeBug::VoteNotFsynced) && inner.meta.vote != next.vote)
        };
        let r = meta::store_with(&*self.shared.fs, &self.shared.dir, &next, durable).await;
        let mut inner = self.shared.lock()?;
        match r {
            Ok(()) => {
                if let Some(vote) = next.vote {
                    inner.durable_acks.vote_saved(vote);
                }
                inner.meta = next;
                Ok(())
            }
            // The old or the new content may be on disk: stop, so that
            // nothing relies on either until a reopen reads which.
            Err(e) => Err(inner.stop(e)),
        }
    }

    /// Appends `entries` (their indexes must continue the log), writes them
    /// with one write and makes them durable with one fsync. Returns once
    /// they are durable.
    pub async fn append_durably(&self, entries: impl IntoIterator<Item = Entry>) -> Result<()> {
        self.add_entries(entries)?;
        fs::pause(&*self.shared.fs, IoOp::Write).await;
        self.shared.sync_now().await
    }

    /// Adds `entries` (their indexes must continue the log) to the index
    /// and the WAL's buffer.
    fn add_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<()> {
        let mut inner = self.shared.lock()?;
        inner.check()?;
        let mut buf = Vec::new();
        for (n, entry) in entries.into_iter().enumerate() {
            if let Some(want) = inner.next_index() {
                if entry.log_id.index != want {
                    let e = Error::Misuse(format!(
                        "append of {} where index {want} was expected",
                        entry.log_id
                    ));
                    // Entries added before this one in the same call are
                    // already in the index and the WAL buffer: stop.
                    // Otherwise nothing changed and the store goes on.
                    return Err(if n == 0 { e } else { inner.stop(e) });
                }
            }
            buf.clear();
            codec::encode_entry(&mut buf, &entry);
            let pos = match inner.wal.add_record(&buf) {
                Ok(pos) => pos,
                Err(e) => return Err(inner.stop(e.into())),
            };
            inner.push(&entry.log_id, pos);
        }
        if inner.wal.segment_to_prepare().is_some() {
            self.shared.prepare.notify_one();
        }
        Ok(())
    }

    /// Removes every entry after `last` (all of them for `None`).
    ///
    /// Refuses with [`Error::TruncateBelowApplied`], and stops the store
    /// (after an fsync of everything appended, so that a relaxed preset's
    /// acknowledged appends survive), if that would remove an entry the
    /// state machine already applied
    /// (see [`LogStore::set_applied_index`]): the node's log then conflicts
    /// with the leader's under state it already holds, and only a rebuild
    /// brings it back.
    pub async fn truncate_after_durably(&self, last: Option<LogId>) -> Result<()> {
        let Some((refusal, planted)) = self.truncate_or_refuse(last)? else {
            return Ok(());
        };
        // The store stops, and its interval fsync or write-back timer with
        // it: what a relaxed preset acknowledged from its buffer must reach
        // the disk first, or a process crash any time later would lose it.
        if !planted.has(NodeBug::StopLeavesBuffer) {
            if let Err(e) = self.shared.sync_now().await {
                tracing::error!(error = %e, "Raft log: the last fsync before stopping failed");
            }
        }
        Err(self.shared.lock()?.stop(refusal))
    }

    /// Truncates as [`LogStore::truncate_after_durably`] says, or returns
    /// the refusal (and the planted switches) without stopping yet.
    fn truncate_or_refuse(&self, last: Option<LogId>) -> Result<Option<(Error, Planted)>> {
        let mut inner = self.shared.lock()?;
        inner.check()?;
        if let (Some(k), Some(p)) = (last, inner.meta.last_purged) {
            if k.index < p.index {
                return Err(Error::Misuse(format!(
                    "truncate after {k}, below the last purged {p}"
                )));
            }
        }
        if inner.index.entries.is_empty() {
            return Ok(None);
        }
        let first = inner.index.first;
        let cut_from = last.map_or(0, |k| k.index + 1);
        let end = first + inner.index.entries.len() as u64;
        if cut_from >= end {
            return Ok(None);
        }
        let applied = inner.applied.as_ref().and_then(AppliedIndex::get);
        if let Some(applied) = applied.filter(|&a| a >= cut_from) {
            if !inner.planted.has(NodeBug::TruncateBelowApplied) {
                let e = Error::TruncateBelowApplied {
                    applied,
                    truncate_from: cut_from,
                };
                tracing::error!(error = %e, "Raft log: refusing a truncation below the applied index; the log stops");
                return Ok(Some((e, inner.planted)));
            }
        }
        let cut = if cut_from > first {
            let keep = (cut_from - first) as usize;
            let (_, pos) = inner.index.entries[keep - 1];
            inner.wal.truncate_after(pos).map(|()| keep)
        } else {
            // Every live entry goes, and there may be no record before them
            // to cut after (they follow a purge, or start the log): cut
            // right before the first one, as recovery cuts a torn tail.
            let (_, pos) = inner.index.entries[0];
            inner.wal.truncate_before(pos).map(|()| 0)
        };
        match cut {
            Ok(keep) => inner.index.entries.truncate(keep),
            Err(e) => return Err(inner.stop(e.into())),
        }
        inner.durable_acks.truncated(cut_from.checked_sub(1));
        tracing::debug!(
            from = cut_from,
            removed = end - cut_from,
            "Raft log: truncated"
        );
        // Commit records after the cut went with it.
        if inner.committed.is_some_and(|c| c.index >= cut_from) {
            inner.committed = None;
        }
        if inner.wal.segment_to_prepare().is_some() {
            self.shared.prepare.notify_one();
        }
        Ok(None)
    }

    /// Saves `committed` (openraft's `save_committed`) without an fsync: a
    /// commit record is added to the WAL stream right after the entries it
    /// covers and becomes durable with them, by the next append's or the
    /// timer's fsync (see `FORMAT-raftlog.md`). Under the durable and
    /// balanced policies the record is also written to the OS at once (one
    /// small write, no fsync), so a process crash keeps it; under
    /// throughput it waits in the write-back buffer. A committed log id the
    /// log does not hold (never expected) is kept in memory only, so the
    /// persisted one never names an entry beyond the durable log.
    pub async fn save_committed_log_id(&self, committed: Option<LogId>) -> Result<()> {
        let mut inner = self.shared.lock()?;
        inner.check()?;
        inner.committed = committed;
        let Some(c) = committed else {
            return Ok(());
        };
        if !inner.holds(&c) {
            tracing::debug!(committed = %c, "Raft log: committed log id not in the log; not persisted");
            return Ok(());
        }
        if let Err(e) = inner.wal.add_record(&encode_commit_record(&c)) {
            return Err(inner.stop(e.into()));
        }
        // A pending roll seal would cost an fsync here, on openraft's
        // apply path: leave the record buffered then; the next append or
        // sync writes it after the seal.
        let write_back = matches!(self.shared.policy, FsyncPolicy::WriteBack { .. });
        if !write_back && inner.wal.seal_ticket().is_none() {
            if let Err(e) = inner.wal.write_pending() {
                return Err(inner.stop(e.into()));
            }
        }
        if inner.wal.segment_to_prepare().is_some() {
            self.shared.prepare.notify_one();
        }
        Ok(())
    }

    /// The last committed log id saved by
    /// [`LogStore::save_committed_log_id`], or recovered at open.
    pub fn committed_log_id(&self) -> Result<Option<LogId>> {
        Ok(self.shared.lock()?.committed)
    }

    /// Shares the state machine's applied index with the store, so that it
    /// refuses to truncate applied entries (see
    /// [`LogStore::truncate_after_durably`]).
    pub fn set_applied_index(&self, applied: AppliedIndex) -> Result<()> {
        self.shared.lock()?.applied = Some(applied);
        Ok(())
    }

    /// Sets the planted bugs this store runs with (see
    /// [`crate::planted`]): `TruncateBelowApplied` lets a truncation cut
    /// applied entries, `SyncTicketBySegment` keys sync tickets by segment
    /// number, `AckBeforeLogFsync` acknowledges durable appends unsynced,
    /// `VoteNotFsynced` saves votes without fsyncs, `TruncationNotDurable`
    /// truncates without them. Call it before the first append.
    pub fn set_planted(&self, planted: Planted) -> Result<()> {
        let mut inner = self.shared.lock()?;
        inner.planted = planted;
        #[cfg(feature = "planted-bugs")]
        if planted.has(NodeBug::SyncTicketBySegment) {
            inner.wal.plant_sync_ticket_by_segment();
        }
        #[cfg(feature = "planted-bugs")]
        if planted.has(NodeBug::TruncationNotDurable) {
            inner.wal.plant_truncation_not_durable();
        }
        Ok(())
    }

    /// Purges every entry up to and including `upto`: the last purged log
    /// id is made durable first, then whole segments holding only purged
    /// entries are removed (a crash in between leaves purged records that
    /// the next open skips).
    pub async fn purge_durably(&self, upto: LogId) -> Result<()> {
        let mut next = {
            let inner = self.shared.lock()?;
            inner.check()?;
            if inner
                .meta
                .last_purged
                .is_some_and(|p| p.index >= upto.index)
            {
                return Ok(());
            }
            if !inner.index.entries.is_empty() && upto.index + 1 < inner.index.first {
                // The log would then claim entries between `upto` and its
                // first live entry that it never had; the next open would
                // find that hole and refuse.
                return Err(Error::Misuse(format!(
                    "purge up to {upto} leaves a hole before the first live entry {}",
                    inner.index.first
                )));
            }
            inner.meta
        };
        next.last_purged = Some(upto);
        self.store_meta(next).await?;
        fs::pause(&*self.shared.fs, IoOp::Metadata).await;
        let mut inner = self.shared.lock()?;
        let drop_n = if inner.index.entries.is_empty() || upto.index < inner.index.first {
            0
        } else {
            ((upto.index - inner.index.first + 1) as usize).min(inner.index.entries.len())
        };
        inner.index.entries.drain(..drop_n);
        // Checked above: the first live entry (if any) is now `upto + 1`.
        inner.index.first = upto.index + 1;
        let keep_segment = match inner.index.entries.front() {
            Some((_, pos)) => pos.segment,
            None => inner.wal.current_segment(),
        };
        // Removal failures do not endanger the log (the segments only hold
        // purged records); report them and let the next purge retry.
        inner.wal.remove_segments_below(keep_segment)?;
        Ok(())
    }
}

/// `[start, end)` of a range of log indexes.
fn bounds(range: impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(range);
        Ok(self.shared.read_range(start, end)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.lock()?.meta.vote)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.entries(range)?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.vote()?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        Ok(self.log_state()?)
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        Ok(self.save_vote_durably(vote).await?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        Ok(self.save_committed_log_id(committed).await?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        // The planted stale-read bug needs openraft to restart without the
        // committed index, as before it was persisted.
        if self
            .shared
            .lock()?
            .planted
            .has(NodeBug::LeaderRestoreUnpersistedCommit)
        {
            return Ok(None);
        }
        Ok(self.committed_log_id()?)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        if self.shared.policy == FsyncPolicy::Group {
            if self.shared.lock()?.planted.has(NodeBug::AckBeforeLogFsync) {
                // Membership stays durable, so that what a power cut shows
                // is lost writes, not a cluster that forgot its voters.
                let entries: Vec<Entry> = entries.into_iter().collect();
                if entries
                    .iter()
                    .any(|e| matches!(e.payload, openraft::EntryPayload::Membership(_)))
                {
                    return Ok(self.append_then_flush(entries, callback).await?);
                }
                let written = self.add_entries(entries);
                let answer = match &written {
                    Ok(()) => {
                        // Told durable: recorded as such (what the cluster
                        // simulation checks after a power loss).
                        if let Some((acks, epoch, index)) = self.shared.lock()?.durable_mark() {
                            acks.acknowledged(epoch, index);
                        }
                        Ok(())
                    }
                    Err(e) => Err(io::Error::other(e.to_string())),
                };
                callback.io_completed(answer);
                return Ok(written?);
            }
            return Ok(self.append_then_flush(entries, callback).await?);
        }
        // A membership entry is the cluster's manifest: durable before it
        // is acknowledged in every preset, like the vote. A relaxed preset
        // that lost it with the rest of an unsynced log would come back
        // from a cluster-wide power loss knowing no voters, and could never
        // elect a leader again. Membership changes are rare: one fsync each.
        let entries: Vec<Entry> = entries.into_iter().collect();
        let membership = entries
            .iter()
            .any(|e| matches!(e.payload, openraft::EntryPayload::Membership(_)));
        let appended = if membership {
            self.append_durably(entries).await
        } else {
            self.append_by_policy(entries).await
        };
        match appended {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                callback.io_completed(Err(io::Error::other(msg)));
                Err(e.into())
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        Ok(self.truncate_after_durably(last_log_id).await?)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        Ok(self.purge_durably(log_id).await?)
    }
}
