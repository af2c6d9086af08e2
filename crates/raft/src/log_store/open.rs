//! Opening the log store: recovery. Loads the meta file, replays the WAL
//! segments to rebuild the [`Index`] and the committed log id (cutting a
//! torn tail of unacknowledged entries), takes the directory's lock, and
//! starts the store's tasks (the segment preparer, and the relaxed
//! presets' timer).
//!
//! Limits: a sync interval of 0 ms is refused; a hole in the log, damage
//! before the last segment holding data, or an entry of a newer format
//! stops the open.

use super::index::Index;
use super::state::{Shared, StoreState};
use super::store::LogStore;
use super::sync::{preparer, sync_timer};
use crate::codec::{self, decode_commit_record, COMMIT_RECORD_KIND};
use crate::error::{Error, Result};
use crate::meta;
use crate::planted::Planted;
use crate::typ::LogId;
use ballast_storage::fs::{self, DynFs};
use ballast_storage::wal::{self, segment_path, RecoveryReport, TailPolicy, Wal, WalOptions};
use ballast_storage::FsyncPolicy;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Name of the WAL directory inside the log store's directory.
pub const LOG_DIR: &str = "log";
/// Name of the lock file inside the log store's directory.
pub const LOCK_FILE: &str = "LOCK";

/// What [`LogStore::open`] found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The WAL's recovery report (records read, torn tail cut, ...).
    pub wal: RecoveryReport,
    /// Records skipped because they were at or below the last purged log
    /// id (purge keeps whole segments).
    pub purged_records_skipped: u64,
    /// Live entries in the log after opening.
    pub entries: u64,
    /// The committed log id recovered from the last surviving commit
    /// record (see [`LogStore::save_committed_log_id`]).
    pub committed: Option<LogId>,
    /// Commit records ignored because they named an entry that was not in
    /// the log before them (never written so; counted, not fatal: the
    /// committed log id only falls back).
    pub commit_records_ignored: u64,
}

impl LogStore {
    /// Opens (or creates) the log store in `dir` on the file system `fs`:
    /// loads the meta file, replays the WAL segments to rebuild the index
    /// (cutting a torn tail, see below), and starts a new segment.
    ///
    /// Torn tails: one append writes all its entries with one write before
    /// its fsync, and a power loss may persist a later sector of that write
    /// and lose an earlier one. So recovery reads the last segment holding
    /// data point-in-time ([`TailPolicy::PointInTime`]): from its first bad
    /// record on, everything is cut. Entries cut that way were never
    /// acknowledged (their fsync had not returned). Damage in any earlier
    /// segment is corruption and opening fails.
    pub async fn open(
        fs: DynFs,
        dir: &Path,
        wal_options: WalOptions,
    ) -> Result<(LogStore, OpenReport)> {
        Self::open_with_policy(fs, dir, wal_options, FsyncPolicy::Group).await
    }

    /// [`LogStore::open`] with the sync policy of a relaxed preset. A
    /// relaxed policy starts a timer task on the current tokio runtime (it
    /// ends when the store and its readers are dropped).
    pub async fn open_with_policy(
        fs: DynFs,
        dir: &Path,
        wal_options: WalOptions,
        policy: FsyncPolicy,
    ) -> Result<(LogStore, OpenReport)> {
        Self::open_planted(fs, dir, wal_options, policy, Planted::NONE).await
    }

