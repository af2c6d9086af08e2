//! The key-value API of a node ([`KvApi`]): each request is checked where
//! it enters, with this node's limits, then routed (see `routing.rs`);
//! status reports openraft's metrics in the API's terms.

use super::routing::{api_error, unexpected, Answer, Call};
use super::Node;
use crate::api::{ApiError, Consistency, KvApi, NodeStatus, Ordered, ScanPage, Value};
use ballast_raft::net::{ReadAnswer, ReadRequest};
use ballast_raft::{NodeId, Request, Response};
use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Checks a write where it enters this node, with this node's limits (the
/// leader's proposer checks it again with its own): a request no replica
/// could log or apply is refused here with what to change.
fn validate_write(node: &Node, req: &Request) -> Result<(), ApiError> {
    let shared = &node.shared;
    if shared
        .config
        .planted
        .has(ballast_raft::planted::NodeBug::SkipRequestValidation)
    {
        return Ok(());
    }
    let limits = ballast_raft::typ::RequestLimits {
        key_bytes_max: shared.config.key_bytes_max,
        value_bytes_max: shared.config.value_bytes_max,
        request_bytes_max: shared.db.batch_bytes_max(),
    };
    req.validate(&limits)
        .map_err(|e| ApiError::Invalid(e.to_string()))
}

impl Node {
    fn check_key(&self, key: &[u8]) -> Result<(), ApiError> {
        let max = self.shared.config.key_bytes_max;
        if key.is_empty() || key.len() as u64 > max {
            return Err(ApiError::Invalid(format!(
                "key of {} bytes: keys must be 1 to {max} bytes",
                key.len()
            )));
        }
        Ok(())
    }
}

impl KvApi for Node {
    async fn write(&self, req: Request) -> Result<Response, ApiError> {
        validate_write(self, &req)?;
        match self.route(Call::Write(req)).await? {
            Answer::Write(r) => Ok(r),
            Answer::Read(_) => Err(unexpected("a write")),
        }
    }

    /// On the leader the write is handed to openraft's core (which appends
    /// what it receives in the order it receives it), `ordered` is given,
    /// and then the answer is awaited. Elsewhere (a follower forwards over
    /// pooled connections, which keep no order) it is [`KvApi::write`]
    /// without the signal. A write that finds leadership gone after it
    /// was ordered is not retried here, since a retry could overtake the
    /// writes ordered after it: it fails with [`ApiError::NoLeader`].
    async fn write_ordered(&self, req: Request, ordered: Ordered) -> Result<Response, ApiError> {
        validate_write(self, &req)?;
        self.running()?;
        let shared = &self.shared;
        let deadline = Instant::now() + Duration::from_millis(shared.config.request_timeout_ms);
        let (leader, _) = self.leader(deadline).await?;
        if leader != self.id() {
            return self.write(req).await;
        }
        let _in_flight = shared.proposals.enter();
        let submitted = shared.proposer.submit(req).await.map_err(api_error)?;
        ordered.signal();
        match tokio::time::timeout_at(deadline, submitted.answer()).await {
            Err(_) => Err(self.timeout_error()),
            Ok(r) => r.map_err(api_error),
        }
    }

    async fn get_many(
        &self,
        keys: Vec<Bytes>,
        consistency: Consistency,
    ) -> Result<Vec<Option<Value>>, ApiError> {
        for k in &keys {
            self.check_key(k)?;
        }
        let req = ReadRequest::GetMany(keys.iter().map(|k| k.to_vec()).collect());
        match self.read(req, consistency).await? {
            ReadAnswer::Values(vs) if vs.len() == keys.len() => Ok(vs
                .into_iter()
                .map(|v| {
                    v.map(|(v, expire_at_ms)| Value {
                        value: Bytes::from(v),
                        expire_at_ms,
                    })
                })
                .collect()),
            _ => Err(unexpected("a multi-key read")),
        }
    }

    async fn scan_keys(
        &self,
        start: Bytes,
        limit: usize,
        consistency: Consistency,
    ) -> Result<ScanPage, ApiError> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let req = ReadRequest::Scan {
            start: start.to_vec(),
            limit,
        };
        match self.read(req, consistency).await? {
            ReadAnswer::Keys { keys, next } => Ok(ScanPage {
                keys: keys.into_iter().map(Bytes::from).collect(),
                next: next.map(Bytes::from),
            }),
            _ => Err(unexpected("a scan")),
        }
    }

    async fn count_keys(&self, consistency: Consistency) -> Result<u64, ApiError> {
        match self.read(ReadRequest::Count, consistency).await? {
            ReadAnswer::Count(n) => Ok(n),
            _ => Err(unexpected("a count")),
        }
    }

    fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    fn status(&self) -> NodeStatus {
        let m = self.shared.raft.metrics().borrow_watched().clone();
        let proposed = self.shared.proposer.stats();
        let membership = m.membership_config.membership();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        let role = match m.state {
            _ if self.shared.stopping.load(Ordering::SeqCst) => "shutdown",
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Shutdown => "shutdown",
            ServerState::Learner => "learner",
            ServerState::Follower if learners.contains(&m.id) => "learner",
            ServerState::Follower => "follower",
        };
        NodeStatus {
            id: m.id,
            role: role.to_string(),
            term: m.current_term,
            leader: m.current_leader.map(|l| {
                let addr = membership
                    .get_node(&l)
                    .map(|n| n.client_addr.clone())
                    .unwrap_or_default();
                (l, addr)
            }),
            last_log_index: m.last_log_index,
            commit_index: m.cluster_committed.map(|c| c.index),
            applied_index: m.last_applied.map(|a| a.index),
            voters: membership.voter_ids().collect(),
            learners,
            preset: self.shared.config.preset.name().to_string(),
            proposed_entries: proposed.entries,
            proposed_writes: proposed.requests,
            state_hash: None,
        }
    }

    fn status_with_hash(&self) -> NodeStatus {
        let mut status = self.status();
        status.state_hash = match ballast_raft::state_machine::state_hash(&self.shared.db) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "could not compute the state hash");
                None
            }
        };
        status
    }
}
