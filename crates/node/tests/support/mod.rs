//! Test support: a backend implementing `KvApi` + `AdminApi` over the real
//! storage engine, a harness that runs the RESP server and the admin port
//! on it, and small raw clients (RESP and HTTP) for exact wire checks.
//!
//! The backend applies requests the way a replica does: each write becomes
//! a log entry (term 1, increasing index) applied by the real
//! `ballast_raft::state_machine::StateMachine` over a real
//! `ballast_storage::Db`, and reads go to that engine. There is no Raft:
//! one node, always the leader. When the real `Node` lands, [`open_backend`]
//! is the one function to change.
//!
//! What the backend adds of its own, and why:
//! - Expiry times: the engine hides expired keys but has no read that
//!   returns a key's expiry, so TTL/PTTL would have nothing to report. The
//!   backend mirrors, per key, the expiry its applied requests left
//!   (exactly what the state machine writes: SET/EX sets it, INCR, CAS,
//!   MSET, PERSIST and DEL drop it), in a map bounded by the keys stored.
//! - A write gate, so a test can hold writes and see how many the server
//!   has in flight at once.
//! - Membership bookkeeping for the admin endpoints: one node cannot change
//!   membership, so by default the calls fail like a node without a
//!   cluster; a test can make them succeed to check what the admin port
//!   asked for.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_node::api::{AdminApi, ApiError, Consistency, KvApi, NodeStatus, ScanPage, Value};
use ballast_node::server::{Metrics, RespServer, ServerConfig};
use ballast_raft::state_machine::StateMachine;
use ballast_raft::typ::EntryPayload;
use ballast_raft::{BatchOp, Entry, LeaderId, LogId, NodeId, Proposal, Request, Response};
use ballast_storage::{Background, Clock, Db, ManualClock, Options, Preset};
use bytes::Bytes;
use tempfile::TempDir;

/// The backend the tests run against. Switching to the real node is this
/// alias and [`open_backend`].
pub type Backend = DbBackend;

/// Where every test clock starts: 2023-11-14, so expiries look real.
pub const START_MS: u64 = 1_700_000_000_000;

/// Opens the backend in `dir` with a clock the test controls.
pub async fn open_backend(dir: &std::path::Path, clock: Arc<ManualClock>) -> Arc<Backend> {
    Arc::new(DbBackend::open(dir, clock).await)
}

struct Applier {
    sm: StateMachine,
    last_index: u64,
    /// Expiry per key, as the applied requests left it (see module docs).
    expiries: BTreeMap<Vec<u8>, u64>,
}

/// One membership call the admin port made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipCall {
    AddLearner {
        id: NodeId,
        raft_addr: String,
        client_addr: String,
    },
    ChangeVoters {
        voters: BTreeSet<NodeId>,
        keep_as_learners: bool,
    },
}

#[derive(Debug, Default)]
struct Membership {
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    accept: bool,
    calls: Vec<MembershipCall>,
}

/// `KvApi` + `AdminApi` over the real state machine and engine.
pub struct DbBackend {
    applier: tokio::sync::Mutex<Applier>,
    db: Arc<Db>,
    clock: Arc<ManualClock>,
    applied_index: AtomicU64,
    gate: tokio::sync::watch::Sender<bool>,
    writes_at_gate: AtomicUsize,
    membership: Mutex<Membership>,
    client_addr: Mutex<String>,
}

impl DbBackend {
    async fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> DbBackend {
        let mut options = Options::preset(Preset::Durable);
        options.background = Background::Tasks;
        options.clock = clock.clone();
        let sm = StateMachine::open(dir, options)
            .await
            .expect("open the state machine");
        let db = sm.shared_db();
        DbBackend {
            applier: tokio::sync::Mutex::new(Applier {
                sm,
                last_index: 0,
                expiries: BTreeMap::new(),
            }),
            db,
            clock,
            applied_index: AtomicU64::new(0),
            gate: tokio::sync::watch::channel(true).0,
            writes_at_gate: AtomicUsize::new(0),
            membership: Mutex::new(Membership {
                voters: BTreeSet::from([1]),
                ..Membership::default()
            }),
            client_addr: Mutex::new(String::new()),
        }
    }

