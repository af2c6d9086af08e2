//! The replicated state machine over the storage engine.
//!
//! * The engine runs in replicated mode (`Options::wal = false`: the Raft
//!   log is the WAL). Each entry is applied as one atomic [`WriteBatch`]
//!   carrying the *applied marker* (the applied log id and the last
//!   membership, encoding in `FORMAT-raftlog.md`), which the engine records
//!   with each memtable flush. After a restart, [`StateMachine::open`]
//!   reports the flushed marker as the applied state and openraft re-applies
//!   the log from there.
//! * Every normal entry is applied *as of* its [`crate::Proposal::at_ms`], the
//!   leader's clock when it proposed: each read during apply (IncrBy, Cas,
//!   Set NX/XX/GET, Expire, Persist, Delete, DeleteMany) treats a key whose
//!   expiry is at or before `at_ms` as absent, through
//!   `Db::get_entry_as_of`, never the engine's own clock. TTLs follow
//!   Redis: INCR/INCRBY keep an existing TTL; SET (any form) without an
//!   expiry drops it; EXPIRE sets it on an existing key, keeping the value,
//!   and an expiry at or before `at_ms` deletes the key (answering
//!   `Existed(true)`, as Redis does for a non-positive TTL); PERSIST
//!   answers `Existed(true)` only if it removed a TTL; CAS writes its new
//!   value without a TTL (a swap replaces the value the TTL belonged to).
//! * Apply never refuses an entry for a local setting: key, value and
//!   request sizes are checked where a request enters the cluster
//!   ([`Request::validate`], with the limits of the node that took it),
//!   and the engine writes what the log holds without its own size limits
//!   (`Db::write_from_log`), so replicas configured differently, or a
//!   limit changed before a replay, still apply every entry alike. What
//!   every replica refuses alike (an empty key, from a log written before
//!   validation) is answered with [`Response::Rejected`] and still
//!   advances the marker, so a bad entry can never stop the state machine.
//! * Snapshots are SSTable sets ([`crate::snapshot`]): building one is an
//!   engine checkpoint (a flush, so the applied state is durable up to the
//!   snapshot before openraft purges the log behind it, then hard links of
//!   the tables) into `<dir>/snapshots/snap-{n:020}/` with a descriptor;
//!   TTLs travel inside the tables. Installing one links its tables into
//!   the same place, then switches the engine to them in one manifest edit
//!   (`Db::install`). The newest snapshot (by last log id) stays on disk
//!   as the current one, so [`RaftStateMachine::get_current_snapshot`]
//!   works after a restart; older ones are deleted as soon as a newer one
//!   is durable and nobody (a snapshot stream to a follower) still holds
//!   them. An install interrupted by a crash after its snapshot directory
//!   became durable is finished by the next [`StateMachine::open`].
//!
//! Expiry is a pure function of the log: relative TTLs become deadlines
//! from the entry's `at_ms`; the engine runs with
//! `Options::expire_by_horizon`, and after each entry the state machine
//! moves the engine's expiry horizon to the largest `at_ms` applied (it
//! travels in the applied marker across restarts), so flush and compaction
//! drop exactly the keys every later entry would find expired, on every
//! replica, whatever its clock. [`state_hash`] hashes the live state as of
//! that horizon, so replicas can be compared from outside.

use crate::codec::{self, DecodeError};
use crate::error::{Error, Result};
use crate::planted::{NodeBug, Planted};
use crate::snapshot::{file_crc, link_snapshot, Descriptor, SnapshotFile};
use crate::typ::{
    BatchOp, EntryPayload, LeaderId, LogId, Node, NodeId, Request, RequestLimits, Response,
    SetCondition, TypeConfig,
};
use ballast_storage::fs::{self as sfs, DynFs};
use ballast_storage::{Db, Options, WriteBatch};
use bytes::Bytes;
use futures_core::Stream;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{OptionalSend, StoredMembership};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The stored membership type of ballast.
pub type StoredMembershipOf = StoredMembership<LeaderId, NodeId, Node>;
/// Snapshot metadata of ballast.
pub type SnapshotMeta = openraft::storage::SnapshotMeta<LeaderId, NodeId, Node>;
/// The data of a snapshot: a handle to its directory of tables (see
/// [`crate::snapshot`]). The network moves it through
/// [`crate::transfer::SnapshotTransfer`].
pub type SnapshotData = crate::snapshot::SnapshotData;
/// A snapshot of ballast.
pub type Snapshot = openraft::storage::Snapshot<LeaderId, NodeId, Node, SnapshotData>;

