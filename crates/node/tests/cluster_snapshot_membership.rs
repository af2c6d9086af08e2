//! Catching up by snapshot, membership changes, and peers with the wrong
//! secret.

mod support;

use ballast_node::api::{AdminApi, Consistency, KvApi};
use ballast_node::Node;
use ballast_raft::net::client::ForwardFailure;
use ballast_raft::net::{ForwardClient, NetConfig, NetError, NonceSource, ReadRequest, Secret};
use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use support::cluster::*;
use support::{eventually, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_behind_the_purged_log_catches_up_by_snapshot() {
    let mut cluster = Cluster::start(3, |c| {
        c.snapshot_after_entries = 10;
        c.snapshot_keep_entries = 0;
    })
    .await;
    let leader = cluster.leader().await;
    let f = cluster.followers(leader)[0];
    cluster.node(leader).write(put(0)).await.expect("write");
    converges(cluster.node(f), 0..1).await;
    let behind = cluster
        .node(f)
        .raft()
        .metrics()
        .borrow_watched()
        .last_log_index
        .expect("f has a log");
    cluster.shutdown(f).await;
    for i in 1..80 {
        cluster
            .node(leader)
            .write(put(i))
            .await
            .expect("write while f is down");
    }
    // The leader must have purged past f's log, so the log alone cannot
    // bring f back.
    let purged = cluster.purged_past(leader, behind).await;
    println!("follower {f} stopped at index {behind}; leader purged up to {purged}");
    cluster.restart(f).await;
    let t = Instant::now();
    converges(cluster.node(f), 0..80).await;
    let m = cluster.node(f).raft().metrics().borrow_watched().clone();
    let snap = m.snapshot.expect("follower has a snapshot").index;
    println!(
        "follower {f} caught up in {:?} via a snapshot at index {snap}",
        t.elapsed()
    );
    assert!(
        snap >= purged,
        "snapshot {snap} must cover the purged log {purged}"
    );
    // Still a working member: later writes reach it through the log.
    cluster.node(leader).write(put(80)).await.expect("write");
    converges(cluster.node(f), 0..81).await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_is_added_promoted_and_a_voter_removed() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    for i in 0..20 {
        cluster.node(leader).write(put(i)).await.expect("write");
    }
    // Node 4 starts empty, with no members to bootstrap: it waits to be added.
    let c4 = node_config(cluster.dir.path(), 4);
    let n4 = Node::start(c4.clone()).await.expect("node 4 starts");
    assert_eq!(n4.status().voters, Vec::<u64>::new());
    cluster.configs.insert(4, c4.clone());
    cluster.nodes.insert(4, n4);

    let l = cluster.node(leader);
    l.add_learner(4, c4.raft_addr.clone(), c4.client_addr.clone())
        .await
        .expect("add learner");
    assert_eq!(l.status().learners, vec![4]);
    converges(cluster.node(4), 0..20).await;
    assert_eq!(cluster.node(4).status().role, "learner");

    l.change_voters(BTreeSet::from([1, 2, 3, 4]), false)
        .await
        .expect("promote");
    assert_eq!(l.status().voters, vec![1, 2, 3, 4]);
    eventually("node 4 to see itself a voter", DEADLINE, || async {
        (cluster.node(4).status().role == "follower").then_some(())
    })
    .await;

    // Remove a follower that is not node 4.
    let gone = *cluster
        .followers(leader)
        .iter()
        .find(|&&i| i != 4)
        .expect("a follower");
    let keep: BTreeSet<u64> = [1, 2, 3, 4].into_iter().filter(|&i| i != gone).collect();
    l.change_voters(keep.clone(), false).await.expect("remove");
    let s = l.status();
    assert_eq!(s.voters, keep.iter().copied().collect::<Vec<_>>());
    assert!(!s.learners.contains(&gone));
    // The smaller cluster still commits, and node 4 (a voter now) applies it.
    cluster
        .node(leader)
        .write(put(20))
        .await
        .expect("write after removal");
    converges(cluster.node(4), 0..21).await;
    assert!(has_all(cluster.node(4), 0..21, Consistency::Linearizable).await);

    // Membership changes run on the leader only, and say so.
    let err = cluster
        .node(4)
        .change_voters(keep, false)
        .await
        .expect_err("not the leader");
    assert!(err.to_string().contains(&format!("node {leader}")), "{err}");
    cluster.stop_all().await;
}

struct Counter(AtomicU64);

impl NonceSource for Counter {
    fn nonce(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&self.0.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        b
    }
}

fn client(secret: Option<&str>) -> ForwardClient {
    let mut cfg = NetConfig::new(Arc::new(Counter(AtomicU64::new(1))));
    cfg.secret = secret.map(Secret::new);
    ForwardClient::new(Arc::new(cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_with_the_wrong_secret_is_refused() {
    const SECRET: &str = "correct horse battery staple";
    let cluster = Cluster::start(3, |c| c.secret = Some(SECRET.into())).await;
    let leader = cluster.leader().await;
    cluster
        .node(leader)
        .write(put(0))
        .await
        .expect("peers with the secret replicate");
    let addr = cluster.node(leader).raft_addr().to_string();

    for (secret, why) in [
        (
            Some("wrong horse battery staple"),
            "does not know our shared secret",
        ),
        (None, "requires a shared secret"),
    ] {
        match client(secret).read(&addr, ReadRequest::Count).await {
            Err(ForwardFailure::NotSent(NetError::Auth(e))) => {
                assert!(e.contains(why), "{e}")
            }
            other => panic!("secret {secret:?} was not refused: {other:?}"),
        }
    }
    let n = client(Some(SECRET))
        .read(&addr, ReadRequest::Count)
        .await
        .expect("the right secret is accepted")
        .expect("served");
    assert_eq!(n, ballast_raft::net::ReadAnswer::Count(1));
    cluster.stop_all().await;
}
