//! Connections: pipelined replies stay in order while writes run
//! concurrently, bad input costs only the connection that sent it, and the
//! connection, backpressure and idle limits hold.

mod support;

use std::time::{Duration, Instant};

use ballast_node::resp::Limits;
use ballast_node::server::ServerConfig;
use support::eventually_blocking;
use support::resp::Raw;
use support::server::TestNode;

#[test]
fn pipelined_replies_come_in_request_order() {
    let node = TestNode::start(ServerConfig::default());
    let mut c = node.client();
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(format!("k{}", i % 10)).arg(i);
        pipe.cmd("GET").arg(format!("k{}", i % 10));
        pipe.cmd("INCR").arg("counter");
    }
    let replies: Vec<redis::Value> = pipe.query(&mut c).unwrap();
    assert_eq!(replies.len(), 600);
    for i in 0..200 {
        assert_eq!(replies[3 * i], redis::Value::Okay);
        assert_eq!(
            replies[3 * i + 1],
            redis::Value::BulkString(i.to_string().into_bytes()),
            "GET after SET in one pipeline reads that SET"
        );
        assert_eq!(replies[3 * i + 2], redis::Value::Int(i as i64 + 1));
    }
    // Same key written twice in one pipeline: the later write wins.
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg("same").arg("first");
    pipe.cmd("SET").arg("same").arg("second");
    pipe.cmd("GET").arg("same");
    let (_, _, last): (redis::Value, redis::Value, String) = pipe.query(&mut c).unwrap();
    assert_eq!(last, "second");
}

#[test]
fn writes_of_one_connection_are_proposed_without_waiting_for_each_other() {
    let node = TestNode::start(ServerConfig::default());
    let mut raw = node.raw();
    node.backend.open_gate(false);
    raw.send(&sets_of_distinct_keys(16));
    // All 16 are at the API at once: none waited for another's answer.
    eventually_blocking(
        "16 writes are in flight together",
        Duration::from_secs(10),
        || node.backend.writes_at_gate() == 16,
    );
    node.backend.open_gate(true);
    for _ in 0..16 {
        assert_eq!(raw.reply(), "+OK\r\n");
    }

    // Writes to one key wait for each other (the pipeline's order is kept).
    node.backend.open_gate(false);
    let mut pipeline = Vec::new();
    for _ in 0..4 {
        pipeline.extend(request(&["INCR", "n"]));
    }
    pipeline.extend(request(&["SET", "other", "x"]));
    raw.send(&pipeline);
    eventually_blocking(
        "the first INCR is in flight",
        Duration::from_secs(10),
        || node.backend.writes_at_gate() >= 1,
    );
    node.backend.open_gate(true);
    for expected in 1..=4 {
        assert_eq!(raw.reply(), format!(":{expected}\r\n"));
    }
    assert_eq!(raw.reply(), "+OK\r\n");
}

/// `count` pipelined SETs, each of its own key.
fn sets_of_distinct_keys(count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|i| request(&["SET", &format!("key{i}"), "v"]))
        .collect()
}

/// One request's wire bytes.
fn request(args: &[&str]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    ballast_node::resp::encode_request(args, &mut out);
    out.to_vec()
}

