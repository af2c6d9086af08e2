//! The embedded node: the Raft log store, the state machine over the
//! engine, openraft, the Raft RPC server and the [`KvApi`] / [`AdminApi`]
//! the RESP server and the admin port are built on.
//!
//! Directory layout under `data_dir`:
//!
//! ```text
//! identity          cluster id, incarnation, peers' incarnations (crates/raft identity)
//! raft-log/         the Raft log (crates/raft log_store)
//! engine/           the storage engine the state machine applies to
//! snapshot-inbox/   snapshots being received from a leader
//! ```
//!
//! Writes are proposed on the leader; a follower forwards them over the
//! Raft network and the leader stamps them with its clock. Linearizable
//! reads run on the leader after openraft's read index (a follower
//! forwards them); stale reads use the local engine. With no leader known a
//! request waits up to `leader_wait_ms`, then fails with
//! [`ApiError::NoLeader`]; every request is bounded by
//! `request_timeout_ms`.
//!
//! The node's files, one concept each:
//!
//! - `start.rs`: opening the log and engine, openraft, the RPC server, and
//!   bootstrapping a new cluster;
//! - `routing.rs`: finding the leader, running a request there or
//!   forwarding it, and the read consistencies;
//! - `kv.rs`: the [`KvApi`] implementation (checks, then routing);
//! - `membership.rs`: the [`AdminApi`] implementation (membership changes).

mod kv;
mod membership;
mod routing;
mod start;

use crate::api::ApiError;
use crate::config::NodeConfig;
use ballast_raft::identity::IdentityRefusal;
use ballast_raft::log_store::{DurableAcks, LogSyncer};
use ballast_raft::net::{BallastRaft, ForwardClient, ServerHandle, VoteGate};
use ballast_raft::propose::Proposer;
use ballast_raft::NodeId;
use ballast_storage::fs::DynFs;
use ballast_storage::{Clock, Db};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Why a node did not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The Raft log or the state machine failed to open or flush.
    #[error("storage: {0}")]
    Storage(#[from] ballast_raft::Error),
    /// The engine failed.
    #[error("engine: {0}")]
    Engine(#[from] ballast_storage::Error),
    /// openraft refused to start or initialize.
    #[error("raft: {0}")]
    Raft(String),
    /// The RPC server could not start.
    #[error("raft network: {0}")]
    Net(#[from] ballast_raft::net::NetError),
    /// This node's data directory is empty but its initial members know it
    /// from before: it was wiped, and must not bootstrap or vote with an
    /// empty log. The text says how to replace it.
    #[error("refusing to start: this node's data directory is new, but its cluster knows it from before ({0})")]
    WipedMember(IdentityRefusal),
    /// The state machine was durable ahead of the Raft log (the flush
    /// barrier failed): the log lacks applied entries and no snapshot
    /// covers them, so this node could never send them to a follower
    /// (openraft's own invariant, `purge_upto <= snapshot`, is broken).
    /// Like etcd with a log behind its commit index, it refuses to start.
    #[error("refusing to start: {0}; replace this node: remove it from the cluster, empty its data directory, and add it back as a learner")]
    StateAheadOfLog(String),
}

/// What a node found on its disk when it started, before openraft
/// reconciled its log with its state machine.
///
/// Under the flush barrier (`Options::flush_barrier`) the engine makes
/// applied entries durable only once the Raft log holding them is durable,
/// so the state machine is never durably ahead of its own log, except just
/// after a snapshot install whose log purge a crash interrupted (openraft
/// repairs that case by purging at start). [`OpenState::ahead_of_log`]
/// names any other case, and the node refuses to start
/// ([`NodeError::StateAheadOfLog`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenState {
    /// The last index the Raft log held: its last entry, else its last
    /// purged index.
    pub log_last_index: Option<u64>,
    /// The last index the state machine had applied durably (after
    /// finishing a snapshot install a crash interrupted).
    pub applied_index: Option<u64>,
    /// The last index of the newest snapshot the state machine keeps.
    pub snapshot_index: Option<u64>,
    /// The vote the Raft log held.
    pub vote: Option<ballast_raft::Vote>,
}

impl OpenState {
    /// Says how the state machine was durably ahead of the log, if it was
    /// and a snapshot does not explain it (its applied index is not the
    /// newest snapshot's).
    pub fn ahead_of_log(&self) -> Option<String> {
        let applied = self.applied_index?;
        let ahead = self.log_last_index.is_none_or(|l| applied > l);
        (ahead && self.snapshot_index != Some(applied)).then(|| {
            format!(
                "the state machine was durable at index {applied}, ahead of its Raft log \
                 ending at {} (newest snapshot: {}): applied entries were flushed before \
                 the log holding them was durable",
                fmt_index(self.log_last_index),
                fmt_index(self.snapshot_index),
            )
        })
    }
}

fn fmt_index(i: Option<u64>) -> String {
    i.map_or_else(|| "none".into(), |i| i.to_string())
}

/// A running node. Cloning gives another handle to the same node.
#[derive(Clone)]
pub struct Node {
    shared: Arc<NodeShared>,
}

/// What every handle of one node shares: its configuration, Raft and the
/// engine, the RPC server, and the state of its requests in flight.
struct NodeShared {
    config: NodeConfig,
    fs: DynFs,
    raft: BallastRaft,
    db: Arc<Db>,
    log_syncer: LogSyncer,
    clock: Arc<dyn Clock>,
    forward: Arc<ForwardClient>,
    /// Closed while this node waits, after an unclean restart, for a
    /// leader to catch it up (see [`crate::rejoin`]).
    votes: VoteGate,
    server: tokio::sync::Mutex<Option<ServerHandle>>,
    raft_local_addr: SocketAddr,
    stopping: AtomicBool,
    /// True once the state machine holds at least what it held before the
    /// last restart (openraft's `wait_for_recovery`). Stale reads are
    /// refused before; linearizable ones wait for it (within their
    /// deadline), though the read index on the leader already covers a
    /// restart: measured, the wait costs nothing (README).
    recovered: tokio::sync::watch::Sender<bool>,
    /// Writes proposed on this node and not yet answered.
    proposals: InFlight,
    /// Batches this node's writes (and those forwarded to it) into entries.
    proposer: Proposer,
    /// What it found on its disk at start.
    opened: OpenState,
    /// What its Raft log acknowledged as durable.
    durable_acks: DurableAcks,
}

/// Counts proposals in flight on the leader, and the most at once.
#[derive(Default)]
struct InFlight {
    now: AtomicU64,
    peak: AtomicU64,
}

impl InFlight {
    fn enter(&self) -> InFlightGuard<'_> {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        InFlightGuard(self)
    }
}

