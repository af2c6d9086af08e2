//! The typed key-value API of a node: what the RESP server (and an embedded
//! user) asks of it. [`crate::Node`] implements it over Raft: writes become
//! log entries (forwarded to the leader when this node is a follower),
//! linearizable reads go through openraft's read index.
//!
//! Keys and values are bytes. Times are milliseconds since the Unix epoch,
//! read from the node's clock ([`KvApi::now_ms`]) when a request is made,
//! so that the leader, not each replica, decides when a key expires.

use ballast_raft::{NodeId, Request, Response};
use bytes::Bytes;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Sees every write acknowledged before the read started (openraft read
    /// index on the leader; a follower forwards the read). The default.
    #[default]
    Linearizable,
    /// This node's applied state, whatever its role: may miss recent writes.
    Stale,
}

/// A live value and its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value.
    pub value: Bytes,
    /// When it expires (milliseconds since the Unix epoch), if ever.
    pub expire_at_ms: Option<u64>,
}

/// One page of a key scan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanPage {
    /// Live keys in ascending order, starting at the requested key.
    pub keys: Vec<Bytes>,
    /// Where the next page starts; `None` when the scan reached the end.
    pub next: Option<Bytes>,
}

/// Why a request was not served. The RESP server turns each into an error
/// reply; the text says what a client can do about it.
///
/// Every variant says whether a write may have happened, so a client (or
/// a history checker) can tell from the variant alone: [`ApiError::Timeout`]
/// and [`ApiError::Unknown`] mean "may or may not be applied"; every other
/// variant means "nothing was applied" (the request was refused or never
/// proposed), so retrying it cannot apply it twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No leader is known right now (an election is under way, or this
    /// node is cut off); nothing was applied. Retrying after a short wait
    /// is the fix.
    #[error("no leader is known right now; retry shortly")]
    NoLeader,
    /// The request did not complete in time; its outcome is unknown (a
    /// write may still be applied).
    #[error("timed out after {ms} ms; the outcome is unknown")]
    Timeout {
        /// How long the node waited.
        ms: u64,
    },
    /// The node is shutting down; nothing was applied.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The request is not acceptable (for example a key over the size
    /// limit); nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// The node could not serve the request (storage or replication
    /// failure, no quorum for a read); nothing was applied, so a retry is
    /// safe. The text says what failed.
    #[error("{0}")]
    Unavailable(String),
    /// A write was (or may have been) handed to the leader's log and then
    /// its answer was lost: the leader went away mid-request, Raft dropped
    /// it, or the connection broke after sending. It may or may not be
    /// applied: read the key back before retrying a write that is not
    /// idempotent. Used for nothing else.
    #[error("{0}; the write may or may not be applied")]
    Unknown(String),
}

impl ApiError {
    /// Whether a write that failed with this error may still have been
    /// applied ([`ApiError::Timeout`] and [`ApiError::Unknown`]).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ApiError::Timeout { .. } | ApiError::Unknown(_))
    }
}

/// What the node reports about itself (INFO, /status, /metrics).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeStatus {
    /// This node's id.
    pub id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader this node knows of, with its client address.
    pub leader: Option<(NodeId, String)>,
    /// The last log index this node has.
    pub last_log_index: Option<u64>,
    /// The last committed index this node knows of.
    pub commit_index: Option<u64>,
    /// The last index applied to the state machine.
    pub applied_index: Option<u64>,
    /// Voter ids of the current membership.
    pub voters: Vec<NodeId>,
    /// Learner ids of the current membership.
    pub learners: Vec<NodeId>,
    /// The durability preset this node runs (`durable`, `balanced`,
    /// `throughput`).
    pub preset: String,
    /// Log entries this node proposed as leader (each carries one or more
    /// writes).
    pub proposed_entries: u64,
    /// Writes those entries carried.
    pub proposed_writes: u64,
    /// A hash of every live key, value and expiry as of the last applied
    /// entry's time (`ballast_raft::state_machine::state_hash`): replicas
    /// that applied the same entries report the same hash. `None` if the
    /// engine could not be read.
    pub state_hash: Option<String>,
}