    /// Holds (false) or lets through (true) every write.
    pub fn open_gate(&self, open: bool) {
        self.gate.send_replace(open);
    }

    /// Writes waiting at the closed gate.
    pub fn writes_at_gate(&self) -> usize {
        self.writes_at_gate.load(Ordering::SeqCst)
    }

    /// Makes membership calls succeed (true) or fail as on one node.
    pub fn accept_membership(&self, accept: bool) {
        self.membership.lock().unwrap().accept = accept;
    }

    /// The membership calls made so far.
    pub fn membership_calls(&self) -> Vec<MembershipCall> {
        self.membership.lock().unwrap().calls.clone()
    }

    pub fn set_client_addr(&self, addr: SocketAddr) {
        *self.client_addr.lock().unwrap() = addr.to_string();
    }

    fn membership_result(&self, call: MembershipCall) -> Result<(), ApiError> {
        let mut membership = self.membership.lock().unwrap();
        membership.calls.push(call);
        if membership.accept {
            Ok(())
        } else {
            Err(ApiError::Unavailable(
                "this test node runs without Raft: membership changes need a cluster".to_string(),
            ))
        }
    }
}

fn track_expiry(expiries: &mut BTreeMap<Vec<u8>, u64>, request: &Request, response: &Response) {
    let mut set = |key: &[u8], at: Option<u64>| match at {
        Some(at) => {
            expiries.insert(key.to_vec(), at);
        }
        None => {
            expiries.remove(key);
        }
    };
    match (request, response) {
        (
            Request::Put {
                key, expire_at_ms, ..
            },
            _,
        ) => set(key, *expire_at_ms),
        (
            Request::Set {
                key, expire_at_ms, ..
            },
            Response::Set { written: true, .. },
        ) => set(key, *expire_at_ms),
        (Request::Delete { key }, _) | (Request::Persist { key }, Response::Existed(true)) => {
            set(key, None)
        }
        (Request::DeleteMany { keys }, _) => keys.iter().for_each(|key| set(key, None)),
        (Request::Batch(ops), Response::Done) => ops.iter().for_each(|op| match op {
            BatchOp::Put { key, .. } | BatchOp::Delete { key } => set(key, None),
        }),
        (Request::IncrBy { key, .. }, Response::Integer(_))
        | (Request::Cas { key, .. }, Response::Cas { swapped: true, .. }) => set(key, None),
        (
            Request::Expire {
                key, expire_at_ms, ..
            },
            Response::Existed(true),
        ) => set(key, Some(*expire_at_ms)),
        _ => {}
    }
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("storage: {error}"))
}

impl KvApi for DbBackend {
    async fn write(&self, req: Request) -> Result<Response, ApiError> {
        let mut gate = self.gate.subscribe();
        self.writes_at_gate.fetch_add(1, Ordering::SeqCst);
        let passed = gate.wait_for(|open| *open).await.is_ok();
        self.writes_at_gate.fetch_sub(1, Ordering::SeqCst);
        if !passed {
            return Err(ApiError::ShuttingDown);
        }
        let mut applier = self.applier.lock().await;
        applier.last_index += 1;
        let index = applier.last_index;
        let entry = Entry {
            log_id: LogId::new(
                LeaderId {
                    term: 1,
                    node_id: 1,
                },
                index,
            ),
            payload: EntryPayload::Normal(Proposal::new(self.clock.now_ms(), req.clone())),
        };
        let response = applier.sm.apply_entry(entry).await.map_err(unavailable)?;
        track_expiry(&mut applier.expiries, &req, &response);
        self.applied_index.store(index, Ordering::SeqCst);
        Ok(response)
    }

    async fn get_many(
        &self,
        keys: Vec<Bytes>,
        _consistency: Consistency,
    ) -> Result<Vec<Option<Value>>, ApiError> {
        // Under the applier's lock: values and expiries of one point.
        let applier = self.applier.lock().await;
        let snapshot = self.db.snapshot();
        keys.iter()
            .map(|key| {
                // The engine knows each key's expiry, relative TTLs (SET EX,
                // EXPIRE) made absolute at apply included.
                let _ = &applier;
                let entry = self.db.get_entry_at(&snapshot, key).map_err(unavailable)?;
                Ok(entry.map(|(value, expire_at_ms)| Value {
                    value,
                    expire_at_ms,
                }))
            })
            .collect()
    }

