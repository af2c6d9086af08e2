//! Values near the documented 16 MiB limit replicate without stalling the
//! cluster (issue 9, hole 11). Before the fix the AppendEntries deadline
//! was the heartbeat's (tens of ms) whatever the payload, so a 15 MiB
//! entry timed out on every try, was resent until a try happened to fit,
//! and every write behind it waited: `TIMEOUT` after 5 s.
//!
//! Three durable nodes with the default heartbeat (100 ms) and election
//! timeouts of this suite; one task writes 15 MiB values while another
//! writes small ones; the small writes are never held up past a second,
//! the big values arrive on every node, and nobody starts an election.

mod support;

use ballast_node::api::{Consistency, KvApi};
use ballast_raft::Request;
use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::cluster::Cluster;
use support::{eventually, DEADLINE};
use tokio::time::Instant;

const BIG_BYTES: usize = 15 << 20;
const BIG_VALUES: usize = 3;
/// What the issue allows a small write to wait behind a big one.
const SMALL_WRITE_WAIT_MAX: Duration = Duration::from_secs(1);

fn big(i: usize) -> Vec<u8> {
    (0..BIG_BYTES).map(|j| (i * 31 + j / 4096) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifteen_mib_values_replicate_while_small_writes_flow() {
    let cluster = Cluster::start(3, |c| {
        c.heartbeat_interval_ms = 100;
        c.election_timeout_min_ms = 1000;
        c.election_timeout_max_ms = 2000;
    })
    .await;
    let leader = cluster.leader().await;
    let term = cluster
        .node(leader)
        .raft()
        .metrics()
        .borrow_watched()
        .current_term;
    let follower = cluster.followers(leader)[0];

    let done = Arc::new(AtomicBool::new(false));
    let small = {
        let node = cluster.node(follower).clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut n = 0u64;
            while !done.load(Ordering::SeqCst) {
                let started = Instant::now();
                node.write(Request::Put {
                    key: format!("small-{n}").into_bytes(),
                    value: b"v".to_vec(),
                    expire_at_ms: None,
                })
                .await
                .expect("a small write beside the big ones");
                worst = worst.max(started.elapsed());
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (n, worst)
        })
    };

    for i in 0..BIG_VALUES {
        let started = Instant::now();
        cluster
            .node(leader)
            .write(Request::Put {
                key: format!("big-{i}").into_bytes(),
                value: big(i),
                expire_at_ms: None,
            })
            .await
            .expect("a 15 MiB value is stored");
        println!("15 MiB value {i} stored in {:?}", started.elapsed());
    }
    done.store(true, Ordering::SeqCst);
    let (small_writes, worst) = small.await.expect("small writer");
    println!("{small_writes} small writes meanwhile, the slowest took {worst:?}");
    assert!(small_writes > 0);
    assert!(
        worst <= SMALL_WRITE_WAIT_MAX,
        "a small write waited {worst:?} behind the big ones"
    );

    for id in 1..=3 {
        let node = cluster.node(id);
        eventually(
            &format!("node {id} holds the big values"),
            DEADLINE,
            || async {
                let keys = (0..BIG_VALUES)
                    .map(|i| Bytes::from(format!("big-{i}")))
                    .collect();
                let got = node.get_many(keys, Consistency::Stale).await.ok()?;
                got.iter()
                    .enumerate()
                    .all(|(i, v)| {
                        v.as_ref()
                            .is_some_and(|v| v.value.as_ref() == big(i).as_slice())
                    })
                    .then_some(())
            },
        )
        .await;
    }
    for id in 1..=3 {
        let m = cluster.node(id).raft().metrics().borrow_watched().clone();
        assert_eq!(m.current_term, term, "node {id} saw an election");
        assert_eq!(m.current_leader, Some(leader));
    }
    cluster.converged_state_hash().await;
    cluster.stop_all().await;
}
