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
//! * Requests that the engine refuses as input (empty or oversized keys or
//!   values) are answered with [`Response::Rejected`] and still advance the
//!   marker, so a bad client request can never stop the state machine.
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
//! Compaction and the engine's own reads (`Db::get`) still drop and hide
//! expired keys by the engine's clock (`Options::clock`); apply never
//! depends on that as long as leaders stamp non-decreasing `at_ms` not
//! ahead of the replicas' clocks.

use crate::codec::{self, DecodeError};
use crate::error::{Error, Result};
use crate::snapshot::{file_crc, link_snapshot, Descriptor, SnapshotFile};
use crate::typ::{
    BatchOp, EntryPayload, LeaderId, LogId, Node, NodeId, Request, Response, SetCondition,
    TypeConfig,
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

/// Applied-marker format version.
pub const MARKER_FORMAT_VERSION: u8 = 1;

const MARKER_APPLIED: u8 = 1;
const MARKER_MEMBERSHIP_LOG_ID: u8 = 2;

/// The directory under the state machine's directory that holds its
/// snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";
const SNAPSHOT_PREFIX: &str = "snap-";

/// Encodes the applied marker: what the engine records with each flush.
pub fn encode_marker(applied: Option<&LogId>, membership: &StoredMembershipOf) -> Vec<u8> {
    let mut out = vec![MARKER_FORMAT_VERSION, 0];
    if let Some(a) = applied {
        out[1] |= MARKER_APPLIED;
        codec::encode_log_id_into(&mut out, a);
    }
    if let Some(m) = membership.log_id() {
        out[1] |= MARKER_MEMBERSHIP_LOG_ID;
        codec::encode_log_id_into(&mut out, m);
    }
    codec::encode_membership(&mut out, membership.membership());
    out
}

/// Decodes an applied marker written by [`encode_marker`].
pub fn decode_marker(src: &[u8]) -> Result<(Option<LogId>, StoredMembershipOf), DecodeError> {
    let (&version, rest) = src
        .split_first()
        .ok_or_else(|| DecodeError::Malformed("empty applied marker".into()))?;
    if version == 0 || version > MARKER_FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    let (&flags, mut rest) = rest
        .split_first()
        .ok_or_else(|| DecodeError::Malformed("applied marker without flags".into()))?;
    if flags & !(MARKER_APPLIED | MARKER_MEMBERSHIP_LOG_ID) != 0 {
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
    let membership = codec::decode_membership_exact(rest)?;
    Ok((
        applied,
        StoredMembership::new(membership_log_id, membership),
    ))
}

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
    )
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
        let fs = options.fs.clone();
        let db = Db::open(dir, options).await?;
        let marker = db.applied_marker().await;
        let (applied, membership) = match &marker {
            None => (None, StoredMembership::default()),
            Some(m) => decode_marker(m).map_err(|d| marker_error(dir, d))?,
        };
        let store = SnapshotStore::open(fs, dir.join(SNAPSHOTS_DIR))?;
        let mut sm = StateMachine {
            db: Arc::new(db),
            dir: dir.to_path_buf(),
            applied,
            membership,
            snapshots: Arc::new(Mutex::new(store)),
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
            // Each request is refused on its own for what the engine would
            // refuse (a key or value over its limit), so the entry's one
            // batch never fails for the others.
            let together = (batch.encoded_len() + b.encoded_len()) as u64;
            match self.db.check_batch(&b) {
                Ok(()) if together > self.db.batch_bytes_max() => {
                    answers.push(Response::Rejected(format!(
                        "this write would take its log entry's batch to {together} bytes, \
                         over batch_bytes_max ({})",
                        self.db.batch_bytes_max()
                    )));
                }
                Ok(()) => {
                    if last_reader.is_some_and(|last| i < last) {
                        overlay_writes(&mut overlay, &b);
                    }
                    batch.append(&b);
                    answers.push(resp);
                }
                Err(e) if is_input_error(&e) => answers.push(Response::Rejected(e.to_string())),
                Err(e) => return Err(e.into()),
            }
        }
        Ok((batch, Response::Multi(answers)))
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
            Request::Expire { key, expire_at_ms } => match self.live(overlay, key, at_ms)? {
                Some(_) if *expire_at_ms <= at_ms => {
                    // Redis deletes a key given a TTL in the past.
                    b.delete(key);
                    Response::Existed(true)
                }
                Some((v, _)) => {
                    b.put_expiring(key, &v, *expire_at_ms);
                    Response::Existed(true)
                }
                None => Response::Existed(false),
            },
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
                // A plain SET needs no read of the old value: skip the
                // engine lookup (most of a blind write's apply cost).
                let needs_current = *return_old || *condition != SetCondition::Always;
                let current = if needs_current {
                    self.live(overlay, key, at_ms)?.map(|(v, _)| v)
                } else {
                    None
                };
                let written = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfAbsent => current.is_none(),
                    SetCondition::IfPresent => current.is_some(),
                };
                if written {
                    put(&mut b, key, value, *expire_at_ms);
                }
                Response::Set {
                    written,
                    old: if *return_old {
                        current.map(|v| v.to_vec())
                    } else {
                        None
                    },
                }
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

    /// Applies one committed entry and returns its answer. This is what
    /// [`RaftStateMachine::apply`] does for each entry of its stream.
    pub async fn apply_entry(&mut self, entry: crate::typ::Entry) -> Result<Response> {
        let (mut batch, resp) = match &entry.payload {
            EntryPayload::Blank => (WriteBatch::new(), Response::Done),
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                (WriteBatch::new(), Response::Done)
            }
            EntryPayload::Normal(p) => self.plan_entry(&p.request, p.at_ms)?,
        };
        self.applied = Some(entry.log_id);
        let marker = encode_marker(self.applied.as_ref(), &self.membership);
        batch.set_applied_marker(&marker);
        match self.db.write(batch).await {
            Ok(()) => Ok(resp),
            Err(e) if is_input_error(&e) => {
                // The request itself is unacceptable; the entry still counts
                // as applied, so the marker moves on without its writes.
                let mut only_marker = WriteBatch::new();
                only_marker.set_applied_marker(&marker);
                self.db.write(only_marker).await?;
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
        self.membership = snap.meta().last_membership.clone();
        Ok(())
    }
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
