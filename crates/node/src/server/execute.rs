//! Running one parsed command against the [`KvApi`] and shaping the answer
//! exactly as Redis would.

use std::fmt::Write as _;

use ballast_raft::{Request, Response};
use bytes::Bytes;

use super::replies::{api_error_reply, expire_time_reply, unexpected, Step};
use super::shared::Shared;
use crate::api::{Consistency, KvApi, Ordered, Value};
use crate::command::Command;
use crate::resp::Reply;

fn check_size(what: &str, bytes: usize, bytes_max: usize) -> Step<()> {
    if bytes > bytes_max {
        return Err(Reply::Error(format!(
            "ERR {what} of {bytes} bytes is over the limit of {bytes_max} bytes; nothing was written"
        )));
    }
    Ok(())
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
    /// negative or so large that a deadline from now would overflow a
    /// signed 64-bit count of milliseconds (Redis's bound).
    pub(super) fn ttl(&self, ttl_ms: i64, command: &str) -> Step<u64> {
        u64::try_from(ttl_ms)
            .ok()
            .filter(|ttl_ms| {
                self.api
                    .now_ms()
                    .checked_add(*ttl_ms)
                    .is_some_and(|at_ms| i64::try_from(at_ms).is_ok())
            })
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
        if let Command::Persist { key } = &command {
            return self.persist(key.clone(), ordered).await;
        }
        if let Some(planned) = self.plan(&command, false)? {
            let response = self
                .api
                .write_ordered(planned.request, ordered)
                .await
                .map_err(|error| api_error_reply(&error))?;
            return Ok(self.shape(&planned.shape, response));
        }
        Ok(match command {
            Command::Get { key } | Command::GetEx { key, change: None } => {
                match self.read(vec![key]).await?.pop().flatten() {
                    Some(value) => Reply::Bulk(value.value),
                    None => Reply::NullBulk,
                }
            }
            Command::Exists { keys } | Command::Touch { keys } => {
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
            Command::Ttl { key, unit } => {
                let value = self.read(vec![key]).await?.pop().flatten();
                self.ttl_reply(value, unit)
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
            Command::Strlen { key } => self.strlen(key).await?,
            Command::GetRange { key, start, end } => self.get_range(key, start, end).await?,
            Command::Type { key } => self.type_of(key).await?,
            Command::ExpireTime { key, unit } => expire_time_reply(self.read_one(key).await?, unit),
            Command::Keys { pattern } => self.keys(pattern).await?,
            _ => Reply::Error(
                "ERR internal error: a connection command reached the executor".to_string(),
            ),
        })
    }

    /// PERSIST: Redis answers 0 for a key without a TTL; only a key that
    /// has one is worth a replicated write. Answering 0 from the read is
    /// linearizable at the read.
    async fn persist(&self, key: Bytes, ordered: Ordered) -> Step<Reply> {
        Ok(match self.read(vec![key.clone()]).await?.pop().flatten() {
            Some(Value {
                expire_at_ms: Some(_),
                ..
            }) => match self
                .write(Request::Persist { key: key.to_vec() }, ordered)
                .await?
            {
                Response::Existed(existed) => Reply::Integer(i64::from(existed)),
                other => unexpected(other),
            },
            _ => Reply::Integer(0),
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
