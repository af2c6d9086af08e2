//! In-process clusters on 127.0.0.1 for the cluster tests: free ports,
//! start/stop/restart of nodes, and polling with deadlines.
#![allow(dead_code)]

use ballast_node::api::{Consistency, KvApi};
use ballast_node::config::Member;
use ballast_node::{Node, NodeConfig, NodeEnv};
use ballast_raft::{NodeId, Request};
use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Generous: the test machine is shared and slow.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A loopback address with a port nobody listens on right now, below the
/// kernel's ephemeral range: a port 0 choice is ephemeral, and between
/// this call and the node's bind an outgoing connection (a peer
/// reconnecting) may be given it as its source port.
pub fn free_addr() -> String {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % 200) as u16 * 100;
    for _ in 0..20_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000 + (base + n) % 22_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return format!("127.0.0.1:{port}");
        }
    }
    panic!("no free port below 32000")
}

/// Polls `cond` every 20 ms until it returns `Some`, failing the test with
/// `what` after `DEADLINE`.
pub async fn eventually<T, F, Fut>(what: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub configs: BTreeMap<NodeId, NodeConfig>,
    /// The environment each node (re)starts in; production if absent.
    pub envs: BTreeMap<NodeId, NodeEnv>,
    pub nodes: BTreeMap<NodeId, Node>,
}

pub fn node_config(dir: &std::path::Path, id: NodeId) -> NodeConfig {
    let mut c = NodeConfig::new(id, dir.join(format!("node-{id}")));
    c.raft_addr = free_addr();
    c.client_addr = free_addr();
    c.admin_addr = free_addr();
    // Slow, shared CI machines: no elections from scheduling hiccups.
    c.heartbeat_interval_ms = 100;
    c.election_timeout_min_ms = 800;
    c.election_timeout_max_ms = 1600;
    c.request_timeout_ms = 10_000;
    c.leader_wait_ms = 10_000;
    c
}

impl Cluster {
    /// Configures `n` voters (ids 1..=n), lets `tweak` adjust each config,
    /// and starts them all.
    pub async fn start(n: u64, tweak: impl Fn(&mut NodeConfig)) -> Cluster {
        Cluster::start_with(n, tweak, |_| NodeEnv::production()).await
    }

    /// [`Cluster::start`] with node `id` in the environment `env(id)`.
    pub async fn start_with(
        n: u64,
        tweak: impl Fn(&mut NodeConfig),
        env: impl Fn(NodeId) -> NodeEnv,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut configs = BTreeMap::new();
        for id in 1..=n {
            let mut c = node_config(dir.path(), id);
            tweak(&mut c);
            configs.insert(id, c);
        }
        let members: Vec<Member> = configs
            .values()
            .map(|c| Member {
                id: c.id,
                raft_addr: c.raft_addr.clone(),
                client_addr: c.client_addr.clone(),
            })
            .collect();
        for c in configs.values_mut() {
            c.initial_members = members.clone();
        }
        let envs = configs.keys().map(|id| (*id, env(*id))).collect();
        let mut cluster = Cluster {
            dir,
            configs,
            envs,
            nodes: BTreeMap::new(),
        };
        for id in 1..=n {
            cluster.restart(id).await;
        }
        cluster
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes.get(&id).expect("node is running")
    }

    /// (Re)starts node `id` from its config and data directory.
    pub async fn restart(&mut self, id: NodeId) {
        let env = self
            .envs
            .get(&id)
            .cloned()
            .unwrap_or_else(NodeEnv::production);
        // A node killed in-process lets go of its directory locks once its
        // last tasks end (a real process's die with it): retry while the
        // directory is still locked.
        let deadline = Instant::now() + DEADLINE;
        let node = loop {
            match Node::start_with(self.configs[&id].clone(), env.clone()).await {
                Ok(node) => break node,
                Err(e) if e.to_string().contains("lock") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("node {id} does not start: {e}"),
            }
        };
        self.nodes.insert(id, node);
    }

    pub async fn shutdown(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("running");
        node.shutdown().await.expect("clean shutdown");
    }

    pub async fn kill(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("running");
        node.kill().await;
    }

    /// Waits until every running node knows the same leader, that leader
    /// is running and says it leads; returns it.
    pub async fn leader(&self) -> NodeId {
        eventually("all running nodes agree on a running leader", || async {
            let mut seen = None;
            for n in self.nodes.values() {
                let l = n.raft().metrics().borrow_watched().current_leader?;
                if seen.is_some_and(|s| s != l) {
                    return None;
                }
                seen = Some(l);
            }
            let l = seen?;
            (self.nodes.get(&l)?.status().role == "leader").then_some(l)
        })
        .await
    }

    pub fn followers(&self, leader: NodeId) -> Vec<NodeId> {
        self.nodes
            .keys()
            .copied()
            .filter(|&i| i != leader)
            .collect()
    }

    pub async fn stop_all(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.shutdown(id).await;
        }
    }
}

pub fn key(i: usize) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

pub fn value(i: usize) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

pub fn put(i: usize) -> Request {
    Request::Put {
        key: key(i),
        value: value(i),
        expire_at_ms: None,
    }
}

/// Reads keys `range` on `node` and says whether every one has its value.
pub async fn has_all(node: &Node, range: std::ops::Range<usize>, c: Consistency) -> bool {
    let keys: Vec<Bytes> = range.clone().map(|i| Bytes::from(key(i))).collect();
    match node.get_many(keys, c).await {
        Ok(vs) => vs.iter().zip(range).all(|(v, i)| {
            v.as_ref()
                .is_some_and(|v| v.value.as_ref() == value(i).as_slice())
        }),
        Err(_) => false,
    }
}

/// Waits until `node`'s local engine holds keys `range`.
pub async fn converges(node: &Node, range: std::ops::Range<usize>) {
    let what = format!("node {} to hold keys {range:?}", node.id());
    eventually(&what, || {
        let range = range.clone();
        async move { has_all(node, range, Consistency::Stale).await.then_some(()) }
    })
    .await
}

impl Cluster {
    /// Waits until every running node has applied the same index and
    /// reports the same state hash (every live key, value and deadline),
    /// and returns the hash.
    pub async fn converged_state_hash(&self) -> String {
        eventually("every node applied alike, with one state hash", || async {
            let statuses: Vec<_> = self.nodes.values().map(|n| n.status_with_hash()).collect();
            let first = statuses.first()?;
            let hash = first.state_hash.clone()?;
            statuses
                .iter()
                .all(|s| {
                    s.applied_index == first.applied_index && s.state_hash.as_ref() == Some(&hash)
                })
                .then_some(hash)
        })
        .await
    }
}
