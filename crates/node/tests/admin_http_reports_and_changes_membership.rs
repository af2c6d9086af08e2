//! The admin port: /status is JSON of the node's status, /metrics carries
//! the expected metric names with values that move after writes, and the
//! membership endpoints call the API and report its errors as JSON. With a
//! secret, membership changes need it as a bearer token (401 otherwise);
//! a non-loopback admin address needs a secret.

mod support;

use ballast_node::server::{Metrics, ServerConfig};
use ballast_node::NodeConfig;
use ballast_raft::net::Secret;
use serde_json::Value as Json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use support::backend::MembershipCall;
use support::http::{http, metric};
use support::server::TestNode;

fn json(body: &str) -> Json {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn status_is_json_of_the_node_status() {
    let node = TestNode::start(ServerConfig::default());
    let (code, body) = http(node.admin_addr, "GET", "/status", "");
    assert_eq!(code, 200);
    let status = json(&body);
    assert_eq!(status["id"], 1);
    assert_eq!(status["role"], "leader");
    assert_eq!(status["term"], 1);
    assert_eq!(status["leader"]["id"], 1);
    assert_eq!(status["leader"]["client_addr"], node.resp_addr.to_string());
    assert_eq!(status["voters"], serde_json::json!([1]));
    assert_eq!(status["learners"], serde_json::json!([]));
    assert_eq!(status["preset"], "durable");
    assert_eq!(status["applied_index"], Json::Null);

    let mut c = node.client();
    support::resp::set(&mut c, "k", "v");
    support::resp::set(&mut c, "k", "w");
    let status = json(&http(node.admin_addr, "GET", "/status", "").1);
    assert_eq!(status["applied_index"], 2);
    assert_eq!(status["commit_index"], 2);
}

#[test]
fn metrics_have_the_expected_names_and_move_after_writes() {
    let node = TestNode::start(ServerConfig::default());
    let (code, before) = http(node.admin_addr, "GET", "/metrics", "");
    assert_eq!(code, 200);
    for name in [
        "ballast_node_id",
        "ballast_raft_term",
        "ballast_raft_role{role=\"leader\"}",
        "ballast_raft_role{role=\"follower\"}",
        "ballast_raft_leader_id",
        "ballast_raft_last_log_index",
        "ballast_raft_commit_index",
        "ballast_raft_applied_index",
        "ballast_raft_voters",
        "ballast_raft_learners",
        "ballast_engine_writes_total",
        "ballast_engine_write_bytes_total",
        "ballast_engine_wal_fsyncs_total",
        "ballast_engine_stalls_total",
        "ballast_engine_cache_hits_total",
        "ballast_engine_cache_misses_total",
        "ballast_engine_compaction_written_bytes_total",
        "ballast_engine_level_files{level=\"0\"}",
        "ballast_engine_level_bytes{level=\"6\"}",
        "ballast_engine_write_latency_seconds{quantile=\"0.99\"}",
        "ballast_resp_connections",
        "ballast_resp_commands_total{command=\"set\"}",
    ] {
        assert!(
            metric(&before, name).is_some(),
            "/metrics lacks {name}:\n{before}"
        );
    }
    assert_eq!(
        metric(&before, "ballast_raft_role{role=\"leader\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&before, "ballast_raft_role{role=\"follower\"}"),
        Some(0.0)
    );
    assert_eq!(metric(&before, "ballast_raft_voters"), Some(1.0));
    assert_eq!(metric(&before, "ballast_engine_writes_total"), Some(0.0));
    assert_eq!(
        metric(&before, "ballast_resp_commands_total{command=\"set\"}"),
        Some(0.0)
    );

    let mut c = node.client();
    for i in 0..5 {
        redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg("value")
            .query::<()>(&mut c)
            .unwrap();
    }
    let _: Option<String> = redis::cmd("GET").arg("k1").query(&mut c).unwrap();
    // The client may have sent commands of its own on connect (the redis
    // crate sends CLIENT SETINFO), so count unknown commands from here.
    let unknown = "ballast_resp_commands_total{command=\"unknown\"}";
    let unknown_errors = "ballast_resp_command_errors_total{command=\"unknown\"}";
    let middle = http(node.admin_addr, "GET", "/metrics", "").1;
    let _ = redis::cmd("NOSUCH").query::<redis::Value>(&mut c);

    let after = http(node.admin_addr, "GET", "/metrics", "").1;
    println!(
        "after 5 SETs: engine writes {:?}, applied {:?}, write bytes {:?}",
        metric(&after, "ballast_engine_writes_total"),
        metric(&after, "ballast_raft_applied_index"),
        metric(&after, "ballast_engine_write_bytes_total")
    );
    assert_eq!(metric(&after, "ballast_engine_writes_total"), Some(5.0));
    assert!(metric(&after, "ballast_engine_write_bytes_total").unwrap() > 0.0);
    assert_eq!(metric(&after, "ballast_raft_applied_index"), Some(5.0));
    assert_eq!(
        metric(&after, "ballast_resp_commands_total{command=\"set\"}"),
        Some(5.0)
    );
    assert_eq!(
        metric(&after, "ballast_resp_commands_total{command=\"get\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, unknown),
        metric(&middle, unknown).map(|n| n + 1.0)
    );
    assert_eq!(
        metric(&after, unknown_errors),
        metric(&middle, unknown_errors).map(|n| n + 1.0)
    );
    assert_eq!(metric(&after, "ballast_resp_connections"), Some(1.0));
    assert_eq!(
        metric(
            &after,
            "ballast_resp_command_duration_seconds_count{command=\"set\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        metric(
            &after,
            "ballast_resp_command_duration_seconds_bucket{command=\"set\",le=\"+Inf\"}"
        ),
        Some(5.0)
    );
    assert!(metric(
        &after,
        "ballast_resp_command_duration_seconds_bucket{command=\"set\",le=\"10\"}"
    )
    .is_some());
}

#[test]
fn membership_errors_of_a_single_node_are_reported_as_json() {
    let node = TestNode::start(ServerConfig::default());
    let body = r#"{"id": 4, "raft_addr": "127.0.0.1:7004", "client_addr": "127.0.0.1:6004"}"#;
    let (code, answer) = http(node.admin_addr, "POST", "/membership/learner", body);
    assert_eq!(code, 503);
    let message = json(&answer)["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("membership changes need a cluster"),
        "{message}"
    );
    assert_eq!(
        node.backend.membership_calls(),
        vec![MembershipCall::AddLearner {
            id: 4,
            raft_addr: "127.0.0.1:7004".into(),
            client_addr: "127.0.0.1:6004".into(),
        }]
    );
}

#[test]
fn membership_endpoints_call_the_api_with_what_was_asked() {
    let node = TestNode::start(ServerConfig::default());
    node.backend.accept_membership(true);
    // Query string form, percent-encoded.
    let (code, answer) = http(
        node.admin_addr,
        "POST",
        "/membership/learner?id=4&raft_addr=127.0.0.1%3A7004&client_addr=127.0.0.1%3A6004",
        "",
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(json(&answer)["status"]["learners"], serde_json::json!([4]));

    let (code, answer) = http(
        node.admin_addr,
        "POST",
        "/membership/promote",
        r#"{"id": 4}"#,
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(json(&answer)["status"]["voters"], serde_json::json!([1, 4]));

    let (code, answer) = http(node.admin_addr, "POST", "/membership/remove", "id=4");
    assert_eq!(code, 200, "{answer}");
    assert_eq!(json(&answer)["status"]["voters"], serde_json::json!([1]));

    assert_eq!(
        node.backend.membership_calls(),
        vec![
            MembershipCall::AddLearner {
                id: 4,
                raft_addr: "127.0.0.1:7004".into(),
                client_addr: "127.0.0.1:6004".into(),
            },
            MembershipCall::ChangeVoters {
                voters: [1, 4].into(),
                keep_as_learners: true,
            },
            MembershipCall::ChangeVoters {
                voters: [1].into(),
                keep_as_learners: false,
            },
        ]
    );

    // Changes that do not apply never reach the API.
    let cases = [
        (
            "POST",
            "/membership/remove",
            r#"{"id": 1}"#,
            409,
            "last voter",
        ),
        (
            "POST",
            "/membership/promote",
            r#"{"id": 1}"#,
            409,
            "already a voter",
        ),
        (
            "POST",
            "/membership/promote",
            r#"{"id": 9}"#,
            404,
            "not a learner",
        ),
        (
            "POST",
            "/membership/remove",
            r#"{"id": 9}"#,
            404,
            "not a member",
        ),
        (
            "POST",
            "/membership/promote",
            r#"{"id": "x"}"#,
            400,
            "unsigned 64-bit",
        ),
        (
            "POST",
            "/membership/promote",
            "{}",
            400,
            "missing parameter id",
        ),
        (
            "POST",
            "/membership/promote",
            "[1]",
            400,
            "missing parameter id",
        ),
        (
            "POST",
            "/membership/promote",
            "{nope",
            400,
            "not a JSON object",
        ),
        (
            "POST",
            "/membership/learner",
            r#"{"id": 5}"#,
            400,
            "missing parameter raft_addr",
        ),
        ("GET", "/membership/learner", "", 405, "accepts POST only"),
        ("POST", "/status", "", 405, "accepts GET only"),
        ("GET", "/nowhere", "", 404, "no such endpoint"),
    ];
    for (method, path, body, want, says) in cases {
        let (code, answer) = http(node.admin_addr, method, path, body);
        assert_eq!(code, want, "{method} {path} {body}: {answer}");
        let message = json(&answer)["error"].as_str().unwrap().to_string();
        assert!(message.contains(says), "{method} {path} {body}: {message}");
    }
    let big = format!(r#"{{"id": 4, "pad": "{}"}}"#, "x".repeat(70 * 1024));
    let (code, answer) = http(node.admin_addr, "POST", "/membership/promote", &big);
    assert_eq!(code, 413, "{answer}");
    assert_eq!(node.backend.membership_calls().len(), 3);
}

const SECRET: &str = "0123456789abcdef-admin";

/// One HTTP/1.1 request with an optional `Authorization` header:
/// (status, `WWW-Authenticate` header if any, body).
fn http_auth(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to admin");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let challenge = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("www-authenticate")
            .then(|| value.trim().to_string())
    });
    (status, challenge, body.to_string())
}

#[test]
fn membership_changes_need_the_secret_as_a_bearer_token() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = runtime.block_on(support::backend::open_backend(
        dir.path(),
        ballast_storage::ManualClock::new(support::backend::START_MS),
    ));
    backend.accept_membership(true);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = runtime.spawn(ballast_node::admin::serve_with_secret(
        backend.clone(),
        Arc::new(Metrics::default()),
        listener,
        async move {
            let _ = stopped.await;
        },
        Some(Secret::new(SECRET)),
    ));

    // Reads stay open: monitoring scrapes them.
    assert_eq!(http_auth(addr, "GET", "/status", "", None).0, 200);
    assert_eq!(http_auth(addr, "GET", "/metrics", "", None).0, 200);

    let learner = r#"{"id": 4, "raft_addr": "127.0.0.1:7004", "client_addr": "127.0.0.1:6004"}"#;
    let refused = [
        (None, "Authorization: Bearer <secret>"),
        (Some("Bearer not-the-secret-at-all"), "wrong bearer token"),
        (Some("Bearer 0123456789abcdef-admiN"), "wrong bearer token"),
        (Some("Bearer"), "must be `Bearer <secret>`"),
        (
            Some(&format!("Basic {SECRET}")[..]),
            "must be `Bearer <secret>`",
        ),
    ];
    for (authorization, says) in refused {
        for path in [
            "/membership/learner",
            "/membership/promote",
            "/membership/remove",
        ] {
            let (code, challenge, body) = http_auth(addr, "POST", path, learner, authorization);
            assert_eq!(code, 401, "{path} with {authorization:?}: {body}");
            assert_eq!(challenge.as_deref(), Some("Bearer realm=\"ballast-admin\""));
            let message = json(&body)["error"].as_str().unwrap().to_string();
            assert!(message.contains(says), "{authorization:?}: {message}");
            assert!(!message.contains(SECRET), "the secret leaked: {message}");
        }
    }
    assert_eq!(
        backend.membership_calls(),
        vec![],
        "a refused request reached the API"
    );

    let bearer = format!("Bearer {SECRET}");
    let (code, _, body) = http_auth(addr, "POST", "/membership/learner", learner, Some(&bearer));
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = http_auth(
        addr,
        "POST",
        "/membership/promote",
        r#"{"id": 4}"#,
        Some(&bearer),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(backend.membership_calls().len(), 2);

    let _ = stop.send(());
    runtime.block_on(served).unwrap().unwrap();
}

/// The binary serves the admin port with `admin::serve` over a `Node`: the
/// node's config `secret` is what it asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_secret_guards_its_admin_port() {
    let cluster = support::cluster::Cluster::start(1, |c| c.secret = Some(SECRET.into())).await;
    cluster.leader().await;
    let node = cluster.node(1).clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(ballast_node::admin::serve(
        Arc::new(node),
        Arc::new(Metrics::default()),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let (unauthenticated, authenticated) = tokio::task::spawn_blocking(move || {
        let body = r#"{"id": 1}"#;
        (
            http_auth(addr, "POST", "/membership/remove", body, None),
            http_auth(
                addr,
                "POST",
                "/membership/remove",
                body,
                Some(&format!("Bearer {SECRET}")),
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(unauthenticated.0, 401, "{}", unauthenticated.2);
    // Past the check, the request reaches the membership logic (which
    // refuses to remove the last voter).
    assert_eq!(authenticated.0, 409, "{}", authenticated.2);
    let _ = stop.send(());
    served.await.unwrap().unwrap();
    cluster.stop_all().await;
}

#[test]
fn a_non_loopback_admin_address_needs_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = NodeConfig::new(1, dir.path().join("n1"));
    c.admin_addr = "0.0.0.0:8001".into();
    let e = c.validate().expect_err("refused without a secret");
    assert_eq!(e.field, "admin_addr", "{e}");
    assert!(e.reason.contains("secret"), "{e}");
    c.admin_addr = "192.168.1.20:8001".into();
    assert_eq!(c.validate().expect_err("refused").field, "admin_addr");
    c.secret = Some(SECRET.into());
    c.validate().expect("accepted with a secret");
    c.secret = None;
    c.admin_addr = "127.0.0.1:8001".into();
    c.validate().expect("loopback needs no secret");
}
