//! Running one parsed command against the [`KvApi`] and shaping the answer
//! exactly as Redis would.

use std::fmt::Write as _;

use ballast_raft::{BatchOp, Request, Response, SetCondition as RaftSetCondition};
use bytes::Bytes;

use super::shared::Shared;
use crate::api::{ApiError, Consistency, KvApi, Ordered, Value};
use crate::command::{Command, SetCondition, TimeUnit};
use crate::resp::Reply;

/// The error reply for an [`ApiError`]. The first word is a code a client
/// can match on (README, "Error replies"). Outcome unknown (a write may or
/// may not be applied): `TIMEOUT` and `UNKNOWN`, and nothing else. Nothing
/// applied: `TRYAGAIN` (no leader: retry after a short wait; Redis Cluster
/// clients already retry on it), `SHUTDOWN`, `ERR` (the request is not
/// acceptable) and `UNAVAILABLE` (could not be served).
pub fn api_error_reply(error: &ApiError) -> Reply {
    let code = match error {
        ApiError::NoLeader => "TRYAGAIN",
        ApiError::Timeout { .. } => "TIMEOUT",
        ApiError::ShuttingDown => "SHUTDOWN",
        ApiError::Invalid(_) => "ERR",
        ApiError::Unavailable(_) => "UNAVAILABLE",
        ApiError::Unknown(_) => "UNKNOWN",
    };
    Reply::Error(format!("{code} {error}"))
}

/// What a failed step answers.
pub(super) type Step<T> = Result<T, Reply>;

fn check_size(what: &str, bytes: usize, bytes_max: usize) -> Step<()> {
    if bytes > bytes_max {
        return Err(Reply::Error(format!(
            "ERR {what} of {bytes} bytes is over the limit of {bytes_max} bytes; nothing was written"
        )));
    }
    Ok(())
}

fn integer_reply(flag: bool) -> Reply {
    Reply::Integer(i64::from(flag))
}

pub(super) fn unexpected(response: Response) -> Reply {
    match response {
        Response::Rejected(why) => Reply::Error(format!("ERR {why}")),
        other => Reply::Error(format!(
            "ERR internal error: the node answered {other:?} to this request"
        )),
    }
}

impl<A: KvApi> Shared<A> {
    pub(super) async fn write(&self, request: Request, ordered: Ordered) -> Step<Response> {
        match self.api.write_ordered(request, ordered).await {
            Ok(Response::Rejected(why)) => Err(Reply::Error(format!("ERR {why}"))),
            Ok(response) => Ok(response),
            Err(error) => Err(api_error_reply(&error)),
        }
    }

    pub(super) async fn read(&self, keys: Vec<Bytes>) -> Step<Vec<Option<Value>>> {
        let count = keys.len();
        let values = self
            .api
            .get_many(keys, self.config.read_consistency)
            .await
            .map_err(|error| api_error_reply(&error))?;
        if values.len() != count {
            return Err(Reply::Error(format!(
                "ERR internal error: asked for {count} keys, got {} answers",
                values.len()
            )));
        }
        Ok(values)
    }

    /// Refuses keys and values the engine would refuse, before proposing,
    /// so an oversized request never enters the replicated log.
    pub(super) fn check_key(&self, key: &[u8]) -> Step<()> {
        if key.is_empty() {
            return Err(Reply::Error(
                "ERR empty keys are not supported; nothing was written".to_string(),
            ));
        }
        check_size("key", key.len(), self.config.key_bytes_max)
    }

    pub(super) fn check_value(&self, value: &[u8]) -> Step<()> {
        check_size("value", value.len(), self.config.value_bytes_max)
    }

