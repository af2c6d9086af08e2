//! The Raft network under bad input and dead peers: oversized frames are
//! refused on both ends, a malformed frame closes only its own connection,
//! and a call to an unreachable peer fails within its deadline.

use ballast_raft::log_store::LogStore;
use ballast_raft::net::client::Conn;
use ballast_raft::net::message::{ReadAnswer, ReadRequest, RpcReply, RpcRequest};
use ballast_raft::net::server::ServerContext;
use ballast_raft::net::{
    auth, frame, BallastRaft, NetConfig, NetError, Network, NonceSource, RpcServer, ServerHandle,
};
use ballast_raft::state_machine::StateMachine;
use ballast_raft::transfer::SnapshotInbox;
use ballast_raft::{Node, Request, Response, TypeConfig, Vote};
use ballast_storage::fs::StdFs;
use ballast_storage::wal::WalOptions;
use ballast_storage::{Options, Preset};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::RPCError;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::VoteRequest;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const MAX_FRAME: u32 = 64 << 10;

struct Counter(AtomicU64);

impl NonceSource for Counter {
    fn nonce(&self) -> [u8; 32] {
        let mut b = [7u8; 32];
        b[..8].copy_from_slice(&self.0.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        b
    }
}

fn net_config() -> Arc<NetConfig> {
    let mut c = NetConfig::new(Arc::new(Counter(AtomicU64::new(1))));
    c.frame_bytes_max = MAX_FRAME;
    c.snapshot_chunk_bytes = 16 << 10;
    c.connect_timeout = Duration::from_secs(5);
    c.validate().expect("valid");
    Arc::new(c)
}

/// A one-node cluster serving RPCs on a free loopback port.
struct One {
    _dir: tempfile::TempDir,
    raft: BallastRaft,
    server: ServerHandle,
    cfg: Arc<NetConfig>,
}

async fn one_node() -> One {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = LogStore::open(
        Arc::new(StdFs),
        &dir.path().join("log"),
        WalOptions::default(),
    )
    .await
    .expect("log");
    let sm = StateMachine::open(&dir.path().join("sm"), Options::preset(Preset::Durable))
        .await
        .expect("state machine");
    let db = sm.shared_db();
    let cfg = net_config();
    let config = openraft::Config {
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        ..Default::default()
    }
    .validate()
    .expect("config");
    let raft = BallastRaft::new(1, Arc::new(config), Network::new(1, cfg.clone()), log, sm)
        .await
        .expect("raft");
    let ctx = ServerContext {
        raft: raft.clone(),
        db,
        inbox: SnapshotInbox {
            fs: Arc::new(StdFs),
            dir: dir.path().join("inbox"),
            snapshot_bytes_max: 1 << 20,
            planted: ballast_raft::planted::Planted::NONE,
        },
        proposer: ballast_raft::propose::Proposer::start(
            raft.clone(),
            Arc::new(ballast_storage::SystemClock),
            Default::default(),
        ),
        cfg: cfg.clone(),
        votes: Default::default(),
    };
    let server = RpcServer::start("127.0.0.1:0", ctx).await.expect("server");
    let addr = server.local_addr().to_string();
    raft.initialize(BTreeMap::from([(1, Node::new(addr, "127.0.0.1:1"))]))
        .await
        .expect("initialize");
    let mut m = raft.metrics();
    tokio::time::timeout(Duration::from_secs(20), async {
        while m.borrow_watched().current_leader != Some(1) {
            m.changed().await.expect("metrics");
        }
    })
    .await
    .expect("node 1 leads within 20 s");
    One {
        _dir: dir,
        raft,
        server,
        cfg,
    }
}

impl One {
    fn addr(&self) -> String {
        self.server.local_addr().to_string()
    }

