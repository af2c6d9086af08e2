//! An interim state machine over the storage engine, so that openraft's
//! whole storage suite runs against the log store. What is real and what is
//! not yet:
//!
//! Real:
//! * The engine runs in replicated mode (`Options::wal = false`: the Raft
//!   log is the WAL). Each entry is applied as one atomic [`WriteBatch`]
//!   carrying the *applied marker* (the applied log id and the last
//!   membership, encoding in `FORMAT-raftlog.md`), which the engine records
//!   with each memtable flush. After a restart, [`StateMachine::open`]
//!   reports the flushed marker as the applied state and openraft re-applies
//!   the log from there.
//! * Requests that the engine refuses as input (empty or oversized keys or
//!   values) are answered with [`Response::Rejected`] and still advance the
//!   marker, so a bad client request can never stop the state machine.
//! * Building a snapshot first flushes the engine, so the applied state is
//!   durable up to (at least) the snapshot before openraft may purge the log
//!   behind it.
//!
//! Not yet (the design wants SSTable-set snapshots streamed in chunks and
//! installed by an atomic switch; that needs engine support):
//! * Snapshot data is a logical dump of every live key and value, held in
//!   memory; the current snapshot is kept in memory only (after a restart
//!   openraft builds a new one when it needs one).
//! * Expiry (TTL) is not carried in snapshots, and Expire/Persist/IncrBy
//!   cannot keep or report an existing TTL: the engine has no read that
//!   returns a key's expiry.
//! * Reads during apply (IncrBy, Cas, Expire, Persist, Delete's answer) use
//!   the engine's clock to hide expired keys, so two replicas whose clocks
//!   differ could answer differently near an expiry time. Apply needs a read
//!   "as of" the entry's timestamp.
//! * Installing a snapshot is one write batch (deletes of every current key
//!   plus the snapshot's keys plus the marker), so it is atomic, but a
//!   snapshot larger than the engine's `batch_bytes_max` is refused.

use crate::codec::{self, DecodeError};
use crate::error::{Error, Result};
use crate::typ::{
    BatchOp, EntryPayload, LeaderId, LogId, Node, NodeId, Request, Response, SetCondition,
    TypeConfig,
};
use ballast_storage::{Db, Options, WriteBatch};
use futures_core::Stream;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{OptionalSend, StoredMembership};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The stored membership type of ballast.
pub type StoredMembershipOf = StoredMembership<LeaderId, NodeId, Node>;
/// Snapshot metadata of ballast.
pub type SnapshotMeta = openraft::storage::SnapshotMeta<LeaderId, NodeId, Node>;
/// The data of a snapshot (interim: a logical dump, see the module docs).
/// The network moves it through [`crate::transfer::SnapshotTransfer`].
pub type SnapshotData = Vec<u8>;
/// A snapshot of ballast.
pub type Snapshot = openraft::storage::Snapshot<LeaderId, NodeId, Node, SnapshotData>;

/// Applied-marker format version.
pub const MARKER_FORMAT_VERSION: u8 = 1;
/// Logical snapshot dump format version.
pub const DUMP_FORMAT_VERSION: u8 = 1;

const MARKER_APPLIED: u8 = 1;
const MARKER_MEMBERSHIP_LOG_ID: u8 = 2;

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

/// The interim state machine (see the module docs for what is real).
pub struct StateMachine {
    db: Arc<Db>,
    dir: PathBuf,
    applied: Option<LogId>,
    membership: StoredMembershipOf,
    current: Arc<Mutex<Option<Snapshot>>>,
}

/// Builds a snapshot of the state as of its creation.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    view: ballast_storage::Snapshot,
    applied: Option<LogId>,
    membership: StoredMembershipOf,
    current: Arc<Mutex<Option<Snapshot>>>,
}

