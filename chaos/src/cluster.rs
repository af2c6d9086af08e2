//! A fresh 3-node cluster of real `ballast` processes for one run.
//!
//! Each node gets its own data directory under the run's directory, four
//! free ports on 127.0.0.1 (RESP, admin HTTP, its private peer port, and
//! the port of its fault proxy, which is the address the membership names),
//! and a log file that collects its output. The controller starts, kills
//! (SIGKILL), pauses (SIGSTOP/SIGCONT), stops (SIGTERM) and restarts them,
//! and reads `/status`. Everything it started is killed when the `Cluster`
//! is dropped, also when a run fails or panics; Ctrl-C in a terminal
//! reaches the nodes too (they share the controller's process group), and
//! a node stops gracefully on it.

use crate::proxy::{Links, NodeId};
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `ballast` binary.
    pub bin: PathBuf,
    /// The run's directory: configs, data, logs.
    pub dir: PathBuf,
    /// Durability preset: durable, balanced or throughput.
    pub preset: String,
    /// Start nodes with `--volatile-fs` (a SIGKILL is a power cut).
    pub volatile_fs: bool,
    /// `BALLAST_PLANTED_BUGS` for the nodes (a binary built with the
    /// `planted-bugs` feature switches them on).
    pub planted: Option<String>,
    /// Nodes in the cluster.
    pub nodes: u64,
}

/// One node's ports.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// RESP.
    pub client: u16,
    /// Admin HTTP.
    pub admin: u16,
    /// Where the node listens for peers.
    pub raft: u16,
    /// Where its fault proxy listens: the address peers are given.
    pub proxy: u16,
}

/// One node process.
#[derive(Debug)]
pub struct NodeProc {
    /// Its id.
    pub id: NodeId,
    /// Its ports.
    pub ports: Ports,
    /// Its config file.
    pub config: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// What `/status` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// leader, follower, candidate, learner, shutdown.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// Applied log index.
    pub applied_index: u64,
    /// SHA-256 of the applied state.
    pub state_hash: String,
    /// The voters it knows.
    pub voters: Vec<NodeId>,
}

/// The running cluster.
pub struct Cluster {
    /// The spec it runs.
    pub spec: Spec,
    /// The peer links' fault controls.
    pub links: Links,
    nodes: BTreeMap<NodeId, NodeProc>,
    /// The highest node id ever used: a new node never reuses one.
    last_id: NodeId,
    runtime: tokio::runtime::Runtime,
}

/// A port nobody listens on now, below the kernel's ephemeral range (a
/// port there can be handed to a reconnecting client as its own source
/// port, which then keeps a restarted node from binding it).
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = 20_000 + (std::process::id() % 97) * 100;
    for _ in 0..12_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (start - 20_000 + n) % 12_000;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return Ok(port as u16);
        }
    }
    bail!("no free port in 20000..32000")
}

/// Writes node `id`'s config (bootstrapping from `members`, or joining
/// later when it is empty) and starts its proxy.
fn prepare(
    spec: &Spec,
    runtime: &tokio::runtime::Runtime,
    links: &Links,
    id: NodeId,
    p: Ports,
    members: &str,
) -> Result<NodeProc> {
    let config = spec.dir.join(format!("node{id}.toml"));
    let text = format!(
        "id = {id}\ndata_dir = \"data/node{id}\"\nclient_addr = \"127.0.0.1:{}\"\n\
         raft_addr = \"127.0.0.1:{}\"\nadmin_addr = \"127.0.0.1:{}\"\npreset = \"{}\"\n{members}",
        p.client, p.raft, p.admin, spec.preset
    );
    std::fs::write(&config, text).with_context(|| format!("write {}", config.display()))?;
    runtime.block_on(links.start_proxy(
        id,
        &format!("127.0.0.1:{}", p.proxy),
        format!("127.0.0.1:{}", p.raft),
    ))?;
    Ok(NodeProc {
        id,
        ports: p,
        config,
        log: spec.dir.join(format!("node{id}.log")),
        child: None,
        paused: false,
    })
}

