//! A 3-node cluster in one process: election, forwarding, leader crash,
//! follower restart.

mod support;

use ballast_node::api::{Consistency, KvApi};
use ballast_raft::{Request, Response};
use std::time::Instant;
use support::cluster::*;
use support::{eventually, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_elect_one_leader_and_followers_forward_writes_and_reads() {
    let cluster = Cluster::start(3, |_| {}).await;
    let t = Instant::now();
    let leader = cluster.leader().await;
    println!("leader {leader} elected in {:?}", t.elapsed());
    let roles: Vec<String> = cluster.nodes.values().map(|n| n.status().role).collect();
    assert_eq!(
        roles.iter().filter(|r| *r == "leader").count(),
        1,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| *r == "follower").count(),
        2,
        "{roles:?}"
    );
    for n in cluster.nodes.values() {
        assert_eq!(n.status().voters, vec![1, 2, 3]);
    }

    let follower = cluster.node(cluster.followers(leader)[0]);
    for i in 0..20 {
        assert_eq!(
            follower.write(put(i)).await.expect("forwarded write"),
            Response::Done
        );
    }
    // Linearizable through a follower: every acknowledged write, at once.
    assert!(has_all(follower, 0..20, Consistency::Linearizable).await);
    // And it replicates to every engine.
    for n in cluster.nodes.values() {
        converges(n, 0..20).await;
    }
    // An INCR forwarded by the other follower answers with the leader's result.
    let other = cluster.node(cluster.followers(leader)[1]);
    let r = other
        .write(ballast_raft::Request::incr(b"counter".to_vec()))
        .await
        .expect("incr");
    assert_eq!(r, Response::Integer(1));
    let r = follower
        .write(ballast_raft::Request::incr(b"counter".to_vec()))
        .await
        .expect("incr");
    assert_eq!(r, Response::Integer(2));
    assert_eq!(
        follower
            .count_keys(Consistency::Linearizable)
            .await
            .expect("count"),
        21
    );
    // "counter" sorts before "key-...": a scan from key-00018 sees two keys.
    let page = other
        .scan_keys(
            bytes::Bytes::from_static(b"key-00018"),
            5,
            Consistency::Linearizable,
        )
        .await
        .expect("scan");
    assert_eq!(page.keys, vec![&b"key-00018"[..], &b"key-00019"[..]]);
    assert_eq!(page.next, None);
    let page = other
        .scan_keys(
            bytes::Bytes::from_static(b"c"),
            1,
            Consistency::Linearizable,
        )
        .await
        .expect("scan");
    assert_eq!(page.keys, vec![&b"counter"[..]]);
    assert_eq!(page.next.as_deref(), Some(&b"key-00000"[..]));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_elects_another_and_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    let old = cluster.leader().await;
    let via = cluster.followers(old)[0];
    for i in 0..50 {
        cluster.node(via).write(put(i)).await.expect("acknowledged");
    }
    cluster.kill(old).await;
    let t = Instant::now();
    let new = cluster.leader().await;
    println!(
        "leader {old} killed; node {new} leads after {:?}",
        t.elapsed()
    );
    assert_ne!(new, old);
    for n in cluster.nodes.values() {
        assert!(
            has_all(n, 0..50, Consistency::Linearizable).await,
            "node {} lost writes",
            n.id()
        );
    }
    // The cluster keeps taking writes with one node down.
    for i in 50..60 {
        cluster
            .node(via)
            .write(put(i))
            .await
            .expect("write with 2 of 3");
    }
    // The killed node comes back with its unflushed state rebuilt from its
    // Raft log, and catches up.
    cluster.restart(old).await;
    converges(cluster.node(old), 0..60).await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_follower_restarted_later_catches_up() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let f = cluster.followers(leader)[1];
    for i in 0..10 {
        cluster.node(leader).write(put(i)).await.expect("write");
    }
    converges(cluster.node(f), 0..10).await;
    cluster.shutdown(f).await;
    for i in 10..40 {
        cluster
            .node(leader)
            .write(put(i))
            .await
            .expect("write while f is down");
    }
    cluster.restart(f).await;
    let t = Instant::now();
    converges(cluster.node(f), 0..40).await;
    println!("follower {f} caught up 30 entries in {:?}", t.elapsed());
    let s = cluster.node(f).status();
    assert_eq!(s.role, "follower");
    assert_eq!(s.leader.map(|l| l.0), Some(leader));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relaxed_presets_replicate_and_survive_a_clean_restart() {
    for preset in [
        ballast_storage::Preset::Balanced,
        ballast_storage::Preset::Throughput,
    ] {
        let mut cluster = Cluster::start(3, |c| c.preset = preset).await;
        let leader = cluster.leader().await;
        assert_eq!(cluster.node(leader).status().preset, preset.name());
        for i in 0..30 {
            cluster.node(leader).write(put(i)).await.expect("write");
        }
        // A clean shutdown of every node syncs the log and flushes the
        // engine; the whole cluster comes back with every write.
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for &id in &ids {
            cluster.shutdown(id).await;
        }
        for &id in &ids {
            cluster.restart(id).await;
        }
        let leader = cluster.leader().await;
        assert!(
            has_all(cluster.node(leader), 0..30, Consistency::Linearizable).await,
            "{} lost writes over a clean restart",
            preset.name()
        );
        cluster.stop_all().await;
    }
}

/// openraft batches up to 300 entries into one AppendEntries whatever
/// their size; with big values that is more than one Raft frame. A
/// follower that fell behind by many big entries still catches up: the
/// network sends what fits a frame and reports a partial success.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_behind_by_more_than_a_frame_of_entries_catches_up() {
    let value_bytes = 200 << 10;
    let mut cluster = Cluster::start(3, |c| {
        c.value_bytes_max = 256 << 10;
        c.raft_frame_bytes_max = (2 << 20) + 8192;
    })
    .await;
    let leader = cluster.leader().await;
    let f = cluster.followers(leader)[1];
    cluster.shutdown(f).await;
    let big = |i: usize| Request::Put {
        key: key(i),
        value: vec![i as u8; value_bytes],
        expire_at_ms: None,
    };
    // 40 entries of 200 KiB: about 8 MiB behind, four times the frame.
    for i in 0..40 {
        cluster
            .node(leader)
            .write(big(i))
            .await
            .expect("write while f is down");
    }
    cluster.restart(f).await;
    let node = cluster.node(f).clone();
    eventually("the follower to apply all 40 big entries", DEADLINE, || {
        let node = node.clone();
        async move {
            let got = node
                .get_many(vec![key(39).into()], Consistency::Stale)
                .await
                .ok()?;
            got.into_iter().next().flatten().map(|v| v.value.len())
        }
    })
    .await;
    for i in [0, 17, 39] {
        let got = node
            .get_many(vec![key(i).into()], Consistency::Stale)
            .await
            .expect("read");
        assert_eq!(
            got[0].as_ref().map(|v| v.value.to_vec()),
            Some(vec![i as u8; value_bytes])
        );
    }
    cluster.stop_all().await;
}
