//! The state machine itself: opening it (the engine in replicated mode,
//! the applied marker it last flushed, the snapshots, finishing an
//! interrupted install), what it shares with the log store and the
//! proposer, and openraft's [`RaftStateMachine`] on top of
//! [`StateMachine::apply_entry`] ([`super::apply`]) and the snapshot store.

use super::snapshot_build::SnapshotBuilder;
use super::snapshot_store::{lock_store, SnapshotStore, SNAPSHOTS_DIR};
use crate::codec::marker::{decode_marker_at, marker_error};
use crate::error::{Error, Result};
use crate::log_store::AppliedIndex;
use crate::planted::{NodeBug, Planted};
use crate::snapshot::{link_snapshot, Snapshot, SnapshotData};
use crate::typ::{LogId, RequestLimits, SnapshotMeta, StoredMembershipOf, TypeConfig};
use ballast_storage::fs as sfs;
use ballast_storage::{Db, Options};
use futures_core::Stream;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{OptionalSend, StoredMembership};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The Raft handle of a ballast node: openraft over this state machine.
/// Beside the state machine rather than in [`crate::typ`], because the
/// state machine uses `typ` and an alias there would make the two import
/// each other.
pub type BallastRaft = openraft::Raft<TypeConfig, StateMachine>;

/// The state machine: the engine in replicated mode, applying entries as
/// of their proposal time, with SSTable-set snapshots (see the module docs).
pub struct StateMachine {
    pub(super) db: Arc<Db>,
    dir: PathBuf,
    pub(super) applied: Option<LogId>,
    pub(super) membership: StoredMembershipOf,
    snapshots: Arc<Mutex<SnapshotStore>>,
    pub(super) planted: Planted,
    /// The effective time of the last applied entry (see `apply_entry`),
    /// shared with the proposer, which never stamps below it.
    pub(super) applied_at_ms: Arc<AtomicU64>,
    /// The applied index, shared with the log store, which refuses to
    /// truncate below it.
    applied_index: Option<AppliedIndex>,
}

/// What the state machine shares with the leader's proposer
/// ([`crate::propose::Proposer`]), which openraft keeps apart from it.
#[derive(Debug, Clone)]
pub struct ProposeContext {
    /// The limits requests are validated against where they enter: the
    /// engine's configured key and value limits, and its batch limit for a
    /// whole request.
    pub limits: RequestLimits,
    /// The node's planted bugs.
    pub planted: Planted,
    /// The effective time of the last applied entry: the proposer stamps
    /// no entry below it, so entry times never decrease along the log.
    pub applied_at_ms: Arc<AtomicU64>,
}

impl StateMachine {
    /// Opens the engine in `dir` in replicated mode (`options.wal` is forced
    /// off), reads the applied marker it last flushed, and opens the
    /// snapshots in `dir/snapshots` (finishing an install a crash
    /// interrupted).
    pub async fn open(dir: &Path, mut options: Options) -> Result<StateMachine> {
        options.wal = false;
        // Expiry is a pure function of the applied log (see `apply_entry`).
        options.expire_by_horizon = true;
        let fs = options.fs.clone();
        let db = Db::open(dir, options).await?;
        let marker = db.applied_marker().await;
        let (applied, membership, at_ms) = match &marker {
            None => (None, StoredMembership::default(), None),
            Some(m) => decode_marker_at(m).map_err(|d| marker_error(dir, d))?,
        };
        let at_ms = at_ms.unwrap_or(0);
        db.set_expiry_horizon_ms(at_ms);
        let store = SnapshotStore::open(fs, dir.join(SNAPSHOTS_DIR))?;
        let mut sm = StateMachine {
            db: Arc::new(db),
            dir: dir.to_path_buf(),
            applied,
            membership,
            snapshots: Arc::new(Mutex::new(store)),
            planted: Planted::NONE,
            applied_at_ms: Arc::new(AtomicU64::new(at_ms)),
            applied_index: None,
        };
        let pending = lock_store(&sm.snapshots)
            .current
            .clone()
            .filter(|s| s.meta().last_log_id > sm.applied);
        if let Some(snap) = pending {
            // Only an install writes a snapshot ahead of the applied state,
            // and it makes the snapshot durable first: finish it.
            tracing::info!(
                snapshot = ?snap.meta().last_log_id,
                applied = ?sm.applied,
                "finishing a snapshot install interrupted by a restart"
            );
            sm.install_engine(&snap).await?;
        }
        tracing::info!(applied = ?sm.applied, "state machine opened");
        Ok(sm)
    }

