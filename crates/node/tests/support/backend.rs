//! A backend implementing `KvApi` + `AdminApi` over the real storage
//! engine, for the RESP server and admin port tests.
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

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ballast_node::api::{AdminApi, ApiError, Consistency, KvApi, NodeStatus, ScanPage, Value};
use ballast_raft::state_machine::StateMachine;
use ballast_raft::typ::EntryPayload;
use ballast_raft::{BatchOp, Entry, LeaderId, LogId, NodeId, Proposal, Request, Response};
use ballast_storage::{Background, Clock, Db, ManualClock, Options, Preset};
use bytes::Bytes;

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