/// Applied-marker format version: the newest this build reads. Version 2
/// added the time of the last applied entry (flag 4); a marker without it
/// is still written as version 1, so snapshot descriptors stay readable by
/// older builds.
pub const MARKER_FORMAT_VERSION: u8 = 2;

const MARKER_APPLIED: u8 = 1;
const MARKER_MEMBERSHIP_LOG_ID: u8 = 2;
const MARKER_AT_MS: u8 = 4;

/// The directory under the state machine's directory that holds its
/// snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";
const SNAPSHOT_PREFIX: &str = "snap-";

/// Encodes the applied marker: what the engine records with each flush.
pub fn encode_marker(applied: Option<&LogId>, membership: &StoredMembershipOf) -> Vec<u8> {
    encode_marker_at(applied, membership, None)
}

/// [`encode_marker`] with the time of the last applied entry (its
/// effective `at_ms`), which a restart resumes the expiry horizon and the
/// non-decreasing entry time from.
pub fn encode_marker_at(
    applied: Option<&LogId>,
    membership: &StoredMembershipOf,
    at_ms: Option<u64>,
) -> Vec<u8> {
    let version = if at_ms.is_some() { 2 } else { 1 };
    let mut out = vec![version, 0];
    if let Some(a) = applied {
        out[1] |= MARKER_APPLIED;
        codec::encode_log_id_into(&mut out, a);
    }
    if let Some(m) = membership.log_id() {
        out[1] |= MARKER_MEMBERSHIP_LOG_ID;
        codec::encode_log_id_into(&mut out, m);
    }
    if let Some(at) = at_ms {
        out[1] |= MARKER_AT_MS;
        out.extend_from_slice(&at.to_le_bytes());
    }
    codec::encode_membership(&mut out, membership.membership());
    out
}

/// Decodes an applied marker written by [`encode_marker`].
pub fn decode_marker(src: &[u8]) -> Result<(Option<LogId>, StoredMembershipOf), DecodeError> {
    decode_marker_at(src).map(|(a, m, _)| (a, m))
}

/// The applied log id, membership and applied time ([`encode_marker_at`]).
pub fn decode_marker_at(src: &[u8]) -> Result<MarkerAt, DecodeError> {
    let (&version, rest) = src
        .split_first()
        .ok_or_else(|| DecodeError::Malformed("empty applied marker".into()))?;
    if version == 0 || version > MARKER_FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    let (&flags, mut rest) = rest
        .split_first()
        .ok_or_else(|| DecodeError::Malformed("applied marker without flags".into()))?;
    let known = if version >= 2 {
        MARKER_APPLIED | MARKER_MEMBERSHIP_LOG_ID | MARKER_AT_MS
    } else {
        MARKER_APPLIED | MARKER_MEMBERSHIP_LOG_ID
    };
    if flags & !known != 0 {
        return Err(DecodeError::Malformed(format!(
            "unknown marker flags {flags:#x}"
        )));
    }
    let mut applied = None;
    if flags & MARKER_APPLIED != 0 {
        let (id, r) = codec::decode_log_id_prefix(rest)?;
        applied = Some(id);
        rest = r;
    }
    let mut membership_log_id = None;
    if flags & MARKER_MEMBERSHIP_LOG_ID != 0 {
        let (id, r) = codec::decode_log_id_prefix(rest)?;
        membership_log_id = Some(id);
        rest = r;
    }
    let mut at_ms = None;
    if flags & MARKER_AT_MS != 0 {
        let (at, r) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| DecodeError::Malformed("applied marker: truncated time".into()))?;
        at_ms = Some(u64::from_le_bytes(*at));
        rest = r;
    }
    let membership = codec::decode_membership_exact(rest)?;
    Ok((
        applied,
        StoredMembership::new(membership_log_id, membership),
        at_ms,
    ))
}

/// What an applied marker holds: the applied log id, the membership, and
/// the time of the last applied entry (version 2 markers).
pub type MarkerAt = (Option<LogId>, StoredMembershipOf, Option<u64>);

/// The snapshots a state machine keeps on disk: the current one, and the
/// counter that names new directories.
struct SnapshotStore {
    fs: DynFs,
    dir: PathBuf,
    next: u64,
    current: Option<SnapshotData>,
}

