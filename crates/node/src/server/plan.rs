//! A command as a replicated request and the shape of its reply: what
//! a write sends to the log (alone, or queued in a MULTI), and how the
//! state machine's [`Response`] becomes the reply Redis would send. Inside
//! a transaction reads are requests too ([`Request::Read`]), so that they
//! see the transaction's earlier writes and nothing between.

use ballast_raft::typ::{Deadline, Response};
use ballast_raft::{BatchOp, Request, SetCondition as RaftSetCondition};
use bytes::Bytes;

use super::replies::{byte_range, expire_time_reply, unexpected, Step};
use super::shared::Shared;
use crate::api::{KvApi, Value};
use crate::command::{Command, ExpiryChange, SetCondition, TimeUnit};
use crate::resp::Reply;

/// Redis's text for a string that would pass its size limit.
const STRING_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// How a [`Response`] becomes a reply.
#[derive(Debug, Clone)]
pub(super) enum Shape {
    /// `+OK`.
    Ok,
    /// SET: `+OK`, or null when NX / XX did not hold; with GET, the old
    /// value.
    Set {
        /// SET ... GET.
        get: bool,
    },
    /// SETNX: 1 or 0.
    SetNx,
    /// GETSET: the old value.
    OldValue,
    /// An integer.
    Integer,
    /// 1 or 0 from a yes/no answer.
    Flag,
    /// A bulk value or null.
    Value,
    /// Inside a transaction, from [`Response::Values`]: GET.
    Get,
    /// MGET.
    MGet,
    /// EXISTS and TOUCH: how many exist.
    Count,
    /// TTL and PTTL.
    Ttl(TimeUnit),
    /// EXPIRETIME and PEXPIRETIME.
    ExpireTime(TimeUnit),
    /// STRLEN.
    Strlen,
    /// GETRANGE.
    GetRange(i64, i64),
    /// TYPE.
    Type,
}

/// A command made a request, with the shape of its reply.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) request: Request,
    pub(super) shape: Shape,
}

