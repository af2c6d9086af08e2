//! The `ballast` binary as a person runs it: `cluster up` starts three real
//! node processes from a directory of configs, they elect a leader, a SET
//! through one node is read back through another with a Redis client, the
//! leader process is SIGKILLed and the survivors elect a new one without
//! losing an acknowledged write (durable preset), `cluster up` again
//! restarts only the dead node and it catches up, and `cluster stop` stops
//! them all.

mod support;

use redis::Commands;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};
use support::eventually_blocking;
use support::process::{ballast, leader_of, pid_of, write_configs, Ports, StopOnDrop};

#[test]
fn cluster_up_serves_redis_clients_and_survives_a_killed_leader() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ports: Vec<Ports> = (0..3).map(|_| Ports::free()).collect();
    write_configs(dir, &ports, "durable", "");
    let _stop = StopOnDrop(dir);

    let started = Instant::now();
    let up = ballast(dir, &["up"]);
    assert!(up.status.success(), "cluster up failed");
    println!("cluster up returned after {:?}", started.elapsed());
    let leader = leader_of(&up);

    let client = |id: u64| {
        redis::Client::open(format!(
            "redis://127.0.0.1:{}/",
            ports[id as usize - 1].client
        ))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
        .expect("connect")
    };
    // A write through one node, read through another.
    let writer = if leader == 1 { 2 } else { 1 };
    let reader = 6 - leader - writer;
    let mut w = client(writer);
    let () = w.set("k", "v").expect("SET");
    let got: String = client(reader).get("k").expect("GET");
    assert_eq!(got, "v");
    // Expiry is replicated and read back with the value: TTL through
    // another node.
    let () = redis::cmd("SET")
        .arg("ttl-key")
        .arg("v")
        .arg("EX")
        .arg(100)
        .query(&mut w)
        .expect("SET EX");
    let ttl: i64 = client(reader).ttl("ttl-key").expect("TTL");
    assert!((99..=100).contains(&ttl), "TTL {ttl}");
    for i in 0..50 {
        let () = w.set(format!("key{i}"), i).expect("SET");
    }
    let status = ballast(dir, &["status"]);
    assert!(status.status.success());

    // Bad input to a real node: unknown commands and wrong arity get
    // errors and keep the connection; a malformed frame and an oversized
    // bulk string get an error and close only their connection; another
    // client is served all along.
    let raw = |bytes: &[u8]| -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", ports[reader as usize - 1].client))
            .expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(bytes).expect("send");
        let mut reply = Vec::new();
        // The node closes the connection after the error (or QUIT).
        s.read_to_end(&mut reply)
            .expect("read until the node closes");
        String::from_utf8_lossy(&reply).into_owned()
    };
    assert_eq!(
        raw(b"*1\r\n$7\r\nNOSUCHC\r\n*1\r\n$3\r\nGET\r\n*1\r\n$4\r\nQUIT\r\n"),
        "-ERR unknown command 'NOSUCHC', with args beginning with: \r\n\
         -ERR wrong number of arguments for 'get' command\r\n+OK\r\n"
    );
    assert_eq!(
        raw(b"*1\r\n$x\r\n"),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    assert_eq!(
        raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999999999\r\n"),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    let still: String = w.get("k").expect("the other client is still served");
    assert_eq!(still, "v");

    // SIGKILL the leader: no shutdown, no flush.
    let killed = Command::new("kill")
        .args(["-KILL", &pid_of(dir, leader).to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // The survivors elect a new leader and still have every acknowledged
    // write; retry while the election runs (TRYAGAIN / timeouts).
    let mut r = client(reader);
    let values = eventually_blocking(
        "a new leader to serve reads",
        Duration::from_secs(20),
        || {
            let got: redis::RedisResult<Vec<Option<i64>>> =
                r.mget((0..50).map(|i| format!("key{i}")).collect::<Vec<_>>());
            got.map_err(|e| {
                r = client(reader);
                e.to_string()
            })
        },
    );
    assert_eq!(values, (0..50).map(Some).collect::<Vec<_>>());
    let () = client(reader)
        .set("after", "kill")
        .expect("SET after the kill");

    // `cluster up` restarts only the killed node, and it catches up.
    let up = ballast(dir, &["up"]);
    assert!(up.status.success(), "cluster up after the kill failed");
    let text = String::from_utf8_lossy(&up.stdout);
    assert_eq!(text.matches("already running").count(), 2, "{text}");
    // Caught up: every node reports the same applied index (a read through
    // the restarted node would not show it: reads are forwarded to the
    // leader).
    eventually_blocking(
        "the restarted node to catch up",
        Duration::from_secs(20),
        || {
            let status = ballast(dir, &["status"]);
            let text = String::from_utf8_lossy(&status.stdout).into_owned();
            let applied: Vec<&str> = text
                .lines()
                .filter_map(|l| l.split(" applied ").nth(1))
                .filter_map(|rest| rest.split_whitespace().next())
                .collect();
            if status.status.success()
                && applied.len() == 3
                && applied.iter().all(|a| *a == applied[0])
            {
                Ok(())
            } else {
                Err(format!("\n{text}"))
            }
        },
    );
    let got: String = client(leader)
        .get("after")
        .expect("GET through the restarted node");
    assert_eq!(got, "kill");

    let stop = ballast(dir, &["stop"]);
    assert!(stop.status.success());
    let text = String::from_utf8_lossy(&stop.stdout);
    assert_eq!(text.matches("stopped in").count(), 3, "{text}");
    // Down means down: status fails and names each node as down.
    let status = ballast(dir, &["status"]);
    assert!(!status.status.success());
    assert_eq!(
        String::from_utf8_lossy(&status.stdout)
            .matches("down")
            .count(),
        3
    );
}
