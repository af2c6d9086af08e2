//! `ballast cluster up | stop | status`: the local cluster as background
//! processes.
//!
//! The cluster is described by the node configs in a directory (`cluster/`
//! by default: `node1.toml`, `node2.toml`, ...). `up` starts one
//! `ballast node --config <file>` process per config that is not already
//! running, in its own process group so that it outlives the command,
//! with its log in `<data>/<name>.log` and its pid in `<data>/<name>.pid`
//! (`<data>` is `cluster/data/`), then waits until every node reports the
//! same leader on its admin port. `stop` sends SIGTERM (a graceful
//! shutdown: flush, fsync, close) and waits, escalating to SIGKILL after a
//! deadline. `status` asks each admin port for `/status`.

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long `up` waits for an elected leader that every node knows.
const UP_DEADLINE: Duration = Duration::from_secs(30);
/// How long `stop` waits for a node to exit after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// Deadline of one admin HTTP request.
const HTTP_DEADLINE: Duration = Duration::from_secs(2);
/// Largest admin reply read.
const HTTP_REPLY_BYTES_MAX: u64 = 1 << 20;

/// One node of the local cluster, as its config file describes it.
#[derive(Debug, Clone)]
pub struct Member {
    /// File stem of its config (`node1`).
    pub name: String,
    /// Its config file.
    pub config: PathBuf,
    /// Node id.
    pub id: u64,
    /// RESP address.
    pub client_addr: String,
    /// Admin HTTP address.
    pub admin_addr: String,
}

/// The local cluster: its member configs and where pids and logs go.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The members, by config file name.
    pub members: Vec<Member>,
    /// Where pid and log files go.
    pub run_dir: PathBuf,
}