impl<A: KvApi> Shared<A> {
    /// The request of a command that writes, or of any data command when
    /// `in_transaction` (reads included). `Ok(None)`: not a request (a
    /// read outside a transaction, or a command the connection answers).
    /// Refusals are what Redis (or a limit) refuses before writing.
    pub(super) fn plan(&self, command: &Command, in_transaction: bool) -> Step<Option<Planned>> {
        let planned = |request, shape| Ok(Some(Planned { request, shape }));
        let key = |key: &Bytes| key.to_vec();
        let read = |keys: &[Bytes], shape| {
            if in_transaction {
                planned(
                    Request::Read {
                        keys: keys.iter().map(|k| k.to_vec()).collect(),
                    },
                    shape,
                )
            } else {
                Ok(None)
            }
        };
        let one = std::slice::from_ref;
        match command {
            Command::Get { key } => read(one(key), Shape::Get),
            Command::MGet { keys } => read(keys, Shape::MGet),
            Command::Exists { keys } | Command::Touch { keys } => read(keys, Shape::Count),
            Command::Ttl { key, unit } => read(one(key), Shape::Ttl(*unit)),
            Command::ExpireTime { key, unit } => read(one(key), Shape::ExpireTime(*unit)),
            Command::Strlen { key } => read(one(key), Shape::Strlen),
            Command::GetRange { key, start, end } => read(one(key), Shape::GetRange(*start, *end)),
            Command::Type { key } => read(one(key), Shape::Type),
            Command::GetEx { key, change: None } => read(one(key), Shape::Value),
            Command::Set {
                key: k,
                value,
                expire_ms,
                condition,
                get,
            } => {
                self.check_key(k)?;
                self.check_value(value)?;
                let condition = match condition {
                    None => RaftSetCondition::Always,
                    Some(SetCondition::IfAbsent) => RaftSetCondition::IfAbsent,
                    Some(SetCondition::IfPresent) => RaftSetCondition::IfPresent,
                };
                let request = match expire_ms {
                    Some(ms) => Request::SetWithTtl {
                        key: key(k),
                        value: value.to_vec(),
                        ttl_ms: self.ttl(*ms, "set")?,
                        condition,
                        return_old: *get,
                    },
                    None => Request::Set {
                        key: key(k),
                        value: value.to_vec(),
                        expire_at_ms: None,
                        condition,
                        return_old: *get,
                    },
                };
                planned(request, Shape::Set { get: *get })
            }
            Command::SetNx { key: k, value } | Command::GetSet { key: k, value } => {
                self.check_key(k)?;
                self.check_value(value)?;
                let nx = matches!(command, Command::SetNx { .. });
                let request = Request::Set {
                    key: key(k),
                    value: value.to_vec(),
                    expire_at_ms: None,
                    condition: if nx {
                        RaftSetCondition::IfAbsent
                    } else {
                        RaftSetCondition::Always
                    },
                    return_old: !nx,
                };
                planned(request, if nx { Shape::SetNx } else { Shape::OldValue })
            }
            Command::Del { keys } => planned(
                Request::DeleteMany {
                    keys: keys.iter().map(key).collect(),
                },
                Shape::Integer,
            ),
            Command::MSet { pairs } => {
                let mut ops = Vec::with_capacity(pairs.len());
                for (k, value) in pairs {
                    self.check_key(k)?;
                    self.check_value(value)?;
                    ops.push(BatchOp::Put {
                        key: key(k),
                        value: value.to_vec(),
                    });
                }
                planned(Request::Batch(ops), Shape::Ok)
            }
            Command::MSetNx { pairs } => {
                for (k, value) in pairs {
                    self.check_key(k)?;
                    self.check_value(value)?;
                }
                let pairs = pairs.iter().map(|(k, v)| (key(k), v.to_vec())).collect();
                planned(Request::MSetNx { pairs }, Shape::Flag)
            }
            Command::IncrBy { key: k, delta } => {
                self.check_key(k)?;
                planned(
                    Request::IncrBy {
                        key: key(k),
                        delta: *delta,
                    },
                    Shape::Integer,
                )
            }
            Command::IncrByFloat { key: k, increment } => {
                self.check_key(k)?;
                planned(
                    Request::IncrByFloat {
                        key: key(k),
                        increment: increment.to_vec(),
                    },
                    Shape::Value,
                )
            }
            Command::Cas {
                key: k,
                expected,
                new,
            } => {
                self.check_key(k)?;
                self.check_value(new)?;
                planned(
                    Request::Cas {
                        key: key(k),
                        expected: Some(expected.to_vec()),
                        new: new.to_vec(),
                    },
                    Shape::Flag,
                )
            }
            Command::Expire {
                key: k,
                ttl_ms,
                condition,
                unit,
            } => {
                let name = match unit {
                    TimeUnit::Seconds => "expire",
                    TimeUnit::Milliseconds => "pexpire",
                };
                let deadline = if *ttl_ms <= 0 {
                    // A time in the past: the key goes (if the condition
                    // lets the expiry change).
                    Deadline::In(0)
                } else {
                    Deadline::In(self.ttl(*ttl_ms, name)?)
                };
                planned(self.expire_request(k, deadline, *condition), Shape::Flag)
            }
            Command::ExpireAt {
                key: k,
                at_ms,
                condition,
            } => {
                // Before the epoch is in the past like any other past time.
                let deadline = Deadline::At(u64::try_from(*at_ms).unwrap_or(0));
                planned(self.expire_request(k, deadline, *condition), Shape::Flag)
            }
            Command::Persist { key: k } => planned(Request::Persist { key: key(k) }, Shape::Flag),
            Command::GetDel { key: k } => planned(Request::GetDel { key: key(k) }, Shape::Value),
            Command::GetEx {
                key: k,
                change: Some(change),
            } => {
                let expiry = match change {
                    ExpiryChange::Persist => None,
                    ExpiryChange::InMs(ms) => Some(Deadline::In(self.ttl(*ms, "getex")?)),
                    ExpiryChange::AtMs(ms) => Some(Deadline::At(u64::try_from(*ms).unwrap_or(0))),
                };
                planned(
                    Request::GetEx {
                        key: key(k),
                        expiry,
                    },
                    Shape::Value,
                )
            }
            Command::Append { key: k, value } => {
                self.check_key(k)?;
                if value.len() > self.config.value_bytes_max {
                    return Err(Reply::Error(STRING_TOO_LONG.to_string()));
                }
                planned(
                    Request::Append {
                        key: key(k),
                        value: value.to_vec(),
                        value_bytes_max: self.config.value_bytes_max as u64,
                    },
                    Shape::Integer,
                )
            }
            Command::SetRange {
                key: k,
                offset,
                value,
            } => {
                self.check_key(k)?;
                // The result is at least offset + length long, whatever
                // the key holds, so the limit is checked here, once.
                let end = offset.saturating_add(value.len() as u64);
                if !value.is_empty() && end > self.config.value_bytes_max as u64 {
                    return Err(Reply::Error(STRING_TOO_LONG.to_string()));
                }
                planned(
                    Request::SetRange {
                        key: key(k),
                        offset: *offset,
                        value: value.to_vec(),
                    },
                    Shape::Integer,
                )
            }
            Command::FlushAll => planned(Request::FlushAll, Shape::Ok),
            Command::Rename {
                from,
                to,
                only_if_absent,
            } => {
                self.check_key(from)?;
                self.check_key(to)?;
                planned(
                    Request::Rename {
                        from: key(from),
                        to: key(to),
                        only_if_absent: *only_if_absent,
                    },
                    if *only_if_absent {
                        Shape::Flag
                    } else {
                        Shape::Ok
                    },
                )
            }
            _ => Ok(None),
        }
    }

