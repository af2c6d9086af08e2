//! The openraft type configuration for ballast: who the nodes are, what a
//! log entry asks of the state machine ([`Request`]), and what it answers
//! ([`Response`]).
//!
//! Requests carry everything a replica needs to apply them identically:
//! expiry is either absolute (`expire_at_ms`, milliseconds since the Unix
//! epoch, as the client gave it) or relative (`ttl_ms`, SET EX / EXPIRE),
//! and a relative one becomes absolute at apply, from the time the leader
//! stamped on the entry ([`Proposal::at_ms`]); no replica's clock is read
//! at apply time, so replaying the log anywhere gives the same state.

use serde::{Deserialize, Serialize};
use std::fmt;

mod validate;
pub use validate::{InvalidRequest, RequestLimits};

/// The runtime openraft runs on: tokio, whose random numbers the
/// simulation seeds per host ([`crate::runtime`]).
pub type Runtime = crate::runtime::BallastRuntime;

openraft::declare_raft_types!(
    /// ballast's Raft types. Node ids are `u64`; leader ids are the default
    /// "advanced" kind (term plus node id), so a log id is
    /// `(term, node_id, index)`.
    pub TypeConfig:
        D = Proposal,
        R = Response,
        NodeId = u64,
        Node = Node,
        AsyncRuntime = Runtime,
);

/// A node id.
pub type NodeId = u64;

/// A Raft log id of ballast: `(term, leader node id, index)`.
pub type LogId = openraft::LogId<LeaderId>;

/// A Raft log entry of ballast.
pub type Entry = openraft::Entry<LeaderId, EntryPayload>;

/// What a log entry holds: nothing (blank), a [`Request`], or a membership.
pub type EntryPayload = openraft::EntryPayload<Proposal, NodeId, Node>;

/// A vote (term, candidate, committed flag).
pub type Vote = openraft::Vote<LeaderId>;

/// The leader id that votes and log ids carry: `(term, node_id)`, the
/// default "advanced" kind, whose committed form is itself.
pub type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, NodeId>;

/// The membership stored in membership log entries.
pub type Membership = openraft::Membership<NodeId, Node>;

/// The stored membership type of ballast: a membership and the log id of
/// the entry that carried it.
pub type StoredMembershipOf = openraft::StoredMembership<LeaderId, NodeId, Node>;

/// Snapshot metadata of ballast: last log id and membership. Here, beside
/// the other openraft types, because the state machine, the snapshot
/// format and the network all name it and none of them owns it.
pub type SnapshotMeta = openraft::storage::SnapshotMeta<LeaderId, NodeId, Node>;

/// The log id `(term, node_id, index)`.
pub fn log_id(term: u64, node_id: NodeId, index: u64) -> LogId {
    LogId::new(LeaderId { term, node_id }, index)
}

/// Where a node can be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Address of the peer-to-peer Raft RPC listener, `host:port`.
    pub raft_addr: String,
    /// Address of the client (RESP) listener, `host:port`, for redirecting
    /// clients to the leader.
    pub client_addr: String,
}

impl Node {
    /// A node reachable at `raft_addr` (peers) and `client_addr` (clients).
    pub fn new(raft_addr: impl Into<String>, client_addr: impl Into<String>) -> Node {
        Node {
            raft_addr: raft_addr.into(),
            client_addr: client_addr.into(),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} client={}", self.raft_addr, self.client_addr)
    }
}

/// What a normal log entry carries: a [`Request`] and the leader's clock
/// when it proposed it.
///
/// `at_ms` (milliseconds since the Unix epoch) is the time the state
/// machine applies the request *as of*: a key whose expiry is at or before
/// `at_ms` counts as absent for the request's reads (INCR, CAS, SET NX/XX,
/// EXPIRE, ...), and relative TTLs count from it. Every replica applies the
/// same entry with the same time, so no replica's own clock, and no apply
/// lag, can make replicas diverge.
///
/// Along the log the time never decreases: the proposer stamps the larger
/// of its clock and the last time in the log (a new leader first applies
/// its whole log), and apply uses the larger of `at_ms` and the previous
/// entry's time (so even a log written without that rule applies alike
/// everywhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The leader's clock when it proposed, ms since the Unix epoch.
    pub at_ms: u64,
    /// The write.
    pub request: Request,
}

impl Proposal {
    /// `request` as of `at_ms`.
    pub fn new(at_ms: u64, request: Request) -> Proposal {
        Proposal { at_ms, request }
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {} ms", self.request, self.at_ms)
    }
}

