//! Real client libraries against a real `ballast` process, as a new user
//! runs them: redis-py at its current release with its default options
//! (RESP3: it opens with `HELLO 3`).
//!
//! Each library is installed by the test itself under
//! `target/client-libs/` (a Python venv) and reused on later runs, so a
//! rerun costs only the node start and the script. A test skips, saying
//! so on stdout, only when the language runtime (python3 with venv and
//! pip) is missing; a failed install fails the test.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

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
    let out = run(
        &python,
        &[script.to_str().expect("utf-8 path"), &node.port.to_string()],
    )
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the redis-py script failed");
    let line = |name: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no '{name}' line in the script's output"))
            .to_string()
    };
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
    println!("redis-py {} passed", line("version"));
}
