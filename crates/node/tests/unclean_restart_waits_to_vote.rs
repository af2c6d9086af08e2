//! Relaxed presets keep committed writes when a minority loses power
//! (issue 9, hole 7), in-process: three balanced nodes, each on a
//! `VolatileFs` (file writes held in memory until fsync) with links a test
//! can cut.
//!
//! The scenario: leader A commits E with follower B while C is cut off; A
//! is cut off; B loses power and E with it (E was acknowledged from the
//! page cache); B restarts. Before the fix B voted at once, B and C
//! elected a leader that wrote a different entry at E's index, and when A
//! returned its log was truncated under an entry it had applied: E was
//! lost although only one node lost power. Now B neither votes nor stands
//! until a leader has caught it up, so B and C elect nobody, and when A
//! returns E is on every node.

mod support;

use ballast_node::api::{Consistency, KvApi};
use ballast_node::{Node, NodeEnv};
use ballast_raft::net::links::Links;
use ballast_raft::planted::{NodeBug, Planted};
use ballast_raft::{NodeId, Request};
use ballast_storage::fs::{StdFs, VolatileFs};
use ballast_storage::Preset;
use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::cluster::Cluster;
use support::{eventually, DEADLINE};
use tokio::time::Instant;

const E_KEY: &[u8] = b"e";
const E_VALUE: &[u8] = b"committed-with-b";

/// A balanced cluster whose nodes each have their own volatile disk and
/// cuttable links.
struct Harness {
    cluster: Cluster,
    disks: BTreeMap<NodeId, VolatileFs>,
    links: BTreeMap<NodeId, Links>,
}

impl Harness {
    async fn start(planted: Planted) -> Harness {
        let disks: BTreeMap<NodeId, VolatileFs> = (1..=3)
            .map(|id| (id, VolatileFs::new(Arc::new(StdFs))))
            .collect();
        let links: BTreeMap<NodeId, Links> = (1..=3).map(|id| (id, Links::new())).collect();
        let cluster = Cluster::start_with(
            3,
            |c| {
                c.preset = Preset::Balanced;
                c.planted = planted;
            },
            |id| env(&disks[&id], &links[&id]),
        )
        .await;
        Harness {
            cluster,
            disks,
            links,
        }
    }

    /// Waits until every node votes again and no longer waits to rejoin.
    async fn all_caught_up(&self) {
        eventually("every node is caught up", DEADLINE, || async {
            self.cluster
                .nodes
                .values()
                .all(|n| n.is_voting() && !n.is_waiting_to_rejoin())
                .then_some(())
        })
        .await;
    }

    fn node(&self, id: NodeId) -> &Node {
        self.cluster.node(id)
    }

    fn raft_addr(&self, id: NodeId) -> String {
        self.cluster.configs[&id].raft_addr.clone()
    }

    /// Cuts every link to and from `id`.
    fn isolate(&self, id: NodeId) {
        for other in (1..=3).filter(|o| *o != id) {
            self.links[&id].cut(&self.raft_addr(other));
            self.links[&other].cut(&self.raft_addr(id));
        }
    }

    fn heal(&self) {
        for l in self.links.values() {
            l.heal_all();
        }
    }

    /// Power loss of `id`, then a boot on the same data directory.
    async fn power_cycle(&mut self, id: NodeId) {
        self.disks[&id].cut_power();
        self.cluster.kill(id).await;
        self.boot(id).await;
    }

    /// Starts `id` on a fresh volatile disk over its data directory.
    async fn boot(&mut self, id: NodeId) {
        let disk = VolatileFs::new(Arc::new(StdFs));
        self.cluster.envs.insert(id, env(&disk, &self.links[&id]));
        self.disks.insert(id, disk);
        self.cluster.restart(id).await;
    }
}

fn env(disk: &VolatileFs, links: &Links) -> NodeEnv {
    NodeEnv {
        links: Some(links.clone()),
        ..NodeEnv::with_fs(Arc::new(disk.clone()))
    }
}

