//! Pipelined writes of one connection to one key, through the RESP server
//! over a real 3-node cluster: on the leader they are in flight together
//! (each only waits for the earlier one to be submitted to Raft) and still
//! apply in request order; on a follower they keep their order too.

mod support;

use ballast_node::api::KvApi;
use ballast_node::server::{RespServer, ServerConfig};
use ballast_node::Node;
use std::sync::Arc;
use support::cluster::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves `node` over RESP on a free port; the server runs until the test
/// runtime ends.
async fn serve(node: &Node) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = RespServer::new(Arc::new(node.clone()), ServerConfig::default()).expect("config");
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    addr
}

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Reads `n` replies (simple, error, integer or bulk) as text: `+OK`,
/// `:3`, `$value`, `$nil`, `-ERR ...`.
async fn replies(stream: &mut TcpStream, n: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let line = |buf: &[u8], pos: usize| -> Option<(String, usize)> {
        let end = buf[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
        Some((
            String::from_utf8_lossy(&buf[pos..end]).into_owned(),
            end + 2,
        ))
    };
    while out.len() < n {
        let mut parsed = true;
        while parsed && out.len() < n {
            parsed = false;
            let Some((head, next)) = line(&buf, pos) else {
                break;
            };
            if let Some(len) = head.strip_prefix('$') {
                let len: i64 = len.parse().expect("bulk length");
                if len < 0 {
                    out.push("$nil".to_string());
                    pos = next;
                    parsed = true;
                } else if let Some((body, after)) = line(&buf, next) {
                    out.push(format!("${body}"));
                    pos = after;
                    parsed = true;
                }
            } else {
                out.push(head);
                pos = next;
                parsed = true;
            }
        }
        if out.len() < n {
            let mut chunk = [0u8; 16 * 1024];
            let read = tokio::time::timeout(support::DEADLINE, stream.read(&mut chunk))
                .await
                .expect("replies in time")
                .expect("read");
            assert!(read > 0, "connection closed after {} replies", out.len());
            buf.extend_from_slice(&chunk[..read]);
        }
    }
    out
}

/// Sends `SET key 0..n`, `GET key`, `INCR counter` n times and `GET
/// counter` in one pipeline and checks every answer and its order.
async fn pipeline_keeps_order(addr: std::net::SocketAddr, n: usize, tag: &str) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let key = format!("{tag}:k");
    let counter = format!("{tag}:c");
    let mut pipeline = Vec::new();
    for i in 0..n {
        pipeline.extend(command(&["SET", &key, &i.to_string()]));
    }
    pipeline.extend(command(&["GET", &key]));
    for _ in 0..n {
        pipeline.extend(command(&["INCR", &counter]));
    }
    pipeline.extend(command(&["GET", &counter]));
    stream.write_all(&pipeline).await.expect("send pipeline");
    let got = replies(&mut stream, 2 * n + 2).await;
    let mut want: Vec<String> = vec!["+OK".to_string(); n];
    want.push(format!("${}", n - 1));
    want.extend((1..=n).map(|i| format!(":{i}")));
    want.push(format!("${n}"));
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_same_key_writes_on_the_leader_are_in_flight_together_and_apply_in_order() {
    let cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let node = cluster.node(leader).clone();
    let addr = serve(&node).await;
    let before = node.proposals_in_flight_peak();
    let status_before = node.status();
    pipeline_keeps_order(addr, 200, "leader").await;
    let peak = node.proposals_in_flight_peak();
    println!("leader: peak proposals in flight {peak} (before the pipeline {before})");
    let status = node.status();
    let entries = status.proposed_entries - status_before.proposed_entries;
    let writes = status.proposed_writes - status_before.proposed_writes;
    println!("leader: {writes} writes proposed in {entries} log entries");
    // 200 SETs and 200 INCRs arrive in a few socket reads: the proposer
    // puts the writes waiting together into one entry.
    assert_eq!(writes, 400);
    assert!(
        entries < writes / 4,
        "pipelined writes were not batched into entries: {writes} writes in {entries} entries"
    );
    // One connection, one key: with every write waiting for the previous
    // one's answer this would stay at 1.
    assert!(
        peak > 1,
        "pipelined writes to one key were proposed one at a time (peak {peak})"
    );
    assert_eq!(node.proposals_in_flight(), 0, "every proposal was answered");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_same_key_writes_on_a_follower_apply_in_order() {
    let cluster = Cluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let follower = cluster.followers(leader)[0];
    let addr = serve(cluster.node(follower)).await;
    pipeline_keeps_order(addr, 50, "follower").await;
    cluster.stop_all().await;
}
