//! A request the log cannot hold (an empty or nested `Multi`) is refused
//! where it enters a node, through the client API and through a write
//! forwarded over Raft RPC, with a clean `Invalid` error; the cluster keeps
//! serving writes on every node. With the planted switch that skips the
//! validation, the same request becomes a poison entry: the leader fails
//! to read it back (to replicate or apply it), its Raft stops with a
//! storage error naming the log file and offset, and writes fail, which is
//! what shows the check has teeth.

mod support;

use ballast_node::api::{ApiError, KvApi};
use ballast_raft::net::{ForwardClient, ForwardError, NetConfig, NonceSource};
use ballast_raft::planted::{NodeBug, Planted};
use ballast_raft::Request;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use support::cluster::*;
use support::{eventually, DEADLINE};

struct Counter(AtomicU64);

impl NonceSource for Counter {
    fn nonce(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&self.0.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        b
    }
}

/// A peer-to-peer client, as a follower forwarding a write would use.
fn rpc_client() -> ForwardClient {
    ForwardClient::new(Arc::new(NetConfig::new(Arc::new(Counter(AtomicU64::new(
        1,
    ))))))
}

fn empty_multi() -> Request {
    Request::Multi(vec![])
}

fn nested_multi() -> Request {
    Request::Multi(vec![Request::Multi(vec![put(900)])])
}

async fn start(planted: Planted) -> Cluster {
    Cluster::start(3, |c| {
        c.planted = planted;
        // The planted run waits for writes that never complete: keep the
        // wait short (the healthy run never waits this long).
        c.request_timeout_ms = 3_000;
        // A value limit that replicates within that timeout (the config
        // refuses one that would not).
        c.value_bytes_max = 1 << 20;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_request_is_refused_at_the_api_and_the_rpc_and_the_cluster_keeps_serving() {
    let cluster = start(Planted::NONE).await;
    let leader = cluster.leader().await;
    let follower = cluster.followers(leader)[0];
    cluster
        .node(leader)
        .write(put(0))
        .await
        .expect("first write");

    // API, on the leader and on a follower (which would forward it).
    for id in [leader, follower] {
        for req in [empty_multi(), nested_multi()] {
            let err = cluster
                .node(id)
                .write(req.clone())
                .await
                .expect_err("a multi from a client is refused");
            assert!(
                matches!(&err, ApiError::Invalid(why) if why.contains("multi")),
                "node {id}, {req:?}: {err:?}"
            );
        }
    }
    // A write forwarded over RPC straight to the leader, as a follower
    // without the API check would send it.
    let rpc = rpc_client();
    let leader_addr = cluster.configs[&leader].raft_addr.clone();
    for req in [empty_multi(), nested_multi()] {
        let answer = rpc.write(&leader_addr, req.clone()).await.expect("sent");
        assert!(
            matches!(&answer, Err(ForwardError::Invalid(why)) if why.contains("multi")),
            "{req:?}: {answer:?}"
        );
    }
    // Over-limit keys are refused at the RPC too, with the limit named.
    let long_key = Request::Delete {
        key: vec![b'k'; cluster.configs[&leader].key_bytes_max as usize + 1],
    };
    let answer = rpc.write(&leader_addr, long_key).await.expect("sent");
    assert!(
        matches!(&answer, Err(ForwardError::Invalid(why)) if why.contains("key_bytes_max")),
        "{answer:?}"
    );

    // Every node still takes writes, and every node applies them.
    for (i, id) in cluster.nodes.keys().enumerate() {
        cluster
            .node(*id)
            .write(put(1 + i))
            .await
            .unwrap_or_else(|e| panic!("write on node {id} after the refusals: {e}"));
    }
    for node in cluster.nodes.values() {
        converges(node, 0..4).await;
    }
    cluster.converged_state_hash().await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_validation_skipped_a_poison_entry_stops_the_cluster() {
    let cluster = start(Planted::NONE.with(NodeBug::SkipRequestValidation)).await;
    let leader = cluster.leader().await;
    cluster
        .node(leader)
        .write(put(0))
        .await
        .expect("first write");
    for node in cluster.nodes.values() {
        converges(node, 0..1).await;
    }
    // Not refused: it goes into the leader's log.
    let poison = cluster.node(leader).write(empty_multi()).await;
    assert!(
        !matches!(poison, Err(ApiError::Invalid(_))),
        "the planted switch did not skip validation: {poison:?}"
    );
    // The leader fails to read the entry back (to replicate or apply it)
    // and stops its Raft with a storage error that names the log file and
    // the entry's offset; every write through it fails from then on.
    let later = cluster.node(leader).write(put(1)).await;
    let why = format!("{later:?}");
    assert!(
        later.is_err() && why.contains("corrupt Raft log data") && why.contains("offset"),
        "a write after the poison entry: {why}"
    );
    eventually(
        "the leader's Raft stops on the poison entry",
        DEADLINE,
        || async { (cluster.node(leader).status().role == "shutdown").then_some(()) },
    )
    .await;
}
