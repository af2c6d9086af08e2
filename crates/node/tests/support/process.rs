//! What the tests that run the real `ballast` binary share: free ports,
//! node configs for a 3-node cluster, running `ballast cluster ...`, pids,
//! the admin port's `/status`, and stopping everything when a test ends
//! (also when it fails).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::{eventually_blocking, free_port};

/// One node's ports.
pub struct Ports {
    pub client: u16,
    pub raft: u16,
    pub admin: u16,
}

impl Ports {
    /// Three free ports.
    pub fn free() -> Ports {
        Ports {
            client: free_port(),
            raft: free_port(),
            admin: free_port(),
        }
    }
}

/// Writes `node1.toml`.. into `dir` for a cluster of `ports.len()` nodes
/// bootstrapped together, each with `preset` and the `extra` TOML lines.
pub fn write_configs(dir: &Path, ports: &[Ports], preset: &str, extra: &str) {
    let mut members = String::new();
    for (i, p) in ports.iter().enumerate() {
        members.push_str(&format!(
            "\n[[initial_members]]\nid = {}\nraft_addr = \"127.0.0.1:{}\"\nclient_addr = \"127.0.0.1:{}\"\n",
            i + 1,
            p.raft,
            p.client
        ));
    }
    for (i, p) in ports.iter().enumerate() {
        let text = format!(
            "id = {id}\ndata_dir = \"data/node{id}\"\nclient_addr = \"127.0.0.1:{}\"\n\
             raft_addr = \"127.0.0.1:{}\"\nadmin_addr = \"127.0.0.1:{}\"\npreset = \"{preset}\"\n\
             {extra}\n{members}",
            p.client,
            p.raft,
            p.admin,
            id = i + 1
        );
        std::fs::write(dir.join(format!("node{}.toml", i + 1)), text).expect("write config");
    }
}

/// Runs `ballast cluster ARGS --dir DIR` with `env` set, and echoes its
/// output.
pub fn ballast_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["cluster"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .envs(env.iter().copied())
        .output()
        .expect("run ballast");
    println!(
        "$ ballast cluster {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `ballast cluster ARGS --dir DIR`, and echoes its output.
pub fn ballast(dir: &Path, args: &[&str]) -> Output {
    ballast_env(dir, args, &[])
}

/// Stops the cluster even when an assertion fails, so that no node
/// outlives the test.
pub struct StopOnDrop<'a>(pub &'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = ballast(self.0, &["stop"]);
    }
}

/// The leader `cluster up` reported.
pub fn leader_of(out: &Output) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("leader is node"))
        .expect("`cluster up` names the leader");
    line.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("leader id")
}

/// The pid `cluster up` recorded for node `id`.
pub fn pid_of(dir: &Path, id: u64) -> i32 {
    std::fs::read_to_string(dir.join(format!("data/node{id}.pid")))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

/// SIGKILLs `pid` (no shutdown, no flush) and waits until it is gone, so
/// that its ports are free for a restart.
pub fn sigkill(pid: i32) {
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill -KILL {pid}");
    eventually_blocking(
        &format!("{pid} to be gone after SIGKILL"),
        Duration::from_secs(10),
        || !alive(pid),
    );
}

/// True while any thread of `pid` runs. A multi-threaded process's first
/// thread turns zombie (and its `/proc` entry loses its files) while the
/// others are still exiting and holding the process's sockets, so the
/// first thread's state alone does not say the ports are free.
pub fn alive(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            // The state letter follows the parenthesised command name.
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
        })
    })
}

/// GET `path` from the admin port `port`: the body, or `None` if the node
/// does not answer.
pub fn admin_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// The node's `ballast_proposed_entries_total` (log entries it proposed as
/// leader), read from `/metrics` on `admin_port`.
pub fn proposed_entries(admin_port: u16) -> u64 {
    let metrics = admin_get(admin_port, "/metrics").expect("/metrics answers");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("ballast_proposed_entries_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("ballast_proposed_entries_total on /metrics")
}

/// The `/status` JSON of the node whose admin port is `port`.
pub fn status(port: u16) -> Option<serde_json::Value> {
    serde_json::from_str(&admin_get(port, "/status")?).ok()
}

/// A Redis connection to `127.0.0.1:port` with 5 s timeouts.
pub fn redis_conn(port: u16) -> redis::RedisResult<redis::Connection> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
        .get_connection_with_timeout(Duration::from_secs(5))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(c)
}