    /// A relative TTL for the request: the leader's log turns it into a
    /// deadline from the entry's time, so no node's own clock (this one's
    /// included) decides when the key expires. Refused like Redis when
    /// negative or so large that a deadline from now would overflow.
    fn ttl(&self, ttl_ms: i64, command: &str) -> Step<u64> {
        u64::try_from(ttl_ms)
            .ok()
            .filter(|ttl_ms| self.api.now_ms().checked_add(*ttl_ms).is_some())
            .ok_or_else(|| Reply::Error(format!("ERR invalid expire time in '{command}' command")))
    }

    /// Answers a command that needs the API. Commands a connection answers
    /// by itself (PING, AUTH, ...) are not expected here. A command that
    /// is one write gives `ordered` once the API has ordered it; others
    /// drop it.
    pub(crate) async fn execute(&self, command: Command, ordered: Ordered) -> Reply {
        match self.execute_step(command, ordered).await {
            Ok(reply) | Err(reply) => reply,
        }
    }

    async fn execute_step(&self, command: Command, ordered: Ordered) -> Step<Reply> {
        Ok(match command {
            Command::Get { key } => match self.read(vec![key]).await?.pop().flatten() {
                Some(value) => Reply::Bulk(value.value),
                None => Reply::NullBulk,
            },
            Command::Set {
                key,
                value,
                expire_ms,
                condition,
                get,
            } => {
                self.check_key(&key)?;
                self.check_value(&value)?;
                let ttl_ms = match expire_ms {
                    Some(ms) => Some(self.ttl(ms, "set")?),
                    None => None,
                };
                let condition = match condition {
                    None => RaftSetCondition::Always,
                    Some(SetCondition::IfAbsent) => RaftSetCondition::IfAbsent,
                    Some(SetCondition::IfPresent) => RaftSetCondition::IfPresent,
                };
                let request = match ttl_ms {
                    Some(ttl_ms) => Request::SetWithTtl {
                        key: key.to_vec(),
                        value: value.to_vec(),
                        ttl_ms,
                        condition,
                        return_old: get,
                    },
                    None => Request::Set {
                        key: key.to_vec(),
                        value: value.to_vec(),
                        expire_at_ms: None,
                        condition,
                        return_old: get,
                    },
                };
                match self.write(request, ordered).await? {
                    Response::Set { old, .. } if get => {
                        old.map_or(Reply::NullBulk, |old| Reply::Bulk(old.into()))
                    }
                    Response::Set { written: true, .. } => Reply::ok(),
                    Response::Set { written: false, .. } => Reply::NullBulk,
                    other => unexpected(other),
                }
            }
            Command::Del { keys } => {
                let request = Request::DeleteMany {
                    keys: keys.iter().map(|key| key.to_vec()).collect(),
                };
                match self.write(request, ordered).await? {
                    Response::Integer(count) => Reply::Integer(count),
                    other => unexpected(other),
                }
            }
            Command::Exists { keys } => {
                let values = self.read(keys).await?;
                let present = values.iter().filter(|value| value.is_some()).count();
                Reply::Integer(i64::try_from(present).unwrap_or(i64::MAX))
            }
            Command::MGet { keys } => {
                let values = self.read(keys).await?;
                let bytes: usize = values.iter().flatten().map(|value| value.value.len()).sum();
                if bytes > self.config.reply_bytes_max {
                    return Err(Reply::Error(format!(
                        "ERR reply of {bytes} value bytes is over the limit of {} bytes; ask for fewer keys",
                        self.config.reply_bytes_max
                    )));
                }
                Reply::Array(
                    values
                        .into_iter()
                        .map(|value| {
                            value.map_or(Reply::NullBulk, |value| Reply::Bulk(value.value))
                        })
                        .collect(),
                )
            }
            Command::MSet { pairs } => {
                let mut ops = Vec::with_capacity(pairs.len());
                for (key, value) in pairs {
                    self.check_key(&key)?;
                    self.check_value(&value)?;
                    ops.push(BatchOp::Put {
                        key: key.to_vec(),
                        value: value.to_vec(),
                    });
                }
                match self.write(Request::Batch(ops), ordered).await? {
                    Response::Done => Reply::ok(),
                    other => unexpected(other),
                }
            }
            Command::IncrBy { key, delta } => {
                self.check_key(&key)?;
                let request = Request::IncrBy {
                    key: key.to_vec(),
                    delta,
                };
                match self.write(request, ordered).await? {
                    Response::Integer(value) => Reply::Integer(value),
                    other => unexpected(other),
                }
            }
            Command::Expire { key, ttl_ms } => {
                let command = "expire";
                let request = if ttl_ms <= 0 {
                    // Redis deletes the key for a time in the past.
                    Request::Delete { key: key.to_vec() }
                } else {
                    Request::ExpireIn {
                        key: key.to_vec(),
                        ttl_ms: self.ttl(ttl_ms, command)?,
                    }
                };
                match self.write(request, ordered).await? {
                    Response::Existed(existed) => integer_reply(existed),
                    other => unexpected(other),
                }
            }
            Command::Ttl { key, unit } => {
                let value = self.read(vec![key]).await?.pop().flatten();
                let now_ms = self.api.now_ms();
                match value {
                    None => Reply::Integer(-2),
                    Some(Value {
                        expire_at_ms: None, ..
                    }) => Reply::Integer(-1),
                    Some(Value {
                        expire_at_ms: Some(at_ms),
                        ..
                    }) if at_ms <= now_ms => Reply::Integer(-2),
                    Some(Value {
                        expire_at_ms: Some(at_ms),
                        ..
                    }) => {
                        let left_ms = i64::try_from(at_ms - now_ms).unwrap_or(i64::MAX);
                        Reply::Integer(match unit {
                            TimeUnit::Milliseconds => left_ms,
                            // Redis rounds to the nearest second.
                            TimeUnit::Seconds => left_ms.saturating_add(500) / 1000,
                        })
                    }
                }
            }
            Command::Persist { key } => {
                // Redis answers 0 for a key without a TTL; only a key that
                // has one is worth a replicated write. Answering 0 from the
                // read is linearizable at the read.
                match self.read(vec![key.clone()]).await?.pop().flatten() {
                    Some(Value {
                        expire_at_ms: Some(_),
                        ..
                    }) => match self
                        .write(Request::Persist { key: key.to_vec() }, ordered)
                        .await?
                    {
                        Response::Existed(existed) => integer_reply(existed),
                        other => unexpected(other),
                    },
                    _ => Reply::Integer(0),
                }
            }
            Command::Scan {
                cursor,
                pattern,
                count,
                type_name,
            } => self.scan(cursor, pattern, count, type_name).await?,
            Command::DbSize => {
                let count = self
                    .api
                    .count_keys(self.config.read_consistency)
                    .await
                    .map_err(|error| api_error_reply(&error))?;
                Reply::Integer(i64::try_from(count).unwrap_or(i64::MAX))
            }
            Command::Info { sections } => Reply::Verbatim(self.info(&sections).await),
            Command::Cas { key, expected, new } => {
                self.check_key(&key)?;
                self.check_value(&new)?;
                let request = Request::Cas {
                    key: key.to_vec(),
                    expected: Some(expected.to_vec()),
                    new: new.to_vec(),
                };
                match self.write(request, ordered).await? {
                    Response::Cas { swapped, .. } => integer_reply(swapped),
                    other => unexpected(other),
                }
            }
            Command::SetNx { key, value } => {
                self.set_and_answer(key, value, RaftSetCondition::IfAbsent, false, ordered)
                    .await?
            }
            Command::GetSet { key, value } => {
                self.set_and_answer(key, value, RaftSetCondition::Always, true, ordered)
                    .await?
            }
            Command::Strlen { key } => self.strlen(key).await?,
            Command::GetRange { key, start, end } => self.get_range(key, start, end).await?,
            Command::Type { key } => self.type_of(key).await?,
            Command::ExpireTime { key, unit } => self.expire_time(key, unit).await?,
            Command::Touch { keys } => self.touch(keys).await?,
            Command::ExpireAt { key, at_ms } => self.expire_at(key, at_ms, ordered).await?,
            Command::Keys { pattern } => self.keys(pattern).await?,
            Command::Ping { .. }
            | Command::Echo { .. }
            | Command::Command(_)
            | Command::Auth { .. }
            | Command::Hello { .. }
            | Command::Select
            | Command::Time
            | Command::Client(_)
            | Command::Quit => Reply::Error(
                "ERR internal error: a connection command reached the executor".to_string(),
            ),
        })
    }

