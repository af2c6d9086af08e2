//! Membership changes of a node ([`AdminApi`]): adding a learner (and
//! waiting until it caught up), changing the voters, and the failures in
//! the API's terms. They run on the leader only.

use super::Node;
use crate::api::{AdminApi, ApiError};
use ballast_raft::net::Secret;
use ballast_raft::NodeId;
use std::collections::BTreeSet;
use std::time::Duration;

/// How long `add_learner` waits for the learner to catch up, in request
/// timeouts: catching up may need a whole snapshot.
const ADD_LEARNER_TIMEOUTS: u32 = 12;

impl AdminApi for Node {
    async fn add_learner(
        &self,
        id: NodeId,
        raft_addr: String,
        client_addr: String,
    ) -> Result<(), ApiError> {
        self.running()?;
        let limit =
            Duration::from_millis(self.shared.config.request_timeout_ms) * ADD_LEARNER_TIMEOUTS;
        let node = ballast_raft::Node::new(raft_addr, client_addr);
        match tokio::time::timeout(limit, self.shared.raft.add_learner(id, node, true)).await {
            Err(_) => Err(ApiError::Timeout {
                ms: limit.as_millis() as u64,
            }),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(membership_error(e)),
        }
    }

    async fn change_voters(
        &self,
        voters: BTreeSet<NodeId>,
        keep_as_learners: bool,
    ) -> Result<(), ApiError> {
        self.running()?;
        let limit = Duration::from_millis(self.shared.config.request_timeout_ms);
        match tokio::time::timeout(
            limit,
            self.shared.raft.change_membership(voters, keep_as_learners),
        )
        .await
        {
            Err(_) => Err(self.timeout_error()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(membership_error(e)),
        }
    }

    fn engine_stats(&self) -> ballast_storage::StatsSnapshot {
        self.shared.db.stats()
    }

    fn admin_secret(&self) -> Option<Secret> {
        self.shared.config.secret.as_deref().map(Secret::new)
    }
}

/// A membership change's failure: refused before anything was proposed
/// (not the leader, a change that does not apply) says so; a failure after
/// the change was appended (Raft stopped, the entry discarded) says its
/// outcome is unknown. Membership changes run on the leader only; the text
/// says where it is.
fn membership_error(
    e: openraft::errors::RaftError<
        ballast_raft::TypeConfig,
        openraft::errors::ClientWriteError<ballast_raft::TypeConfig>,
    >,
) -> ApiError {
    use openraft::errors::{ClientWriteError, RaftError};
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => match f.leader_id {
            Some(l) => ApiError::Unavailable(format!(
                "membership changes run on the leader: send this to node {l}"
            )),
            None => ApiError::NoLeader,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ApiError::Invalid(format!("membership change refused: {e}"))
        }
        RaftError::APIError(e) => ApiError::Unknown(format!("membership change: {e}")),
        RaftError::Fatal(e) => ApiError::Unknown(format!("membership change: Raft stopped: {e}")),
    }
}
