//! What a request may hold: the limits a node checks every request
//! against where it enters, the structure the log format can hold, and
//! the byte count batching budgets with.

use super::{BatchOp, Request};

/// Where a request sits, for the structure rules: a Multi holds requests
/// (a Transaction among them), a Transaction holds plain requests only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nesting {
    Top,
    InMulti,
    InTransaction,
}

/// The limits a node checks every request against where it enters (the
/// client API, a forwarded write, the proposer): the node's configured key
/// and value limits and its largest request. Apply never checks them again
/// (an entry in the log is applied the same way on every node, whatever
/// each node's own settings say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Longest key, in bytes (keys are never empty).
    pub key_bytes_max: u64,
    /// Longest value (and CAS expected value), in bytes.
    pub value_bytes_max: u64,
    /// Largest request, in [`Request::payload_bytes`].
    pub request_bytes_max: u64,
}

impl RequestLimits {
    /// Only what the log format can hold: lengths are u32 on disk.
    pub const FORMAT: RequestLimits = RequestLimits {
        key_bytes_max: u32::MAX as u64,
        value_bytes_max: u32::MAX as u64,
        request_bytes_max: u32::MAX as u64,
    };
}

/// Why a request was refused where it entered; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// A `Multi` with no request: nothing to propose.
    #[error("an empty multi request: send at least one request")]
    EmptyMulti,
    /// A `Multi` from outside the proposer: only the leader's proposer
    /// groups requests into one.
    #[error(
        "a multi request from a client: send its requests one by one (the leader groups them)"
    )]
    MultiFromClient,
    /// A `Multi` inside a `Multi` or a `Transaction`: the log format
    /// holds one level only.
    #[error("a multi request inside a multi request or transaction: flatten it into one multi")]
    NestedMulti,
    /// A `Transaction` inside a `Transaction`.
    #[error("a transaction inside a transaction: send its commands in the outer one")]
    NestedTransaction,
    /// A `Transaction` with no request: EXEC of an empty MULTI is answered
    /// by the connection without the log.
    #[error("an empty transaction: queue at least one command between MULTI and EXEC")]
    EmptyTransaction,
    /// An empty key.
    #[error("an empty key: keys must be 1 to {max} bytes")]
    EmptyKey {
        /// The node's `key_bytes_max`.
        max: u64,
    },
    /// A key over the node's limit.
    #[error("a key of {len} bytes: keys must be 1 to {max} bytes (key_bytes_max)")]
    KeyTooLarge {
        /// The key's length.
        len: u64,
        /// The node's `key_bytes_max`.
        max: u64,
    },
    /// A value over the node's limit.
    #[error("a value of {len} bytes: values must be at most {max} bytes (value_bytes_max)")]
    ValueTooLarge {
        /// The value's length.
        len: u64,
        /// The node's `value_bytes_max`.
        max: u64,
    },
    /// The request as a whole is over the node's limit.
    #[error("a request of {bytes} bytes: split it; requests must be at most {max} bytes")]
    TooLarge {
        /// The request's [`Request::payload_bytes`].
        bytes: u64,
        /// The node's largest request.
        max: u64,
    },
    /// More elements than the log format can count (u32).
    #[error("a request of {count} keys or requests: at most {max} fit one log entry")]
    TooManyElements {
        /// The count.
        count: u64,
        /// `u32::MAX`.
        max: u64,
    },
}

impl Request {
    /// Bytes of keys and values the request carries, plus a small charge
    /// per key: what batching budgets with.
    pub fn payload_bytes(&self) -> usize {
        const PER_KEY: usize = 16;
        let kv = |k: &[u8], v: &[u8]| PER_KEY + k.len() + v.len();
        match self {
            Request::Put { key, value, .. }
            | Request::Set { key, value, .. }
            | Request::SetWithTtl { key, value, .. } => kv(key, value),
            Request::Append { key, value, .. } | Request::SetRange { key, value, .. } => {
                kv(key, value)
            }
            Request::IncrByFloat { key, increment } => kv(key, increment),
            Request::Rename { from, to, .. } => kv(from, to),
            Request::MSetNx { pairs } => pairs.iter().map(|(k, v)| kv(k, v)).sum(),
            Request::Read { keys } => keys.iter().map(|k| kv(k, &[])).sum(),
            Request::FlushAll => PER_KEY,
            Request::Transaction { watched, requests } => {
                watched
                    .iter()
                    .map(|w| kv(&w.key, w.seen.as_ref().map_or(&[][..], |(v, _)| v)))
                    .sum::<usize>()
                    + requests.iter().map(Request::payload_bytes).sum::<usize>()
            }
            Request::Delete { key }
            | Request::GetDel { key }
            | Request::GetEx { key, .. }
            | Request::ExpireWhen { key, .. }
            | Request::ExpireIn { key, .. }
            | Request::IncrBy { key, .. }
            | Request::Expire { key, .. }
            | Request::Persist { key } => kv(key, &[]),
            Request::Cas { key, expected, new } => {
                kv(key, new) + expected.as_ref().map_or(0, Vec::len)
            }
            Request::Batch(ops) => ops
                .iter()
                .map(|op| match op {
                    BatchOp::Put { key, value } => kv(key, value),
                    BatchOp::Delete { key } => kv(key, &[]),
                })
                .sum(),
            Request::DeleteMany { keys } => keys.iter().map(|k| kv(k, &[])).sum(),
            Request::Multi(reqs) => reqs.iter().map(Request::payload_bytes).sum(),
        }
    }