    async fn shutdown(self) {
        self.raft.shutdown().await.expect("raft stops");
        self.server.shutdown().await;
    }
}

/// A raw, authenticated connection for sending bytes the client never would.
async fn raw(one: &One) -> TcpStream {
    let mut s = TcpStream::connect(one.addr()).await.expect("connect");
    auth::client(&mut s, &one.cfg, "test")
        .await
        .expect("handshake");
    s
}

/// Whether the server closed `s`: EOF (or reset) within 10 s.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

async fn count(conn: &mut Conn) -> u64 {
    match conn.call(&RpcRequest::Read(ReadRequest::Count)).await {
        Ok(RpcReply::Read(Ok(ReadAnswer::Count(n)))) => n,
        other => panic!("count failed: {other:?}"),
    }
}

fn put(key: &str, value_len: usize) -> RpcRequest {
    RpcRequest::Write(Request::Put {
        key: key.as_bytes().to_vec(),
        value: vec![b'v'; value_len],
        expire_at_ms: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_the_max_are_refused_on_both_ends() {
    let one = one_node().await;
    let mut conn = Conn::connect(&one.addr(), &one.cfg).await.expect("connect");

    // Sender: refused before a byte is sent, so the connection stays usable.
    match conn.call(&put("big", MAX_FRAME as usize)).await {
        Err(NetError::FrameTooLarge { len, max }) => {
            assert!(len > u64::from(MAX_FRAME));
            assert_eq!(max, MAX_FRAME);
        }
        other => panic!("oversized frame was not refused: {other:?}"),
    }
    match conn.call(&put("small", 10)).await {
        Ok(RpcReply::Write(Ok(Response::Done))) => {}
        other => panic!("write after a refused frame failed: {other:?}"),
    }
    assert_eq!(count(&mut conn).await, 1);

    // Receiver: a length prefix over the max closes that connection at once,
    // without the server waiting for (or buffering) the announced bytes.
    let mut s = raw(&one).await;
    s.write_all(&(MAX_FRAME + 1).to_be_bytes())
        .await
        .expect("send prefix");
    s.write_all(&[1, 2, 3]).await.expect("send a little");
    assert!(
        closed_by_server(&mut s).await,
        "server kept an oversized frame's connection"
    );
    // The other connection is unaffected.
    assert_eq!(count(&mut conn).await, 1);

    // The client end refuses an oversized frame from a server the same way.
    let (mut a, mut b) = tokio::io::duplex(64);
    b.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
    match frame::read::<_, RpcReply>(&mut a, MAX_FRAME, "fake server").await {
        Err(NetError::FrameTooLarge { len, .. }) => assert_eq!(len, u64::from(u32::MAX)),
        other => panic!("client accepted an oversized frame: {other:?}"),
    }
    one.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_its_connection() {
    let one = one_node().await;
    let mut good = Conn::connect(&one.addr(), &one.cfg).await.expect("connect");
    assert!(matches!(
        good.call(&put("a", 3)).await,
        Ok(RpcReply::Write(Ok(Response::Done)))
    ));

    // After the handshake: a well-sized frame whose payload is garbage.
    let mut s = raw(&one).await;
    let garbage = [9u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    s.write_all(&(garbage.len() as u32 + 1).to_be_bytes())
        .await
        .expect("prefix");
    s.write_all(&[ballast_raft::net::WIRE_VERSION])
        .await
        .expect("version");
    s.write_all(&garbage).await.expect("payload");
    assert!(closed_by_server(&mut s).await, "garbage payload kept open");

    // A frame with an unknown wire version.
    let mut s = raw(&one).await;
    s.write_all(&[0, 0, 0, 2, 99, 0]).await.expect("send");
    assert!(closed_by_server(&mut s).await, "unknown version kept open");

    // Garbage instead of a handshake.
    let mut s = TcpStream::connect(one.addr()).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("send");
    assert!(
        closed_by_server(&mut s).await,
        "HTTP instead of a handshake kept open"
    );

    // A zero-length frame.
    let mut s = raw(&one).await;
    s.write_all(&[0, 0, 0, 0]).await.expect("send");
    assert!(closed_by_server(&mut s).await, "empty frame kept open");

    // The good connection never noticed.
    assert!(matches!(
        good.call(&put("b", 3)).await,
        Ok(RpcReply::Write(Ok(Response::Done)))
    ));
    assert_eq!(count(&mut good).await, 2);
    one.shutdown().await;
}

async fn vote_to(addr: &str, ttl: Duration) -> (Result<(), RPCError<TypeConfig>>, Duration) {
    let mut network = Network::new(1, net_config());
    let mut client = network.new_client(2, &Node::new(addr, "unused:1")).await;
    let t = Instant::now();
    let r = client
        .vote(
            VoteRequest::<TypeConfig>::new(Vote::new(5, 1), None),
            RPCOption::new(ttl),
        )
        .await
        .map(|_| ());
    (r, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_an_unreachable_peer_fails_within_its_deadline() {
    // A peer that accepts connections and then never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let ttl = Duration::from_millis(400);
    let (r, took) = vote_to(&silent_addr, ttl).await;
    println!("vote to a silent peer failed after {took:?}: {r:?}");
    assert!(matches!(r, Err(RPCError::Timeout(_))), "{r:?}");
    // The soft TTL (3/4 of the hard one) bounds it, with slack for a busy machine.
    assert!(
        took >= Duration::from_millis(250),
        "gave up early: {took:?}"
    );
    assert!(
        took < ttl + Duration::from_millis(500),
        "overran its deadline: {took:?}"
    );
    hold.abort();

    // Nobody listening: unreachable, immediately.
    let dead_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let (r, took) = vote_to(&dead_addr, Duration::from_secs(5)).await;
    println!("vote to a closed port failed after {took:?}");
    assert!(matches!(r, Err(RPCError::Unreachable(_))), "{r:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // openraft then backs off exponentially up to the configured maximum.
    let mut network = Network::new(1, net_config());
    let client = network
        .new_client(2, &Node::new(dead_addr, "unused:1"))
        .await;
    let waits: Vec<u64> = RaftNetworkV2::backoff(&client)
        .expect("a backoff")
        .take(8)
        .map(|d| d.as_millis() as u64)
        .collect();
    assert_eq!(waits, vec![50, 100, 200, 400, 800, 1600, 2000, 2000]);
}

/// The leader's proposer: writes submitted together leave in few entries
/// (at most `writes_per_entry_max` each), are applied in submission order,
/// and one refused write in an entry does not fail its neighbours.
#[tokio::test]
async fn the_proposer_batches_concurrent_writes_and_keeps_their_order() {
    use ballast_raft::propose::{Proposer, ProposerOptions};
    let one = one_node().await;
    let proposer = Proposer::start(
        one.raft.clone(),
        Arc::new(ballast_storage::SystemClock),
        ProposerOptions {
            entries_in_flight_max: 1,
            writes_per_entry_max: 64,
            ..ProposerOptions::default()
        },
    );
    let mut submitted = Vec::new();
    for i in 0..300u64 {
        // Refused at apply (an overflow); an empty key would now be
        // refused already by `submit`, where requests are validated.
        let req = if i == 150 {
            Request::IncrBy {
                key: b"n".to_vec(),
                delta: i64::MAX,
            }
        } else {
            Request::incr("n")
        };
        submitted.push(proposer.submit(req).await.expect("queued"));
    }
    let mut next = 1;
    for (i, s) in submitted.into_iter().enumerate() {
        let answer = s.answer().await.expect("answered");
        if i == 150 {
            assert!(matches!(answer, Response::Rejected(_)), "{answer:?}");
        } else {
            assert_eq!(answer, Response::Integer(next), "write {i}");
            next += 1;
        }
    }
    let stats = proposer.stats();
    assert_eq!(stats.requests, 300);
    assert!(
        (300 / 64..=30).contains(&stats.entries),
        "300 writes submitted together went in {} entries",
        stats.entries
    );
    one.shutdown().await;
}
