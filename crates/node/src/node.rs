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

use crate::api::{AdminApi, ApiError, Consistency, KvApi, NodeStatus, Ordered, ScanPage, Value};
use crate::config::NodeConfig;
use crate::env::NodeEnv;
use ballast_raft::identity::{Identity, IdentityRefusal};
use ballast_raft::log_store::LogSyncer;
use ballast_raft::net::client::{Conn, ForwardFailure};
use ballast_raft::net::server::{self, ServerContext};
use ballast_raft::net::{
    read, BallastRaft, ForwardClient, ForwardError, NetConfig, Network, ReadAnswer, ReadRequest,
    RpcServer, Secret, ServerHandle, VoteGate,
};
use ballast_raft::planted::NodeBug;
use ballast_raft::propose::{Proposer, ProposerOptions};
use ballast_raft::state_machine::StateMachine;
use ballast_raft::transfer::SnapshotInbox;
use ballast_raft::{LogStore, NodeId, Request, Response};
use ballast_storage::fs::DynFs;
use ballast_storage::wal::WalOptions;
use ballast_storage::{Clock, Db};
use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::{ServerState, SnapshotPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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
}

/// A running node. Cloning gives another handle to the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
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
            .field("id", &self.inner.config.id)
            .field("raft_addr", &self.inner.raft_local_addr)
            .finish_non_exhaustive()
    }
}

/// What a request does once routed to the leader.
enum Call {
    Write(Request),
    Read(ReadRequest),
}

enum Answer {
    Write(Response),
    Read(ReadAnswer),
}