impl SnapshotStore {
    /// Opens `dir`: keeps the newest complete snapshot (by last log id,
    /// then by directory number) and removes every other one, complete or
    /// not (nothing can be streaming right after a start).
    fn open(fs: DynFs, dir: PathBuf) -> Result<SnapshotStore> {
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
    fn new_dir(&mut self) -> PathBuf {
        let n = self.next;
        self.next += 1;
        self.dir.join(format!("{SNAPSHOT_PREFIX}{n:020}"))
    }

    /// Makes `data` (durable) the current snapshot if it is at least as
    /// new as the current one, or `always`; the one that loses is deleted
    /// once its last handle drops.
    fn offer(&mut self, data: SnapshotData, always: bool) {
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

    fn current(&self) -> Option<Snapshot> {
        self.current.as_ref().map(|d| Snapshot {
            meta: d.meta().clone(),
            snapshot: d.clone(),
        })
    }
}

fn lock_store(m: &Mutex<SnapshotStore>) -> MutexGuard<'_, SnapshotStore> {
    // Every critical section leaves the store consistent before it could
    // panic, so a poisoned lock still guards good data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The state machine: the engine in replicated mode, applying entries as
/// of their proposal time, with SSTable-set snapshots (see the module docs).
pub struct StateMachine {
    db: Arc<Db>,
    dir: PathBuf,
    applied: Option<LogId>,
    membership: StoredMembershipOf,
    snapshots: Arc<Mutex<SnapshotStore>>,
    planted: Planted,
    /// The effective time of the last applied entry (see `apply_entry`),
    /// shared with the proposer, which never stamps below it.
    applied_at_ms: Arc<AtomicU64>,
    /// The applied index, shared with the log store, which refuses to
    /// truncate below it.
    applied_index: Option<crate::log_store::AppliedIndex>,
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

/// Builds a snapshot: an engine checkpoint at the applied state of the
/// moment it runs (openraft runs it beside apply).
pub struct SnapshotBuilder {
    db: Arc<Db>,
    snapshots: Arc<Mutex<SnapshotStore>>,
}

/// A key's value and expiry as of an entry's time.
type Live = Option<(Bytes, Option<u64>)>;

/// What the earlier requests of one Multi entry wrote, by key (`None`:
/// deleted), so that a later request of the same entry reads it: the
/// entry's writes reach the engine only at the end, as one batch.
type Overlay = std::collections::BTreeMap<Vec<u8>, Option<(Bytes, Option<u64>)>>;

/// Whether applying `req` reads the key's current value (everything but
/// blind writes).
fn reads_before_writing(req: &Request) -> bool {
    !matches!(
        req,
        Request::Put { .. }
            | Request::Batch(_)
            | Request::Set {
                condition: SetCondition::Always,
                return_old: false,
                ..
            }
            | Request::SetWithTtl {
                condition: SetCondition::Always,
                return_old: false,
                ..
            }
    )
}

/// A SET's arguments, its expiry made absolute.
struct SetArgs<'a> {
    key: &'a [u8],
    value: &'a [u8],
    expire_at_ms: Option<u64>,
    condition: SetCondition,
    return_old: bool,
}

/// Records `batch`'s writes in `overlay`.
fn overlay_writes(overlay: &mut Overlay, batch: &WriteBatch) {
    use ballast_storage::key::ValueKind;
    for e in batch.iter() {
        let written = match e.kind {
            ValueKind::Delete => None,
            ValueKind::Put => Some((Bytes::copy_from_slice(e.value), None)),
            ValueKind::PutExpiring => {
                let (at, value) = e.value.split_at(8);
                let at = u64::from_le_bytes(at.try_into().expect("8 bytes"));
                Some((Bytes::copy_from_slice(value), Some(at)))
            }
        };
        overlay.insert(e.key.to_vec(), written);
    }
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
    pub fn set_applied_index(&mut self, applied: crate::log_store::AppliedIndex) {
        if let Some(a) = self.applied {
            applied.set(a.index);
        }
        self.applied_index = Some(applied);
    }

    fn publish_applied(&self) {
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

    /// The directory holding this state machine's snapshots.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.dir.join(SNAPSHOTS_DIR)
    }

    /// Flushes the engine, making everything applied so far durable.
    pub async fn flush(&self) -> Result<()> {
        Ok(self.db.flush().await?)
    }

    /// `key`'s value and expiry as of `at_ms`: what `overlay` says of it
    /// (earlier writes of the same entry), else the engine's.
    fn live(&self, overlay: &Overlay, key: &[u8], at_ms: u64) -> Result<Live> {
        match overlay.get(key) {
            Some(Some((_, Some(expire_at)))) if *expire_at <= at_ms => Ok(None),
            Some(written) => Ok(written.clone()),
            None => Ok(self.db.get_entry_as_of(key, at_ms)?),
        }
    }

    /// Plans one entry's request as of `at_ms`: the batch to write and the
    /// answer. Reads see every earlier entry (each is written before the
    /// next is read).
    fn plan_entry(&self, req: &Request, at_ms: u64) -> Result<(WriteBatch, Response)> {
        let Request::Multi(reqs) = req else {
            return self.plan(req, at_ms, &Overlay::new());
        };
        let mut overlay = Overlay::new();
        let mut batch = WriteBatch::new();
        let mut answers = Vec::with_capacity(reqs.len());
        // Writes need to be in the overlay only if a later request reads.
        let last_reader = reqs.iter().rposition(reads_before_writing);
        for (i, req) in reqs.iter().enumerate() {
            let (b, resp) = self.plan(req, at_ms, &overlay)?;
            // Each request is refused on its own for what every replica
            // refuses alike (an empty key: a rule of the engine, not a
            // setting), so the entry's one batch never fails for the
            // others. Size limits were checked where the request entered;
            // checking them here, with this node's settings, would let
            // replicas configured differently apply the entry differently.
            let refused = if self.planted.has(NodeBug::ApplyChecksLocalLimits) {
                self.refused_by_local_limits(&batch, &b)?
            } else if b.iter().any(|e| e.key.is_empty()) {
                Some(Response::Rejected(
                    ballast_storage::Error::EmptyKey.to_string(),
                ))
            } else {
                None
            };
            match refused {
                Some(r) => answers.push(r),
                None => {
                    if last_reader.is_some_and(|last| i < last) {
                        overlay_writes(&mut overlay, &b);
                    }
                    batch.append(&b);
                    answers.push(resp);
                }
            }
        }
        Ok((batch, Response::Multi(answers)))
    }

    /// The planted [`NodeBug::ApplyChecksLocalLimits`]: whether this
    /// node's own engine limits refuse `b` (after `batch`), as apply did
    /// before limits were checked where requests enter.
    fn refused_by_local_limits(
        &self,
        batch: &WriteBatch,
        b: &WriteBatch,
    ) -> Result<Option<Response>> {
        let together = (batch.encoded_len() + b.encoded_len()) as u64;
        match self.db.check_batch(b) {
            Ok(()) if together > self.db.batch_bytes_max() => {
                Ok(Some(Response::Rejected(format!(
                    "this write would take its log entry's batch to {together} bytes, \
                 over batch_bytes_max ({})",
                    self.db.batch_bytes_max()
                ))))
            }
            Ok(()) => Ok(None),
            Err(e) if is_input_error(&e) => Ok(Some(Response::Rejected(e.to_string()))),
            Err(e) => Err(e.into()),
        }
    }

    /// Plans one request applied as of `at_ms`, after the writes in
    /// `overlay`: the batch to write and the answer.
    fn plan(&self, req: &Request, at_ms: u64, overlay: &Overlay) -> Result<(WriteBatch, Response)> {
        let mut b = WriteBatch::new();
        let put = |b: &mut WriteBatch, key: &[u8], value: &[u8], expire_at_ms: Option<u64>| {
            match expire_at_ms {
                Some(at) => b.put_expiring(key, value, at),
                None => b.put(key, value),
            };
        };
        let resp = match req {
            Request::Put {
                key,
                value,
                expire_at_ms,
            } => {
                put(&mut b, key, value, *expire_at_ms);
                Response::Done
            }
            Request::Delete { key } => {
                let existed = self.live(overlay, key, at_ms)?.is_some();
                b.delete(key);
                Response::Existed(existed)
            }
            Request::Batch(ops) => {
                for op in ops {
                    match op {
                        BatchOp::Put { key, value } => b.put(key, value),
                        BatchOp::Delete { key } => b.delete(key),
                    };
                }
                Response::Done
            }
            Request::IncrBy { key, delta } => {
                let (cur, ttl) = match self.live(overlay, key, at_ms)? {
                    None => (Some(0), None),
                    Some((v, ttl)) => (
                        std::str::from_utf8(&v)
                            .ok()
                            .and_then(|s| s.parse::<i64>().ok()),
                        ttl,
                    ),
                };
                match cur.map(|c| c.checked_add(*delta)) {
                    None => Response::Rejected("value is not an integer or out of range".into()),
                    Some(None) => {
                        Response::Rejected("increment or decrement would overflow".into())
                    }
                    Some(Some(n)) => {
                        // Like Redis, INCR keeps the key's TTL.
                        put(&mut b, key, n.to_string().as_bytes(), ttl);
                        Response::Integer(n)
                    }
                }
            }
            Request::Cas { key, expected, new } => {
                let current = self.live(overlay, key, at_ms)?.map(|(v, _)| v.to_vec());
                let swapped = current == *expected;
                if swapped {
                    // The new value has no TTL (documented in the module docs).
                    b.put(key, new);
                }
                Response::Cas { swapped, current }
            }
            Request::Expire { key, expire_at_ms } => {
                self.plan_expire(&mut b, key, *expire_at_ms, at_ms, overlay)?
            }
            // The deadline comes from the entry's time, the same on every
            // replica (saturating: a TTL past the end of time never ends).
            Request::ExpireIn { key, ttl_ms } => {
                self.plan_expire(&mut b, key, at_ms.saturating_add(*ttl_ms), at_ms, overlay)?
            }
            Request::Persist { key } => match self.live(overlay, key, at_ms)? {
                Some((v, Some(_))) => {
                    b.put(key, &v);
                    Response::Existed(true)
                }
                Some((_, None)) | None => Response::Existed(false),
            },
            Request::Set {
                key,
                value,
                expire_at_ms,
                condition,
                return_old,
            } => {
                let set = SetArgs {
                    key,
                    value,
                    expire_at_ms: *expire_at_ms,
                    condition: *condition,
                    return_old: *return_old,
                };
                self.plan_set(&mut b, set, at_ms, overlay)?
            }
            Request::SetWithTtl {
                key,
                value,
                ttl_ms,
                condition,
                return_old,
            } => {
                let set = SetArgs {
                    key,
                    value,
                    expire_at_ms: Some(at_ms.saturating_add(*ttl_ms)),
                    condition: *condition,
                    return_old: *return_old,
                };
                self.plan_set(&mut b, set, at_ms, overlay)?
            }
            // Only inside a Multi (plan_entry takes the outer one); the
            // codec refuses such entries, so this is never logged.
            Request::Multi(_) => Response::Rejected("a multi inside a multi".into()),
            Request::DeleteMany { keys } => {
                // A key named twice counts once, as in Redis: the second
                // occurrence finds it already gone.
                let mut gone = std::collections::BTreeSet::new();
                let mut existed = 0i64;
                for key in keys {
                    if gone.insert(key.as_slice()) && self.live(overlay, key, at_ms)?.is_some() {
                        existed += 1;
                    }
                    b.delete(key);
                }
                Response::Integer(existed)
            }
        };
        Ok((b, resp))
    }

    /// EXPIRE at `expire_at_ms` of `key`, applied as of `at_ms`.
    fn plan_expire(
        &self,
        b: &mut WriteBatch,
        key: &[u8],
        expire_at_ms: u64,
        at_ms: u64,
        overlay: &Overlay,
    ) -> Result<Response> {
        Ok(match self.live(overlay, key, at_ms)? {
            Some(_) if expire_at_ms <= at_ms => {
                // Redis deletes a key given a TTL in the past.
                b.delete(key);
                Response::Existed(true)
            }
            Some((v, _)) => {
                b.put_expiring(key, &v, expire_at_ms);
                Response::Existed(true)
            }
            None => Response::Existed(false),
        })
    }

    /// SET (any form) applied as of `at_ms`.
    fn plan_set(
        &self,
        b: &mut WriteBatch,
        set: SetArgs<'_>,
        at_ms: u64,
        overlay: &Overlay,
    ) -> Result<Response> {
        // A plain SET needs no read of the old value: skip the engine
        // lookup (most of a blind write's apply cost).
        let needs_current = set.return_old || set.condition != SetCondition::Always;
        let current = if needs_current {
            self.live(overlay, set.key, at_ms)?.map(|(v, _)| v)
        } else {
            None
        };
        let written = match set.condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => current.is_none(),
            SetCondition::IfPresent => current.is_some(),
        };
        if written {
            match set.expire_at_ms {
                Some(at) => b.put_expiring(set.key, set.value, at),
                None => b.put(set.key, set.value),
            };
        }
        Ok(Response::Set {
            written,
            old: if set.return_old {
                current.map(|v| v.to_vec())
            } else {
                None
            },
        })
    }

    /// Applies one committed entry and returns its answer. This is what
    /// [`RaftStateMachine::apply`] does for each entry of its stream.
    pub async fn apply_entry(&mut self, entry: crate::typ::Entry) -> Result<Response> {
        let (mut batch, resp) = match &entry.payload {
            EntryPayload::Blank => (WriteBatch::new(), Response::Done),
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                (WriteBatch::new(), Response::Done)
            }
            EntryPayload::Normal(p) => {
                // The entry's own time: apply reads and computes relative
                // deadlines as of it, never the clock. The proposer stamps
                // no entry below the last one in the log, so the horizon
                // (the largest time applied) is the time of the last
                // entry, and no later entry reads below it: a key a flush
                // dropped at the horizon is one every later entry would
                // have found expired.
                self.applied_at_ms.fetch_max(p.at_ms, Ordering::AcqRel);
                let at_ms = p.at_ms;
                self.plan_entry(&p.request, at_ms)?
            }
        };
        self.applied = Some(entry.log_id);
        self.publish_applied();
        let at_ms = self.applied_at_ms();
        let marker = encode_marker_at(self.applied.as_ref(), &self.membership, Some(at_ms));
        batch.set_applied_marker(&marker);
        let written = if self.planted.has(NodeBug::ApplyChecksLocalLimits) {
            self.db.write(batch).await
        } else {
            // No local limit applies to what the log holds (see
            // `Db::write_from_log`); what it still refuses, it refuses on
            // every replica alike.
            self.db.write_from_log(batch).await
        };
        // Once the entry is in the engine, keys expired at or before its
        // time may go at the next flush or compaction: every later entry
        // reads them as absent on every replica.
        let horizon = || self.db.set_expiry_horizon_ms(at_ms);
        match written {
            Ok(()) => {
                horizon();
                Ok(resp)
            }
            Err(e) if is_input_error(&e) => {
                // The request itself is unacceptable; the entry still counts
                // as applied, so the marker moves on without its writes.
                let mut only_marker = WriteBatch::new();
                only_marker.set_applied_marker(&marker);
                self.db.write(only_marker).await?;
                horizon();
                Ok(Response::Rejected(e.to_string()))
            }
            Err(e) => Err(e.into()),
        }
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

/// A hash of a replica's state: every live key, its value and its expiry
/// (deadline), in key order, as of the engine's expiry horizon (the time
/// of the last applied entry), which is the same on every replica that
/// applied the same entries, whatever their clocks, flushes and
/// compactions. Replicas that applied the same log report the same hash;
/// compare them from outside through `/status`. Sha-256 over a canonical
/// encoding (per key: u32 key length, key, u32 value length, value, then
/// 0, or 1 and the u64 deadline; little-endian), streamed: memory stays
/// bounded by one key and value. Shown as its first 16 bytes in hex.
///
/// It reads the whole key space: a cost in proportion to the data, paid by
/// each call.
pub fn state_hash(db: &Db) -> Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for item in db.scan_with_expiry_as_of(db.expiry_horizon_ms())? {
        let (key, value, at) = item?;
        h.update((key.len() as u32).to_le_bytes());
        h.update(&key);
        h.update((value.len() as u32).to_le_bytes());
        h.update(&value);
        match at {
            None => h.update([0u8]),
            Some(at) => {
                h.update([1u8]);
                h.update(at.to_le_bytes());
            }
        }
    }
    let digest = h.finalize();
    Ok(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

fn is_input_error(e: &ballast_storage::Error) -> bool {
    use ballast_storage::Error as E;
    matches!(
        e,
        E::EmptyKey | E::KeyTooLarge { .. } | E::ValueTooLarge { .. } | E::BatchTooLarge { .. }
    )
}

fn marker_error(dir: &Path, d: DecodeError) -> Error {
    match d {
        DecodeError::Version(v) => Error::UnsupportedFormat {
            path: dir.to_path_buf(),
            found: u32::from(v),
            supported: u32::from(MARKER_FORMAT_VERSION),
        },
        DecodeError::Malformed(why) => Error::corrupt(dir, format!("applied marker: {why}")),
    }
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
                name: format!("{:06}.sst", t.number),
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
            match link_snapshot(fs.clone(), &snapshot, &dir) {
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
