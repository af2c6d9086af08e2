//! Request routing: find the leader (waiting up to `leader_wait_ms`), run
//! a write or a linearizable read there or forward it, retry while
//! leadership moves (never a write whose outcome is unknown), and serve
//! stale reads from the local engine once it has recovered.

use super::Node;
use crate::api::{ApiError, Consistency};
use ballast_raft::net::client::ForwardFailure;
use ballast_raft::net::server;
use ballast_raft::net::{read, ForwardError, ReadAnswer, ReadRequest};
use ballast_raft::{NodeId, Request, Response};
use openraft::async_runtime::WatchReceiver;
use std::time::Duration;
use tokio::time::Instant;

/// What a request does once routed to the leader.
pub(super) enum Call {
    Write(Request),
    Read(ReadRequest),
}

/// What the leader answered.
pub(super) enum Answer {
    Write(Response),
    Read(ReadAnswer),
}

impl Node {
    /// The leader, waiting for one up to `leader_wait_ms` (and never past
    /// `deadline`).
    pub(super) async fn leader(
        &self,
        deadline: Instant,
    ) -> Result<(NodeId, ballast_raft::Node), ApiError> {
        let wait = Duration::from_millis(self.shared.config.leader_wait_ms);
        let limit = deadline.min(Instant::now() + wait);
        let mut rx = self.shared.raft.metrics();
        loop {
            {
                let m = rx.borrow_watched();
                if let Some(l) = m.current_leader {
                    if let Some(n) = m.membership_config.membership().get_node(&l) {
                        return Ok((l, n.clone()));
                    }
                }
            }
            match tokio::time::timeout_at(limit, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ApiError::ShuttingDown),
                Err(_) => return Err(ApiError::NoLeader),
            }
        }
    }

    /// Runs `call` on the leader: here, or forwarded. Retries while
    /// leadership moves, never a write whose outcome is unknown.
    pub(super) async fn route(&self, call: Call) -> Result<Answer, ApiError> {
        self.running()?;
        let shared = &self.shared;
        let deadline = Instant::now() + Duration::from_millis(shared.config.request_timeout_ms);
        // Pause between attempts while leadership moves (bounded by the
        // deadline): long enough not to spin, short next to an election.
        let pause = Duration::from_millis(shared.config.heartbeat_interval_ms.clamp(5, 50));
        loop {
            let (leader, node) = self.leader(deadline).await?;
            let outcome = if leader == self.id() {
                let local = async {
                    match &call {
                        Call::Write(r) => {
                            let _in_flight = shared.proposals.enter();
                            shared.proposer.propose(r.clone()).await.map(Answer::Write)
                        }
                        Call::Read(r) => server::read_linearizable(&shared.raft, &shared.db, r)
                            .await
                            .map(Answer::Read),
                    }
                };
                match tokio::time::timeout_at(deadline, local).await {
                    Ok(r) => Ok(r),
                    Err(_) => return Err(self.timeout_error()),
                }
            } else {
                let addr = &node.raft_addr;
                match &call {
                    Call::Write(r) => shared
                        .forward
                        .write(addr, r.clone())
                        .await
                        .map(|r| r.map(Answer::Write)),
                    Call::Read(r) => shared
                        .forward
                        .read(addr, r.clone())
                        .await
                        .map(|r| r.map(Answer::Read)),
                }
            };
            match outcome {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(ForwardError::NotLeader { .. })) => {}
                Ok(Err(ForwardError::Invalid(why))) => return Err(ApiError::Invalid(why)),
                Ok(Err(ForwardError::Unavailable(why))) => return Err(ApiError::Unavailable(why)),
                Ok(Err(ForwardError::Unknown(why))) => return Err(ApiError::Unknown(why)),
                Err(ForwardFailure::NotSent(e)) => {
                    tracing::debug!(leader, error = %e, "leader unreachable; retrying");
                }
                Err(ForwardFailure::Unknown(e)) => {
                    // The write may have reached the leader: never retried
                    // (that could apply it twice), and never answered as
                    // UNAVAILABLE (that says nothing was applied).
                    if matches!(call, Call::Write(_)) {
                        return Err(match e {
                            ballast_raft::net::NetError::Timeout { .. } => self.timeout_error(),
                            other => ApiError::Unknown(format!(
                                "lost the leader (node {leader}) mid-request: {other}"
                            )),
                        });
                    }
                    tracing::debug!(leader, error = %e, "forwarded read failed; retrying");
                }
            }
            self.running()?;
            if Instant::now() + pause >= deadline {
                // Every attempt so far ended before anything was proposed
                // (the leader said it is not the leader, or could not be
                // reached): say so, rather than TIMEOUT's "outcome unknown".
                return Err(ApiError::Unavailable(format!(
                    "no leader reachable within {} ms (last tried node {leader}); nothing was applied",
                    shared.config.request_timeout_ms
                )));
            }
            tokio::time::sleep(pause).await;
        }
    }

    pub(super) async fn read(
        &self,
        req: ReadRequest,
        consistency: Consistency,
    ) -> Result<ReadAnswer, ApiError> {
        let planted_local = self
            .shared
            .config
            .planted
            .has(ballast_raft::planted::NodeBug::ReadWithoutReadIndex);
        match consistency {
            Consistency::Linearizable if planted_local => {
                self.recovered().await?;
                read::execute(&self.shared.db, &req)
                    .map_err(|e| ApiError::Unavailable(e.to_string()))
            }
            Consistency::Linearizable => {
                self.recovered().await?;
                match self.route(Call::Read(req)).await? {
                    Answer::Read(a) => Ok(a),
                    Answer::Write(_) => unreachable!("a read is answered with a read"),
                }
            }
            Consistency::Stale => {
                self.running()?;
                if !*self.shared.recovered.borrow() {
                    return Err(ApiError::Unavailable(
                        "this node is still recovering its state after a restart; \
                         read with linearizable consistency or retry shortly"
                            .into(),
                    ));
                }
                read::execute(&self.shared.db, &req)
                    .map_err(|e| ApiError::Unavailable(e.to_string()))
            }
        }
    }

    /// Waits (within the request timeout) until this node recovered the
    /// state it held before its last restart.
    async fn recovered(&self) -> Result<(), ApiError> {
        let mut rx = self.shared.recovered.subscribe();
        let limit = Duration::from_millis(self.shared.config.request_timeout_ms);
        let waited =
            tokio::time::timeout(limit, async { rx.wait_for(|r| *r).await.map(|_| ()) }).await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ApiError::ShuttingDown),
            Err(_) => Err(ApiError::Unavailable(
                "this node is still recovering its state after a restart; nothing was read; \
                 retry shortly"
                    .into(),
            )),
        }
    }
}

/// A proposal's failure as the API says it: not the leader (any more) is
/// [`ApiError::NoLeader`].
pub(super) fn api_error(e: ForwardError) -> ApiError {
    match e {
        ForwardError::NotLeader { .. } => ApiError::NoLeader,
        ForwardError::Invalid(why) => ApiError::Invalid(why),
        ForwardError::Unavailable(why) => ApiError::Unavailable(why),
        ForwardError::Unknown(why) => ApiError::Unknown(why),
    }
}

/// An answer of the wrong kind: a bug, reported as unavailable.
pub(super) fn unexpected(what: &str) -> ApiError {
    ApiError::Unavailable(format!("internal: unexpected answer to {what}"))
}
