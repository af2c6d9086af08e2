//! Building a snapshot: an engine checkpoint (a flush, so the applied
//! state is durable up to the snapshot before openraft purges the log
//! behind it, then hard links of the tables) into a fresh directory of the
//! [`SnapshotStore`], with its descriptor.

use super::snapshot_store::{lock_store, SnapshotStore};
use crate::codec::marker::{decode_marker, marker_error};
use crate::error::{Error, Result};
use crate::snapshot::{file_crc, Descriptor, Snapshot, SnapshotData, SnapshotFile};
use crate::typ::{SnapshotMeta, TypeConfig};
use ballast_storage::fs as sfs;
use ballast_storage::Db;
use openraft::storage::RaftSnapshotBuilder;
use openraft::StoredMembership;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Builds a snapshot: an engine checkpoint at the applied state of the
/// moment it runs (openraft runs it beside apply).
pub struct SnapshotBuilder {
    pub(super) db: Arc<Db>,
    pub(super) snapshots: Arc<Mutex<SnapshotStore>>,
}

impl SnapshotBuilder {
    /// Checkpoints the engine into `dir` and writes the descriptor.
    async fn build_into(&self, dir: &Path) -> Result<SnapshotData> {
        let cp = self.db.checkpoint(dir).await?;
        let (last_log_id, last_membership) = match &cp.applied_marker {
            None => (None, StoredMembership::default()),
            Some(m) => decode_marker(m).map_err(|d| marker_error(dir, d))?,
        };
        let fs = lock_store(&self.snapshots).fs.clone();
        let mut files = Vec::with_capacity(cp.tables.len());
        for t in &cp.tables {
            let path = cp.table_path(t);
            let crc32 = file_crc(&fs, &path, t.size).map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
            files.push(SnapshotFile {
                name: ballast_storage::filename::table_file_name(t.number),
                level: t.level,
                len: t.size,
                crc32,
                smallest: t.smallest.clone(),
                largest: t.largest.clone(),
                smallest_seq: t.smallest_seq,
                largest_seq: t.largest_seq,
            });
        }
        let descriptor = Descriptor {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
            },
            max_seq: cp.max_seq,
            files,
        };
        SnapshotData::create(fs, dir, descriptor).map_err(|e| Error::Io {
            path: dir.to_path_buf(),
            source: e,
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (fs, dir) = {
            let mut store = lock_store(&self.snapshots);
            (store.fs.clone(), store.new_dir())
        };
        // The checkpoint flushes first: the applied state is durable up to
        // (at least) the snapshot before openraft may purge the log.
        let data = match self.build_into(&dir).await {
            Ok(data) => data,
            Err(e) => {
                if let Err(rm) = sfs::remove_dir_with_files(&*fs, &dir) {
                    tracing::warn!(dir = %dir.display(), error = %rm, "could not remove a failed snapshot");
                }
                return Err(e.into());
            }
        };
        tracing::info!(
            dir = %dir.display(),
            last_log_id = ?data.meta().last_log_id,
            files = data.descriptor().files.len(),
            bytes = data.descriptor().files_len(),
            "snapshot built"
        );
        lock_store(&self.snapshots).offer(data.clone(), false);
        Ok(Snapshot {
            meta: data.meta().clone(),
            snapshot: data,
        })
    }
}
