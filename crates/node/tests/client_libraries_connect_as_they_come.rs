//! Real client libraries against a real `ballast` process, as a new user
//! runs them: redis-py at its current release with its default options
//! (RESP3: it opens with `HELLO 3`), and node-redis (npm `redis`) at its
//! current release.
//!
//! Each library is installed by the test itself under
//! `target/client-libs/` (a Python venv; an npm prefix) and reused on
//! later runs, so a rerun costs only the node start and the script (about
//! 2 s each). A test skips, saying so on stdout, only when the language
//! runtime (python3 with venv and pip; node with npm) is missing; a failed
//! install fails the test.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::process::{ballast, write_configs, Ports, StopOnDrop};

/// `target/client-libs`, beside the test binaries (shared by reruns).
fn client_libs_dir() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_ballast"));
    // target/<profile>/ballast -> target/client-libs
    let target = binary
        .parent()
        .and_then(Path::parent)
        .expect("the ballast binary lives in target/<profile>/");
    target.join("client-libs")
}

/// Runs `program args`, returning its output, or `None` if it could not
/// be started at all (not installed).
fn run(program: &Path, args: &[&str]) -> Option<std::process::Output> {
    Command::new(program).args(args).output().ok()
}

/// How long a client script may take: client libraries retry a failed
/// connection forever by default (node-redis does), so an unanswered
/// handshake must end the test rather than hang it.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

/// Runs a client script to its end, or kills it at [`SCRIPT_DEADLINE`]
/// and fails with what it printed.
fn run_script(mut command: Command) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the script's runtime starts");
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    while child.try_wait().expect("wait for the script").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child
                .wait_with_output()
                .expect("collect the script's output");
            panic!(
                "the client script did not finish within {SCRIPT_DEADLINE:?}; it printed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
        .wait_with_output()
        .expect("collect the script's output")
}

