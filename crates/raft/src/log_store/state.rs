//! What the log store, its readers and its syncer share ([`Shared`]): the
//! sync policy, the file system, and the [`StoreState`] behind the store's
//! lock (the WAL, the index, the meta file's content). Also the unlocked
//! paths every fsync of the log runs through: the lock is held to begin and
//! to finish a sync, never during it, so readers (replication, apply) and
//! appends go on meanwhile.

use super::applied::AppliedIndex;
use super::index::Index;
use crate::codec::{self, DecodeError};
use crate::error::{Error, Result};
use crate::meta::Meta;
use crate::planted::Planted;
use crate::typ::{Entry, LogId};
use ballast_storage::fs::{self, DynFile, DynFs, IoOp};
use ballast_storage::wal::{segment_path, RecordPos, SyncTicket, Wal, WalOptions};
use ballast_storage::FsyncPolicy;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// What the store, its readers and its syncer share.
pub(super) struct Shared {
    pub(super) policy: FsyncPolicy,
    pub(super) fs: DynFs,
    pub(super) dir: PathBuf,
    pub(super) wal_dir: PathBuf,
    pub(super) wal_options: WalOptions,
    pub(super) inner: Mutex<StoreState>,
    /// Wakes the segment preparer: after a roll used its segment, after a
    /// truncation moved the log, and when the store is dropped.
    pub(super) prepare: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The preparer holds no reference while it waits: wake it so that
        // it sees the store is gone and ends.
        self.prepare.notify_one();
    }
}

/// What the store's lock guards.
pub(super) struct StoreState {
    pub(super) wal: Wal,
    /// Where each live entry is.
    pub(super) index: Index,
    /// The durable meta file's content.
    pub(super) meta: Meta,
    /// Set after a failed durability step: the store refuses everything.
    pub(super) stopped: Option<String>,
    /// The last committed log id openraft saved (its durable copy is the
    /// last commit record in the WAL stream).
    pub(super) committed: Option<LogId>,
    /// The state machine's applied index, once the node shares it.
    pub(super) applied: Option<AppliedIndex>,
    /// Planted bugs this store runs with.
    pub(super) planted: Planted,
    /// What the store acknowledged as durable.
    pub(super) durable_acks: super::applied::DurableAcks,
    /// Held for the life of the store.
    pub(super) _lock: Option<DynFile>,
}

impl StoreState {
    pub(super) fn check(&self) -> Result<()> {
        match &self.stopped {
            None => Ok(()),
            Some(why) => Err(Error::Stopped(why.clone())),
        }
    }

    pub(super) fn stop(&mut self, e: Error) -> Error {
        if self.stopped.is_none() {
            self.stopped = Some(e.to_string());
        }
        e
    }

    pub(super) fn last_log_id(&self) -> Option<LogId> {
        self.index.last_log_id(self.meta.last_purged)
    }

    /// What acknowledging every entry appended so far as durable records
    /// in [`super::DurableAcks`] (taken under the lock, so that the epoch
    /// and the last index belong together).
    pub(super) fn durable_mark(&self) -> super::applied::Acked {
        self.last_log_id().map(|l| {
            let epoch = self.durable_acks.epoch();
            (self.durable_acks.clone(), epoch, l.index)
        })
    }

    /// The log index the next appended entry must have, if constrained.
    pub(super) fn next_index(&self) -> Option<u64> {
        self.index
            .next_index(self.meta.last_purged.map(|p| p.index))
    }

    /// True if `c` names an entry this log holds (or purged): a commit
    /// record for it may follow the entries in the WAL stream.
    pub(super) fn holds(&self, c: &LogId) -> bool {
        self.index.holds(c, self.meta.last_purged.map(|p| p.index))
    }

    pub(super) fn push(&mut self, log_id: &LogId, pos: RecordPos) {
        self.index.push(log_id, pos);
    }
}

