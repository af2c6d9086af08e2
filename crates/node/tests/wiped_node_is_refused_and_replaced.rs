//! A node whose data directory was wiped must not rejoin as an empty voter
//! (it could lose a committed entry, and two of them could form a new
//! majority). It refuses to start with a message that says how to replace
//! it; the replacement procedure (remove, start empty without
//! initial_members, add as learner, promote) brings it back with the data;
//! and a node of another cluster is refused in the peer handshake.

mod support;

use ballast_node::api::AdminApi;
use ballast_node::{Node, NodeConfig};
use ballast_raft::identity::Identity;
use ballast_raft::net::client::Conn;
use ballast_raft::net::{NetConfig, NetError, NonceSource};
use ballast_raft::planted::{NodeBug, Planted};
use ballast_raft::NodeId;
use ballast_storage::fs::StdFs;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use support::cluster::{converges, put, Cluster};
use support::{eventually, DEADLINE};

const KEYS: usize = 20;

/// Distinct nonces for the test's own handshakes.
struct Counter(AtomicU64);

impl NonceSource for Counter {
    fn nonce(&self) -> [u8; 32] {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        let mut b = [0x5a; 32];
        b[..8].copy_from_slice(&n.to_le_bytes());
        b
    }
}

/// A 3-node cluster holding keys 0..KEYS on every node, and a follower
/// whose data directory has been wiped (the node is stopped).
async fn cluster_with_a_wiped_follower() -> (Cluster, NodeId, NodeId) {
    let mut cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    for i in 0..KEYS {
        ballast_node::api::KvApi::write(cluster.node(leader), put(i))
            .await
            .expect("write");
    }
    let victim = cluster.followers(leader)[0];
    converges(cluster.node(victim), 0..KEYS).await;
    cluster.kill(victim).await;
    let dir = cluster.configs[&victim].data_dir.clone();
    std::fs::remove_dir_all(&dir).expect("wipe the data directory");
    (cluster, leader, victim)
}

fn start_error(result: Result<Node, ballast_node::node::NodeError>) -> String {
    match result {
        Ok(node) => panic!(
            "the wiped node {} started (role {})",
            node.id(),
            ballast_node::api::KvApi::status(&node).role
        ),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_refuses_to_start_and_is_replaced_as_a_learner() {
    let (mut cluster, leader, victim) = cluster_with_a_wiped_follower().await;

    // (a) Restarted with the same config: refused, with the way out.
    let message = start_error(Node::start(cluster.configs[&victim].clone()).await);
    for says in [
        "data directory is new",
        "remove it from the cluster",
        "no initial_members",
        "add it back as a learner",
        "promote it",
    ] {
        assert!(message.contains(says), "{says:?} missing from: {message}");
    }

    // (b) The replacement: remove, start empty without initial_members,
    // add as learner, promote.
    let others: BTreeSet<NodeId> = cluster.nodes.keys().copied().collect();
    cluster
        .node(leader)
        .change_voters(others.clone(), false)
        .await
        .expect("remove the wiped node");
    std::fs::remove_dir_all(&cluster.configs[&victim].data_dir).ok();
    let config: &mut NodeConfig = cluster.configs.get_mut(&victim).expect("config");
    config.initial_members.clear();
    let (raft_addr, client_addr) = (config.raft_addr.clone(), config.client_addr.clone());
    cluster.restart(victim).await;
    cluster
        .node(leader)
        .add_learner(victim, raft_addr, client_addr)
        .await
        .expect("add the new node as a learner");
    let mut voters = others;
    voters.insert(victim);
    cluster
        .node(leader)
        .change_voters(voters.clone(), true)
        .await
        .expect("promote it");
    converges(cluster.node(victim), 0..KEYS).await;
    eventually("the replaced node to be a voter", DEADLINE, || async {
        let s = ballast_node::api::KvApi::status(cluster.node(victim));
        (s.voters.iter().copied().collect::<BTreeSet<_>>() == voters).then_some(())
    })
    .await;
    // The cluster keeps its quorum with the new node: stop another
    // follower and write through.
    let other = cluster
        .followers(leader)
        .into_iter()
        .find(|&id| id != victim)
        .expect("a third node");
    cluster.shutdown(other).await;
    ballast_node::api::KvApi::write(cluster.node(leader), put(KEYS))
        .await
        .expect("a write commits with the replaced node's vote");
    converges(cluster.node(victim), 0..KEYS + 1).await;
    cluster.restart(other).await;
    cluster.converged_state_hash().await;
    cluster.stop_all().await;
}

/// The planted bug brings back the old behaviour: the wiped node starts and
/// bootstraps again (so the check above has teeth).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_planted_bug_a_wiped_node_rebootstraps() {
    let (cluster, _leader, victim) = cluster_with_a_wiped_follower().await;
    let mut config = cluster.configs[&victim].clone();
    config.planted = Planted::NONE.with(NodeBug::WipedNodeRebootstraps);
    let node = Node::start(config)
        .await
        .expect("with the planted bug the wiped node starts");
    assert!(
        node.raft().is_initialized().await.expect("raft answers"),
        "the wiped node did not bootstrap again"
    );
    node.kill().await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused_in_the_handshake() {
    let cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let addr = cluster.node(leader).raft_addr().to_string();

    // A real node of another (one-node) cluster, stopped; its identity
    // file then speaks for it.
    let mut other = Cluster::start(1, |_| {}).await;
    other.leader().await;
    let other_dir = other.configs[&1].data_dir.clone();
    other.shutdown(1).await;
    let nonces = Arc::new(Counter(AtomicU64::new(1)));
    let identity = Identity::open(Arc::new(StdFs), &other_dir, 1, &*nonces, Planted::NONE)
        .expect("the other node's identity");
    assert!(identity.cluster_id().is_some());
    let mut net = NetConfig::new(nonces.clone());
    net.identity = Some(identity);
    match Conn::connect(&addr, &net).await {
        Err(NetError::Identity(refusal)) => {
            let text = refusal.to_string();
            assert!(text.contains("belongs to cluster"), "{text}");
        }
        other => panic!("another cluster's node was not refused: {other:?}"),
    }

    // A node without a cluster identity (a new or wiped data directory)
    // that talks to the cluster first: the server refuses it.
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let fresh = Identity::open(
        Arc::new(StdFs),
        fresh_dir.path(),
        7,
        &*nonces,
        Planted::NONE,
    )
    .expect("a fresh identity");
    let mut net = NetConfig::new(nonces);
    net.identity = Some(fresh);
    match Conn::connect(&addr, &net).await {
        Err(NetError::IdentityRefused(why)) => {
            assert!(why.contains("has no cluster identity"), "{why}");
        }
        other => panic!("a node without identity was not refused: {other:?}"),
    }
    cluster.stop_all().await;
}
