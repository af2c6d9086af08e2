//! Hole 9 of issue 9: blocking disk work on the Raft path. A Raft log
//! segment roll used to fsync and zero-fill the next segment inside
//! `append`, under the log store's lock, on leader and followers alike.
//!
//! A 3-node in-process cluster on the durable preset (zero-filled
//! segments) with 1 MiB Raft log segments takes a steady write load until
//! every node's log has rolled at least ten times; no election may happen
//! meanwhile: every node ends in the term it started in, under the same
//! leader. (The log-store test `segment_rolls_stay_off_the_lock` shows the
//! roll itself holds no lock during disk work; this one shows the cluster
//! keeps its leader across many rolls.)

mod support;

use ballast_node::api::KvApi;
use ballast_node::Node;
use ballast_raft::{Request, Response};
use openraft::async_runtime::WatchReceiver;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::cluster::*;
use tokio::time::Instant;

const SEGMENT_BYTES: u64 = 1 << 20;
const ROLLS_MIN: u64 = 10;
const VALUE_BYTES: usize = 2048;
/// Bounds the whole load phase (it needs about 12 MiB of log per node).
const LOAD_DEADLINE: Duration = Duration::from_secs(180);

/// Highest Raft log segment number in a node's data directory.
fn last_segment(data_dir: &Path) -> u64 {
    let dir = data_dir.join("raft-log").join("log");
    std::fs::read_dir(&dir)
        .expect("raft log dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".wal")?.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Incompressible bytes (the durable preset compresses large log records),
/// so the log grows by what the clients write.
fn noise(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..VALUE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn writer(node: &Node, id: u64, stop: &AtomicBool, writes: &AtomicU64) {
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let req = Request::Put {
            key: format!("w{id}-{i:08}").into_bytes(),
            value: noise(id << 32 | i),
            expire_at_ms: None,
        };
        let r = node.write(req).await.expect("write acknowledged");
        assert_eq!(r, Response::Done);
        writes.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_election_while_every_node_rolls_its_log_ten_times_under_load() {
    let cluster = Cluster::start(3, |c| {
        c.raft_log_segment_bytes = Some(SEGMENT_BYTES);
    })
    .await;
    let leader = cluster.leader().await;
    let term0 = cluster
        .node(leader)
        .raft()
        .metrics()
        .borrow_watched()
        .current_term;
    let start: Vec<(u64, u64)> = cluster
        .configs
        .iter()
        .map(|(id, c)| (*id, last_segment(&c.data_dir)))
        .collect();

    let stop = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    let node = cluster.node(leader);
    let t = Instant::now();
    let monitor = async {
        loop {
            let rolled = start
                .iter()
                .map(|(id, s0)| last_segment(&cluster.configs[id].data_dir) - s0)
                .min()
                .unwrap_or(0);
            if rolled >= ROLLS_MIN {
                stop.store(true, Ordering::SeqCst);
                return rolled;
            }
            if t.elapsed() > LOAD_DEADLINE {
                stop.store(true, Ordering::SeqCst);
                panic!("only {rolled} rolls on the slowest node after {LOAD_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (rolled, ..) = tokio::join!(
        monitor,
        writer(node, 0, &stop, &writes),
        writer(node, 1, &stop, &writes),
        writer(node, 2, &stop, &writes),
        writer(node, 3, &stop, &writes),
        writer(node, 4, &stop, &writes),
        writer(node, 5, &stop, &writes),
        writer(node, 6, &stop, &writes),
        writer(node, 7, &stop, &writes),
    );
    println!(
        "{} writes of {VALUE_BYTES} B in {:?}; every node rolled its Raft log at least {rolled} times",
        writes.load(Ordering::Relaxed),
        t.elapsed()
    );

    for (id, n) in &cluster.nodes {
        let m = n.raft().metrics().borrow_watched().clone();
        assert_eq!(
            m.current_term, term0,
            "node {id} changed term during the rolls: an election happened"
        );
        assert_eq!(m.current_leader, Some(leader), "node {id} lost the leader");
    }
    cluster.converged_state_hash().await;
    cluster.stop_all().await;
}