    /// Shares the applied index with `applied` (the log store's guard
    /// against truncating applied entries), starting from the applied
    /// state found at open.
    pub fn set_applied_index(&mut self, applied: AppliedIndex) {
        if let Some(a) = self.applied {
            applied.set(a.index);
        }
        self.applied_index = Some(applied);
    }

    pub(super) fn publish_applied(&self) {
        if let (Some(shared), Some(a)) = (&self.applied_index, self.applied) {
            shared.set(a.index);
        }
    }

    /// Switches this node's planted bugs on (tests and simulation only;
    /// [`Planted`] is empty without the `planted-bugs` feature).
    pub fn set_planted(&mut self, planted: Planted) {
        self.planted = planted;
        self.db
            .set_expire_by_horizon(!planted.has(NodeBug::ExpireByLocalClock));
        self.db
            .set_range_deletes_compacted(!planted.has(NodeBug::RangeDeleteIgnoredByCompaction));
    }

    /// What the proposer needs from the state machine.
    pub fn propose_context(&self) -> ProposeContext {
        let (key_bytes_max, value_bytes_max) = self.db.kv_bytes_max();
        ProposeContext {
            limits: RequestLimits {
                key_bytes_max,
                value_bytes_max,
                request_bytes_max: self.db.batch_bytes_max(),
            },
            planted: self.planted,
            applied_at_ms: self.applied_at_ms.clone(),
        }
    }

    /// The effective time of the last applied entry, ms since the Unix
    /// epoch (0 before the first).
    pub fn applied_at_ms(&self) -> u64 {
        self.applied_at_ms.load(Ordering::Acquire)
    }

    /// The engine (for reads).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A shared handle to the engine, for readers outside openraft (the
    /// node serves reads from it while openraft owns the state machine).
    /// It stays valid across snapshot installs: an install replaces the
    /// engine's content, not the engine.
    pub fn shared_db(&self) -> Arc<Db> {
        self.db.clone()
    }

    /// The last applied log id (durable only up to the last flush).
    pub fn applied(&self) -> Option<LogId> {
        self.applied
    }

    /// The last index of the newest snapshot this state machine keeps.
    pub fn snapshot_index(&self) -> Option<u64> {
        lock_store(&self.snapshots)
            .current
            .as_ref()
            .and_then(|s| s.meta().last_log_id.map(|l| l.index))
    }

    /// The directory holding this state machine's snapshots.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.dir.join(SNAPSHOTS_DIR)
    }

    /// Flushes the engine, making everything applied so far durable.
    pub async fn flush(&self) -> Result<()> {
        Ok(self.db.flush().await?)
    }

    /// Switches the engine to `snap`'s tables (durable in this state
    /// machine's snapshot directory) and takes its applied state.
    async fn install_engine(&mut self, snap: &SnapshotData) -> Result<()> {
        let checkpoint = snap.checkpoint().map_err(|e| Error::Io {
            path: snap.dir().to_path_buf(),
            source: e,
        })?;
        self.db.install(&checkpoint).await?;
        self.applied = snap.meta().last_log_id;
        self.publish_applied();
        self.membership = snap.meta().last_membership.clone();
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembershipOf), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = std::future::poll_fn(|cx| Pin::new(&mut entries).poll_next(cx)).await
        {
            let (entry, responder) = item?;
            let resp = self.apply_entry(entry).await?;
            if let Some(r) = responder {
                r.send(resp);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        if snapshot.meta() != meta {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "snapshot in {} is at {:?}, install was asked for {:?}",
                    snapshot.dir().display(),
                    snapshot.meta().last_log_id,
                    meta.last_log_id
                ),
            ));
        }
        let ours = self.snapshots_dir();
        let own = if snapshot.dir().parent() == Some(ours.as_path()) {
            snapshot
        } else {
            // Keep our own durable copy (links) first: it is what a
            // restart finishes an interrupted install from, and what
            // get_current_snapshot serves afterwards.
            let (fs, dir) = {
                let mut store = lock_store(&self.snapshots);
                (store.fs.clone(), store.new_dir())
            };
            let verify = !self.planted.has(NodeBug::SnapshotLinkUnverified);
            match link_snapshot(fs.clone(), &snapshot, &dir, verify) {
                Ok(own) => own,
                Err(e) => {
                    // Leftovers are removed at the next open if this fails.
                    let _ = sfs::remove_dir_with_files(&*fs, &dir);
                    return Err(e);
                }
            }
        };
        self.install_engine(&own).await?;
        tracing::info!(last_log_id = ?meta.last_log_id, "snapshot installed");
        lock_store(&self.snapshots).offer(own, true);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(lock_store(&self.snapshots).current())
    }
}
