//! The README's cluster contract table, cell by cell, for crashes of the
//! whole cluster: every preset, every node's process killed at once, and
//! every node's power cut at once (in-process, on `VolatileFs`: file
//! writes held in memory until fsync; a process crash keeps that memory,
//! as the OS keeps its page cache, and a power cut drops it).
//!
//! A single writer sets keys 0, 1, 2, ... in order and each is
//! acknowledged before the next is sent; then the cluster crashes and
//! boots again, and the keys that survived must be what the preset
//! promises: durable, every acknowledged key; balanced, every key after a
//! process crash and, after a power cut, every key acknowledged more than
//! one sync interval plus one fsync before it; throughput, some prefix of
//! the keys (never a hole). Crashes of a minority (one node of three) are
//! in `unclean_restart_waits_to_vote.rs` and `restarted_leader_serves_fresh_reads.rs`.

mod support;

use ballast_node::api::{Consistency, KvApi};
use ballast_node::NodeEnv;
use ballast_raft::{NodeId, Request};
use ballast_storage::fs::{StdFs, VolatileFs};
use ballast_storage::Preset;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::cluster::Cluster;
use support::{eventually, DEADLINE};

const KEYS: usize = 60;

fn key(i: usize) -> Vec<u8> {
    format!("seq-{i:04}").into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    /// Every node's process dies; the page cache survives.
    Process,
    /// Every node loses power; nothing unsynced survives.
    Power,
}

/// Writes `KEYS` keys one after another, crashes the whole cluster, boots
/// it, and returns which keys survived (in order).
async fn crash_the_cluster(preset: Preset, crash: Crash) -> Vec<bool> {
    let disks: BTreeMap<NodeId, VolatileFs> = (1..=3)
        .map(|id| (id, VolatileFs::new(Arc::new(StdFs))))
        .collect();
    let mut cluster = Cluster::start_with(
        3,
        |c| c.preset = preset,
        |id| NodeEnv::with_fs(Arc::new(disks[&id].clone())),
    )
    .await;
    let leader = cluster.leader().await;
    for i in 0..KEYS {
        cluster
            .node(leader)
            .write(Request::Put {
                key: key(i),
                value: b"v".to_vec(),
                expire_at_ms: None,
            })
            .await
            .expect("acknowledged write");
    }
    if preset == Preset::Balanced {
        // The balanced contract spares what was acknowledged more than one
        // sync interval (5 ms) plus one fsync before the loss: let that
        // window pass for every key.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if crash == Crash::Power {
        for d in disks.values() {
            d.cut_power();
        }
    }
    for id in 1..=3 {
        cluster.kill(id).await;
    }
    for id in 1..=3 {
        let disk = match crash {
            // The OS (this VolatileFs) outlives the process.
            Crash::Process => disks[&id].clone(),
            Crash::Power => VolatileFs::new(Arc::new(StdFs)),
        };
        cluster.envs.insert(id, NodeEnv::with_fs(Arc::new(disk)));
        cluster.restart(id).await;
    }
    let leader = cluster.leader().await;
    let node = cluster.node(leader).clone();
    let survived = eventually("a linearizable read after the crash", DEADLINE, || async {
        let keys = (0..KEYS).map(|i| Bytes::from(key(i))).collect();
        node.get_many(keys, Consistency::Linearizable).await.ok()
    })
    .await
    .into_iter()
    .map(|v| v.is_some())
    .collect();
    // Whatever was lost, it was lost alike: the replicas converge.
    cluster.converged_state_hash().await;
    cluster.stop_all().await;
    survived
}

fn assert_all(survived: &[bool], what: &str) {
    let lost: Vec<usize> = (0..survived.len()).filter(|i| !survived[*i]).collect();
    assert!(lost.is_empty(), "{what}: acknowledged keys lost: {lost:?}");
}

fn assert_prefix(survived: &[bool], what: &str) {
    let kept = survived.iter().take_while(|s| **s).count();
    assert!(
        survived[kept..].iter().all(|s| !s),
        "{what}: a hole in history: keys {kept}.. survived in part: {survived:?}"
    );
    println!(
        "{what}: the first {kept} of {} keys survived",
        survived.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_keeps_every_acknowledged_write_when_every_process_dies() {
    assert_all(
        &crash_the_cluster(Preset::Durable, Crash::Process).await,
        "durable, all processes killed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_keeps_every_acknowledged_write_when_every_node_loses_power() {
    assert_all(
        &crash_the_cluster(Preset::Durable, Crash::Power).await,
        "durable, power cut on all nodes",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn balanced_keeps_every_acknowledged_write_when_every_process_dies() {
    assert_all(
        &crash_the_cluster(Preset::Balanced, Crash::Process).await,
        "balanced, all processes killed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn balanced_keeps_writes_older_than_its_window_when_every_node_loses_power() {
    assert_all(
        &crash_the_cluster(Preset::Balanced, Crash::Power).await,
        "balanced, power cut on all nodes after the sync window",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throughput_keeps_a_prefix_when_every_process_dies() {
    assert_prefix(
        &crash_the_cluster(Preset::Throughput, Crash::Process).await,
        "throughput, all processes killed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throughput_keeps_a_prefix_when_every_node_loses_power() {
    assert_prefix(
        &crash_the_cluster(Preset::Throughput, Crash::Power).await,
        "throughput, power cut on all nodes",
    );
}
