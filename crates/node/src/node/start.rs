//! Starting a node: the Raft log, the engine as the state machine,
//! openraft, the RPC server, and (for a node never initialized) the
//! bootstrap of its cluster from `initial_members`, with the probes that
//! keep a wiped member from founding a new one.

use super::{InFlight, Node, NodeError, NodeShared};
use crate::api::KvApi;
use crate::config::NodeConfig;
use crate::env::NodeEnv;
use ballast_raft::identity::{Identity, IdentityRefusal};
use ballast_raft::net::client::Conn;
use ballast_raft::net::server::ServerContext;
use ballast_raft::net::{
    BallastRaft, ForwardClient, NetConfig, Network, RpcServer, Secret, VoteGate,
};
use ballast_raft::planted::NodeBug;
use ballast_raft::propose::{Proposer, ProposerOptions};
use ballast_raft::state_machine::StateMachine;
use ballast_raft::transfer::SnapshotInbox;
use ballast_raft::{LogStore, NodeId};
use ballast_storage::wal::WalOptions;
use openraft::async_runtime::WatchReceiver;
use openraft::SnapshotPolicy;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// Starts a node: opens the Raft log and the engine under
    /// `config.data_dir`, starts openraft and the RPC server, and
    /// bootstraps the cluster from `initial_members` if this node was
    /// never initialized (a restart resumes its cluster and data).
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        Node::start_with(config, NodeEnv::production()).await
    }

    /// [`Node::start`] in the environment `env` (its file system, clock,
    /// nonces, network, background mode and cut links).
    pub async fn start_with(config: NodeConfig, env: NodeEnv) -> Result<Node, NodeError> {
        config.validate_for(&*env.transport)?;
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
        engine_options.clock = env.clock.clone();
        engine_options.background = env.background;
        let mut log_wal = WalOptions::from_options(&engine_options);
        if let Some(bytes) = config.raft_log_segment_bytes {
            log_wal.segment_bytes = bytes;
        }
        let (log_store, report) = LogStore::open_planted(
            fs.clone(),
            &dir.join("raft-log"),
            log_wal,
            engine_options.fsync,
            config.planted,
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
        if !config.planted.has(NodeBug::FlushBarrierSkipped) {
            engine_options.flush_barrier = Some(Arc::new(log_syncer.clone()));
        }
        let mut sm = StateMachine::open(&dir.join("engine"), engine_options).await?;
        sm.set_planted(config.planted);
        // The log store refuses to truncate below what was applied.
        let applied_index = ballast_raft::log_store::AppliedIndex::new();
        sm.set_applied_index(applied_index.clone());
        log_store.set_applied_index(applied_index)?;
        let db = sm.shared_db();
        let log_state = log_store.log_state()?;
        let durable_acks = log_store.durable_acks()?;
        let opened = super::OpenState {
            log_last_index: log_state.last_log_id.map(|l| l.index),
            applied_index: sm.applied().map(|a| a.index),
            snapshot_index: sm.snapshot_index(),
            vote: log_store.vote()?,
        };
        if let Some(what) = opened.ahead_of_log() {
            // A release build of openraft would count the missing entries
            // as purged and go on, unable to send them to any follower.
            tracing::error!(id, "{what}");
            return Err(NodeError::StateAheadOfLog(what));
        }

        let identity = Identity::open(fs.clone(), &dir, id, &*env.nonces, config.planted)?;
        let mut net = NetConfig::new(env.nonces.clone());
        net.links = env.links.clone();
        net.transport = env.transport.clone();
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
            snapshot_bytes_max: config.snapshot_bytes_max,
            planted: config.planted,
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
            shared: Arc::new(NodeShared {
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
                opened,
                durable_acks,
            }),
        };
        if unclean {
            let poll = Duration::from_millis(node.shared.config.election_timeout_min_ms);
            tokio::spawn(crate::rejoin::wait_then_open(
                id,
                node.shared.raft.clone(),
                node.shared.votes.clone(),
                node.shared.forward.clone(),
                poll,
            ));
        }
        // After a restart the engine may be behind what this node served
        // before (the committed index it read back may predate its last
        // apply) until the cluster re-establishes the commit; that needs
        // the other nodes, so it runs in the background instead of
        // blocking start. It ends when recovered or when Raft shuts down.
        let (raft, shared) = (node.shared.raft.clone(), Arc::downgrade(&node.shared));
        tokio::spawn(async move {
            match raft.wait_for_recovery(None).await {
                Ok(_) => {
                    if let Some(shared) = shared.upgrade() {
                        shared.recovered.send_replace(true);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "recovery wait ended"),
            }
        });
        let c = &node.shared.config;
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
/// never initializes (it logs the same message once it reaches them). A
/// follower never exchanged a handshake with another follower, so it may
/// not know the wiped node; while its log is empty the node therefore
/// refuses its vote to candidates holding more than the initial
/// membership (`refuses_as_empty` in the RPC server;
/// `cluster-durable-disk-wipe` in the cluster simulation).
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