fn set(key: &[u8], value: &[u8]) -> Request {
    Request::Put {
        key: key.to_vec(),
        value: value.to_vec(),
        expire_at_ms: None,
    }
}

async fn stale_get(node: &Node, key: &[u8]) -> Option<Bytes> {
    node.get_many(vec![Bytes::copy_from_slice(key)], Consistency::Stale)
        .await
        .ok()
        .and_then(|mut v| v.pop().flatten())
        .map(|v| v.value)
}

/// What one run of the scenario saw.
#[derive(Debug)]
struct Outcome {
    /// B or C became leader while A was cut off.
    elected_without_a: bool,
    /// B voted (its gate open) while A was cut off.
    b_voted_without_a: bool,
    /// After healing, E on every node (read locally).
    e_everywhere: bool,
    /// A node whose Raft stopped on a storage error, and why.
    stopped: Vec<String>,
}

async fn scenario(planted: Planted) -> (Harness, Outcome) {
    let mut h = Harness::start(planted).await;
    let a = h.cluster.leader().await;
    let followers = h.cluster.followers(a);
    let (b, c) = (followers[0], followers[1]);
    for i in 0..5u8 {
        h.node(a)
            .write(set(&[b'k', i], b"before"))
            .await
            .expect("write with all three up");
    }

    // E is committed by A and B alone, and B holds it only in memory.
    h.isolate(c);
    h.disks[&b].hold_syncs_under(&h.cluster.configs[&b].data_dir.join("raft-log"));
    h.node(a)
        .write(set(E_KEY, E_VALUE))
        .await
        .expect("A and B commit E");
    assert_eq!(
        stale_get(h.node(a), E_KEY).await.as_deref(),
        Some(E_VALUE),
        "E applied on A"
    );

    // A is cut off; B loses power and comes back without E.
    h.heal();
    h.isolate(a);
    h.power_cycle(b).await;

    // Three election timeouts with B and C able to talk: do they elect?
    let window = Duration::from_millis(3 * h.cluster.configs[&b].election_timeout_max_ms);
    let end = Instant::now() + window;
    let (mut elected_without_a, mut b_voted_without_a) = (false, false);
    while Instant::now() < end {
        for id in [b, c] {
            let m = h.node(id).raft().metrics().borrow_watched().clone();
            elected_without_a |= m.state == ServerState::Leader;
        }
        b_voted_without_a |= h.node(b).is_voting();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A returns. E must end up on every node.
    h.heal();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut e_everywhere = false;
    let mut stopped = Vec::new();
    while Instant::now() < deadline {
        stopped = (1..=3)
            .filter_map(|id| {
                let m = h.node(id).raft().metrics().borrow_watched().clone();
                m.running_state
                    .err()
                    .map(|e| format!("node {id} stopped: {e}"))
            })
            .collect();
        let mut all = true;
        for id in 1..=3 {
            all &= stale_get(h.node(id), E_KEY).await.as_deref() == Some(E_VALUE);
        }
        if all || !stopped.is_empty() {
            e_everywhere = all;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcome = Outcome {
        elected_without_a,
        b_voted_without_a,
        e_everywhere,
        stopped,
    };
    println!("{outcome:?}");
    (h, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_lost_power_votes_only_after_being_caught_up() {
    let (h, outcome) = scenario(Planted::NONE).await;
    assert!(
        !outcome.b_voted_without_a,
        "B voted before a leader caught it up"
    );
    assert!(
        !outcome.elected_without_a,
        "B and C elected a leader without A, who alone holds E"
    );
    assert!(outcome.stopped.is_empty(), "{:?}", outcome.stopped);
    assert!(outcome.e_everywhere, "E is not on every node");
    // Caught up, B votes again, and the cluster serves writes.
    eventually("every node votes again", DEADLINE, || async {
        h.cluster.nodes.values().all(Node::is_voting).then_some(())
    })
    .await;
    let leader = h.cluster.leader().await;
    h.node(leader)
        .write(set(b"after", b"heal"))
        .await
        .expect("write after the heal");
    for id in 1..=3 {
        let n = h.node(id);
        eventually(
            "E and the later write read linearizably everywhere",
            DEADLINE,
            || async {
                let got = n
                    .get_many(
                        vec![Bytes::from_static(E_KEY), Bytes::from_static(b"after")],
                        Consistency::Linearizable,
                    )
                    .await
                    .ok()?;
                (got[0].as_ref().map(|v| v.value.as_ref()) == Some(E_VALUE)
                    && got[1].as_ref().map(|v| v.value.as_ref()) == Some(&b"heal"[..]))
                .then_some(())
            },
        )
        .await;
    }
    let hash = h.cluster.converged_state_hash().await;
    println!("every replica's state hash: {hash}");
    h.cluster.stop_all().await;
}

/// The check has teeth: with the unclean node voting again at once (the
/// planted switch), B and C elect a leader without A, and E does not
/// survive on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_unclean_node_voting_e_is_lost() {
    let (h, outcome) = scenario(Planted::NONE.with(NodeBug::UncleanNodeVotes)).await;
    assert!(outcome.b_voted_without_a);
    assert!(outcome.elected_without_a, "{outcome:?}");
    assert!(
        !outcome.e_everywhere || !outcome.stopped.is_empty(),
        "{outcome:?}"
    );
    drop(h);
}

/// Liveness: when every node lost power, nobody can catch anybody up;
/// they see that a majority waits, and elect a leader again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_cluster_wide_power_loss_the_nodes_elect_again() {
    let mut h = Harness::start(Planted::NONE).await;
    let a = h.cluster.leader().await;
    for i in 0..20u8 {
        h.node(a).write(set(&[b'k', i], b"v")).await.expect("write");
    }
    // All three lose power at once, then boot.
    for disk in h.disks.values() {
        disk.cut_power();
    }
    for id in 1..=3 {
        h.cluster.kill(id).await;
    }
    h.boot(1).await;
    assert!(
        !h.node(1).is_voting(),
        "node 1 restarted uncleanly and its peers are down"
    );
    h.boot(2).await;
    h.boot(3).await;
    let leader = h.cluster.leader().await;
    h.node(leader)
        .write(set(b"after", b"power"))
        .await
        .expect("the cluster writes again");
    h.all_caught_up().await;
    // A clean shutdown leaves the marker: the next start votes at once.
    h.cluster.shutdown(leader).await;
    h.cluster.restart(leader).await;
    assert!(h.node(leader).is_voting(), "a clean restart votes at once");
    h.cluster.converged_state_hash().await;
    h.cluster.stop_all().await;
}

/// Liveness with a clean node among waiting ones: two nodes lose power,
/// the third shuts down cleanly, all three boot. The two that wait vote
/// only for the clean one (every voter answers, and it holds the most),
/// so it is elected and catches them up; without that permit nobody could
/// ever be elected (the waiting nodes refuse everyone, and not every voter
/// waits).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_waiting_nodes_elect_the_clean_one() {
    let mut h = Harness::start(Planted::NONE).await;
    let a = h.cluster.leader().await;
    for i in 0..10u8 {
        h.node(a).write(set(&[b'k', i], b"v")).await.expect("write");
    }
    let followers = h.cluster.followers(a);
    for &id in &followers {
        h.disks[&id].cut_power();
        h.cluster.kill(id).await;
    }
    h.cluster.shutdown(a).await;
    h.boot(a).await;
    for &id in &followers {
        h.boot(id).await;
    }
    assert!(h.node(a).is_voting(), "a clean restart votes at once");
    let leader = h.cluster.leader().await;
    assert_eq!(leader, a, "only the clean node can be elected");
    h.node(leader)
        .write(set(b"after", b"restart"))
        .await
        .expect("the cluster writes again");
    h.all_caught_up().await;
    for i in 0..10u8 {
        assert_eq!(
            stale_get(h.node(a), &[b'k', i]).await.as_deref(),
            Some(&b"v"[..]),
            "key {i} on the clean node"
        );
    }
    h.cluster.converged_state_hash().await;
    h.cluster.stop_all().await;
}
