//! The snapshots a state machine keeps on disk, under
//! `<state machine dir>/snapshots/`: the current one (the newest by last
//! log id), and the counter that names new directories. Older snapshots
//! are deleted as soon as a newer one is durable and nobody (a snapshot
//! stream to a follower) still holds them.

use crate::error::{Error, Result};
use crate::snapshot::{Snapshot, SnapshotData};
use ballast_storage::fs::{self as sfs, DynFs};
use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// The directory under the state machine's directory that holds its
/// snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";
const SNAPSHOT_PREFIX: &str = "snap-";

/// The snapshots a state machine keeps on disk: the current one, and the
/// counter that names new directories.
pub(super) struct SnapshotStore {
    pub(super) fs: DynFs,
    dir: PathBuf,
    next: u64,
    pub(super) current: Option<SnapshotData>,
}

impl SnapshotStore {
    /// Opens `dir`: keeps the newest complete snapshot (by last log id,
    /// then by directory number) and removes every other one, complete or
    /// not (nothing can be streaming right after a start).
    pub(super) fn open(fs: DynFs, dir: PathBuf) -> Result<SnapshotStore> {
        let io_err = |e: io::Error| Error::Io {
            path: dir.clone(),
            source: e,
        };
        fs.create_dir_all(&dir).map_err(io_err)?;
        sfs::sync_parent(&*fs, &dir).map_err(io_err)?;
        let mut next = 1;
        let mut best: Option<(u64, SnapshotData)> = None;
        let mut stale = Vec::new();
        for name in fs.list_dir(&dir).map_err(io_err)? {
            let Some(n) = name
                .strip_prefix(SNAPSHOT_PREFIX)
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            next = next.max(n + 1);
            let path = dir.join(&name);
            match SnapshotData::open(fs.clone(), &path) {
                Ok(data) => {
                    let newer = best.as_ref().is_none_or(|(bn, b)| {
                        (data.meta().last_log_id, n) > (b.meta().last_log_id, *bn)
                    });
                    if newer {
                        if let Some((_, old)) = best.replace((n, data)) {
                            stale.push(old.dir().to_path_buf());
                        }
                    } else {
                        stale.push(path);
                    }
                }
                Err(e) => {
                    tracing::info!(dir = %path.display(), error = %e, "removing an incomplete snapshot");
                    stale.push(path);
                }
            }
        }
        for path in stale {
            sfs::remove_dir_with_files(&*fs, &path).map_err(|e| Error::Io { path, source: e })?;
        }
        Ok(SnapshotStore {
            fs,
            dir,
            next,
            current: best.map(|(_, d)| d),
        })
    }

    /// A fresh directory path for a new snapshot.
    pub(super) fn new_dir(&mut self) -> PathBuf {
        let n = self.next;
        self.next += 1;
        self.dir.join(format!("{SNAPSHOT_PREFIX}{n:020}"))
    }

    /// Makes `data` (durable) the current snapshot if it is at least as
    /// new as the current one, or `always`; the one that loses is deleted
    /// once its last handle drops.
    pub(super) fn offer(&mut self, data: SnapshotData, always: bool) {
        let wins = always
            || self
                .current
                .as_ref()
                .is_none_or(|c| data.meta().last_log_id >= c.meta().last_log_id);
        if wins {
            if let Some(old) = self.current.replace(data) {
                old.mark_obsolete();
            }
        } else {
            data.mark_obsolete();
        }
    }

    pub(super) fn current(&self) -> Option<Snapshot> {
        self.current.as_ref().map(|d| Snapshot {
            meta: d.meta().clone(),
            snapshot: d.clone(),
        })
    }
}

pub(super) fn lock_store(m: &Mutex<SnapshotStore>) -> MutexGuard<'_, SnapshotStore> {
    // Every critical section leaves the store consistent before it could
    // panic, so a poisoned lock still guards good data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