#[test]
fn a_malformed_frame_closes_only_its_connection_after_earlier_replies() {
    let node = TestNode::start(ServerConfig::default());
    let mut bystander = node.raw();
    assert_eq!(bystander.cmd(&["SET", "k", "v"]), "+OK\r\n");
    for (bad, error) in [
        (
            &b"*1\r\n$x\r\n"[..],
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*x\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n+GET\r\n",
            "-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"*1\r\n$3\r\nGETxx",
            "-ERR Protocol error: expected CRLF after bulk string\r\n",
        ),
        (
            b"GET \"k\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ] {
        let mut raw = node.raw();
        // A valid request before the bad frame is still answered first.
        let mut sent = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec();
        sent.extend_from_slice(bad);
        raw.send(&sent);
        assert_eq!(raw.read_to_close(), format!("$1\r\nv\r\n{error}"));
        assert_eq!(bystander.cmd(&["GET", "k"]), "$1\r\nv\r\n");
    }
}

#[test]
fn oversized_input_is_refused_before_it_is_buffered() {
    let node = TestNode::start(ServerConfig {
        limits: Limits {
            bulk_bytes_max: 1024,
            frame_bytes_max: 4096,
            args_max: 64,
            inline_bytes_max: 256,
        },
        ..ServerConfig::default()
    });
    let mut bystander = node.raw();
    let cases: [(Vec<u8>, &str); 4] = [
        // Refused at the header: the 1 MiB body is never sent.
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048576\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*65\r\n".to_vec(),
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            // Each bulk string is within bulk_bytes_max; together they are not.
            [
                &b"*6\r\n$3\r\nSET\r\n"[..],
                &[b"$1000\r\n", &[b'a'; 1000][..], b"\r\n"]
                    .concat()
                    .repeat(5),
            ]
            .concat(),
            "-ERR Protocol error: request larger than 4096 bytes\r\n",
        ),
        (
            vec![b'x'; 300],
            "-ERR Protocol error: too big inline request\r\n",
        ),
    ];
    for (input, error) in cases {
        let mut raw = node.raw();
        raw.send(&input);
        assert_eq!(raw.read_to_close(), error);
        assert_eq!(bystander.cmd(&["PING"]), "+PONG\r\n");
    }
}

#[test]
fn unknown_commands_and_wrong_arity_keep_the_connection() {
    let node = TestNode::start(ServerConfig::default());
    let mut raw = node.raw();
    let mut other = node.raw();
    for _ in 0..3 {
        assert!(raw
            .cmd(&["LPUSH", "list", "x"])
            .starts_with("-ERR unknown command 'LPUSH'"));
        assert_eq!(
            raw.cmd(&["SET", "k"]),
            "-ERR wrong number of arguments for 'set' command\r\n"
        );
        assert_eq!(other.cmd(&["PING"]), "+PONG\r\n");
    }
    assert_eq!(raw.cmd(&["SET", "k", "v"]), "+OK\r\n");
}

#[test]
fn connections_beyond_the_limit_are_refused_politely() {
    let node = TestNode::start(ServerConfig {
        connections_max: 2,
        ..ServerConfig::default()
    });
    let mut first = node.raw();
    let mut second = node.raw();
    assert_eq!(first.cmd(&["PING"]), "+PONG\r\n");
    assert_eq!(second.cmd(&["PING"]), "+PONG\r\n");
    let mut third = node.raw();
    assert_eq!(
        third.read_to_close(),
        "-ERR max number of clients reached\r\n"
    );
    assert_eq!(node.metrics.connections_rejected(), 1);
    assert_eq!(
        first.cmd(&["PING"]),
        "+PONG\r\n",
        "served connections are unaffected"
    );
    drop(second);
    eventually_blocking(
        "the closed connection is counted out",
        Duration::from_secs(10),
        || node.metrics.connections_current() == 1,
    );
    let mut fourth = node.raw();
    assert_eq!(fourth.cmd(&["PING"]), "+PONG\r\n");
}

#[test]
fn a_connection_stops_reading_at_its_pending_replies_limit() {
    let node = TestNode::start(ServerConfig {
        pending_replies_max: 4,
        ..ServerConfig::default()
    });
    let mut raw = node.raw();
    node.backend.open_gate(false);
    raw.send(&sets_of_distinct_keys(10));
    eventually_blocking("4 writes are in flight", Duration::from_secs(10), || {
        node.backend.writes_at_gate() == 4
    });
    // Another connection's write reaches the gate too, so the server has
    // been running; the first connection still has only its 4 in flight.
    let mut other = node.raw();
    other.send_cmd(&[b"SET", b"other", b"v"]);
    eventually_blocking(
        "the other connection's write is in flight",
        Duration::from_secs(10),
        || node.backend.writes_at_gate() >= 5,
    );
    assert_eq!(node.backend.writes_at_gate(), 5);
    node.backend.open_gate(true);
    for _ in 0..10 {
        assert_eq!(raw.reply(), "+OK\r\n");
    }
    assert_eq!(other.reply(), "+OK\r\n");
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let node = TestNode::start(ServerConfig {
        idle_timeout_ms: 200,
        ..ServerConfig::default()
    });
    let mut raw = node.raw();
    assert_eq!(raw.cmd(&["PING"]), "+PONG\r\n");
    let started = Instant::now();
    assert_eq!(raw.read_to_close(), "");
    let waited = started.elapsed();
    println!("idle connection closed after {waited:?}");
    assert!(
        waited >= Duration::from_millis(150),
        "closed too early: {waited:?}"
    );
}

