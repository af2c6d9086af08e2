//! The string and keyspace commands that Redis 7 clients use beside the
//! first set (SETNX, GETSET, STRLEN, GETRANGE, TYPE, TOUCH, EXPIREAT,
//! EXPIRETIME, KEYS): each one is a read, or one replicated write whose
//! condition is evaluated at apply, shaped exactly as Redis answers.
//!
//! Limits: KEYS reads the keyspace in pages of `scan_count_max` keys and
//! refuses, with what to do instead, once the reply would pass
//! `reply_bytes_max`; nothing else here holds more than one value.

use ballast_raft::{Request, Response, SetCondition};
use bytes::Bytes;

use super::execute::{api_error_reply, unexpected, Step};
use super::shared::Shared;
use crate::api::{KvApi, Ordered, Value};
use crate::command::TimeUnit;
use crate::resp::Reply;

/// Per-key charge in KEYS's reply budget: the bulk header and CRLFs.
const KEYS_REPLY_OVERHEAD_BYTES: usize = 16;

impl<A: KvApi> Shared<A> {
    /// SETNX (`get` false: 1 or 0) and GETSET (`get` true: the old value).
    pub(super) async fn set_and_answer(
        &self,
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
        get: bool,
        ordered: Ordered,
    ) -> Step<Reply> {
        self.check_key(&key)?;
        self.check_value(&value)?;
        let request = Request::Set {
            key: key.to_vec(),
            value: value.to_vec(),
            expire_at_ms: None,
            condition,
            return_old: get,
        };
        Ok(match self.write(request, ordered).await? {
            Response::Set { old, .. } if get => {
                old.map_or(Reply::NullBulk, |old| Reply::Bulk(old.into()))
            }
            Response::Set { written, .. } => Reply::Integer(i64::from(written)),
            other => unexpected(other),
        })
    }

    /// One key's live value, if any.
    pub(super) async fn read_one(&self, key: Bytes) -> Step<Option<Value>> {
        Ok(self.read(vec![key]).await?.pop().flatten())
    }

    /// STRLEN.
    pub(super) async fn strlen(&self, key: Bytes) -> Step<Reply> {
        let length = self.read_one(key).await?.map_or(0, |v| v.value.len());
        Ok(Reply::Integer(i64::try_from(length).unwrap_or(i64::MAX)))
    }

    /// GETRANGE, with Redis's index rules: negative indexes count from the
    /// end, both ends are clamped, and an empty range (or a missing key)
    /// is an empty string.
    pub(super) async fn get_range(&self, key: Bytes, start: i64, end: i64) -> Step<Reply> {
        let value = self
            .read_one(key)
            .await?
            .map(|v| v.value)
            .unwrap_or_default();
        Ok(Reply::Bulk(byte_range(&value, start, end)))
    }

    /// TYPE: ballast stores strings only.
    pub(super) async fn type_of(&self, key: Bytes) -> Step<Reply> {
        let name = if self.read_one(key).await?.is_some() {
            "string"
        } else {
            "none"
        };
        Ok(Reply::Simple(name.to_string()))
    }

    /// EXPIRETIME and PEXPIRETIME: -2 missing, -1 without expiry.
    pub(super) async fn expire_time(&self, key: Bytes, unit: TimeUnit) -> Step<Reply> {
        Ok(Reply::Integer(match self.read_one(key).await? {
            None => -2,
            Some(Value {
                expire_at_ms: None, ..
            }) => -1,
            Some(Value {
                expire_at_ms: Some(at_ms),
                ..
            }) => {
                let at_ms = i64::try_from(at_ms).unwrap_or(i64::MAX);
                match unit {
                    TimeUnit::Milliseconds => at_ms,
                    // Redis rounds to the nearest second here too.
                    TimeUnit::Seconds => at_ms.saturating_add(500) / 1000,
                }
            }
        }))
    }