impl Shared {
    /// Writes what is buffered and fsyncs it. The fsync runs without the
    /// lock, so that readers (replication to the followers, apply) go on
    /// meanwhile: the followers' fsyncs overlap the leader's instead of
    /// following it.
    pub(super) async fn sync_now(&self) -> Result<()> {
        let ticket = {
            let mut inner = self.lock()?;
            inner.check()?;
            inner.wal.begin_sync().map_err(|e| inner.stop(e.into()))?
        };
        match ticket {
            Some(ticket) => sync_ticket(self, ticket).await,
            None => Ok(()),
        }
    }

    /// Writes what is buffered to the OS (no fsync). If a roll's seal is
    /// pending, it runs first, without the lock: the new segment's bytes
    /// may reach the OS only after the old segment is durable.
    pub(super) async fn write_to_os(&self) -> Result<()> {
        loop {
            let seal = {
                let mut inner = self.lock()?;
                inner.check()?;
                match inner.wal.seal_ticket() {
                    None => return inner.wal.write_pending().map_err(|e| inner.stop(e.into())),
                    Some(t) => t,
                }
            };
            fs::pause(&*self.fs, IoOp::Sync).await;
            let sealed = seal.sync();
            let mut inner = self.lock()?;
            inner
                .wal
                .finish_sync(seal, sealed)
                .map_err(|e| inner.stop(e.into()))?;
        }
    }

    pub(super) fn lock(&self) -> Result<MutexGuard<'_, StoreState>> {
        // A panic while the lock was held may have left the index half
        // updated: refuse rather than serve it.
        self.inner
            .lock()
            .map_err(|_| Error::Stopped("a panic poisoned the log store's lock".into()))
    }

    /// Reads and decodes entries `[start, end)` (clamped to the log).
    pub(super) fn read_range(&self, start: u64, end: u64) -> Result<Vec<Entry>> {
        let inner = self.lock()?;
        if inner.index.entries.is_empty() {
            return Ok(Vec::new());
        }
        let first = inner.index.first;
        let last_excl = first + inner.index.entries.len() as u64;
        let (s, e) = (start.max(first), end.min(last_excl));
        let mut out = Vec::with_capacity(e.saturating_sub(s) as usize);
        for i in s..e {
            let (leader, pos) = inner.index.entries[(i - first) as usize];
            let bytes = inner.wal.read_record(pos)?;
            let entry = codec::decode_entry(&bytes).map_err(|d| self.decode_error(pos, d))?;
            // Paired with the check in `append`: the record must be the
            // entry the index says it is.
            let expected = LogId::new(leader, i);
            if entry.log_id != expected {
                return Err(Error::corrupt(
                    segment_path(&self.wal_dir, pos.segment),
                    format!(
                        "record at offset {} holds {} where the index expects {}",
                        pos.offset, entry.log_id, expected
                    ),
                ));
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn decode_error(&self, pos: RecordPos, d: DecodeError) -> Error {
        let path = segment_path(&self.wal_dir, pos.segment);
        match d {
            DecodeError::Version(v) => Error::UnsupportedFormat {
                path,
                found: u32::from(v),
                supported: u32::from(codec::ENTRY_FORMAT_VERSION),
            },
            DecodeError::Malformed(why) => {
                Error::corrupt(path, format!("entry at offset {}: {why}", pos.offset))
            }
        }
    }
}

/// Runs `ticket` without the lock and records its outcome. A ticket that
/// only sealed a rolled segment is followed by the sync it stood in for
/// (the new segment's bytes are written and fsynced then).
pub(super) async fn sync_ticket(shared: &Shared, mut ticket: SyncTicket) -> Result<()> {
    loop {
        fs::pause(&*shared.fs, IoOp::Sync).await;
        let synced = ticket.sync();
        let again = ticket.seals_only();
        let mut inner = shared.lock()?;
        inner
            .wal
            .finish_sync(ticket, synced)
            .map_err(|e| inner.stop(e.into()))?;
        if !again {
            return Ok(());
        }
        match inner.wal.begin_sync().map_err(|e| inner.stop(e.into()))? {
            Some(next) => ticket = next,
            None => return Ok(()),
        }
    }
}