#[test]
fn a_client_that_stops_midway_through_a_request_is_closed_as_stalled() {
    let node = TestNode::start(ServerConfig {
        stall_timeout_ms: 200,
        ..ServerConfig::default()
    });
    let mut raw = node.raw();
    raw.send(b"*2\r\n$3\r\nGET\r\n$5\r\nab");
    let started = Instant::now();
    assert_eq!(raw.read_to_close(), "");
    assert!(started.elapsed() >= Duration::from_millis(150));
    // A connection with nothing half-sent is not stalled.
    let mut quiet = Raw::connect(node.resp_addr);
    assert_eq!(quiet.cmd(&["PING"]), "+PONG\r\n");
}

#[test]
fn shutdown_answers_what_was_read_then_closes() {
    let mut node = TestNode::start(ServerConfig::default());
    let mut raw = node.raw();
    node.backend.open_gate(false);
    raw.send_cmd(&[b"SET", b"k", b"v"]);
    eventually_blocking("the write is in flight", Duration::from_secs(10), || {
        node.backend.writes_at_gate() == 1
    });
    node.begin_stop();
    eventually_blocking(
        "the server stopped accepting",
        Duration::from_secs(10),
        || std::net::TcpStream::connect(node.resp_addr).is_err(),
    );
    // The write completes only now, while the server shuts down: its
    // reply must still come.
    node.backend.open_gate(true);
    node.stop();
    assert_eq!(raw.read_to_close(), "+OK\r\n");
}

#[test]
fn a_client_that_never_reads_its_replies_is_closed_as_stalled() {
    let node = TestNode::start(ServerConfig {
        stall_timeout_ms: 300,
        reply_buffer_bytes_max: 64 * 1024,
        ..ServerConfig::default()
    });
    let mut writer = node.raw();
    let big = "v".repeat(1024 * 1024);
    assert_eq!(writer.cmd(&["SET", "big", &big]), "+OK\r\n");
    drop(writer);
    eventually_blocking("the writer is counted out", Duration::from_secs(10), || {
        node.metrics.connections_current() == 0
    });
    let mut bystander = node.raw();
    assert_eq!(bystander.cmd(&["PING"]), "+PONG\r\n");

    // 64 MiB of replies asked for, none read: far beyond what the socket
    // buffers hold, so the server's writes stop making progress.
    let mut hog = node.raw();
    eventually_blocking("the hog is counted in", Duration::from_secs(10), || {
        node.metrics.connections_current() == 2
    });
    hog.stream.set_nonblocking(true).unwrap();
    let gets = request(&["GET", "big"]).repeat(64);
    let mut sent = 0;
    let started = Instant::now();
    while sent < gets.len() && started.elapsed() < Duration::from_secs(5) {
        match std::io::Write::write(&mut hog.stream, &gets[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::yield_now();
            }
            Err(e) => panic!("send: {e}"),
        }
    }
    eventually_blocking(
        "the stalled connection is closed",
        Duration::from_secs(10),
        || node.metrics.connections_current() == 1,
    );
    let waited = started.elapsed();
    println!("stalled reader closed {waited:?} after it started sending");
    assert!(
        waited >= Duration::from_millis(250),
        "closed before the stall timeout: {waited:?}"
    );
    assert_eq!(bystander.cmd(&["GET", "missing"]), "$-1\r\n");
}
