//! Applying the request kinds of the Redis string, keyspace and
//! transaction commands (GETDEL, GETEX, APPEND, SETRANGE, INCRBYFLOAT,
//! RENAME, MSETNX, EXPIRE with conditions, reads inside a transaction):
//! each one planned as of its entry's time into a batch, as
//! [`super::apply`] plans the others, and answered as Redis 7 answers.
//! Every decision reads the log's state (through the entry's overlay),
//! never a local setting or clock.

use super::apply::{Live, Overlay};
use super::float::incr_by_float;
use super::machine::StateMachine;
use crate::error::Result;
#[cfg(test)]
use crate::typ::Deadline;
use crate::typ::{ExpireCondition, Request, Response};
use ballast_storage::WriteBatch;

/// Redis's text when a string would pass its size limit.
const STRING_TOO_LONG: &str = "string exceeds maximum allowed size (proto-max-bulk-len)";

/// Redis's text for RENAME of a missing key.
const NO_SUCH_KEY: &str = "no such key";

/// Writes `value` with `expire_at_ms` (none: no expiry).
fn put(b: &mut WriteBatch, key: &[u8], value: &[u8], expire_at_ms: Option<u64>) {
    match expire_at_ms {
        Some(at) => b.put_expiring(key, value, at),
        None => b.put(key, value),
    };
}

/// Whether EXPIRE's `condition` lets a key whose expiry is `current`
/// (`None`: never) take the new deadline `new_ms`; Redis 7's checks in
/// its order (`expireGenericCommand`).
fn expire_allowed(condition: ExpireCondition, current: Option<u64>, new_ms: u64) -> bool {
    if condition.nx && current.is_some() {
        return false;
    }
    if condition.xx && current.is_none() {
        return false;
    }
    // No expiry counts as forever: never earlier than a new one (GT
    // refuses), always later (LT allows).
    if condition.gt && current.is_none_or(|current| new_ms <= current) {
        return false;
    }
    if condition.lt && current.is_some_and(|current| new_ms >= current) {
        return false;
    }
    true
}