    async fn scan(
        &self,
        cursor: u64,
        pattern: Option<Bytes>,
        count: Option<u64>,
        type_name: Option<Bytes>,
    ) -> Step<Reply> {
        let start = if cursor == 0 {
            Bytes::new()
        } else {
            self.cursors().take(cursor).ok_or_else(|| {
                Reply::Error(format!(
                    "ERR invalid cursor {cursor}: it was already used, expired or never issued; \
                         start a new SCAN at 0"
                ))
            })?
        };
        let limit = usize::try_from(count.unwrap_or(10))
            .unwrap_or(usize::MAX)
            .clamp(1, self.config.scan_count_max);
        let page = self
            .api
            .scan_keys(start, limit, self.config.read_consistency)
            .await
            .map_err(|error| api_error_reply(&error))?;
        // ballast stores strings only: any other TYPE matches nothing.
        let strings_only = type_name.is_none_or(|name| name.eq_ignore_ascii_case(b"string"));
        let keys = page
            .keys
            .into_iter()
            .filter(|_| strings_only)
            .filter(|key| {
                pattern
                    .as_ref()
                    .is_none_or(|pattern| crate::glob::glob_match(pattern, key))
            })
            .map(Reply::Bulk)
            .collect();
        let next = match page.next {
            Some(next) => self.cursors().issue(next),
            None => 0,
        };
        Ok(Reply::Array(vec![
            Reply::bulk(next.to_string()),
            Reply::Array(keys),
        ]))
    }