impl Cluster {
    /// Reads every `*.toml` in `dir` (sorted by name) as a member config.
    pub fn load(dir: &Path) -> Result<Cluster> {
        let mut configs: Vec<PathBuf> = fs::read_dir(dir)
            .with_context(|| format!("reading the cluster directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        configs.sort();
        if configs.is_empty() {
            bail!("no node configs (*.toml) in {}", dir.display());
        }
        let members = configs
            .into_iter()
            .map(|config| member(&config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Cluster {
            members,
            run_dir: dir.join("data"),
        })
    }

    fn pid_file(&self, m: &Member) -> PathBuf {
        self.run_dir.join(format!("{}.pid", m.name))
    }

    fn log_file(&self, m: &Member) -> PathBuf {
        self.run_dir.join(format!("{}.log", m.name))
    }

    /// The pid of `m`'s process if it is running.
    fn running(&self, m: &Member) -> Option<Pid> {
        let text = fs::read_to_string(self.pid_file(m)).ok()?;
        let pid = Pid::from_raw(text.trim().parse().ok()?);
        alive(pid).then_some(pid)
    }

    /// Starts every member that is not running, then waits for a leader.
    pub fn up(&self, node_args: &[String]) -> Result<()> {
        fs::create_dir_all(&self.run_dir)
            .with_context(|| format!("creating {}", self.run_dir.display()))?;
        let exe = std::env::current_exe().context("locating the ballast binary")?;
        for m in &self.members {
            if let Some(pid) = self.running(m) {
                println!("{}: already running (pid {pid})", m.name);
                continue;
            }
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_file(m))
                .with_context(|| format!("opening {}", self.log_file(m).display()))?;
            let child = Command::new(&exe)
                .arg("node")
                .arg("--config")
                .arg(&m.config)
                .args(node_args)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                // Its own process group: Ctrl-C on this terminal later does
                // not reach it; `cluster stop` does.
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {}", m.name))?;
            fs::write(self.pid_file(m), format!("{}\n", child.id()))?;
            println!(
                "{}: started (pid {}), log {}",
                m.name,
                child.id(),
                self.log_file(m).display()
            );
        }
        let start = Instant::now();
        loop {
            let statuses: Vec<_> = self.members.iter().map(status_of).collect();
            let leaders: Vec<Option<u64>> = statuses
                .iter()
                .map(|s| s.as_ref().ok().and_then(|v| v["leader"]["id"].as_u64()))
                .collect();
            if leaders.iter().all(|l| l.is_some() && *l == leaders[0]) {
                let leader = leaders[0].unwrap_or_default();
                println!(
                    "cluster up in {:.1} s: leader is node {leader}",
                    start.elapsed().as_secs_f64()
                );
                for m in &self.members {
                    let port = m.client_addr.rsplit(':').next().unwrap_or("?");
                    let role = if m.id == leader { " (leader)" } else { "" };
                    println!(
                        "  node {} {}{role}: RESP {}  admin http://{}   redis-cli -p {port}",
                        m.id, m.name, m.client_addr, m.admin_addr
                    );
                }
                println!("stop with: cargo run --release -p ballast-node -- cluster stop");
                return Ok(());
            }
            for m in &self.members {
                if self.running(m).is_none() {
                    bail!(
                        "{} exited during startup; the end of {}:\n{}",
                        m.name,
                        self.log_file(m).display(),
                        tail(&self.log_file(m), 20)
                    );
                }
            }
            if start.elapsed() > UP_DEADLINE {
                bail!(
                    "no leader known to every node after {} s (logs in {})",
                    UP_DEADLINE.as_secs(),
                    self.run_dir.display()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops every running member: SIGTERM, then SIGKILL after a deadline.
    pub fn stop(&self) -> Result<()> {
        for m in &self.members {
            let Some(pid) = self.running(m) else {
                println!("{}: not running", m.name);
                let _ = fs::remove_file(self.pid_file(m));
                continue;
            };
            kill(pid, Signal::SIGTERM).with_context(|| format!("signalling {}", m.name))?;
            let start = Instant::now();
            while alive(pid) && start.elapsed() < STOP_DEADLINE {
                thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                let _ = kill(pid, Signal::SIGKILL);
                println!(
                    "{}: did not stop within {} s, killed",
                    m.name,
                    STOP_DEADLINE.as_secs()
                );
            } else {
                println!(
                    "{}: stopped in {:.1} s",
                    m.name,
                    start.elapsed().as_secs_f64()
                );
            }
            let _ = fs::remove_file(self.pid_file(m));
        }
        Ok(())
    }

    /// Prints each member's status; fails if any node is down.
    pub fn status(&self) -> Result<()> {
        let mut down = 0;
        for m in &self.members {
            match status_of(m) {
                Ok(s) => println!(
                    "node {} {}: {} term {} leader {} commit {} applied {}  RESP {}  preset {}",
                    m.id,
                    m.name,
                    s["role"].as_str().unwrap_or("?"),
                    s["term"],
                    s["leader"]["id"],
                    s["commit_index"],
                    s["applied_index"],
                    m.client_addr,
                    s["preset"].as_str().unwrap_or("?"),
                ),
                Err(e) => {
                    down += 1;
                    println!("node {} {}: down ({e:#})", m.id, m.name);
                }
            }
        }
        if down > 0 {
            bail!("{down} of {} nodes are down", self.members.len());
        }
        Ok(())
    }
}

fn member(config: &Path) -> Result<Member> {
    let text =
        fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let v: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
    let field = |name: &str| -> Result<String> {
        v.get(name)
            .and_then(|x| x.as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{}: `{name}` is missing or not a string", config.display()))
    };
    Ok(Member {
        name: config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        config: config.to_path_buf(),
        id: v
            .get("id")
            .and_then(|x| x.as_integer())
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| {
                anyhow!(
                    "{}: `id` is missing or not a positive integer",
                    config.display()
                )
            })?,
        client_addr: field("client_addr")?,
        admin_addr: field("admin_addr")?,
    })
}

fn alive(pid: Pid) -> bool {
    // Signal 0 checks that the process exists; a zombie (exited, not yet
    // reaped) does not count as running.
    kill(pid, None).is_ok()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `GET /status` on a member's admin port, as JSON.
fn status_of(m: &Member) -> Result<serde_json::Value> {
    let body = http_get(&m.admin_addr, "/status")?;
    serde_json::from_slice(&body).context("parsing /status")
}

/// A plain HTTP/1.1 GET with a deadline, for the local admin port only.
fn http_get(addr: &str, path: &str) -> Result<Vec<u8>> {
    let sock: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("{addr}: no address"))?;
    let mut s = TcpStream::connect_timeout(&sock, HTTP_DEADLINE)?;
    s.set_read_timeout(Some(HTTP_DEADLINE))?;
    s.set_write_timeout(Some(HTTP_DEADLINE))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    s.take(HTTP_REPLY_BYTES_MAX).read_to_end(&mut reply)?;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("{addr}{path}: malformed HTTP reply"))?;
    let head = String::from_utf8_lossy(&reply[..split]);
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("{addr}{path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(reply[split + 4..].to_vec())
}