    async fn scan_keys(
        &self,
        start: Bytes,
        limit: usize,
        _consistency: Consistency,
    ) -> Result<ScanPage, ApiError> {
        let _applier = self.applier.lock().await;
        let mut keys = Vec::new();
        let mut next = None;
        for item in self.db.scan(start.to_vec()..).map_err(unavailable)? {
            let (key, _) = item.map_err(unavailable)?;
            if keys.len() == limit {
                next = Some(Bytes::copy_from_slice(&key));
                break;
            }
            keys.push(Bytes::copy_from_slice(&key));
        }
        Ok(ScanPage { keys, next })
    }

    async fn count_keys(&self, _consistency: Consistency) -> Result<u64, ApiError> {
        let _applier = self.applier.lock().await;
        let mut count = 0;
        for item in self.db.scan::<&[u8]>(..).map_err(unavailable)? {
            item.map_err(unavailable)?;
            count += 1;
        }
        Ok(count)
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn status(&self) -> NodeStatus {
        let applied = self.applied_index.load(Ordering::SeqCst);
        let index = (applied > 0).then_some(applied);
        let membership = self.membership.lock().unwrap();
        NodeStatus {
            id: 1,
            role: "leader".to_string(),
            term: 1,
            leader: Some((1, self.client_addr.lock().unwrap().clone())),
            last_log_index: index,
            commit_index: index,
            applied_index: index,
            voters: membership.voters.iter().copied().collect(),
            learners: membership.learners.iter().copied().collect(),
            preset: "durable".to_string(),
            // Every write here is its own "entry".
            proposed_entries: applied,
            proposed_writes: applied,
            state_hash: None,
        }
    }
}

impl AdminApi for DbBackend {
    async fn add_learner(
        &self,
        id: NodeId,
        raft_addr: String,
        client_addr: String,
    ) -> Result<(), ApiError> {
        self.membership_result(MembershipCall::AddLearner {
            id,
            raft_addr,
            client_addr,
        })?;
        self.membership.lock().unwrap().learners.insert(id);
        Ok(())
    }

    async fn change_voters(
        &self,
        voters: BTreeSet<NodeId>,
        keep_as_learners: bool,
    ) -> Result<(), ApiError> {
        self.membership_result(MembershipCall::ChangeVoters {
            voters: voters.clone(),
            keep_as_learners,
        })?;
        let mut membership = self.membership.lock().unwrap();
        let removed: Vec<NodeId> = membership.voters.difference(&voters).copied().collect();
        membership.learners.retain(|id| !voters.contains(id));
        if keep_as_learners {
            membership.learners.extend(removed);
        }
        membership.voters = voters;
        Ok(())
    }

    fn engine_stats(&self) -> ballast_storage::StatsSnapshot {
        self.db.stats()
    }
}

/// A running server (RESP and admin) over a fresh backend.
pub struct TestNode {
    pub runtime: tokio::runtime::Runtime,
    pub backend: Arc<Backend>,
    pub clock: Arc<ManualClock>,
    pub metrics: Arc<Metrics>,
    pub resp_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
    _dir: TempDir,
}

impl TestNode {
    pub fn start(config: ServerConfig) -> TestNode {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(START_MS);
        let backend = runtime.block_on(open_backend(dir.path(), clock.clone()));
        let server = RespServer::new(backend.clone(), config).expect("valid config");
        let metrics = server.metrics();
        let (resp, admin) = runtime.block_on(async {
            (
                tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
                tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            )
        });
        let resp_addr = resp.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        backend.set_client_addr(resp_addr);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let admin_api = backend.clone();
        let admin_metrics = metrics.clone();
        let served = runtime.spawn(async move {
            let stop = async move {
                let _ = stop.await;
            };
            let (stop_resp, stop_admin) = split_signal(stop);
            let (resp, admin) = tokio::join!(
                server.serve(resp, stop_resp),
                ballast_node::admin::serve(admin_api, admin_metrics, admin, stop_admin)
            );
            resp.expect("RESP server");
            admin.expect("admin server");
        });
        TestNode {
            runtime,
            backend,
            clock,
            metrics,
            resp_addr,
            admin_addr,
            shutdown: Some(shutdown),
            served: Some(served),
            _dir: dir,
        }
    }

