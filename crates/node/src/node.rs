//! The embedded node: the Raft log store, the state machine over the
//! engine, openraft, the Raft RPC server and the [`KvApi`] / [`AdminApi`]
//! the RESP server and the admin port are built on.
//!
//! Directory layout under `data_dir`:
//!
//! ```text
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
use ballast_raft::log_store::{LogSyncer, SyncPolicy};
use ballast_raft::net::client::ForwardFailure;
use ballast_raft::net::server::{self, ServerContext};
use ballast_raft::net::{
    read, BallastRaft, ForwardClient, ForwardError, NetConfig, Network, NonceSource, ReadAnswer,
    ReadRequest, RpcServer, Secret, ServerHandle,
};
use ballast_raft::propose::{Proposer, ProposerOptions};
use ballast_raft::state_machine::StateMachine;
use ballast_raft::transfer::SnapshotInbox;
use ballast_raft::{LogStore, NodeId, Request, Response};
use ballast_storage::fs::StdFs;
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
}

/// Handshake nonces from the operating system's generator.
struct OsNonces;

impl NonceSource for OsNonces {
    fn nonce(&self) -> [u8; 32] {
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        b
    }
}

/// A running node. Cloning gives another handle to the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    config: NodeConfig,
    raft: BallastRaft,
    db: Arc<Db>,
    log_syncer: LogSyncer,
    clock: Arc<dyn Clock>,
    forward: ForwardClient,
    server: tokio::sync::Mutex<Option<ServerHandle>>,
    raft_local_addr: SocketAddr,
    stopping: AtomicBool,
    /// Set once the state machine holds at least what it held before the
    /// last restart (openraft's `wait_for_recovery`); stale reads wait
    /// for it.
    recovered: Arc<AtomicBool>,
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
        config.validate()?;
        let id = config.id;
        let dir = config.data_dir.clone();
        let inbox_dir = dir.join("snapshot-inbox");
        for d in [&dir, &inbox_dir] {
            std::fs::create_dir_all(d).map_err(|source| NodeError::DataDir {
                path: d.clone(),
                source,
            })?;
        }
        let engine_options = config.engine_options();
        let (log_store, report) = LogStore::open_with_policy(
            Arc::new(StdFs),
            &dir.join("raft-log"),
            WalOptions::from_options(&engine_options),
            SyncPolicy::of(&engine_options.fsync),
        )
        .await?;
        let log_syncer = log_store.syncer();
        let clock = engine_options.clock.clone();
        let mut engine_options = engine_options;
        engine_options.flush_barrier = Some(Arc::new(log_syncer.clone()));
        let mut sm = StateMachine::open(&dir.join("engine"), engine_options).await?;
        sm.set_planted(config.planted);
        let db = sm.shared_db();

        let mut net = NetConfig::new(Arc::new(OsNonces));
        net.max_frame_bytes = config.raft_frame_bytes_max;
        net.call_timeout = Duration::from_millis(config.request_timeout_ms);
        net.secret = config.secret.as_deref().map(Secret::new);
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
            fs: Arc::new(StdFs),
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
            entries_in_flight: config.entries_in_flight_max as usize,
            requests_per_entry: config.writes_per_entry_max as usize,
            ..ProposerOptions::default()
        };
        let proposer = Proposer::start(raft.clone(), clock.clone(), proposer_options);
        let ctx = ServerContext {
            raft: raft.clone(),
            db: db.clone(),
            inbox,
            proposer: proposer.clone(),
            cfg: net.clone(),
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
            // Every bootstrapping node may call this with the same members;
            // openraft elects one leader. "Not allowed" means another
            // member's log already reached us: the cluster exists.
            if let Err(e) = raft.initialize(members).await {
                if e.api_error().is_none() {
                    let _ = raft.shutdown().await;
                    server.shutdown().await;
                    return Err(NodeError::Raft(format!("initialize: {e}")));
                }
                tracing::info!(error = %e, "cluster already initialized elsewhere");
            }
        }

        let node = Node {
            inner: Arc::new(Inner {
                config,
                raft,
                db,
                log_syncer,
                clock,
                forward: ForwardClient::new(net),
                server: tokio::sync::Mutex::new(Some(server)),
                raft_local_addr,
                stopping: AtomicBool::new(false),
                recovered: Arc::new(AtomicBool::new(false)),
                proposals: InFlight::default(),
                proposer,
            }),
        };
        // The committed index is not persisted, so after a restart the
        // engine may be behind what this node served before until the
        // cluster re-establishes the commit; that needs the other nodes,
        // so it runs in the background instead of blocking start. It ends
        // when recovered or when Raft shuts down.
        let (raft, recovered) = (node.inner.raft.clone(), node.inner.recovered.clone());
        tokio::spawn(async move {
            match raft.wait_for_recovery(None).await {
                Ok(_) => recovered.store(true, Ordering::SeqCst),
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
        tracing::info!(id = self.id(), "ballast node stopped");
        Ok(())
    }

    /// Stops Raft and the RPC server the way a process crash would leave
    /// the disk: nothing is flushed, the engine's memtable is dropped, and
    /// a restart recovers from the Raft log. For tests of crash recovery.
    pub async fn kill(&self) {
        self.stop().await;
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
                Err(ForwardFailure::NotSent(e)) => {
                    tracing::debug!(leader, error = %e, "leader unreachable; retrying");
                }
                Err(ForwardFailure::Unknown(e)) => {
                    if matches!(call, Call::Write(_)) {
                        return Err(match e {
                            ballast_raft::net::NetError::Timeout { .. } => self.timeout_error(),
                            other => ApiError::Unavailable(format!(
                                "lost the leader (node {leader}) mid-request; the write may or may not be applied: {other}"
                            )),
                        });
                    }
                    tracing::debug!(leader, error = %e, "forwarded read failed; retrying");
                }
            }
            self.running()?;
            if Instant::now() + pause >= deadline {
                return Err(self.timeout_error());
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
            Consistency::Linearizable => match self.route(Call::Read(req)).await? {
                Answer::Read(a) => Ok(a),
                Answer::Write(_) => unreachable!("a read is answered with a read"),
            },
            Consistency::Stale => {
                self.running()?;
                if !self.inner.recovered.load(Ordering::SeqCst) {
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

/// A proposal's failure as the API says it: not the leader (any more) is
/// [`ApiError::NoLeader`].
fn api_error(e: ForwardError) -> ApiError {
    match e {
        ForwardError::NotLeader { .. } => ApiError::NoLeader,
        ForwardError::Invalid(why) => ApiError::Invalid(why),
        ForwardError::Unavailable(why) => ApiError::Unavailable(why),
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
            state_hash: match ballast_raft::state_machine::state_hash(&self.inner.db) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "could not compute the state hash");
                    None
                }
            },
        }
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
            Ok(Err(e)) => Err(admin_error(server::not_leader_or(e))),
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
            Ok(Err(e)) => Err(admin_error(server::not_leader_or(e))),
        }
    }

    fn engine_stats(&self) -> ballast_storage::StatsSnapshot {
        self.inner.db.stats()
    }
}

/// Membership changes run on the leader only; the text says where it is.
fn admin_error(e: ForwardError) -> ApiError {
    match e {
        ForwardError::NotLeader { leader: Some(l) } => ApiError::Unavailable(format!(
            "membership changes run on the leader: send this to node {l}"
        )),
        ForwardError::NotLeader { leader: None } => ApiError::NoLeader,
        ForwardError::Invalid(why) => ApiError::Invalid(why),
        ForwardError::Unavailable(why) => ApiError::Unavailable(why),
    }
}