/// One write inside a [`Request::Batch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchOp {
    /// Sets `key` to `value` (no expiry).
    Put {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// A replicated write: what a normal log entry asks the state machine to do.
///
/// Every variant is deterministic given the state it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// SET: sets `key` to `value`, expiring at `expire_at_ms` (milliseconds
    /// since the Unix epoch, chosen by the leader) if given.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
        /// Absolute expiry, if any.
        expire_at_ms: Option<u64>,
    },
    /// DEL of one key.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// MSET and multi-key DEL: applied atomically, in order.
    Batch(Vec<BatchOp>),
    /// INCR / INCRBY / DECR: adds `delta` to the decimal integer at `key`
    /// (a missing key counts as 0).
    IncrBy {
        /// The key.
        key: Vec<u8>,
        /// What to add (negative for DECR).
        delta: i64,
    },
    /// CAS key expected new: sets `key` to `new` only if its current value is
    /// `expected` (`None`: only if the key is absent).
    Cas {
        /// The key.
        key: Vec<u8>,
        /// The value the key must hold, or `None` for "absent".
        expected: Option<Vec<u8>>,
        /// The value to set.
        new: Vec<u8>,
    },
    /// EXPIRE / PEXPIRE: makes an existing key expire at `expire_at_ms`.
    Expire {
        /// The key.
        key: Vec<u8>,
        /// Absolute expiry, milliseconds since the Unix epoch.
        expire_at_ms: u64,
    },
    /// PERSIST: removes an existing key's expiry.
    Persist {
        /// The key.
        key: Vec<u8>,
    },
    /// SET with options: sets `key` to `value` if `condition` holds,
    /// expiring at `expire_at_ms` if given (like SET without KEEPTTL, a
    /// `None` drops any earlier expiry). Answers [`Response::Set`].
    Set {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
        /// Absolute expiry, if any.
        expire_at_ms: Option<u64>,
        /// When to write (SET's NX / XX).
        condition: SetCondition,
        /// Answer with the value the key held before (SET ... GET).
        return_old: bool,
    },
    /// DEL of several keys: answers [`Response::Integer`] with how many of
    /// them existed (each key counted once per occurrence that removed it).
    DeleteMany {
        /// The keys, in the client's order.
        keys: Vec<Vec<u8>>,
    },
    /// Independent requests (usually of different clients) proposed as one
    /// entry, so that a busy leader appends, replicates, fsyncs and applies
    /// many writes for the cost of one entry. They are applied in order,
    /// each seeing the ones before it, and each is answered on its own
    /// ([`Response::Multi`], same order). Unlike [`Request::Batch`] this
    /// is not all-or-nothing: a request that is refused (a value that is
    /// not an integer) is answered [`Response::Rejected`] and the others
    /// still apply. The entry's
    /// writes reach the engine as one atomic batch. Never nested, never
    /// empty.
    Multi(Vec<Request>),
    // New variants go last: the RPC's serde encoding numbers variants in
    // order (FORMAT-rpc.md).
    /// SET with EX / PX: [`Request::Set`] with a relative TTL. Apply sets
    /// the expiry to the entry's time ([`Proposal::at_ms`], stamped by the
    /// leader) plus `ttl_ms`, so the deadline is computed once, from the
    /// log, and no replica's clock (nor the clock of the node the client
    /// spoke to) enters it.
    SetWithTtl {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
        /// Milliseconds after the entry's time.
        ttl_ms: u64,
        /// When to write (SET's NX / XX).
        condition: SetCondition,
        /// Answer with the value the key held before (SET ... GET).
        return_old: bool,
    },
    /// EXPIRE / PEXPIRE: [`Request::Expire`] at the entry's time plus
    /// `ttl_ms` (see [`Request::SetWithTtl`]).
    ExpireIn {
        /// The key.
        key: Vec<u8>,
        /// Milliseconds after the entry's time.
        ttl_ms: u64,
    },
    /// GETDEL: removes `key`, answering [`Response::Value`] with the value
    /// it held.
    GetDel {
        /// The key.
        key: Vec<u8>,
    },
    /// GETEX with an option: answers [`Response::Value`] with the value
    /// and changes an existing key's expiry (GETEX without options is a
    /// read and never enters the log).
    GetEx {
        /// The key.
        key: Vec<u8>,
        /// The new expiry: `None` for PERSIST.
        expiry: Option<Deadline>,
    },
    /// APPEND: appends `value` to the key's value (a missing key counts
    /// as empty), keeping its expiry; answers [`Response::Integer`] with
    /// the new length. The result may be at most `value_bytes_max` bytes,
    /// the limit of the node the client spoke to, carried in the entry so
    /// that every replica refuses alike whatever its own setting.
    Append {
        /// The key.
        key: Vec<u8>,
        /// The bytes to append.
        value: Vec<u8>,
        /// Longest value the result may be.
        value_bytes_max: u64,
    },
    /// SETRANGE: overwrites the value from `offset` on, zero-padding a
    /// shorter value, keeping the expiry; answers [`Response::Integer`]
    /// with the new length. `offset + value.len()` was checked against
    /// the value limit where the request entered (the result is never
    /// shorter), so apply needs no limit of its own.
    SetRange {
        /// The key.
        key: Vec<u8>,
        /// Byte offset to write at.
        offset: u64,
        /// The bytes to write; empty writes nothing.
        value: Vec<u8>,
    },
    /// INCRBYFLOAT: adds the decimal `increment` (as the client sent it,
    /// checked where it entered) to the number at `key`, computing in
    /// x87 extended precision in software, as Redis does with its long
    /// double, and stores Redis's exact text; keeps the expiry. Answers
    /// [`Response::Value`] with the new text.
    IncrByFloat {
        /// The key.
        key: Vec<u8>,
        /// The increment's text.
        increment: Vec<u8>,
    },
    /// RENAME / RENAMENX: moves `from`'s value and expiry to `to`,
    /// atomically. RENAME answers [`Response::Done`] (or
    /// [`Response::Rejected`] "no such key"); RENAMENX
    /// ([`only_if_absent`](Request::Rename::only_if_absent)) answers
    /// [`Response::Existed`]: whether it renamed.
    Rename {
        /// The source key.
        from: Vec<u8>,
        /// The destination key.
        to: Vec<u8>,
        /// RENAMENX: only if `to` does not exist.
        only_if_absent: bool,
    },
    /// MSETNX: sets every pair (no expiry) only if none of the keys
    /// exists, atomically; answers [`Response::Existed`] (whether it set).
    MSetNx {
        /// The pairs, in the client's order.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT with NX, XX, GT or LT:
    /// sets the expiry of an existing key if `condition` holds against its
    /// current expiry; a deadline at or before the entry's time deletes
    /// the key. Answers [`Response::Existed`] (whether it changed).
    ExpireWhen {
        /// The key.
        key: Vec<u8>,
        /// The new deadline.
        deadline: Deadline,
        /// Redis 7's conditions.
        condition: ExpireCondition,
    },
    /// Reads inside a transaction: answers [`Response::Values`], each key
    /// as of the entry's time and after the transaction's earlier writes.
    Read {
        /// The keys, in the client's order.
        keys: Vec<Vec<u8>>,
    },
    /// FLUSHALL / FLUSHDB: every user key goes, in one entry applied as
    /// one range delete in the engine (never a loop over the keys), so its
    /// cost does not grow with the data. Answers [`Response::Done`].
    FlushAll,
    /// MULTI ... EXEC: the queued requests, applied in order in one entry,
    /// each answered on its own ([`Response::Multi`]; a refused request
    /// does not undo the others, as in Redis), but only if every watched
    /// key still holds what the client read at WATCH time; otherwise
    /// nothing is applied and the answer is [`Response::Aborted`].
    Transaction {
        /// WATCHed keys and what they held when watched.
        watched: Vec<Watched>,
        /// The queued requests; no Multi or Transaction among them.
        requests: Vec<Request>,
    },
}