/// One proposal in flight; leaving the scope (answer, error, timeout or
/// cancellation) ends it.
struct InFlightGuard<'a>(&'a InFlight);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.shared.config.id)
            .field("raft_addr", &self.shared.raft_local_addr)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.shared.config.id
    }

    /// What this node found on its disk when it started.
    pub fn opened(&self) -> OpenState {
        self.shared.opened
    }

    /// The last log index this node's Raft log acknowledged as durable
    /// (durable preset; see [`DurableAcks`]): a power loss must not take
    /// it away.
    pub fn log_durable_acks(&self) -> DurableAcks {
        self.shared.durable_acks.clone()
    }

    /// The address the Raft RPC server listens on.
    pub fn raft_addr(&self) -> SocketAddr {
        self.shared.raft_local_addr
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.shared.config
    }

    /// Writes proposed on this node (as leader) and not yet answered.
    pub fn proposals_in_flight(&self) -> u64 {
        self.shared.proposals.now.load(Ordering::Relaxed)
    }

    /// The most writes that were in flight on this node at once since it
    /// started: above 1 when writes are proposed without waiting for each
    /// other.
    pub fn proposals_in_flight_peak(&self) -> u64 {
        self.shared.proposals.peak.load(Ordering::Relaxed)
    }

    /// False while this node waits, after an unclean restart under a
    /// relaxed preset, for a leader to catch it up (it neither votes nor
    /// stands for election meanwhile; see [`crate::rejoin`]).
    pub fn is_voting(&self) -> bool {
        self.shared.votes.is_open()
    }

    /// True while this node restarted uncleanly under a relaxed preset and
    /// no leader has caught it up yet.
    pub fn is_waiting_to_rejoin(&self) -> bool {
        self.shared.votes.is_waiting()
    }

    /// The openraft handle (metrics, waits; for tests and the admin port).
    pub fn raft(&self) -> &BallastRaft {
        &self.shared.raft
    }

    /// Stops Raft and the RPC server, fsyncs the Raft log (relaxed presets
    /// buffer it), then flushes the engine so its state is durable without
    /// a log replay. Requests fail with
    /// [`ApiError::ShuttingDown`] from the start of the call. The engine
    /// closes when the last handle to this node is dropped.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.stop().await;
        self.shared.log_syncer.sync().await?;
        self.shared.db.flush().await?;
        // Only now is everything this node acknowledged durable.
        let dir = &self.shared.config.data_dir;
        crate::rejoin::write_clean_marker(&*self.shared.fs, dir).map_err(|source| {
            NodeError::DataDir {
                path: dir.clone(),
                source,
            }
        })?;
        tracing::info!(id = self.id(), "ballast node stopped");
        Ok(())
    }

    /// Stops Raft and the RPC server the way a process crash would leave
    /// the disk: nothing is flushed, the engine's memtable is dropped, and
    /// a restart recovers from the Raft log. For tests of crash recovery.
    pub async fn kill(&self) {
        self.stop().await;
        // No flush: the memtable dies as with the process. Stopping the
        // engine's workers now keeps a flush from making it durable after
        // the "crash".
        self.shared.db.halt().await;
        tracing::info!(id = self.id(), "ballast node killed (no flush)");
    }

    async fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Err(e) = self.shared.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
        if let Some(server) = self.shared.server.lock().await.take() {
            server.shutdown().await;
        }
    }

    fn running(&self) -> Result<(), ApiError> {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Err(ApiError::ShuttingDown);
        }
        Ok(())
    }

    fn timeout_error(&self) -> ApiError {
        ApiError::Timeout {
            ms: self.shared.config.request_timeout_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OpenState;

    fn open(log: Option<u64>, applied: Option<u64>, snapshot: Option<u64>) -> OpenState {
        OpenState {
            log_last_index: log,
            applied_index: applied,
            snapshot_index: snapshot,
            vote: None,
        }
    }

    #[test]
    fn applied_state_ahead_of_the_log_is_named_unless_a_snapshot_explains_it() {
        // In step, or behind: nothing to say.
        assert_eq!(open(Some(10), Some(10), None).ahead_of_log(), None);
        assert_eq!(open(Some(10), Some(4), Some(2)).ahead_of_log(), None);
        assert_eq!(open(None, None, None).ahead_of_log(), None);
        // An install whose purge a crash interrupted.
        assert_eq!(open(Some(3), Some(9), Some(9)).ahead_of_log(), None);
        assert_eq!(open(None, Some(9), Some(9)).ahead_of_log(), None);
        // Flushed ahead of the log.
        let ahead = open(Some(445), Some(449), Some(299)).ahead_of_log();
        assert!(ahead
            .is_some_and(|w| w.contains("durable at index 449") && w.contains("ending at 445")));
        assert!(open(None, Some(149), None).ahead_of_log().is_some());
    }
}