    /// EXPIRE of any form: the old request kinds when there is no
    /// condition (nodes that predate conditions apply them), else
    /// [`Request::ExpireWhen`].
    fn expire_request(
        &self,
        key: &Bytes,
        deadline: Deadline,
        condition: ballast_raft::typ::ExpireCondition,
    ) -> Request {
        let key = key.to_vec();
        if condition != Default::default() {
            return Request::ExpireWhen {
                key,
                deadline,
                condition,
            };
        }
        match deadline {
            // Redis deletes the key for a time in the past.
            Deadline::In(0) => Request::Delete { key },
            Deadline::In(ttl_ms) => Request::ExpireIn { key, ttl_ms },
            Deadline::At(expire_at_ms) => Request::Expire { key, expire_at_ms },
        }
    }

    /// The reply to `response` in `shape`.
    pub(super) fn shape(&self, shape: &Shape, response: Response) -> Reply {
        let flag = |yes: bool| Reply::Integer(i64::from(yes));
        let bulk =
            |value: Option<Vec<u8>>| value.map_or(Reply::NullBulk, |v| Reply::Bulk(v.into()));
        match (shape, response) {
            (_, Response::Rejected(why)) => Reply::Error(format!("ERR {why}")),
            (Shape::Ok, Response::Done) => Reply::ok(),
            (Shape::Set { get: true }, Response::Set { old, .. })
            | (Shape::OldValue, Response::Set { old, .. }) => bulk(old),
            (Shape::Set { .. }, Response::Set { written: true, .. }) => Reply::ok(),
            (Shape::Set { .. }, Response::Set { written: false, .. }) => Reply::NullBulk,
            (Shape::SetNx, Response::Set { written, .. }) => flag(written),
            (Shape::Integer, Response::Integer(n)) => Reply::Integer(n),
            (Shape::Flag, Response::Existed(yes)) => flag(yes),
            (Shape::Flag, Response::Cas { swapped, .. }) => flag(swapped),
            (Shape::Value, Response::Value(value)) => bulk(value),
            (Shape::Value, Response::Values(mut values)) => {
                bulk(values.pop().flatten().map(|(v, _)| v))
            }
            (shape, Response::Values(values)) => self.shape_read(shape, values),
            (_, other) => unexpected(other),
        }
    }

    /// A read inside a transaction, shaped as the read outside would be.
    fn shape_read(&self, shape: &Shape, values: Vec<Option<(Vec<u8>, Option<u64>)>>) -> Reply {
        let values: Vec<Option<Value>> = values
            .into_iter()
            .map(|value| {
                value.map(|(value, expire_at_ms)| Value {
                    value: value.into(),
                    expire_at_ms,
                })
            })
            .collect();
        let first = || values.first().cloned().flatten();
        match shape {
            Shape::Get => first().map_or(Reply::NullBulk, |v| Reply::Bulk(v.value)),
            Shape::MGet => Reply::Array(
                values
                    .iter()
                    .map(|v| {
                        v.as_ref()
                            .map_or(Reply::NullBulk, |v| Reply::Bulk(v.value.clone()))
                    })
                    .collect(),
            ),
            Shape::Count => Reply::Integer(values.iter().flatten().count() as i64),
            Shape::Ttl(unit) => self.ttl_reply(first(), *unit),
            Shape::ExpireTime(unit) => expire_time_reply(first(), *unit),
            Shape::Strlen => Reply::Integer(first().map_or(0, |v| v.value.len() as i64)),
            Shape::GetRange(start, end) => Reply::Bulk(byte_range(
                &first().map(|v| v.value).unwrap_or_default(),
                *start,
                *end,
            )),
            Shape::Type => {
                Reply::Simple(if first().is_some() { "string" } else { "none" }.to_string())
            }
            other => Reply::Error(format!(
                "ERR internal error: a read answered for a {other:?} reply"
            )),
        }
    }

    /// TTL and PTTL of `value` as of the node's clock.
    pub(super) fn ttl_reply(&self, value: Option<Value>, unit: TimeUnit) -> Reply {
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
}