    /// The INFO text: the requested sections, CRLF line endings as Redis.
    pub(crate) async fn info(&self, sections: &[Bytes]) -> String {
        const ALL: [&str; 5] = ["server", "clients", "replication", "stats", "keyspace"];
        let wanted: Vec<&str> = if sections.is_empty() {
            ALL.to_vec()
        } else {
            ALL.iter()
                .copied()
                .filter(|name| {
                    sections.iter().any(|section| {
                        section.eq_ignore_ascii_case(name.as_bytes())
                            || [&b"all"[..], b"everything", b"default"]
                                .iter()
                                .any(|all| section.eq_ignore_ascii_case(all))
                    })
                })
                .collect()
        };
        let status = self.api.status();
        let mut out = String::new();
        for section in wanted {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            let mut line = |text: String| {
                out.push_str(&text);
                out.push_str("\r\n");
            };
            match section {
                "server" => {
                    line("# Server".into());
                    // Clients gate features on redis_version; ballast
                    // serves a subset of Redis 7's string commands.
                    line(format!(
                        "redis_version:{}",
                        super::connection::REDIS_VERSION
                    ));
                    line(format!("ballast_version:{}", env!("CARGO_PKG_VERSION")));
                    line("redis_mode:standalone".into());
                    line(format!("node_id:{}", status.id));
                    line(format!("durability_preset:{}", status.preset));
                    line(format!(
                        "uptime_in_seconds:{}",
                        self.started.elapsed().as_secs()
                    ));
                }
                "clients" => {
                    line("# Clients".into());
                    line(format!(
                        "connected_clients:{}",
                        self.metrics.connections_current()
                    ));
                    line(format!("maxclients:{}", self.config.connections_max));
                }
                "replication" => {
                    line("# Replication".into());
                    let redis_role = if status.role == "leader" {
                        "master"
                    } else {
                        "slave"
                    };
                    line(format!("role:{redis_role}"));
                    line(format!("raft_role:{}", status.role));
                    line(format!("raft_term:{}", status.term));
                    match &status.leader {
                        Some((id, addr)) => {
                            line(format!("raft_leader_id:{id}"));
                            line(format!("raft_leader_addr:{addr}"));
                        }
                        None => line("raft_leader_id:none".into()),
                    }
                    let index =
                        |index: Option<u64>| index.map_or("none".to_string(), |i| i.to_string());
                    line(format!(
                        "raft_last_log_index:{}",
                        index(status.last_log_index)
                    ));
                    line(format!("raft_commit_index:{}", index(status.commit_index)));
                    line(format!(
                        "raft_applied_index:{}",
                        index(status.applied_index)
                    ));
                    let ids = |ids: &[u64]| {
                        let mut text = String::new();
                        for (i, id) in ids.iter().enumerate() {
                            let _ = write!(text, "{}{id}", if i == 0 { "" } else { "," });
                        }
                        text
                    };
                    line(format!("raft_voters:{}", ids(&status.voters)));
                    line(format!("raft_learners:{}", ids(&status.learners)));
                }
                "stats" => {
                    line("# Stats".into());
                    line(format!(
                        "total_connections_received:{}",
                        self.metrics.connections_total()
                    ));
                    line(format!(
                        "total_commands_processed:{}",
                        self.metrics.commands_processed()
                    ));
                    line(format!(
                        "rejected_connections:{}",
                        self.metrics.connections_rejected()
                    ));
                }
                _ => {
                    line("# Keyspace".into());
                    // This node's own view: INFO should not cost a
                    // linearizable read.
                    match self.api.count_keys(Consistency::Stale).await {
                        Ok(0) => {}
                        // Expiring keys are not counted separately: the API
                        // has no count of them.
                        Ok(keys) => line(format!("db0:keys={keys}")),
                        Err(error) => line(format!("# keyspace unavailable: {error}")),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_become_replies_a_client_can_act_on() {
        let text = |error: ApiError| match api_error_reply(&error) {
            Reply::Error(text) => text,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            text(ApiError::NoLeader),
            "TRYAGAIN no leader is known right now; retry shortly"
        );
        assert_eq!(
            text(ApiError::Timeout { ms: 5000 }),
            "TIMEOUT timed out after 5000 ms; the outcome is unknown"
        );
        assert_eq!(
            text(ApiError::ShuttingDown),
            "SHUTDOWN the node is shutting down"
        );
        assert_eq!(
            text(ApiError::Invalid("key too long".into())),
            "ERR key too long"
        );
        assert_eq!(
            text(ApiError::Unavailable("disk failed".into())),
            "UNAVAILABLE disk failed"
        );
        assert_eq!(
            text(ApiError::Unknown("lost the leader mid-request".into())),
            "UNKNOWN lost the leader mid-request; the write may or may not be applied"
        );
    }

    /// A client matching on the first word learns whether a write may
    /// have happened: exactly TIMEOUT and UNKNOWN say so.
    #[test]
    fn only_timeout_and_unknown_say_the_outcome_is_unknown() {
        let all = [
            ApiError::NoLeader,
            ApiError::Timeout { ms: 1 },
            ApiError::ShuttingDown,
            ApiError::Invalid("x".into()),
            ApiError::Unavailable("x".into()),
            ApiError::Unknown("x".into()),
        ];
        for error in all {
            let Reply::Error(text) = api_error_reply(&error) else {
                panic!("not an error reply");
            };
            let code = text.split(' ').next().unwrap_or_default();
            assert_eq!(
                matches!(code, "TIMEOUT" | "UNKNOWN"),
                error.outcome_unknown(),
                "{text}"
            );
        }
    }
}