impl Node {
    /// Starts a node: opens the Raft log and the engine under
    /// `config.data_dir`, starts openraft and the RPC server, and
    /// bootstraps the cluster from `initial_members` if this node was
    /// never initialized (a restart resumes its cluster and data).
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        Node::start_with(config, NodeEnv::production()).await
    }

    /// [`Node::start`] in the environment `env` (its file system, nonces
    /// and cut links).
    pub async fn start_with(config: NodeConfig, env: NodeEnv) -> Result<Node, NodeError> {
        config.validate()?;
        let id = config.id;
        let fs = env.fs.clone();
        let dir = config.data_dir.clone();
        let inbox_dir = dir.join("snapshot-inbox");
        let data_dir_error = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| NodeError::DataDir { path, source }
        };
        for d in [&dir, &inbox_dir] {
            fs.create_dir_all(d).map_err(data_dir_error(d))?;
        }
        let mut engine_options = config.engine_options();
        engine_options.fs = fs.clone();
        let mut log_wal = WalOptions::from_options(&engine_options);
        if let Some(bytes) = config.raft_log_segment_bytes {
            log_wal.segment_bytes = bytes;
        }
        let (log_store, report) = LogStore::open_with_policy(
            fs.clone(),
            &dir.join("raft-log"),
            log_wal,
            engine_options.fsync,
        )
        .await?;
        log_store.set_planted(config.planted)?;
        let log_syncer = log_store.syncer();
        // From here until a clean shutdown writes it again, a crash is an
        // unclean shutdown. Taken only once the log's lock is held, so a
        // start that fails on a locked directory leaves the marker alone.
        let was_clean =
            crate::rejoin::take_clean_marker(&*fs, &dir).map_err(data_dir_error(&dir))?;
        // A relaxed preset acknowledges entries before they are durable: after
        // an unclean shutdown this node may have lost some it acknowledged,
        // so it must not vote until caught up (crate::rejoin). A node that
        // never stored anything has acknowledged nothing.
        let relaxed = !matches!(engine_options.fsync, ballast_storage::FsyncPolicy::Group);
        let stored_before = report.entries > 0 || log_store.vote()?.is_some();
        let unclean = relaxed
            && stored_before
            && !was_clean
            && !config.planted.has(NodeBug::UncleanNodeVotes);
        if unclean {
            tracing::warn!(
                id,
                "restarted after an unclean shutdown under the {} preset: not voting \
                 until a leader has caught this node up",
                config.preset.name()
            );
        }
        let votes = if unclean {
            VoteGate::closed()
        } else {
            VoteGate::open()
        };
        let clock = engine_options.clock.clone();
        engine_options.flush_barrier = Some(Arc::new(log_syncer.clone()));
        let mut sm = StateMachine::open(&dir.join("engine"), engine_options).await?;
        sm.set_planted(config.planted);
        // The log store refuses to truncate below what was applied.
        let applied_index = ballast_raft::log_store::AppliedIndex::new();
        sm.set_applied_index(applied_index.clone());
        log_store.set_applied_index(applied_index)?;
        let db = sm.shared_db();

        let identity = Identity::open(fs.clone(), &dir, id, &*env.nonces, config.planted)?;
        let mut net = NetConfig::new(env.nonces.clone());
        net.links = env.links.clone();
        net.frame_bytes_max = config.raft_frame_bytes_max;
        net.call_timeout = Duration::from_millis(config.request_timeout_ms);
        net.secret = config.secret.as_deref().map(Secret::new);
        net.identity = Some(identity.clone());
        net.validate()?;
        let net = Arc::new(net);

        let raft_config = openraft::Config {
            cluster_name: "ballast".into(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            // A snapshot's final step installs it; give that room.
            install_snapshot_timeout: config.request_timeout_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_after_entries),
            max_in_snapshot_log_to_keep: config.snapshot_keep_entries,
            // Off until caught up after an unclean restart (crate::rejoin).
            enable_elect: !unclean,
            // Under a relaxed preset a follower that lost power comes back
            // without entries it acknowledged: expected, so the leader
            // replicates them again instead of treating it as a bug (its
            // default is to panic).
            allow_log_reversion: Some(relaxed),
            // A restarted leader must win an election again (openraft issue
            // 1511): restoring it at once would let it answer read-index
            // reads from the state machine it reopened at its last flush,
            // behind what the cluster had committed. The election's blank
            // entry is what every linearizable read then waits to apply.
            enable_leader_restore: Some(
                config.planted.has(NodeBug::LeaderRestoreUnpersistedCommit),
            ),
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Raft(format!("invalid Raft settings: {e}")))?;
        let raft = BallastRaft::new(
            id,
            Arc::new(raft_config),
            Network::new(id, net.clone()),
            log_store,
            sm,
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;

        let inbox = SnapshotInbox {
            fs: fs.clone(),
            dir: inbox_dir,
            max_len: config.snapshot_bytes_max,
        };
        // Receives a crash interrupted are garbage: remove them before any
        // new receive can start.
        let leftovers =
            ballast_raft::snapshot::clear_inbox(&inbox).map_err(|source| NodeError::DataDir {
                path: inbox.dir.clone(),
                source,
            })?;
        if leftovers > 0 {
            tracing::info!(leftovers, "removed interrupted snapshot receives");
        }
        let proposer_options = ProposerOptions {
            entries_in_flight_max: config.entries_in_flight_max as usize,
            writes_per_entry_max: config.writes_per_entry_max as usize,
            ..ProposerOptions::default()
        };
        let proposer = Proposer::start(raft.clone(), clock.clone(), proposer_options);
        let ctx = ServerContext {
            raft: raft.clone(),
            db: db.clone(),
            inbox,
            proposer: proposer.clone(),
            cfg: net.clone(),
            votes: votes.clone(),
        };
        let server = match RpcServer::start(&config.raft_addr, ctx).await {
            Ok(s) => s,
            Err(e) => {
                let _ = raft.shutdown().await;
                return Err(e.into());
            }
        };
        let raft_local_addr = server.local_addr();

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if !initialized && !config.initial_members.is_empty() {
            if let Err(e) = bootstrap(&config, &raft, &net, &identity).await {
                let _ = raft.shutdown().await;
                server.shutdown().await;
                return Err(e);
            }
        }
        watch_membership(raft.clone(), identity.clone());

        let node = Node {
            inner: Arc::new(Inner {
                config,
                fs,
                raft,
                db,
                log_syncer,
                clock,
                forward: Arc::new(ForwardClient::new(net)),
                votes,
                server: tokio::sync::Mutex::new(Some(server)),
                raft_local_addr,
                stopping: AtomicBool::new(false),
                recovered: tokio::sync::watch::Sender::new(false),
                proposals: InFlight::default(),
                proposer,
            }),
        };
        if unclean {
            let poll = Duration::from_millis(node.inner.config.election_timeout_min_ms);
            tokio::spawn(crate::rejoin::wait_then_open(
                id,
                node.inner.raft.clone(),
                node.inner.votes.clone(),
                node.inner.forward.clone(),
                poll,
            ));
        }
        // After a restart the engine may be behind what this node served
        // before (the committed index it read back may predate its last
        // apply) until the cluster re-establishes the commit; that needs
        // the other nodes, so it runs in the background instead of
        // blocking start. It ends when recovered or when Raft shuts down.
        let (raft, inner) = (node.inner.raft.clone(), Arc::downgrade(&node.inner));
        tokio::spawn(async move {
            match raft.wait_for_recovery(None).await {
                Ok(_) => {
                    if let Some(inner) = inner.upgrade() {
                        inner.recovered.send_replace(true);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "recovery wait ended"),
            }
        });
        let c = &node.inner.config;
        tracing::info!(
            id,
            raft_addr = %raft_local_addr,
            client_addr = %c.client_addr,
            admin_addr = %c.admin_addr,
            preset = c.preset.name(),
            role = %node.status().role,
            initialized,
            log_entries = report.entries,
            "ballast node {id} started: raft {raft_local_addr}, clients {}, admin {}, preset {}, role {}",
            c.client_addr,
            c.admin_addr,
            c.preset.name(),
            node.status().role,
        );
        Ok(node)
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.inner.config.id
    }

    /// The address the Raft RPC server listens on.
    pub fn raft_addr(&self) -> SocketAddr {
        self.inner.raft_local_addr
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Writes proposed on this node (as leader) and not yet answered.
    pub fn proposals_in_flight(&self) -> u64 {
        self.inner.proposals.now.load(Ordering::Relaxed)
    }

    /// The most writes that were in flight on this node at once since it
    /// started: above 1 when writes are proposed without waiting for each
    /// other.
    pub fn proposals_in_flight_peak(&self) -> u64 {
        self.inner.proposals.peak.load(Ordering::Relaxed)
    }

    /// False while this node waits, after an unclean restart under a
    /// relaxed preset, for a leader to catch it up (it neither votes nor
    /// stands for election meanwhile; see [`crate::rejoin`]).
    pub fn is_voting(&self) -> bool {
        self.inner.votes.is_open()
    }

    /// True while this node restarted uncleanly under a relaxed preset and
    /// no leader has caught it up yet.
    pub fn is_waiting_to_rejoin(&self) -> bool {
        self.inner.votes.is_waiting()
    }

    /// The openraft handle (metrics, waits; for tests and the admin port).
    pub fn raft(&self) -> &BallastRaft {
        &self.inner.raft
    }

    /// Stops Raft and the RPC server, fsyncs the Raft log (relaxed presets
    /// buffer it), then flushes the engine so its state is durable without
    /// a log replay. Requests fail with
    /// [`ApiError::ShuttingDown`] from the start of the call. The engine
    /// closes when the last handle to this node is dropped.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.stop().await;
        self.inner.log_syncer.sync().await?;
        self.inner.db.flush().await?;
        // Only now is everything this node acknowledged durable.
        let dir = &self.inner.config.data_dir;
        crate::rejoin::write_clean_marker(&*self.inner.fs, dir).map_err(|source| {
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
        self.inner.db.halt().await;
        tracing::info!(id = self.id(), "ballast node killed (no flush)");
    }

    async fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
        if let Some(server) = self.inner.server.lock().await.take() {
            server.shutdown().await;
        }
    }

    fn running(&self) -> Result<(), ApiError> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(ApiError::ShuttingDown);
        }
        Ok(())
    }

    fn timeout_error(&self) -> ApiError {
        ApiError::Timeout {
            ms: self.inner.config.request_timeout_ms,
        }
    }

    /// The leader, waiting for one up to `leader_wait_ms` (and never past
    /// `deadline`).
    async fn leader(&self, deadline: Instant) -> Result<(NodeId, ballast_raft::Node), ApiError> {
        let wait = Duration::from_millis(self.inner.config.leader_wait_ms);
        let limit = deadline.min(Instant::now() + wait);
        let mut rx = self.inner.raft.metrics();
        loop {
            {
                let m = rx.borrow_watched();
                if let Some(l) = m.current_leader {
                    if let Some(n) = m.membership_config.membership().get_node(&l) {
                        return Ok((l, n.clone()));
                    }
                }
            }
            match tokio::time::timeout_at(limit, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ApiError::ShuttingDown),
                Err(_) => return Err(ApiError::NoLeader),
            }
        }
    }

    /// Runs `call` on the leader: here, or forwarded. Retries while
    /// leadership moves, never a write whose outcome is unknown.
    async fn route(&self, call: Call) -> Result<Answer, ApiError> {
        self.running()?;
        let inner = &self.inner;
        let deadline = Instant::now() + Duration::from_millis(inner.config.request_timeout_ms);
        // Pause between attempts while leadership moves (bounded by the
        // deadline): long enough not to spin, short next to an election.
        let pause = Duration::from_millis(inner.config.heartbeat_interval_ms.clamp(5, 50));
        loop {
            let (leader, node) = self.leader(deadline).await?;
            let outcome = if leader == self.id() {
                let local = async {
                    match &call {
                        Call::Write(r) => {
                            let _in_flight = inner.proposals.enter();
                            inner.proposer.propose(r.clone()).await.map(Answer::Write)
                        }
                        Call::Read(r) => server::read_linearizable(&inner.raft, &inner.db, r)
                            .await
                            .map(Answer::Read),
                    }
                };
                match tokio::time::timeout_at(deadline, local).await {
                    Ok(r) => Ok(r),
                    Err(_) => return Err(self.timeout_error()),
                }
            } else {
                let addr = &node.raft_addr;
                match &call {
                    Call::Write(r) => inner
                        .forward
                        .write(addr, r.clone())
                        .await
                        .map(|r| r.map(Answer::Write)),
                    Call::Read(r) => inner
                        .forward
                        .read(addr, r.clone())
                        .await
                        .map(|r| r.map(Answer::Read)),
                }
            };
            match outcome {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(ForwardError::NotLeader { .. })) => {}
                Ok(Err(ForwardError::Invalid(why))) => return Err(ApiError::Invalid(why)),
                Ok(Err(ForwardError::Unavailable(why))) => return Err(ApiError::Unavailable(why)),
                Ok(Err(ForwardError::Unknown(why))) => return Err(ApiError::Unknown(why)),
                Err(ForwardFailure::NotSent(e)) => {
                    tracing::debug!(leader, error = %e, "leader unreachable; retrying");
                }
                Err(ForwardFailure::Unknown(e)) => {
                    // The write may have reached the leader: never retried
                    // (that could apply it twice), and never answered as
                    // UNAVAILABLE (that says nothing was applied).
                    if matches!(call, Call::Write(_)) {
                        return Err(match e {
                            ballast_raft::net::NetError::Timeout { .. } => self.timeout_error(),
                            other => ApiError::Unknown(format!(
                                "lost the leader (node {leader}) mid-request: {other}"
                            )),
                        });
                    }
                    tracing::debug!(leader, error = %e, "forwarded read failed; retrying");
                }
            }
            self.running()?;
            if Instant::now() + pause >= deadline {
                // Every attempt so far ended before anything was proposed
                // (the leader said it is not the leader, or could not be
                // reached): say so, rather than TIMEOUT's "outcome unknown".
                return Err(ApiError::Unavailable(format!(
                    "no leader reachable within {} ms (last tried node {leader}); nothing was applied",
                    inner.config.request_timeout_ms
                )));
            }
            tokio::time::sleep(pause).await;
        }
    }

    async fn read(
        &self,
        req: ReadRequest,
        consistency: Consistency,
    ) -> Result<ReadAnswer, ApiError> {
        match consistency {
            Consistency::Linearizable => {
                self.recovered().await?;
                match self.route(Call::Read(req)).await? {
                    Answer::Read(a) => Ok(a),
                    Answer::Write(_) => unreachable!("a read is answered with a read"),
                }
            }
            Consistency::Stale => {
                self.running()?;
                if !*self.inner.recovered.borrow() {
                    return Err(ApiError::Unavailable(
                        "this node is still recovering its state after a restart; \
                         read with linearizable consistency or retry shortly"
                            .into(),
                    ));
                }
                read::execute(&self.inner.db, &req)
                    .map_err(|e| ApiError::Unavailable(e.to_string()))
            }
        }
    }

    /// Waits (within the request timeout) until this node recovered the
    /// state it held before its last restart.
    async fn recovered(&self) -> Result<(), ApiError> {
        let mut rx = self.inner.recovered.subscribe();
        let limit = Duration::from_millis(self.inner.config.request_timeout_ms);
        let waited =
            tokio::time::timeout(limit, async { rx.wait_for(|r| *r).await.map(|_| ()) }).await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ApiError::ShuttingDown),
            Err(_) => Err(ApiError::Unavailable(
                "this node is still recovering its state after a restart; nothing was read; \
                 retry shortly"
                    .into(),
            )),
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), ApiError> {
        let max = self.inner.config.key_bytes_max;
        if key.is_empty() || key.len() as u64 > max {
            return Err(ApiError::Invalid(format!(
                "key of {} bytes: keys must be 1 to {max} bytes",
                key.len()
            )));
        }
        Ok(())
    }
}