impl StateMachine {
    /// Opens the engine in `dir` in replicated mode (`options.wal` is forced
    /// off) and reads the applied marker it last flushed.
    pub async fn open(dir: &Path, mut options: Options) -> Result<StateMachine> {
        options.wal = false;
        let db = Db::open(dir, options).await?;
        let marker = db.applied_marker().await;
        let (applied, membership) = match &marker {
            None => (None, StoredMembership::default()),
            Some(m) => decode_marker(m).map_err(|d| marker_error(dir, d))?,
        };
        tracing::info!(
            ?applied,
            "state machine opened at its flushed applied marker"
        );
        Ok(StateMachine {
            db: Arc::new(db),
            dir: dir.to_path_buf(),
            applied,
            membership,
            current: Arc::new(Mutex::new(None)),
        })
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

    /// Flushes the engine, making everything applied so far durable.
    pub async fn flush(&self) -> Result<()> {
        Ok(self.db.flush().await?)
    }

    /// Applies one entry's request; returns the batch to write and the
    /// answer. Reads see every earlier entry (each is written before the
    /// next is read).
    fn plan(&self, req: &Request) -> Result<(WriteBatch, Response)> {
        let mut b = WriteBatch::new();
        let resp = match req {
            Request::Put {
                key,
                value,
                expire_at_ms,
            } => {
                match expire_at_ms {
                    Some(at) => b.put_expiring(key, value, *at),
                    None => b.put(key, value),
                };
                Response::Done
            }
            Request::Delete { key } => {
                let existed = self.db.get(key)?.is_some();
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
                let cur = match self.db.get(key)? {
                    None => Some(0),
                    Some(v) => std::str::from_utf8(&v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok()),
                };
                match cur.map(|c| c.checked_add(*delta)) {
                    None => Response::Rejected("value is not an integer or out of range".into()),
                    Some(None) => {
                        Response::Rejected("increment or decrement would overflow".into())
                    }
                    Some(Some(n)) => {
                        b.put(key, n.to_string().as_bytes());
                        Response::Integer(n)
                    }
                }
            }
            Request::Cas { key, expected, new } => {
                let current = self.db.get(key)?.map(|v| v.to_vec());
                let swapped = current == *expected;
                if swapped {
                    b.put(key, new);
                }
                Response::Cas { swapped, current }
            }
            Request::Expire { key, expire_at_ms } => match self.db.get(key)? {
                Some(v) => {
                    b.put_expiring(key, &v, *expire_at_ms);
                    Response::Existed(true)
                }
                None => Response::Existed(false),
            },
            Request::Persist { key } => match self.db.get(key)? {
                Some(v) => {
                    b.put(key, &v);
                    Response::Existed(true)
                }
                None => Response::Existed(false),
            },
            Request::Set {
                key,
                value,
                expire_at_ms,
                condition,
                return_old,
            } => {
                let current = self.db.get(key)?;
                let written = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfAbsent => current.is_none(),
                    SetCondition::IfPresent => current.is_some(),
                };
                if written {
                    match expire_at_ms {
                        Some(at) => b.put_expiring(key, value, *at),
                        None => b.put(key, value),
                    };
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
            Request::DeleteMany { keys } => {
                // A key named twice counts once, as in Redis: the second
                // occurrence finds it already gone.
                let mut gone = std::collections::BTreeSet::new();
                let mut existed = 0i64;
                for key in keys {
                    if gone.insert(key.as_slice()) && self.db.get(key)?.is_some() {
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
            EntryPayload::Normal(p) => self.plan(&p.request)?,
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

fn lock_current(
    m: &Mutex<Option<Snapshot>>,
) -> Result<std::sync::MutexGuard<'_, Option<Snapshot>>> {
    m.lock()
        .map_err(|_| Error::Stopped("a panic poisoned the snapshot slot".into()))
}

/// Encodes a logical dump: version, then (key, value) pairs until the end.
fn encode_dump(db: &Db, view: &ballast_storage::Snapshot) -> Result<Vec<u8>> {
    let mut out = vec![DUMP_FORMAT_VERSION];
    for kv in db.scan_at::<&[u8]>(view, ..)? {
        let (k, v) = kv?;
        codec::encode_bytes_into(&mut out, &k);
        codec::encode_bytes_into(&mut out, &v);
    }
    Ok(out)
}

/// Encodes a logical dump of the given pairs (for tests of the transfer).
pub fn encode_pairs<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = vec![DUMP_FORMAT_VERSION];
    for (k, v) in pairs {
        codec::encode_bytes_into(&mut out, k);
        codec::encode_bytes_into(&mut out, v);
    }
    out
}

/// Checks that `src` is a well-formed logical dump.
pub fn check_dump(src: &[u8]) -> io::Result<()> {
    decode_dump(src).map(|_| ()).map_err(|d| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("received snapshot is not a valid dump: {d:?}"),
        )
    })
}

/// One key and its value, borrowed from a dump.
type KeyValue<'a> = (&'a [u8], &'a [u8]);

fn decode_dump(src: &[u8]) -> Result<Vec<KeyValue<'_>>, DecodeError> {
    let (&version, mut rest) = src
        .split_first()
        .ok_or_else(|| DecodeError::Malformed("empty snapshot".into()))?;
    if version == 0 || version > DUMP_FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (k, r) = codec::decode_bytes_prefix(rest)?;
        let (v, r) = codec::decode_bytes_prefix(r)?;
        out.push((k, v));
        rest = r;
    }
    Ok(out)
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // Make the applied state durable at least up to this snapshot
        // before openraft may purge the log behind it.
        self.db.flush().await.map_err(Error::from)?;
        let data = encode_dump(&self.db, &self.view)?;
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_log_id: self.applied,
                last_membership: self.membership.clone(),
            },
            snapshot: data,
        };
        *lock_current(&self.current)? = Some(snapshot.clone());
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
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
            view: self.db.snapshot(),
            applied: self.applied,
            membership: self.membership.clone(),
            current: self.current.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let pairs = decode_dump(&snapshot).map_err(|d| marker_error(&self.dir, d))?;
        let mut batch = WriteBatch::new();
        for kv in self.db.scan::<&[u8]>(..).map_err(Error::from)? {
            let (k, _) = kv.map_err(Error::from)?;
            batch.delete(&k);
        }
        for (k, v) in pairs {
            batch.put(k, v);
        }
        batch.set_applied_marker(&encode_marker(
            meta.last_log_id.as_ref(),
            &meta.last_membership,
        ));
        // One batch: the switch is atomic (or refused if too large).
        self.db.write(batch).await.map_err(Error::from)?;
        self.db.flush().await.map_err(Error::from)?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        *lock_current(&self.current)? = Some(Snapshot {
            meta: meta.clone(),
            snapshot,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(lock_current(&self.current)?.clone())
    }
}