impl Cluster {
    /// Writes the configs, starts the proxies and the nodes, and waits for
    /// a leader (30 s at most).
    pub fn start(spec: Spec) -> Result<Cluster> {
        std::fs::create_dir_all(&spec.dir)
            .with_context(|| format!("create {}", spec.dir.display()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let links = Links::new();
        let mut ports = BTreeMap::new();
        for id in 1..=spec.nodes {
            ports.insert(
                id,
                Ports {
                    client: free_port()?,
                    admin: free_port()?,
                    raft: free_port()?,
                    proxy: free_port()?,
                },
            );
        }
        let mut members = String::new();
        for (id, p) in &ports {
            members.push_str(&format!(
                "\n[[initial_members]]\nid = {id}\nraft_addr = \"127.0.0.1:{}\"\nclient_addr = \"127.0.0.1:{}\"\n",
                p.proxy, p.client
            ));
        }
        let mut nodes = BTreeMap::new();
        for (&id, p) in &ports {
            let node = prepare(&spec, &runtime, &links, id, *p, &members)?;
            nodes.insert(id, node);
        }
        let mut cluster = Cluster {
            last_id: spec.nodes,
            spec,
            links,
            nodes,
            runtime,
        };
        for id in cluster.ids() {
            cluster.launch(id)?;
        }
        if let Err(e) = cluster.wait_for_leader(Duration::from_secs(30)) {
            let mut why = format!("the cluster did not start: {e}");
            for id in cluster.ids() {
                let state = if cluster.is_running(id) {
                    "running"
                } else {
                    "exited"
                };
                let log = std::fs::read_to_string(&cluster.nodes[&id].log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                why.push_str(&format!(
                    "\n  node {id} ({state}): {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
            bail!(why);
        }
        Ok(cluster)
    }

    /// Starts a new, empty node (no initial members: it waits to be added
    /// with `POST /membership/learner`); returns its id.
    pub fn add_node(&mut self) -> Result<NodeId> {
        self.last_id += 1;
        let id = self.last_id;
        let p = Ports {
            client: free_port()?,
            admin: free_port()?,
            raft: free_port()?,
            proxy: free_port()?,
        };
        let node = prepare(&self.spec, &self.runtime, &self.links, id, p, "")?;
        self.nodes.insert(id, node);
        self.launch(id)?;
        Ok(id)
    }

    /// Kills node `id` and forgets it (after it left the membership).
    pub fn forget_node(&mut self, id: NodeId) {
        self.kill(id);
        self.nodes.remove(&id);
    }

    /// `POST path` on node `id`'s admin port: the status code and body.
    pub fn admin_post(&self, id: NodeId, path: &str) -> Option<(u16, String)> {
        http(
            self.nodes[&id].ports.admin,
            "POST",
            path,
            Duration::from_secs(30),
        )
    }

    /// Node ids, ascending.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// A node's ports.
    pub fn ports(&self, id: NodeId) -> Ports {
        self.nodes[&id].ports
    }

    /// Every node's RESP address.
    pub fn client_addrs(&self) -> Vec<String> {
        self.nodes
            .values()
            .map(|n| format!("127.0.0.1:{}", n.ports.client))
            .collect()
    }

    /// Every node's log file.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.nodes.values().map(|n| n.log.clone()).collect()
    }

    /// True while the node's process runs (paused counts as running).
    pub fn is_running(&mut self, id: NodeId) -> bool {
        let node = self.nodes.get_mut(&id).expect("known node");
        match node.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn launch(&mut self, id: NodeId) -> Result<()> {
        let spec = &self.spec;
        let node = self.nodes.get_mut(&id).expect("known node");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("open {}", node.log.display()))?;
        let mut cmd = Command::new(&spec.bin);
        cmd.arg("node").arg("--config").arg(&node.config);
        if spec.volatile_fs {
            cmd.arg("--volatile-fs");
        }
        match &spec.planted {
            Some(p) => cmd.env("BALLAST_PLANTED_BUGS", p),
            None => cmd.env_remove("BALLAST_PLANTED_BUGS"),
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {} node", spec.bin.display()))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(mut c) = node.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        node.paused = false;
    }

    /// SIGTERM, and wait for a graceful exit (SIGKILL after 20 s).
    pub fn stop(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(mut c) = node.child.take() {
            if node.paused {
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
            }
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    node.paused = false;
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        node.paused = false;
    }

    /// Starts a node that is not running (with its data).
    pub fn restart(&mut self, id: NodeId) -> Result<()> {
        if self.is_running(id) {
            return Ok(());
        }
        self.launch(id)
    }

    /// SIGSTOP.
    pub fn pause(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(c) = &node.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGSTOP);
            node.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(c) = &node.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
        node.paused = false;
    }

    /// What the node's `/status` says, or `None` if it does not answer
    /// within a second.
    pub fn status(&self, id: NodeId) -> Option<Status> {
        let body = http_get(self.nodes[&id].ports.admin, "/status")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(Status {
            role: v["role"].as_str()?.to_string(),
            term: v["term"].as_u64()?,
            leader: v["leader"]["id"].as_u64(),
            applied_index: v["applied_index"].as_u64()?,
            state_hash: v["state_hash"].as_str().unwrap_or("").to_string(),
            voters: v["voters"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
                .unwrap_or_default(),
        })
    }

    /// The node that says it leads, if exactly one does (a deposed leader
    /// that has not heard of its successor may still say so).
    pub fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<(u64, NodeId)> = self
            .ids()
            .into_iter()
            .filter_map(|id| {
                self.status(id)
                    .filter(|s| s.role == "leader")
                    .map(|s| (s.term, id))
            })
            .collect();
        leaders.iter().max().map(|&(_, id)| id)
    }

    /// Waits for a leader; `Err` after `within`.
    pub fn wait_for_leader(&self, within: Duration) -> Result<NodeId> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(id) = self.leader() {
                return Ok(id);
            }
            if Instant::now() > deadline {
                return Err(anyhow!("no leader within {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every node answers `/status` with the same applied
    /// index and state hash; the statuses last seen either way.
    pub fn wait_converged(&self, within: Duration) -> (bool, BTreeMap<NodeId, Option<Status>>) {
        let deadline = Instant::now() + within;
        loop {
            let seen: BTreeMap<NodeId, Option<Status>> = self
                .ids()
                .into_iter()
                .map(|id| (id, self.status(id)))
                .collect();
            let all: Vec<&Status> = seen.values().flatten().collect();
            let same = all.len() == seen.len()
                && all.windows(2).all(|w| {
                    w[0].applied_index == w[1].applied_index && w[0].state_hash == w[1].state_hash
                })
                && all.iter().all(|s| !s.state_hash.is_empty());
            if same || Instant::now() > deadline {
                return (same, seen);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `f` on the proxies' runtime (for callers that need async).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut c) = node.child.take() {
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// GET `path` on 127.0.0.1:`port`; the body of a 200 answer.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    match http(port, "GET", path, Duration::from_secs(1))? {
        (200, body) => Some(body),
        _ => None,
    }
}

/// One HTTP/1.1 request with no body; the status code and body.
fn http(port: u16, method: &str, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Lines of the node logs that show a panic.
pub fn panics_in(logs: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for log in logs {
        let Ok(text) = std::fs::read_to_string(log) else {
            continue;
        };
        for line in text.lines().filter(|l| l.contains("panicked at")) {
            out.push(format!("{}: {line}", file_name(log)));
        }
    }
    out
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}