/// Bootstraps a never-initialized node that has `initial_members`.
///
/// First bootstrap: one node, the member with the smallest id, chooses the
/// cluster id (durably) and initializes Raft, once every other member
/// answered a probe without a cluster id of its own; the others adopt the
/// id from its first handshake, before they accept any entry. One chooser
/// means no race when all start empty at once; waiting for every member
/// means that a majority of wiped nodes cannot found a new cluster while
/// the node holding the data is down. The waiting runs in the background
/// so that members can start one after the other.
///
/// A node whose data directory was wiped refuses to start when a member it
/// can reach knows it under another incarnation (the replacement message
/// says how to bring it back). When none is reachable it cannot tell, and
/// starts; its peers then refuse it in the handshake, and a bootstrapper
/// never initializes (it logs the same message once it reaches them).
///
/// With the planted `WipedNodeRebootstraps`, every member initializes at
/// once and nothing is checked (the behaviour before identities).
async fn bootstrap(
    config: &NodeConfig,
    raft: &BallastRaft,
    net: &Arc<NetConfig>,
    identity: &Identity,
) -> Result<(), NodeError> {
    let members: BTreeMap<NodeId, ballast_raft::Node> = config
        .initial_members
        .iter()
        .map(|m| {
            (
                m.id,
                ballast_raft::Node::new(m.raft_addr.clone(), m.client_addr.clone()),
            )
        })
        .collect();
    if config.planted.has(NodeBug::WipedNodeRebootstraps) {
        // Every bootstrapping node may call this with the same members;
        // openraft elects one leader. "Not allowed" means another member's
        // log already reached us: the cluster exists.
        if let Err(e) = raft.initialize(members).await {
            if e.api_error().is_none() {
                return Err(NodeError::Raft(format!("initialize: {e}")));
            }
            tracing::info!(error = %e, "cluster already initialized elsewhere");
        }
        return Ok(());
    }
    let id = config.id;
    let peers: Vec<(NodeId, String)> = config
        .initial_members
        .iter()
        .filter(|m| m.id != id)
        .map(|m| (m.id, m.raft_addr.clone()))
        .collect();
    let probe = probe_members(&peers, net, identity).await;
    if let Some(refusal) = probe.wiped {
        return Err(NodeError::WipedMember(refusal));
    }
    if members.keys().next() != Some(&id) {
        tracing::info!(
            id,
            "waiting for the bootstrapping member (the smallest id) to reach this node"
        );
        return Ok(());
    }
    if peers.is_empty() {
        identity.found_cluster(&*net.nonces)?;
        return raft
            .initialize(members)
            .await
            .map_err(|e| NodeError::Raft(format!("initialize: {e}")));
    }
    let (raft, net, identity) = (raft.clone(), net.clone(), identity.clone());
    tokio::spawn(async move {
        let mut wait = net.backoff_initial;
        let mut probe = probe;
        loop {
            // Stop when Raft stopped (the node shut down before its peers
            // came) or got initialized some other way.
            if !matches!(raft.is_initialized().await, Ok(false)) {
                return;
            }
            if let Some(refusal) = probe.wiped {
                tracing::error!(%refusal, "not bootstrapping: this node was wiped out of its cluster");
                return;
            }
            if let Some((peer, cluster)) = probe.other_cluster {
                tracing::error!(
                    peer,
                    %cluster,
                    "not bootstrapping: member {peer} already belongs to cluster {cluster}; {}",
                    ballast_raft::identity::REPLACE_HOWTO
                );
                return;
            }
            if probe.unreachable == 0 {
                break;
            }
            tracing::info!(
                unreachable = probe.unreachable,
                "bootstrap waits until every initial member answers"
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(net.backoff_max);
            probe = probe_members(&peers, &net, &identity).await;
        }
        if let Err(e) = identity.found_cluster(&*net.nonces) {
            tracing::error!(error = %e, "bootstrap: cannot write the cluster id");
            return;
        }
        match raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(cluster_id = ?identity.cluster_id(), "bootstrapped a new cluster")
            }
            Err(e) => tracing::error!(error = %e, "bootstrap: initialize failed"),
        }
    });
    Ok(())
}