    /// A `redis` crate connection.
    pub fn client(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://{}/", self.resp_addr)).unwrap();
        let connection = client.get_connection().expect("connect");
        connection
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        connection
    }

    /// A raw RESP connection.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.resp_addr)
    }

    /// Tells the servers to shut down, without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Stops the servers and waits for them to return.
    pub fn stop(&mut self) {
        self.begin_stop();
        if let Some(served) = self.served.take() {
            self.runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(20), served).await })
                .expect("servers stop within 20 s")
                .expect("servers returned cleanly");
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop();
        }
    }
}

/// Two futures that both complete when `signal` does.
fn split_signal(
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> (
    impl std::future::Future<Output = ()> + Send,
    impl std::future::Future<Output = ()> + Send,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = tx.send(true);
    });
    let mut a = rx.clone();
    let mut b = rx;
    (
        async move {
            let _ = a.wait_for(|stop| *stop).await;
        },
        async move {
            let _ = b.wait_for(|stop| *stop).await;
        },
    )
}

/// `SET key value` through the `redis` crate.
pub fn set(connection: &mut redis::Connection, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query::<()>(connection)
        .unwrap_or_else(|e| panic!("SET {key}: {e}"));
}

/// Polls `condition` until it holds or `deadline_ms` passes.
pub fn wait_until(what: &str, deadline_ms: u64, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(deadline_ms);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A raw RESP client: sends bytes, reads whole replies as wire bytes.
pub struct Raw {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            stream,
            buffer: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends one request as an array of bulk strings.
    pub fn send_cmd(&mut self, args: &[&[u8]]) {
        let mut out = bytes::BytesMut::new();
        ballast_node::resp::encode_request(args, &mut out);
        self.send(&out);
    }

    /// Sends one request and returns its reply's wire bytes.
    pub fn cmd(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        self.send_cmd(&args);
        self.reply()
    }

    /// The next whole reply, as (lossy UTF-8) wire text.
    pub fn reply(&mut self) -> String {
        loop {
            if let Some(end) = reply_end(&self.buffer, 0) {
                let reply: Vec<u8> = self.buffer.drain(..end).collect();
                return String::from_utf8_lossy(&reply).into_owned();
            }
            let mut chunk = [0u8; 64 * 1024];
            let read = self.stream.read(&mut chunk).expect("read a reply");
            assert!(
                read > 0,
                "connection closed; buffered {:?}",
                String::from_utf8_lossy(&self.buffer)
            );
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// True when the server closed the connection (after any buffered
    /// replies, which are returned).
    pub fn read_to_close(&mut self) -> String {
        let mut rest = Vec::new();
        self.stream
            .read_to_end(&mut rest)
            .expect("read until the server closes");
        self.buffer.extend_from_slice(&rest);
        String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).into_owned()
    }
}

/// Where the RESP reply starting at `at` ends, if it is complete.
fn reply_end(buffer: &[u8], at: usize) -> Option<usize> {
    let line_end = at
        + buffer
            .get(at..)?
            .windows(2)
            .position(|pair| pair == b"\r\n")?;
    let header = std::str::from_utf8(&buffer[at + 1..line_end]).ok()?;
    let after = line_end + 2;
    match buffer[at] {
        b'+' | b'-' | b':' => Some(after),
        b'$' => {
            let length: i64 = header.parse().ok()?;
            if length < 0 {
                return Some(after);
            }
            let end = after + length as usize + 2;
            (buffer.len() >= end).then_some(end)
        }
        b'*' => {
            let count: i64 = header.parse().ok()?;
            let mut end = after;
            for _ in 0..count.max(0) {
                end = reply_end(buffer, end)?;
            }
            Some(end)
        }
        other => panic!("not a RESP reply type: {:?}", other as char),
    }
}

/// One HTTP/1.1 request to the admin port: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to admin");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a response head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// The value of an unlabelled (or exactly labelled) metric line.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == name_and_labels).then(|| value.parse().ok())?
        })
}