    /// [`LogStore::open_with_policy`] with the planted bugs that act while
    /// opening (a node passes its own; see [`crate::planted`]).
    pub async fn open_planted(
        fs: DynFs,
        dir: &Path,
        wal_options: WalOptions,
        policy: FsyncPolicy,
        planted: Planted,
    ) -> Result<(LogStore, OpenReport)> {
        wal_options.validate()?;
        let period_ms = match policy {
            FsyncPolicy::Group => None,
            FsyncPolicy::Interval { sync_interval_ms } => Some(sync_interval_ms),
            FsyncPolicy::WriteBack {
                flush_interval_ms, ..
            } => Some(flush_interval_ms),
        };
        if period_ms == Some(0) {
            return Err(Error::Misuse(format!(
                "sync policy {policy:?}: the interval must be above 0 ms"
            )));
        }
        let wal_dir = dir.join(LOG_DIR);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        fs.create_dir_all(&wal_dir).map_err(io_err(&wal_dir))?;
        fs::sync_parent(&*fs, &wal_dir).map_err(io_err(dir))?;
        fs::sync_parent(&*fs, dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs.lock(&lock_path).map_err(|e| {
            Error::Storage(ballast_storage::Error::Locked {
                path: lock_path.clone(),
                reason: e.to_string(),
            })
        })?;
        let meta = meta::load(&*fs, dir)?;

        let mut index = Index::default();
        let mut skipped = 0;
        let mut committed: Option<LogId> = None;
        let mut commit_ignored = 0u64;
        let purged_upto = meta.last_purged.map(|p| p.index);
        let report = wal::replay_with(
            &*fs,
            &wal_dir,
            0,
            false,
            TailPolicy::PointInTime,
            |pos, payload| {
                let bad = |why: String| {
                    ballast_storage::Error::corruption(
                        segment_path(&wal_dir, pos.segment),
                        pos.offset,
                        why,
                    )
                };
                if payload.first() == Some(&COMMIT_RECORD_KIND) {
                    let c = decode_commit_record(&payload)
                        .ok_or_else(|| bad("commit record of the wrong length".into()))?;
                    // Written only after the entry it names, so the entry
                    // is in the index by now, or purged.
                    if index.holds(&c, purged_upto) {
                        committed = Some(c);
                    } else {
                        commit_ignored += 1;
                    }
                    return Ok(());
                }
                let log_id = codec::decode_log_id_only(&payload)
                    .map_err(|d| bad(format!("Raft log entry header: {d:?}")))?;
                if purged_upto.is_some_and(|p| log_id.index <= p) {
                    skipped += 1;
                    return Ok(());
                }
                if let Some(want) = index.next_index(purged_upto) {
                    if log_id.index != want {
                        return Err(bad(format!(
                            "hole in the Raft log: entry {log_id} where index {want} was expected"
                        )));
                    }
                }
                index.push(&log_id, pos);
                Ok(())
            },
        )?;
        if let Some(torn) = &report.truncated {
            tracing::warn!(
                dir = %dir.display(),
                segment = torn.segment,
                offset = torn.offset,
                bytes_dropped = torn.bytes_dropped,
                records_dropped = ?report.records_dropped,
                "Raft log ended in a torn tail of unacknowledged entries; cutting it"
            );
        }
        // Wal::open fsyncs the segments recovery read before it starts a
        // new one (a crash then a power loss could otherwise keep newer
        // entries and lose older ones: a hole the log cannot open past).
        let wal = Wal::open(fs.clone(), &wal_dir, wal_options, &report)?;
        if commit_ignored > 0 {
            tracing::warn!(
                dir = %dir.display(),
                commit_ignored,
                "Raft log: commit records naming entries not before them were ignored"
            );
        }
        let open_report = OpenReport {
            wal: report,
            purged_records_skipped: skipped,
            entries: index.entries.len() as u64,
            committed,
            commit_records_ignored: commit_ignored,
        };
        tracing::info!(
            dir = %dir.display(),
            entries = open_report.entries,
            skipped,
            vote = ?meta.vote,
            last_purged = ?meta.last_purged,
            committed = ?committed,
            "Raft log opened"
        );
        let inner = StoreState {
            wal,
            index,
            meta,
            stopped: None,
            committed,
            applied: None,
            planted,
            durable_acks: Default::default(),
            _lock: lock,
        };
        let prepare = Arc::new(Notify::new());
        let store = LogStore {
            shared: Arc::new(Shared {
                policy,
                fs,
                dir: dir.to_path_buf(),
                wal_dir,
                wal_options,
                inner: Mutex::new(inner),
                prepare: prepare.clone(),
            }),
            flusher: None,
        };
        tokio::spawn(preparer(Arc::downgrade(&store.shared), prepare));
        if let Some(ms) = period_ms {
            tokio::spawn(sync_timer(
                Arc::downgrade(&store.shared),
                std::time::Duration::from_millis(ms),
            ));
        }
        Ok((store, open_report))
    }
}