/// What probing the other initial members found.
struct Probe {
    /// Why this node is a wiped member, if a peer knows it under another
    /// incarnation.
    wiped: Option<IdentityRefusal>,
    /// A peer in a cluster other than this node's (if it has one).
    other_cluster: Option<(NodeId, ballast_raft::identity::Id16)>,
    /// Peers that did not answer.
    unreachable: usize,
}

async fn probe_members(peers: &[(NodeId, String)], net: &NetConfig, identity: &Identity) -> Probe {
    let mut probe = Probe {
        wiped: None,
        other_cluster: None,
        unreachable: 0,
    };
    let me = identity.me();
    for (peer, addr) in peers {
        match Conn::probe(addr, net).await {
            Ok((theirs, known)) => {
                if let Some(known) = known.filter(|k| *k != me.incarnation) {
                    probe.wiped = Some(IdentityRefusal::Replaced {
                        peer: me.node_id,
                        known,
                        presented: me.incarnation,
                    });
                }
                if let Some(cluster) = theirs.and_then(|t| t.cluster_id) {
                    if me.cluster_id != Some(cluster) {
                        probe.other_cluster = Some((*peer, cluster));
                    }
                }
            }
            Err(e) => {
                tracing::debug!(peer, error = %e, "initial member not reachable");
                probe.unreachable += 1;
            }
        }
    }
    probe
}

