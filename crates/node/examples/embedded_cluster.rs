//! The embedded node library: a 3-node cluster inside one process.
//!
//! Starts three `Node`s on 127.0.0.1 (data in a temporary directory that
//! is removed at the end), writes through `KvApi` on a follower, reads it
//! back with linearizable reads on the other follower and on the leader,
//! adds a fourth node as a learner and promotes it to voter, removes a
//! member, and shuts every node down cleanly. Each step is checked; the
//! program exits 0 only if all of them held.
//!
//! ```text
//! cargo run -p ballast-node --example embedded_cluster
//! ```
//!
//! No RESP or admin listeners are started: a program embedding the node
//! talks to it through `KvApi` and `AdminApi` (the `ballast node` command
//! adds `server::RespServer` and `admin::serve` on top).

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use ballast_node::config::Member;
use ballast_node::{AdminApi, Consistency, KvApi, Node, NodeConfig};
use ballast_raft::{NodeId, Request, Response};
use bytes::Bytes;

/// How long any one step may take before the example gives up.
const STEP_DEADLINE: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = |id: NodeId| {
        let mut c = NodeConfig::new(id, dir.path().join(format!("node{id}")));
        c.raft_addr = free_loopback_addr();
        c.client_addr = free_loopback_addr();
        c.admin_addr = free_loopback_addr();
        c
    };

    // 1. Three voters, bootstrapped together from the same member list.
    let mut configs: Vec<NodeConfig> = (1..=3).map(config).collect();
    let members: Vec<Member> = configs
        .iter()
        .map(|c| Member {
            id: c.id,
            raft_addr: c.raft_addr.clone(),
            client_addr: c.client_addr.clone(),
        })
        .collect();
    let mut nodes = Vec::new();
    for c in &mut configs {
        c.initial_members = members.clone();
        nodes.push(Node::start(c.clone()).await?);
    }
    let leader = agreed_leader(&nodes).await;
    let followers: Vec<&Node> = nodes.iter().filter(|n| n.id() != leader).collect();
    println!("started nodes 1, 2, 3; node {leader} leads");

    // 2. Write on a follower (it forwards to the leader), read it back on
    //    the other follower and on the leader.
    let put = Request::Put {
        key: b"greeting".to_vec(),
        value: b"hello".to_vec(),
        expire_at_ms: None,
    };
    let answer = followers[0].write(put).await?;
    assert_eq!(answer, Response::Done, "the write is acknowledged");
    for reader in [followers[1], node(&nodes, leader)] {
        let got = reader
            .get_many(vec![Bytes::from("greeting")], Consistency::Linearizable)
            .await?;
        let value = got[0].as_ref().map(|v| v.value.clone());
        assert_eq!(
            value,
            Some(Bytes::from("hello")),
            "node {} reads the write",
            reader.id()
        );
    }
    println!(
        "wrote greeting=hello on node {}; read it back on node {} and on the leader",
        followers[0].id(),
        followers[1].id()
    );

    // 3. A fourth node: started empty (no initial members), added as a
    //    learner (the call returns once it caught up), then promoted.
    let fourth = Node::start(config(4)).await?;
    let leader_node = node(&nodes, leader);
    leader_node
        .add_learner(
            4,
            fourth.raft_addr().to_string(),
            fourth.config().client_addr.clone(),
        )
        .await?;
    let voters: BTreeSet<NodeId> = [1, 2, 3, 4].into();
    leader_node.change_voters(voters.clone(), true).await?;
    poll("node 4 sees itself a voter", || async {
        fourth.status().voters.contains(&4)
    })
    .await;
    poll("node 4 holds the data", || async {
        let got = fourth
            .get_many(vec![Bytes::from("greeting")], Consistency::Stale)
            .await;
        matches!(got.as_deref(), Ok([Some(v)]) if v.value == "hello")
    })
    .await;
    println!("added node 4 as a learner, promoted it; its own engine holds greeting=hello");

    // 4. Remove a follower from the cluster.
    let removed = followers[1].id();
    let remaining: BTreeSet<NodeId> = voters.iter().copied().filter(|&v| v != removed).collect();
    leader_node.change_voters(remaining.clone(), false).await?;
    let status = leader_node.status();
    let now: BTreeSet<NodeId> = status.voters.iter().copied().collect();
    assert_eq!(now, remaining, "the voters after removing node {removed}");
    assert!(
        status.learners.is_empty(),
        "node {removed} is not kept as a learner"
    );
    println!("removed node {removed}; voters now {remaining:?}");

    // 5. Shut every node down: stops Raft, fsyncs the log, flushes the engine.
    nodes.push(fourth);
    for n in &nodes {
        n.shutdown().await?;
    }
    println!("shut down nodes 1, 2, 3, 4 cleanly");
    drop(nodes);
    dir.close()?;
    Ok(())
}

/// The node with id `id`.
fn node(nodes: &[Node], id: NodeId) -> &Node {
    nodes
        .iter()
        .find(|n| n.id() == id)
        .expect("the leader is one of the nodes")
}

/// Waits until every node names the same leader, and returns it.
async fn agreed_leader(nodes: &[Node]) -> NodeId {
    let mut leader = None;
    poll("the nodes agree on a leader", || {
        let seen: BTreeSet<Option<NodeId>> = nodes
            .iter()
            .map(|n| n.status().leader.map(|(id, _)| id))
            .collect();
        leader = match seen.into_iter().collect::<Vec<_>>()[..] {
            [Some(id)] => Some(id),
            _ => None,
        };
        std::future::ready(leader.is_some())
    })
    .await;
    leader.expect("polled until known")
}

/// Polls `done` every 20 ms; panics with `what` after [`STEP_DEADLINE`].
async fn poll<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + STEP_DEADLINE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {STEP_DEADLINE:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback address with a port free right now (the kernel's choice).
fn free_loopback_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    addr.to_string()
}
