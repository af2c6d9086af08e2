//! Expiry is a pure function of the replicated log: a follower that
//! restarts and replays its log, and one that catches up by snapshot, end
//! with the same state hash (`NodeStatus::state_hash`, also in `/status`)
//! as the leader, with keys whose TTLs (relative, SET EX style, and
//! absolute) run out during the test, and flushes and compactions forced
//! on the followers after they have. With the planted switch that expires
//! by each node's own clock, the followers' flushes drop keys the leader
//! still holds as of the last applied entry, and the hashes differ.

mod support;

use ballast_node::api::KvApi;
use ballast_node::Node;
use ballast_raft::planted::{NodeBug, Planted};
use ballast_raft::{NodeId, Request, SetCondition};
use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeMap;
use support::cluster::*;
use support::{eventually, DEADLINE};

/// TTLs of the expiring keys, ms: all run out while the test runs.
const TTLS_MS: [u64; 4] = [150, 400, 700, 1_000];

/// One round of writes: keys with each TTL (relative and absolute), a
/// key without, and an INCR of a counter that expires.
async fn write_round(node: &Node, round: usize) -> u64 {
    let mut last_deadline = 0;
    for (j, ttl_ms) in TTLS_MS.iter().enumerate() {
        let k = format!("ttl-{round}-{j}").into_bytes();
        node.write(Request::SetWithTtl {
            key: k.clone(),
            value: format!("v{round}-{j}").into_bytes(),
            ttl_ms: *ttl_ms,
            condition: SetCondition::Always,
            return_old: false,
        })
        .await
        .expect("set with a ttl");
        let at = node.now_ms() + ttl_ms;
        last_deadline = last_deadline.max(at + 1_000);
        node.write(Request::Put {
            key: format!("abs-{round}-{j}").into_bytes(),
            value: b"absolute".to_vec(),
            expire_at_ms: Some(at),
        })
        .await
        .expect("put with an absolute expiry");
    }
    node.write(put(round)).await.expect("plain put");
    let counter = format!("counter-{}", round % 3).into_bytes();
    node.write(Request::incr(counter.clone()))
        .await
        .expect("incr");
    node.write(Request::ExpireIn {
        key: counter,
        ttl_ms: 300,
    })
    .await
    .expect("expire in");
    last_deadline
}

/// Flushes and compacts `node`'s engine (expired keys may be dropped).
async fn flush_and_compact(node: &Node) {
    node.raft()
        .with_state_machine(|sm| {
            let db = sm.shared_db();
            Box::pin(async move {
                db.flush().await.expect("flush");
                db.compact().await.expect("compact");
            })
        })
        .await
        .expect("raft runs");
}

/// Runs the scenario and returns each node's state hash once all have
/// applied the same entries.
async fn hashes_after_restart_and_snapshot(planted: Planted) -> BTreeMap<NodeId, String> {
    let mut cluster = Cluster::start(3, |c| {
        c.planted = planted;
        c.snapshot_after_entries = 20;
        c.snapshot_keep_entries = 0;
    })
    .await;
    let leader = cluster.leader().await;
    let followers = cluster.followers(leader);
    let (replayer, snapshotter) = (followers[0], followers[1]);
    let mut deadline = write_round(cluster.node(leader), 0).await;

    // One follower restarts and replays its log (from its last flush).
    cluster.shutdown(replayer).await;
    deadline = deadline.max(write_round(cluster.node(leader), 1).await);
    cluster.restart(replayer).await;

    // The other misses enough that the leader purges its log: it catches
    // up by snapshot.
    let behind = cluster
        .node(snapshotter)
        .raft()
        .metrics()
        .borrow_watched()
        .last_log_index
        .expect("a log");
    cluster.shutdown(snapshotter).await;
    for round in 2..8 {
        deadline = deadline.max(write_round(cluster.node(leader), round).await);
    }
    cluster.purged_past(leader, behind).await;
    cluster.restart(snapshotter).await;
    // Entries after the snapshot, so every node has applied some itself.
    deadline = deadline.max(write_round(cluster.node(leader), 8).await);
    let target = cluster.node(leader).status().applied_index;
    cluster.all_applied(target).await;
    let m = cluster
        .node(snapshotter)
        .raft()
        .metrics()
        .borrow_watched()
        .clone();
    assert!(
        m.snapshot.is_some_and(|s| s.index > behind),
        "node {snapshotter} did not catch up by snapshot"
    );

    // Let every TTL run out by the clock (not by the log: no entry is
    // written from here on), then make the followers flush and compact.
    let leader_node = cluster.node(leader).clone();
    eventually("every TTL runs out", DEADLINE, || async {
        (leader_node.now_ms() > deadline).then_some(())
    })
    .await;
    for f in [replayer, snapshotter] {
        flush_and_compact(cluster.node(f)).await;
    }
    let hashes = cluster
        .nodes
        .iter()
        .map(|(id, n)| (*id, n.status_with_hash().state_hash.expect("a state hash")))
        .collect();
    cluster.stop_all().await;
    hashes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_and_snapshotted_followers_hash_like_the_leader() {
    let hashes = hashes_after_restart_and_snapshot(Planted::NONE).await;
    let first = hashes.values().next().expect("nodes");
    assert!(
        hashes.values().all(|h| h == first),
        "replicas differ: {hashes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_expiry_by_local_clock_the_replicas_hash_differently() {
    let hashes =
        hashes_after_restart_and_snapshot(Planted::NONE.with(NodeBug::ExpireByLocalClock)).await;
    let first = hashes.values().next().expect("nodes");
    assert!(
        hashes.values().any(|h| h != first),
        "the planted bug went unnoticed: {hashes:?}"
    );
}
