//! redis-cli and redis-benchmark against the server over the real engine.
//! Ignored by default because it needs the Redis command-line tools
//! (Debian package `redis-tools`); run with
//! `cargo test -p ballast-node --test resp_serves_redis_cli_and_benchmark -- --ignored --nocapture`.

mod support;

use std::process::Command;

use ballast_node::server::ServerConfig;
use support::server::TestNode;

fn run(program: &str, args: &[String]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is needed for this test (apt-get install redis-tools): {e}")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {output:?}"
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "needs redis-cli and redis-benchmark (redis-tools)"]
fn redis_cli_and_redis_benchmark_are_served() {
    let node = TestNode::start(ServerConfig::default());
    let port = node.resp_addr.port().to_string();
    let cli = |args: &[&str]| {
        let mut all = vec!["-p".to_string(), port.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        run("redis-cli", &all)
    };
    assert_eq!(cli(&["PING"]).trim(), "PONG");
    assert_eq!(cli(&["SET", "greeting", "hello"]).trim(), "OK");
    assert_eq!(cli(&["GET", "greeting"]).trim(), "hello");
    assert!(cli(&["COMMAND", "DOCS", "get"]).contains("summary"));
    assert!(cli(&["INFO", "replication"]).contains("role:master"));

    let requests = 100_000;
    let csv = run(
        "redis-benchmark",
        &[
            "-p",
            &port,
            "-P",
            "16",
            "-c",
            "50",
            "-n",
            &requests.to_string(),
            "-t",
            "set,get",
            "--csv",
        ]
        .map(String::from),
    );
    println!("{csv}");
    let mut rates = Vec::new();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
        rates.push((fields[0].to_string(), fields[1].parse::<f64>().unwrap()));
    }
    assert_eq!(rates.len(), 2, "SET and GET rows: {csv}");
    let mut c = node.client();
    let value: String = redis::cmd("GET")
        .arg("key:__rand_int__")
        .query(&mut c)
        .unwrap();
    assert_eq!(value.len(), 3, "redis-benchmark's SETs were stored");
    // The floor guards against an accidental serialisation of pipelines
    // (a few thousand per second); a debug-ish test build on two shared
    // cores does far better.
    for (test, rate) in rates {
        assert!(rate > 20_000.0, "{test}: only {rate} requests per second");
    }
}
