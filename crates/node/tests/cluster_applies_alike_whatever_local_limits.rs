//! Apply is a pure function of the log: nodes configured with different
//! key and value limits apply every entry alike. The leader (large limits)
//! accepts values over its followers' limits; the followers apply them
//! anyway, because limits are checked where a request enters, never at
//! apply. With the planted switch that checks limits at apply again, the
//! followers refuse the same entries and the replicas diverge.

mod support;

use ballast_node::api::{Consistency, KvApi};
use ballast_node::NodeStatus;
use ballast_raft::planted::{NodeBug, Planted};
use ballast_raft::{NodeId, Request};
use bytes::Bytes;
use std::collections::BTreeMap;
use support::cluster::*;
use support::{eventually, DEADLINE};

/// The leader's value limit, and its followers' (ten times smaller than
/// the values written).
const LEADER_VALUE_MAX: u64 = 1 << 20;
const FOLLOWER_VALUE_MAX: u64 = 1_000;
const WRITES: usize = 24;

fn big_value(i: usize) -> Vec<u8> {
    let mut v = format!("big-{i}-").into_bytes();
    v.resize(10_000 + i, b'a' + (i % 26) as u8);
    v
}

/// Starts 3 nodes, node 1 with large limits and the others small, makes
/// node 1 the leader, writes big values through it (some alone, most
/// concurrently so the proposer groups them into multi entries), waits
/// until every node has applied everything, and returns each node's view
/// of the keys (stale reads of its own engine) and its status.
async fn write_big_values(planted: Planted) -> BTreeMap<NodeId, (Vec<Option<Bytes>>, NodeStatus)> {
    let cluster = Cluster::start(3, |c| {
        c.planted = planted;
        c.value_bytes_max = if c.id == 1 {
            LEADER_VALUE_MAX
        } else {
            FOLLOWER_VALUE_MAX
        };
    })
    .await;
    eventually("node 1 leads", DEADLINE, || async {
        let leader = cluster.leader().await;
        if leader == 1 {
            return Some(());
        }
        let _ = cluster
            .node(leader)
            .raft()
            .trigger()
            .transfer_leader(1)
            .await;
        None
    })
    .await;
    let n1 = cluster.node(1);
    // Alone: one request per entry.
    for i in 0..4 {
        let req = Request::Put {
            key: key(i),
            value: big_value(i),
            expire_at_ms: None,
        };
        n1.write(req)
            .await
            .expect("the leader takes a value within its limit");
    }
    // Together: the proposer groups concurrent writes into multi entries.
    let mut writes = tokio::task::JoinSet::new();
    for i in 4..WRITES {
        let req = if i % 2 == 0 {
            Request::Put {
                key: key(i),
                value: big_value(i),
                expire_at_ms: None,
            }
        } else {
            Request::Cas {
                key: key(i),
                expected: None,
                new: big_value(i),
            }
        };
        let n1 = n1.clone();
        writes.spawn(async move { (i, n1.write(req).await) });
    }
    while let Some(joined) = writes.join_next().await {
        let (i, r) = joined.expect("write task");
        r.unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    // A follower's own API checks its own (small) limit: refused there.
    let err = cluster
        .node(2)
        .write(Request::Put {
            key: key(999),
            value: big_value(999),
            expire_at_ms: None,
        })
        .await
        .expect_err("over the follower's own limit");
    assert!(err.to_string().contains("value_bytes_max"), "{err}");

    let target = n1.status().applied_index;
    cluster.all_applied(target).await;
    let mut out = BTreeMap::new();
    for (id, node) in &cluster.nodes {
        let keys: Vec<Bytes> = (0..WRITES).map(|i| Bytes::from(key(i))).collect();
        let values = node
            .get_many(keys, Consistency::Stale)
            .await
            .expect("stale read")
            .into_iter()
            .map(|v| v.map(|v| v.value))
            .collect();
        out.insert(*id, (values, node.status_with_hash()));
    }
    cluster.stop_all().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_with_different_limits_apply_every_entry_alike() {
    let views = write_big_values(Planted::NONE).await;
    let expected: Vec<Option<Bytes>> = (0..WRITES)
        .map(|i| Some(Bytes::from(big_value(i))))
        .collect();
    let leader_hash = views[&1].1.state_hash.clone();
    assert!(leader_hash.is_some(), "the leader reports a state hash");
    for (id, (values, status)) in &views {
        assert!(
            values == &expected,
            "node {id} holds different values than the leader wrote"
        );
        assert_eq!(status.state_hash, leader_hash, "node {id}'s state hash");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_limits_checked_at_apply_the_replicas_diverge() {
    let views = write_big_values(Planted::NONE.with(NodeBug::ApplyChecksLocalLimits)).await;
    let leader = &views[&1].0;
    assert!(
        leader.iter().all(Option::is_some),
        "the leader applied its writes"
    );
    for id in [2, 3] {
        let missing = views[&id].0.iter().filter(|v| v.is_none()).count();
        assert_eq!(
            missing, WRITES,
            "node {id} should have refused every big value at apply"
        );
        assert_ne!(
            views[&id].1.state_hash, views[&1].1.state_hash,
            "node {id}'s state hash should differ from the leader's"
        );
    }
}