/// Keeps the identity's peer records to the current membership, so a
/// removed node can be added back with a new data directory. Ends when
/// Raft stops.
fn watch_membership(raft: BallastRaft, identity: Identity) {
    tokio::spawn(async move {
        let mut rx = raft.metrics();
        loop {
            let members: BTreeSet<NodeId> = {
                let m = rx.borrow_watched();
                m.membership_config
                    .membership()
                    .nodes()
                    .map(|(id, _)| *id)
                    .collect()
            };
            // An uninitialized node knows no membership yet: nothing to
            // prune against.
            if !members.is_empty() {
                if let Err(e) = identity.retain_peers(|id| members.contains(&id)) {
                    tracing::warn!(error = %e, "cannot update the identity file's peers");
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
}

/// A proposal's failure as the API says it: not the leader (any more) is
/// [`ApiError::NoLeader`].
fn api_error(e: ForwardError) -> ApiError {
    match e {
        ForwardError::NotLeader { .. } => ApiError::NoLeader,
        ForwardError::Invalid(why) => ApiError::Invalid(why),
        ForwardError::Unavailable(why) => ApiError::Unavailable(why),
        ForwardError::Unknown(why) => ApiError::Unknown(why),
    }
}

fn unexpected(what: &str) -> ApiError {
    ApiError::Unavailable(format!("internal: unexpected answer to {what}"))
}

/// Checks a write where it enters this node, with this node's limits (the
/// leader's proposer checks it again with its own): a request no replica
/// could log or apply is refused here with what to change.
fn validate_write(node: &Node, req: &Request) -> Result<(), ApiError> {
    let inner = &node.inner;
    if inner
        .config
        .planted
        .has(ballast_raft::planted::NodeBug::SkipRequestValidation)
    {
        return Ok(());
    }
    let limits = ballast_raft::typ::RequestLimits {
        key_bytes_max: inner.config.key_bytes_max,
        value_bytes_max: inner.config.value_bytes_max,
        request_bytes_max: inner.db.batch_bytes_max(),
    };
    req.validate(&limits)
        .map_err(|e| ApiError::Invalid(e.to_string()))
}

impl KvApi for Node {
    async fn write(&self, req: Request) -> Result<Response, ApiError> {
        validate_write(self, &req)?;
        match self.route(Call::Write(req)).await? {
            Answer::Write(r) => Ok(r),
            Answer::Read(_) => Err(unexpected("a write")),
        }
    }

    /// On the leader the write is handed to openraft's core (which appends
    /// what it receives in the order it receives it), `ordered` is given,
    /// and then the answer is awaited. Elsewhere (a follower forwards over
    /// pooled connections, which keep no order) it is [`KvApi::write`]
    /// without the signal. A write that finds leadership gone after it
    /// was ordered is not retried here, since a retry could overtake the
    /// writes ordered after it: it fails with [`ApiError::NoLeader`].
    async fn write_ordered(&self, req: Request, ordered: Ordered) -> Result<Response, ApiError> {
        validate_write(self, &req)?;
        self.running()?;
        let inner = &self.inner;
        let deadline = Instant::now() + Duration::from_millis(inner.config.request_timeout_ms);
        let (leader, _) = self.leader(deadline).await?;
        if leader != self.id() {
            return self.write(req).await;
        }
        let _in_flight = inner.proposals.enter();
        let submitted = inner.proposer.submit(req).await.map_err(api_error)?;
        ordered.signal();
        match tokio::time::timeout_at(deadline, submitted.answer()).await {
            Err(_) => Err(self.timeout_error()),
            Ok(r) => r.map_err(api_error),
        }
    }

    async fn get_many(
        &self,
        keys: Vec<Bytes>,
        consistency: Consistency,
    ) -> Result<Vec<Option<Value>>, ApiError> {
        for k in &keys {
            self.check_key(k)?;
        }
        let req = ReadRequest::GetMany(keys.iter().map(|k| k.to_vec()).collect());
        match self.read(req, consistency).await? {
            ReadAnswer::Values(vs) if vs.len() == keys.len() => Ok(vs
                .into_iter()
                .map(|v| {
                    v.map(|(v, expire_at_ms)| Value {
                        value: Bytes::from(v),
                        expire_at_ms,
                    })
                })
                .collect()),
            _ => Err(unexpected("a multi-key read")),
        }
    }

    async fn scan_keys(
        &self,
        start: Bytes,
        limit: usize,
        consistency: Consistency,
    ) -> Result<ScanPage, ApiError> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let req = ReadRequest::Scan {
            start: start.to_vec(),
            limit,
        };
        match self.read(req, consistency).await? {
            ReadAnswer::Keys { keys, next } => Ok(ScanPage {
                keys: keys.into_iter().map(Bytes::from).collect(),
                next: next.map(Bytes::from),
            }),
            _ => Err(unexpected("a scan")),
        }
    }

    async fn count_keys(&self, consistency: Consistency) -> Result<u64, ApiError> {
        match self.read(ReadRequest::Count, consistency).await? {
            ReadAnswer::Count(n) => Ok(n),
            _ => Err(unexpected("a count")),
        }
    }

    fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    fn status(&self) -> NodeStatus {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let proposed = self.inner.proposer.stats();
        let membership = m.membership_config.membership();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        let role = match m.state {
            _ if self.inner.stopping.load(Ordering::SeqCst) => "shutdown",
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Shutdown => "shutdown",
            ServerState::Learner => "learner",
            ServerState::Follower if learners.contains(&m.id) => "learner",
            ServerState::Follower => "follower",
        };
        NodeStatus {
            id: m.id,
            role: role.to_string(),
            term: m.current_term,
            leader: m.current_leader.map(|l| {
                let addr = membership
                    .get_node(&l)
                    .map(|n| n.client_addr.clone())
                    .unwrap_or_default();
                (l, addr)
            }),
            last_log_index: m.last_log_index,
            commit_index: m.cluster_committed.map(|c| c.index),
            applied_index: m.last_applied.map(|a| a.index),
            voters: membership.voter_ids().collect(),
            learners,
            preset: self.inner.config.preset.name().to_string(),
            proposed_entries: proposed.entries,
            proposed_writes: proposed.requests,
            state_hash: None,
        }
    }

    fn status_with_hash(&self) -> NodeStatus {
        let mut status = self.status();
        status.state_hash = match ballast_raft::state_machine::state_hash(&self.inner.db) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "could not compute the state hash");
                None
            }
        };
        status
    }
}

/// How long `add_learner` waits for the learner to catch up, in request
/// timeouts: catching up may need a whole snapshot.
const ADD_LEARNER_TIMEOUTS: u32 = 12;

impl AdminApi for Node {
    async fn add_learner(
        &self,
        id: NodeId,
        raft_addr: String,
        client_addr: String,
    ) -> Result<(), ApiError> {
        self.running()?;
        let limit =
            Duration::from_millis(self.inner.config.request_timeout_ms) * ADD_LEARNER_TIMEOUTS;
        let node = ballast_raft::Node::new(raft_addr, client_addr);
        match tokio::time::timeout(limit, self.inner.raft.add_learner(id, node, true)).await {
            Err(_) => Err(ApiError::Timeout {
                ms: limit.as_millis() as u64,
            }),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(membership_error(e)),
        }
    }

    async fn change_voters(
        &self,
        voters: BTreeSet<NodeId>,
        keep_as_learners: bool,
    ) -> Result<(), ApiError> {
        self.running()?;
        let limit = Duration::from_millis(self.inner.config.request_timeout_ms);
        match tokio::time::timeout(
            limit,
            self.inner.raft.change_membership(voters, keep_as_learners),
        )
        .await
        {
            Err(_) => Err(self.timeout_error()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(membership_error(e)),
        }
    }

    fn engine_stats(&self) -> ballast_storage::StatsSnapshot {
        self.inner.db.stats()
    }

    fn admin_secret(&self) -> Option<Secret> {
        self.inner.config.secret.as_deref().map(Secret::new)
    }
}

/// A membership change's failure: refused before anything was proposed
/// (not the leader, a change that does not apply) says so; a failure after
/// the change was appended (Raft stopped, the entry discarded) says its
/// outcome is unknown. Membership changes run on the leader only; the text
/// says where it is.
fn membership_error(
    e: openraft::errors::RaftError<
        ballast_raft::TypeConfig,
        openraft::errors::ClientWriteError<ballast_raft::TypeConfig>,
    >,
) -> ApiError {
    use openraft::errors::{ClientWriteError, RaftError};
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => match f.leader_id {
            Some(l) => ApiError::Unavailable(format!(
                "membership changes run on the leader: send this to node {l}"
            )),
            None => ApiError::NoLeader,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ApiError::Invalid(format!("membership change refused: {e}"))
        }
        RaftError::APIError(e) => ApiError::Unknown(format!("membership change: {e}")),
        RaftError::Fatal(e) => ApiError::Unknown(format!("membership change: Raft stopped: {e}")),
    }
}