/// A new expiry: absolute, or relative to the entry's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Deadline {
    /// Milliseconds since the Unix epoch.
    At(u64),
    /// Milliseconds after the entry's time ([`Proposal::at_ms`]).
    In(u64),
}

impl Deadline {
    /// The absolute deadline for an entry applied at `at_ms`
    /// (saturating: a TTL past the end of time never ends).
    pub fn at(self, at_ms: u64) -> u64 {
        match self {
            Deadline::At(ms) => ms,
            Deadline::In(ms) => at_ms.saturating_add(ms),
        }
    }
}

/// Redis 7's EXPIRE conditions, as flags: several may hold together (XX
/// GT), checked in Redis's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExpireCondition {
    /// NX: only if the key has no expiry.
    pub nx: bool,
    /// XX: only if the key has an expiry.
    pub xx: bool,
    /// GT: only if the new expiry is later (no expiry counts as never).
    pub gt: bool,
    /// LT: only if the new expiry is earlier (no expiry counts as never).
    pub lt: bool,
}

/// A key WATCHed by a transaction and what it held when watched (its value
/// and expiry, or `None` if absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watched {
    /// The key.
    pub key: Vec<u8>,
    /// Its value and expiry at WATCH time.
    pub seen: Option<(Vec<u8>, Option<u64>)>,
}

