//! The openraft type configuration for ballast: who the nodes are, what a
//! log entry asks of the state machine ([`Request`]), and what it answers
//! ([`Response`]).
//!
//! Requests carry everything a replica needs to apply them identically:
//! expiry is an absolute time in milliseconds (`expire_at_ms`) chosen by the
//! leader from its clock handle when it proposes, never read from a clock at
//! apply time, so replaying the log anywhere gives the same state.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The runtime openraft runs on. Tokio today; the simulation swaps in a
/// runtime with a seeded RNG through this one alias.
pub type Runtime = openraft_rt_tokio::TokioRuntime;

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
/// EXPIRE, ...). Every replica applies the same entry with the same time,
/// so no replica's own clock, and no apply lag, can make replicas diverge.
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
    /// not an integer, a key over the engine's limit) is answered
    /// [`Response::Rejected`] and the others still apply. The entry's
    /// writes reach the engine as one atomic batch. Never nested, never
    /// empty.
    Multi(Vec<Request>),
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

impl Request {
    /// Bytes of keys and values the request carries, plus a small charge
    /// per key: what batching budgets with.
    pub fn payload_bytes(&self) -> usize {
        const PER_KEY: usize = 16;
        let kv = |k: &[u8], v: &[u8]| PER_KEY + k.len() + v.len();
        match self {
            Request::Put { key, value, .. } | Request::Set { key, value, .. } => kv(key, value),
            Request::Delete { key }
            | Request::IncrBy { key, .. }
            | Request::Expire { key, .. }
            | Request::Persist { key } => kv(key, &[]),
            Request::Cas { key, expected, new } => {
                kv(key, new) + expected.as_ref().map_or(0, Vec::len)
            }
            Request::Batch(ops) => ops
                .iter()
                .map(|op| match op {
                    BatchOp::Put { key, value } => kv(key, value),
                    BatchOp::Delete { key } => kv(key, &[]),
                })
                .sum(),
            Request::DeleteMany { keys } => keys.iter().map(|k| kv(k, &[])).sum(),
            Request::Multi(reqs) => reqs.iter().map(Request::payload_bytes).sum(),
        }
    }

    /// INCR: `IncrBy` with a delta of 1.
    pub fn incr(key: impl Into<Vec<u8>>) -> Request {
        Request::IncrBy {
            key: key.into(),
            delta: 1,
        }
    }
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
            Request::Multi(reqs) => write!(f, "multi({} requests)", reqs.len()),
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
    /// Multi: one answer per request, in order.
    Multi(Vec<Response>),
}