    /// Whether the log format can hold the request: the codec writes and
    /// reads exactly the requests this accepts (no empty or nested
    /// `Multi`, every length and count within u32).
    pub fn check_structure(&self) -> Result<(), InvalidRequest> {
        self.validate_in(&RequestLimits::FORMAT, Nesting::Top, true)
    }

    /// Checks the request where it enters a node (client API, forwarded
    /// write, proposer): [`Request::check_structure`], then `limits` on
    /// every key, value and on the whole. A request that passes is one
    /// every replica applies without consulting its own settings.
    /// A `Multi` is refused here: only the proposer forms one, from
    /// requests that each passed this check.
    pub fn validate(&self, limits: &RequestLimits) -> Result<(), InvalidRequest> {
        if matches!(self, Request::Multi(_)) {
            return Err(InvalidRequest::MultiFromClient);
        }
        self.validate_in(limits, Nesting::Top, false)?;
        let bytes = self.payload_bytes() as u64;
        if bytes > limits.request_bytes_max {
            return Err(InvalidRequest::TooLarge {
                bytes,
                max: limits.request_bytes_max,
            });
        }
        Ok(())
    }

    /// `structure_only`: what the codec can hold, where an empty key is
    /// fine (the engine refuses it at apply, on every node alike).
    fn validate_in(
        &self,
        limits: &RequestLimits,
        nesting: Nesting,
        structure_only: bool,
    ) -> Result<(), InvalidRequest> {
        let key = |k: &[u8]| {
            let len = k.len() as u64;
            if len == 0 && !structure_only {
                Err(InvalidRequest::EmptyKey {
                    max: limits.key_bytes_max,
                })
            } else if len > limits.key_bytes_max.min(u32::MAX as u64) {
                Err(InvalidRequest::KeyTooLarge {
                    len,
                    max: limits.key_bytes_max,
                })
            } else {
                Ok(())
            }
        };
        let value = |v: &[u8]| {
            let len = v.len() as u64;
            if len > limits.value_bytes_max.min(u32::MAX as u64) {
                Err(InvalidRequest::ValueTooLarge {
                    len,
                    max: limits.value_bytes_max,
                })
            } else {
                Ok(())
            }
        };
        let count = |n: usize| {
            if n as u64 > u32::MAX as u64 {
                Err(InvalidRequest::TooManyElements {
                    count: n as u64,
                    max: u32::MAX as u64,
                })
            } else {
                Ok(())
            }
        };
        match self {
            Request::Put {
                key: k, value: v, ..
            }
            | Request::Set {
                key: k, value: v, ..
            }
            | Request::SetWithTtl {
                key: k, value: v, ..
            } => {
                key(k)?;
                value(v)
            }
            Request::Append {
                key: k, value: v, ..
            }
            | Request::SetRange {
                key: k, value: v, ..
            }
            | Request::IncrByFloat {
                key: k,
                increment: v,
            } => {
                key(k)?;
                value(v)
            }
            Request::Rename { from, to, .. } => {
                key(from)?;
                key(to)
            }
            Request::MSetNx { pairs } => {
                count(pairs.len())?;
                pairs.iter().try_for_each(|(k, v)| {
                    key(k)?;
                    value(v)
                })
            }
            Request::Read { keys } => {
                count(keys.len())?;
                keys.iter().try_for_each(|k| key(k))
            }
            Request::FlushAll => Ok(()),
            Request::Transaction { .. } if nesting == Nesting::InTransaction => {
                Err(InvalidRequest::NestedTransaction)
            }
            Request::Transaction { requests, .. } if requests.is_empty() => {
                Err(InvalidRequest::EmptyTransaction)
            }
            Request::Transaction { watched, requests } => {
                count(watched.len())?;
                count(requests.len())?;
                watched.iter().try_for_each(|w| {
                    key(&w.key)?;
                    w.seen.as_ref().map_or(Ok(()), |(v, _)| value(v))
                })?;
                requests
                    .iter()
                    .try_for_each(|r| r.validate_in(limits, Nesting::InTransaction, structure_only))
            }
            Request::Delete { key: k }
            | Request::GetDel { key: k }
            | Request::GetEx { key: k, .. }
            | Request::ExpireWhen { key: k, .. }
            | Request::IncrBy { key: k, .. }
            | Request::Expire { key: k, .. }
            | Request::ExpireIn { key: k, .. }
            | Request::Persist { key: k } => key(k),
            Request::Cas {
                key: k,
                expected,
                new,
            } => {
                key(k)?;
                if let Some(e) = expected {
                    value(e)?;
                }
                value(new)
            }
            Request::Batch(ops) => {
                count(ops.len())?;
                ops.iter().try_for_each(|op| match op {
                    BatchOp::Put { key: k, value: v } => {
                        key(k)?;
                        value(v)
                    }
                    BatchOp::Delete { key: k } => key(k),
                })
            }
            Request::DeleteMany { keys } => {
                count(keys.len())?;
                keys.iter().try_for_each(|k| key(k))
            }
            Request::Multi(_) if nesting != Nesting::Top => Err(InvalidRequest::NestedMulti),
            Request::Multi(reqs) if reqs.is_empty() => Err(InvalidRequest::EmptyMulti),
            Request::Multi(reqs) => {
                count(reqs.len())?;
                reqs.iter()
                    .try_for_each(|r| r.validate_in(limits, Nesting::InMulti, structure_only))
            }
        }
    }

    /// INCR: `IncrBy` with a delta of 1.
    pub fn incr(key: impl Into<Vec<u8>>) -> Request {
        Request::IncrBy {
            key: key.into(),
            delta: 1,
        }
    }
}