/// A venv with the current redis-py, or why there can be none here.
fn python_with_redis_py() -> Result<PathBuf, String> {
    let venv = client_libs_dir().join("python");
    let python = venv.join("bin/python");
    let has_redis = |python: &Path| {
        run(python, &["-c", "import redis"]).is_some_and(|out| out.status.success())
    };
    if has_redis(&python) {
        return Ok(python);
    }
    let Some(version) = run(Path::new("python3"), &["--version"]) else {
        return Err("python3 is not installed".to_string());
    };
    assert!(version.status.success(), "python3 --version: {version:?}");
    let created = run(
        Path::new("python3"),
        &["-m", "venv", venv.to_str().expect("utf-8 path")],
    )
    .expect("python3 runs");
    if !created.status.success() {
        // Debian splits venv and pip out of python3.
        return Err(format!(
            "python3 cannot create a venv with pip (apt-get install python3-venv): {}",
            String::from_utf8_lossy(&created.stderr)
        ));
    }
    let installed = run(
        &python,
        &["-m", "pip", "install", "--quiet", "--upgrade", "redis"],
    )
    .expect("the venv's python runs");
    assert!(
        installed.status.success(),
        "pip install redis failed (is PyPI reachable?): {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    assert!(has_redis(&python), "redis-py installed but not importable");
    Ok(python)
}

/// An npm prefix with the current node-redis, or why there can be none.
fn node_with_node_redis() -> Result<PathBuf, String> {
    let prefix = client_libs_dir().join("node");
    let package = prefix.join("node_modules/redis/package.json");
    if package.exists() {
        return Ok(prefix);
    }
    if run(Path::new("node"), &["--version"]).is_none() {
        return Err("node is not installed".to_string());
    }
    if run(Path::new("npm"), &["--version"]).is_none() {
        return Err("npm is not installed".to_string());
    }
    std::fs::create_dir_all(&prefix).expect("create the npm prefix");
    let installed = run(
        Path::new("npm"),
        &[
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            prefix.to_str().expect("utf-8 path"),
            "redis@latest",
        ],
    )
    .expect("npm runs");
    assert!(
        installed.status.success() && package.exists(),
        "npm install redis failed (is the npm registry reachable?): {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    Ok(prefix)
}

/// The line of `stdout` that starts with `name `, without it.
fn line(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no '{name}' line in the script's output"))
        .to_string()
}

/// A one-node cluster of real `ballast` processes, and its client port.
struct RealNode {
    _dir: tempfile::TempDir,
    port: u16,
}

impl RealNode {
    fn up() -> RealNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = vec![Ports::free()];
        write_configs(dir.path(), &ports, "durable", "");
        let up = ballast(dir.path(), &["up"]);
        assert!(up.status.success(), "cluster up failed");
        RealNode {
            port: ports[0].client,
            _dir: dir,
        }
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        drop(StopOnDrop(self._dir.path()));
    }
}

#[test]
fn redis_py_with_default_options_connects_and_serves_strings() {
    let python = match python_with_redis_py() {
        Ok(python) => python,
        Err(why) => {
            println!("SKIPPED redis-py client test: {why}");
            return;
        }
    };
    let node = RealNode::up();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/redis_py.py");
    let mut command = Command::new(&python);
    command.arg(&script).arg(node.port.to_string());
    let out = run_script(command);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the redis-py script failed");
    let line = |name: &str| line(&stdout, name);
    // The acceptance line of issue 13, as redis-py prints it.
    assert_eq!(line("first"), "True True 2");
    assert_eq!(line("proto"), "dict 3", "redis-py's default is RESP3");
    assert_eq!(line("setnx"), "True False b'v'");
    assert_eq!(line("getset"), "b'v' b'x'");
    assert_eq!(line("strlen"), "1 0");
    assert_eq!(line("getrange"), "b'This' b'ing'");
    assert_eq!(line("type"), "b'string' b'none'");
    assert_eq!(line("touch"), "2");
    assert_eq!(line("decrby"), "-8");
    assert_eq!(line("missing"), "None");
    assert_eq!(line("name"), "app");
    assert_eq!(line("select"), "True");
    assert_eq!(line("keys"), "[b'nx']");
    assert_eq!(line("overflow"), "increment or decrement would overflow");
    assert_eq!(line("pipeline"), "[True, 2, b'2']");
    assert_eq!(line("info"), "7.0.0");
    assert_eq!(line("transaction"), "[True, 2, 2.5, b'2.5', None]");
    assert_eq!(line("watch"), "[True] b'10'");
    assert_eq!(line("watched"), "WatchError b'changed'");
    assert_eq!(line("strings"), "2 4 b'ab\\x00x' True False True b'1' True");
    println!("redis-py {} passed", line("version"));
}

#[test]
fn node_redis_with_default_options_connects_and_pipelines() {
    let prefix = match node_with_node_redis() {
        Ok(prefix) => prefix,
        Err(why) => {
            println!("SKIPPED node-redis client test: {why}");
            return;
        }
    };
    let node = RealNode::up();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node_redis.mjs");
    let mut command = Command::new("node");
    command
        .arg(&script)
        .arg(node.port.to_string())
        .env("NODE_PATH_BASE", prefix.join("node_modules"));
    let out = run_script(command);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the node-redis script failed");
    let line = |name: &str| line(&stdout, name);
    assert_eq!(line("first"), "PONG OK 2");
    assert_eq!(line("setnx"), "1 0");
    assert_eq!(line("getset"), "v x");
    assert_eq!(line("missing"), "null");
    assert_eq!(line("strlen"), "1");
    assert_eq!(line("pipeline"), r#"["OK",2,"2"]"#);
    assert_eq!(
        line("overflow"),
        "ERR increment or decrement would overflow"
    );
    assert!(!stdout.contains("client-error"), "no connection errors");
    println!("node-redis {} passed", line("version"));
}

#[test]
fn redis_crate_pipelines_in_resp2_and_resp3() {
    let node = RealNode::up();
    for (url, protocol) in [
        (format!("redis://127.0.0.1:{}/", node.port), "RESP2"),
        (
            format!("redis://127.0.0.1:{}/?protocol=resp3", node.port),
            "RESP3",
        ),
    ] {
        let client = redis::Client::open(url.as_str()).expect("client");
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{protocol}: connect: {e}"));
        let key = format!("k-{protocol}");
        let (set, incr, got, nx, strlen, range, missing): (
            String,
            i64,
            String,
            bool,
            i64,
            String,
            Option<String>,
        ) = redis::pipe()
            .set(&key, 41)
            .incr(&key, 1)
            .get(&key)
            .set_nx(&key, 0)
            .strlen(&key)
            .getrange(&key, 0, 0)
            .get("missing")
            .query(&mut c)
            .unwrap_or_else(|e| panic!("{protocol}: pipeline: {e}"));
        assert_eq!(
            (set.as_str(), incr, got.as_str(), nx, strlen, range.as_str()),
            ("OK", 42, "42", false, 2, "4"),
            "{protocol}"
        );
        assert_eq!(missing, None, "{protocol}: a missing key is nil");
        let hello: redis::Value = redis::cmd("HELLO").query(&mut c).expect("HELLO");
        let expected_proto = if protocol == "RESP3" { 3 } else { 2 };
        let proto = match hello {
            redis::Value::Map(pairs) => pairs
                .into_iter()
                .find(|(k, _)| *k == redis::Value::BulkString(b"proto".to_vec()))
                .map(|(_, v)| v),
            redis::Value::Array(items) => items
                .chunks(2)
                .find(|pair| pair[0] == redis::Value::BulkString(b"proto".to_vec()))
                .map(|pair| pair[1].clone()),
            other => panic!("{protocol}: HELLO answered {other:?}"),
        };
        assert_eq!(proto, Some(redis::Value::Int(expected_proto)), "{protocol}");
    }
}

/// The `redis` crate's async API (tokio), with its pipelines, atomic
/// pipelines (MULTI/EXEC) and `redis::transaction`'s WATCH loop on the
/// sync API.
#[test]
fn redis_crate_async_pipelines_and_transactions() {
    let node = RealNode::up();
    let url = format!("redis://127.0.0.1:{}/", node.port);
    let client = redis::Client::open(url.as_str()).expect("client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("async connect");
        let (set, incr): (String, i64) = redis::pipe()
            .set("async", 1)
            .incr("async", 2)
            .query_async(&mut c)
            .await
            .expect("async pipeline");
        assert_eq!((set.as_str(), incr), ("OK", 3));
        let (incr, float, gone): (i64, f64, Option<String>) = redis::pipe()
            .atomic()
            .incr("async", 1)
            .cmd("INCRBYFLOAT")
            .arg("async")
            .arg("0.25")
            .cmd("GETDEL")
            .arg("async")
            .query_async(&mut c)
            .await
            .expect("async MULTI/EXEC");
        assert_eq!((incr, float, gone.as_deref()), (4, 4.25, Some("4.25")));
    });
    let mut c = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .expect("connect");
    let () = redis::cmd("SET")
        .arg("balance")
        .arg(10)
        .query(&mut c)
        .expect("SET");
    let mut other = client.get_connection().expect("second connection");
    let mut attempts = 0;
    let (balance,): (i64,) = redis::transaction(&mut c, &["balance"], |c, pipe| {
        attempts += 1;
        let balance: i64 = redis::cmd("GET").arg("balance").query(c)?;
        if attempts == 1 {
            // Another client changes the key between WATCH and EXEC:
            // EXEC answers null and the helper retries.
            let () = redis::cmd("SET")
                .arg("balance")
                .arg(100)
                .query(&mut other)?;
        }
        pipe.set("balance", balance + 1)
            .ignore()
            .get("balance")
            .query(c)
    })
    .expect("redis::transaction");
    assert_eq!(
        (balance, attempts),
        (101, 2),
        "the first EXEC aborted, the retry ran"
    );
}