impl StateMachine {
    /// Plans `req`, one of this module's kinds, as of `at_ms` after the
    /// writes in `overlay`.
    pub(super) fn plan_string(
        &self,
        b: &mut WriteBatch,
        req: &Request,
        at_ms: u64,
        overlay: &Overlay,
    ) -> Result<Response> {
        let live = |key: &[u8]| -> Result<Live> { self.live(overlay, key, at_ms) };
        Ok(match req {
            Request::GetDel { key } => match live(key)? {
                Some((value, _)) => {
                    b.delete(key);
                    Response::Value(Some(value.to_vec()))
                }
                None => Response::Value(None),
            },
            Request::GetEx { key, expiry } => match live(key)? {
                None => Response::Value(None),
                Some((value, current)) => {
                    match expiry.map(|deadline| deadline.at(at_ms)) {
                        // PERSIST writes only if there is an expiry to drop.
                        None if current.is_some() => b.put(key, &value),
                        None => b,
                        // As Redis: a deadline already passed deletes the key.
                        Some(at) if at <= at_ms => b.delete(key),
                        Some(at) => b.put_expiring(key, &value, at),
                    };
                    Response::Value(Some(value.to_vec()))
                }
            },
            Request::Append {
                key,
                value,
                value_bytes_max,
            } => {
                let (current, expiry) = live(key)?.unwrap_or_default();
                let length = current.len() as u64 + value.len() as u64;
                if length > *value_bytes_max {
                    Response::Rejected(STRING_TOO_LONG.to_string())
                } else {
                    let mut joined = Vec::with_capacity(length as usize);
                    joined.extend_from_slice(&current);
                    joined.extend_from_slice(value);
                    // APPEND keeps the key's expiry, as in Redis.
                    put(b, key, &joined, expiry);
                    Response::Integer(length as i64)
                }
            }
            Request::SetRange { key, offset, value } => {
                let current = live(key)?;
                let current_len = current.as_ref().map_or(0, |(v, _)| v.len() as u64);
                let end = offset.saturating_add(value.len() as u64);
                if value.is_empty() {
                    // Redis writes nothing, not even a missing key.
                    Response::Integer(current_len as i64)
                } else if end > u64::from(u32::MAX) {
                    // The node checked its value limit where the request
                    // entered; this bound is the log format's, so a
                    // corrupt or foreign entry cannot ask for a huge
                    // allocation.
                    Response::Rejected(STRING_TOO_LONG.to_string())
                } else {
                    let (mut bytes, expiry) = match current {
                        Some((v, expiry)) => (v.to_vec(), expiry),
                        None => (Vec::new(), None),
                    };
                    let (offset, end) = (*offset as usize, end as usize);
                    if bytes.len() < end {
                        bytes.resize(end, 0);
                    }
                    bytes[offset..end].copy_from_slice(value);
                    put(b, key, &bytes, expiry);
                    Response::Integer(bytes.len() as i64)
                }
            }
            Request::IncrByFloat { key, increment } => {
                let current = live(key)?;
                let text = current.as_ref().map(|(v, _)| &v[..]);
                match incr_by_float(text, increment) {
                    Ok(sum) => {
                        // Like INCR, INCRBYFLOAT keeps the key's expiry.
                        put(b, key, sum.as_bytes(), current.and_then(|(_, e)| e));
                        Response::Value(Some(sum.into_bytes()))
                    }
                    Err(e) => Response::Rejected(e.text().to_string()),
                }
            }
            Request::Rename {
                from,
                to,
                only_if_absent,
            } => match live(from)? {
                None => Response::Rejected(NO_SUCH_KEY.to_string()),
                Some(_) if from == to => {
                    // Redis: renaming a key to itself changes nothing;
                    // RENAMENX answers 0 (the target exists).
                    if *only_if_absent {
                        Response::Existed(false)
                    } else {
                        Response::Done
                    }
                }
                Some(_) if *only_if_absent && live(to)?.is_some() => Response::Existed(false),
                Some((value, expiry)) => {
                    // The value moves with its expiry, as in Redis.
                    put(b, to, &value, expiry);
                    b.delete(from);
                    if *only_if_absent {
                        Response::Existed(true)
                    } else {
                        Response::Done
                    }
                }
            },
            Request::MSetNx { pairs } => {
                let mut any = false;
                for (key, _) in pairs {
                    if live(key)?.is_some() {
                        any = true;
                        break;
                    }
                }
                if !any {
                    for (key, value) in pairs {
                        b.put(key, value);
                    }
                }
                Response::Existed(!any)
            }
            Request::ExpireWhen {
                key,
                deadline,
                condition,
            } => match live(key)? {
                None => Response::Existed(false),
                Some((value, current)) => {
                    let new_ms = deadline.at(at_ms);
                    if !expire_allowed(*condition, current, new_ms) {
                        Response::Existed(false)
                    } else {
                        if new_ms <= at_ms {
                            // Redis deletes a key given a deadline passed.
                            b.delete(key);
                        } else {
                            b.put_expiring(key, &value, new_ms);
                        }
                        Response::Existed(true)
                    }
                }
            },
            Request::Read { keys } => {
                let mut values = Vec::with_capacity(keys.len());
                for key in keys {
                    values.push(live(key)?.map(|(v, e)| (v.to_vec(), e)));
                }
                Response::Values(values)
            }
            // `plan` sends only this module's kinds here.
            other => Response::Rejected(format!("internal error: {other} is not a string request")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expire_conditions_follow_redis_7() {
        let c = |nx, xx, gt, lt| ExpireCondition { nx, xx, gt, lt };
        // NX: only without an expiry.
        assert!(expire_allowed(c(true, false, false, false), None, 5));
        assert!(!expire_allowed(c(true, false, false, false), Some(9), 5));
        // XX: only with one.
        assert!(!expire_allowed(c(false, true, false, false), None, 5));
        assert!(expire_allowed(c(false, true, false, false), Some(9), 5));
        // GT: no expiry is forever, so never greater.
        assert!(!expire_allowed(c(false, false, true, false), None, 5));
        assert!(!expire_allowed(c(false, false, true, false), Some(9), 9));
        assert!(expire_allowed(c(false, false, true, false), Some(9), 10));
        // LT: anything is less than forever.
        assert!(expire_allowed(c(false, false, false, true), None, 5));
        assert!(!expire_allowed(c(false, false, false, true), Some(9), 9));
        assert!(expire_allowed(c(false, false, false, true), Some(9), 8));
        // XX GT together.
        assert!(!expire_allowed(c(false, true, true, false), None, 5));
        assert_eq!(Deadline::In(0).at(7), 7);
    }
}