/// When a [`Request::Set`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCondition {
    /// Always (plain SET).
    Always,
    /// Only if the key is absent (NX).
    IfAbsent,
    /// Only if the key exists (XX).
    IfPresent,
}

impl fmt::Display for Request {
    /// A short description for logs: the kind and key sizes, never values
    /// (they may be large or private).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Put { key, value, .. } => {
                write!(f, "put(key {}B, value {}B)", key.len(), value.len())
            }
            Request::Delete { key } => write!(f, "delete(key {}B)", key.len()),
            Request::Batch(ops) => write!(f, "batch({} ops)", ops.len()),
            Request::IncrBy { key, delta } => write!(f, "incr_by(key {}B, {delta})", key.len()),
            Request::Cas { key, .. } => write!(f, "cas(key {}B)", key.len()),
            Request::Expire { key, expire_at_ms } => {
                write!(f, "expire(key {}B, at {expire_at_ms} ms)", key.len())
            }
            Request::Persist { key } => write!(f, "persist(key {}B)", key.len()),
            Request::Set { key, value, .. } => {
                write!(f, "set(key {}B, value {}B)", key.len(), value.len())
            }
            Request::DeleteMany { keys } => write!(f, "delete_many({} keys)", keys.len()),
            Request::SetWithTtl {
                key, value, ttl_ms, ..
            } => write!(
                f,
                "set(key {}B, value {}B, ttl {ttl_ms} ms)",
                key.len(),
                value.len()
            ),
            Request::ExpireIn { key, ttl_ms } => {
                write!(f, "expire(key {}B, in {ttl_ms} ms)", key.len())
            }
            Request::Multi(reqs) => write!(f, "multi({} requests)", reqs.len()),
            Request::GetDel { key } => write!(f, "getdel(key {}B)", key.len()),
            Request::GetEx { key, .. } => write!(f, "getex(key {}B)", key.len()),
            Request::Append { key, value, .. } => {
                write!(f, "append(key {}B, value {}B)", key.len(), value.len())
            }
            Request::SetRange {
                key, offset, value, ..
            } => write!(
                f,
                "setrange(key {}B, at {offset}, value {}B)",
                key.len(),
                value.len()
            ),
            Request::IncrByFloat { key, .. } => write!(f, "incr_by_float(key {}B)", key.len()),
            Request::Rename { from, to, .. } => {
                write!(f, "rename(key {}B to {}B)", from.len(), to.len())
            }
            Request::MSetNx { pairs } => write!(f, "msetnx({} pairs)", pairs.len()),
            Request::ExpireWhen { key, .. } => write!(f, "expire_when(key {}B)", key.len()),
            Request::Read { keys } => write!(f, "read({} keys)", keys.len()),
            Request::FlushAll => write!(f, "flushall"),
            Request::Transaction { watched, requests } => write!(
                f,
                "transaction({} requests, {} watched)",
                requests.len(),
                watched.len()
            ),
        }
    }
}

/// What applying a [`Request`] answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The write was applied (Put, Batch, blank and membership entries).
    Done,
    /// Delete, Expire, Persist: whether the key existed (for Persist:
    /// whether it had an expiry to remove).
    Existed(bool),
    /// IncrBy: the new value.
    Integer(i64),
    /// Cas: whether the value was swapped, and the value the key held
    /// before (so a failed CAS tells the client what it raced with).
    Cas {
        /// True if `new` was written.
        swapped: bool,
        /// The value before this request.
        current: Option<Vec<u8>>,
    },
    /// Set: whether the value was written (false when NX or XX did not
    /// hold), and the value before when `return_old` was asked for.
    Set {
        /// True if the value was written.
        written: bool,
        /// The value before this request (only if `return_old`).
        old: Option<Vec<u8>>,
    },
    /// The request was applied as a no-op because it could not succeed
    /// (for example IncrBy on a value that is not an integer, or an
    /// overflow); the reason is for the client.
    Rejected(String),
    /// Multi and Transaction: one answer per request, in order.
    Multi(Vec<Response>),
    // New variants go last (see `Request`).
    /// GetDel, GetEx, IncrByFloat: a value, or `None` for a missing key.
    Value(Option<Vec<u8>>),
    /// Read: per key, its value and expiry, or `None`.
    Values(Vec<Option<(Vec<u8>, Option<u64>)>>),
    /// Transaction: a watched key changed since WATCH; nothing was applied.
    Aborted,
}