/// How [`KvApi::write_ordered`] says that a write's place among the writes
/// is fixed: every write submitted after that moment is applied after it
/// (if both are applied). The RESP server then lets a later write of the
/// same connection to the same key go ahead without waiting for this one's
/// answer.
#[derive(Debug)]
pub struct Ordered {
    flag: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
}

impl Ordered {
    /// A signal that sets `flag` and wakes `wake` when given.
    pub fn new(flag: Arc<AtomicBool>, wake: Arc<tokio::sync::Notify>) -> Ordered {
        Ordered { flag, wake }
    }

    /// Says the write is ordered. Dropping the signal instead says nothing.
    pub fn signal(self) {
        self.flag.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// The typed API the RESP server is built on.
pub trait KvApi: Send + Sync + 'static {
    /// Proposes a write and waits for its answer (after it is committed and
    /// applied). A follower forwards it to the leader.
    fn write(&self, req: Request) -> impl Future<Output = Result<Response, ApiError>> + Send;

    /// [`KvApi::write`], and gives `ordered` as soon as the write is
    /// submitted in order (see [`Ordered`]), which can be long before its
    /// answer. The default never gives it: the caller then treats the
    /// write as ordered only once it is answered.
    fn write_ordered(
        &self,
        req: Request,
        ordered: Ordered,
    ) -> impl Future<Output = Result<Response, ApiError>> + Send {
        drop(ordered);
        self.write(req)
    }

    /// Reads the live values of `keys` (expired keys are absent), all as of
    /// one point that satisfies `consistency`.
    fn get_many(
        &self,
        keys: Vec<Bytes>,
        consistency: Consistency,
    ) -> impl Future<Output = Result<Vec<Option<Value>>, ApiError>> + Send;

    /// Up to `limit` live keys from `start` (inclusive) in ascending order.
    fn scan_keys(
        &self,
        start: Bytes,
        limit: usize,
        consistency: Consistency,
    ) -> impl Future<Output = Result<ScanPage, ApiError>> + Send;

    /// The number of live keys (DBSIZE).
    fn count_keys(
        &self,
        consistency: Consistency,
    ) -> impl Future<Output = Result<u64, ApiError>> + Send;

    /// The node's clock: milliseconds since the Unix epoch. EX/PX and
    /// EXPIRE turn relative times into absolute ones with it, and TTL
    /// answers relative to it.
    fn now_ms(&self) -> u64;

    /// What the node reports about itself, without the state hash
    /// (`state_hash: None`): INFO and /metrics call this often.
    fn status(&self) -> NodeStatus;

    /// [`KvApi::status`] with the state hash, which reads every live key:
    /// for /status and tests that compare replicas, not for frequent use.
    fn status_with_hash(&self) -> NodeStatus {
        self.status()
    }
}

/// Membership operations (the admin HTTP port's), and what /metrics adds.
pub trait AdminApi: KvApi {
    /// Adds `id` as a learner reachable at the given addresses and waits
    /// until it has caught up with the leader's log.
    fn add_learner(
        &self,
        id: NodeId,
        raft_addr: String,
        client_addr: String,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Makes `voters` the voting members: ids not in it stop voting (and
    /// leave the cluster unless `keep_as_learners`); learners in it are
    /// promoted. Waits until the change is committed.
    fn change_voters(
        &self,
        voters: std::collections::BTreeSet<NodeId>,
        keep_as_learners: bool,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// The storage engine's counters on this node.
    fn engine_stats(&self) -> ballast_storage::StatsSnapshot;

    /// The secret membership changes on the admin port need as a bearer
    /// token; `None` (the default) leaves them open. A [`crate::Node`]
    /// answers its config's `secret`.
    fn admin_secret(&self) -> Option<ballast_raft::net::Secret> {
        None
    }
}
