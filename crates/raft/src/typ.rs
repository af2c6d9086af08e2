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

/// The limits a node checks every request against where it enters (the
/// client API, a forwarded write, the proposer): the node's configured key
/// and value limits and its largest request. Apply never checks them again
/// (an entry in the log is applied the same way on every node, whatever
/// each node's own settings say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Longest key, in bytes (keys are never empty).
    pub key_bytes_max: u64,
    /// Longest value (and CAS expected value), in bytes.
    pub value_bytes_max: u64,
    /// Largest request, in [`Request::payload_bytes`].
    pub request_bytes_max: u64,
}

impl RequestLimits {
    /// Only what the log format can hold: lengths are u32 on disk.
    pub const FORMAT: RequestLimits = RequestLimits {
        key_bytes_max: u32::MAX as u64,
        value_bytes_max: u32::MAX as u64,
        request_bytes_max: u32::MAX as u64,
    };
}

/// Why a request was refused where it entered; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// A `Multi` with no request: nothing to propose.
    #[error("an empty multi request: send at least one request")]
    EmptyMulti,
    /// A `Multi` from outside the proposer: only the leader's proposer
    /// groups requests into one.
    #[error(
        "a multi request from a client: send its requests one by one (the leader groups them)"
    )]
    MultiFromClient,
    /// A `Multi` inside a `Multi`: the log format holds one level only.
    #[error("a multi request inside a multi request: flatten it into one multi")]
    NestedMulti,
    /// An empty key.
    #[error("an empty key: keys must be 1 to {max} bytes")]
    EmptyKey {
        /// The node's `key_bytes_max`.
        max: u64,
    },
    /// A key over the node's limit.
    #[error("a key of {len} bytes: keys must be 1 to {max} bytes (key_bytes_max)")]
    KeyTooLarge {
        /// The key's length.
        len: u64,
        /// The node's `key_bytes_max`.
        max: u64,
    },
    /// A value over the node's limit.
    #[error("a value of {len} bytes: values must be at most {max} bytes (value_bytes_max)")]
    ValueTooLarge {
        /// The value's length.
        len: u64,
        /// The node's `value_bytes_max`.
        max: u64,
    },
    /// The request as a whole is over the node's limit.
    #[error("a request of {bytes} bytes: split it; requests must be at most {max} bytes")]
    TooLarge {
        /// The request's [`Request::payload_bytes`].
        bytes: u64,
        /// The node's largest request.
        max: u64,
    },
    /// More elements than the log format can count (u32).
    #[error("a request of {count} keys or requests: at most {max} fit one log entry")]
    TooManyElements {
        /// The count.
        count: u64,
        /// `u32::MAX`.
        max: u64,
    },
}

impl Request {
    /// Bytes of keys and values the request carries, plus a small charge
    /// per key: what batching budgets with.
    pub fn payload_bytes(&self) -> usize {
        const PER_KEY: usize = 16;
        let kv = |k: &[u8], v: &[u8]| PER_KEY + k.len() + v.len();
        match self {
            Request::Put { key, value, .. }
            | Request::Set { key, value, .. }
            | Request::SetWithTtl { key, value, .. } => kv(key, value),
            Request::Delete { key }
            | Request::ExpireIn { key, .. }
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

    /// Whether the log format can hold the request: the codec writes and
    /// reads exactly the requests this accepts (no empty or nested
    /// `Multi`, every length and count within u32).
    pub fn check_structure(&self) -> Result<(), InvalidRequest> {
        self.validate_in(&RequestLimits::FORMAT, false, true)
    }

    /// Checks the request where it enters a node (client API, forwarded
    /// write, proposer): [`Request::check_structure`], then `limits` on
    /// every key, value and on the whole. A request that passes is one
    /// every replica applies without consulting its own settings.
    /// A `Multi` is refused here: only the proposer forms one, from
    /// requests that each passed this check.
    pub fn validate(&self, limits: &RequestLimits) -> Result<(), InvalidRequest> {
        if matches!(self, Request::Multi(_)) {
            return Err(InvalidRequest::MultiFromClient);
        }
        self.validate_in(limits, false, false)?;
        let bytes = self.payload_bytes() as u64;
        if bytes > limits.request_bytes_max {
            return Err(InvalidRequest::TooLarge {
                bytes,
                max: limits.request_bytes_max,
            });
        }
        Ok(())
    }

    /// `structure_only`: what the codec can hold, where an empty key is
    /// fine (the engine refuses it at apply, on every node alike).
    fn validate_in(
        &self,
        limits: &RequestLimits,
        nested: bool,
        structure_only: bool,
    ) -> Result<(), InvalidRequest> {
        let key = |k: &[u8]| {
            let len = k.len() as u64;
            if len == 0 && !structure_only {
                Err(InvalidRequest::EmptyKey {
                    max: limits.key_bytes_max,
                })
            } else if len > limits.key_bytes_max.min(u32::MAX as u64) {
                Err(InvalidRequest::KeyTooLarge {
                    len,
                    max: limits.key_bytes_max,
                })
            } else {
                Ok(())
            }
        };
        let value = |v: &[u8]| {
            let len = v.len() as u64;
            if len > limits.value_bytes_max.min(u32::MAX as u64) {
                Err(InvalidRequest::ValueTooLarge {
                    len,
                    max: limits.value_bytes_max,
                })
            } else {
                Ok(())
            }
        };
        let count = |n: usize| {
            if n as u64 > u32::MAX as u64 {
                Err(InvalidRequest::TooManyElements {
                    count: n as u64,
                    max: u32::MAX as u64,
                })
            } else {
                Ok(())
            }
        };
        match self {
            Request::Put {
                key: k, value: v, ..
            }
            | Request::Set {
                key: k, value: v, ..
            }
            | Request::SetWithTtl {
                key: k, value: v, ..
            } => {
                key(k)?;
                value(v)
            }
            Request::Delete { key: k }
            | Request::IncrBy { key: k, .. }
            | Request::Expire { key: k, .. }
            | Request::ExpireIn { key: k, .. }
            | Request::Persist { key: k } => key(k),
            Request::Cas {
                key: k,
                expected,
                new,
            } => {
                key(k)?;
                if let Some(e) = expected {
                    value(e)?;
                }
                value(new)
            }
            Request::Batch(ops) => {
                count(ops.len())?;
                ops.iter().try_for_each(|op| match op {
                    BatchOp::Put { key: k, value: v } => {
                        key(k)?;
                        value(v)
                    }
                    BatchOp::Delete { key: k } => key(k),
                })
            }
            Request::DeleteMany { keys } => {
                count(keys.len())?;
                keys.iter().try_for_each(|k| key(k))
            }
            Request::Multi(_) if nested => Err(InvalidRequest::NestedMulti),
            Request::Multi(reqs) if reqs.is_empty() => Err(InvalidRequest::EmptyMulti),
            Request::Multi(reqs) => {
                count(reqs.len())?;
                reqs.iter()
                    .try_for_each(|r| r.validate_in(limits, true, structure_only))
            }
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