    /// TOUCH: how many of the keys exist, repeats counted (as EXISTS).
    pub(super) async fn touch(&self, keys: Vec<Bytes>) -> Step<Reply> {
        let present = self.read(keys).await?.iter().flatten().count();
        Ok(Reply::Integer(i64::try_from(present).unwrap_or(i64::MAX)))
    }

    /// EXPIREAT and PEXPIREAT: an absolute deadline, in the log as it is;
    /// apply deletes the key when the deadline is not after the entry's
    /// time, as Redis does for a time in the past.
    pub(super) async fn expire_at(&self, key: Bytes, at_ms: i64, ordered: Ordered) -> Step<Reply> {
        let request = Request::Expire {
            key: key.to_vec(),
            // Before the epoch is in the past like any other past time.
            expire_at_ms: u64::try_from(at_ms).unwrap_or(0),
        };
        Ok(match self.write(request, ordered).await? {
            Response::Existed(existed) => Reply::Integer(i64::from(existed)),
            other => unexpected(other),
        })
    }

    /// KEYS: every live key matching `pattern`, in key order (Redis's order
    /// is its hash table's; clients must not rely on it). Read page by
    /// page, so it is not one snapshot: a key written meanwhile may or
    /// may not be listed, as with SCAN.
    pub(super) async fn keys(&self, pattern: Bytes) -> Step<Reply> {
        let every = crate::glob::matches_every_key(&pattern);
        let mut start = Bytes::new();
        let mut keys = Vec::new();
        let mut reply_bytes = 0usize;
        loop {
            let page = self
                .api
                .scan_keys(
                    start,
                    self.config.scan_count_max,
                    self.config.read_consistency,
                )
                .await
                .map_err(|error| api_error_reply(&error))?;
            for key in page.keys {
                if every || crate::glob::glob_match(&pattern, &key) {
                    reply_bytes = reply_bytes.saturating_add(key.len() + KEYS_REPLY_OVERHEAD_BYTES);
                    if reply_bytes > self.config.reply_bytes_max {
                        return Err(Reply::Error(format!(
                            "ERR KEYS reply is over the limit of {} bytes; use SCAN with MATCH instead",
                            self.config.reply_bytes_max
                        )));
                    }
                    keys.push(Reply::Bulk(key));
                }
            }
            match page.next {
                Some(next) => start = next,
                None => return Ok(Reply::Array(keys)),
            }
        }
    }
}

/// GETRANGE's slice of `value` (Redis's `getrangeCommand`).
fn byte_range(value: &Bytes, start: i64, end: i64) -> Bytes {
    let length = i64::try_from(value.len()).unwrap_or(i64::MAX);
    if start < 0 && end < 0 && start > end {
        return Bytes::new();
    }
    let from_end = |index: i64| {
        if index < 0 {
            length.saturating_add(index).max(0)
        } else {
            index
        }
    };
    let start = from_end(start);
    let end = from_end(end).min(length - 1);
    if length == 0 || start > end {
        return Bytes::new();
    }
    // 0 <= start <= end < length here, so both convert.
    let (start, end) = (start as usize, end as usize);
    value.slice(start..=end)
}

#[cfg(test)]
mod tests {
    use super::byte_range;
    use bytes::Bytes;

    #[test]
    fn getrange_follows_redis_index_rules() {
        let value = Bytes::from_static(b"This is a string");
        let range = |start, end| byte_range(&value, start, end);
        assert_eq!(range(0, 3), "This");
        assert_eq!(range(-3, -1), "ing");
        assert_eq!(range(0, -1), "This is a string");
        assert_eq!(range(10, 100), "string");
        assert_eq!(range(5, 3), "");
        assert_eq!(range(-1, -5), "");
        assert_eq!(range(-100, 2), "Thi");
        assert_eq!(range(i64::MIN, i64::MAX), "This is a string");
        assert_eq!(byte_range(&Bytes::new(), 0, -1), "");
    }
}
