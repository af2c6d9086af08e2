//! In-process clusters on 127.0.0.1 for the cluster tests: free ports,
//! start/stop/restart of nodes, and the waits that cluster tests share.

use ballast_node::api::{Consistency, KvApi};
use ballast_node::config::Member;
use ballast_node::{Node, NodeConfig, NodeEnv};
use ballast_raft::{NodeId, Request};
use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeMap;

use super::{eventually, free_port, DEADLINE};

/// A loopback address with a free port (see [`free_port`]).
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// In-process nodes started together, with their configs and data.
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
        let config = self.configs[&id].clone();
        let what = format!("node {id} to start (its directories unlocked)");
        let node = eventually(&what, DEADLINE, || {
            let (config, env) = (config.clone(), env.clone());
            async move {
                match Node::start_with(config, env).await {
                    Ok(node) => Ok(node),
                    Err(e) if e.to_string().contains("lock") => Err(e.to_string()),
                    Err(e) => panic!("node {id} does not start: {e}"),
                }
            }
        })
        .await;
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
        eventually(
            "all running nodes agree on a running leader",
            DEADLINE,
            || async {
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
            },
        )
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
    eventually(&what, DEADLINE, || {
        let range = range.clone();
        async move { has_all(node, range, Consistency::Stale).await.then_some(()) }
    })
    .await
}

impl Cluster {
    /// Waits until every running node has applied `target` or more.
    pub async fn all_applied(&self, target: Option<u64>) {
        for (id, node) in &self.nodes {
            eventually(
                &format!("node {id} applies everything"),
                DEADLINE,
                || async { (node.status().applied_index >= target).then_some(()) },
            )
            .await;
        }
    }

    /// Waits until `leader` has purged its log past index `behind + 1`
    /// (so a node that stopped at `behind` needs a snapshot); returns the
    /// purged index.
    pub async fn purged_past(&self, leader: NodeId, behind: u64) -> u64 {
        eventually(
            "the leader to purge its log past the follower",
            DEADLINE,
            || async {
                let m = self.node(leader).raft().metrics().borrow_watched().clone();
                m.purged.filter(|p| p.index > behind + 1).map(|p| p.index)
            },
        )
        .await
    }

    /// Waits until every running node has applied the same index and
    /// reports the same state hash (every live key, value and deadline),
    /// and returns the hash.
    pub async fn converged_state_hash(&self) -> String {
        eventually(
            "every node applied alike, with one state hash",
            DEADLINE,
            || async {
                let statuses: Vec<_> = self.nodes.values().map(|n| n.status_with_hash()).collect();
                let first = statuses.first()?;
                let hash = first.state_hash.clone()?;
                statuses
                    .iter()
                    .all(|s| {
                        s.applied_index == first.applied_index
                            && s.state_hash.as_ref() == Some(&hash)
                    })
                    .then_some(hash)
            },
        )
        .await
    }
}
