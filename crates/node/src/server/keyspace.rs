//! The string and keyspace commands that Redis 7 clients use beside the
//! first set (SETNX, GETSET, STRLEN, GETRANGE, TYPE, TOUCH, EXPIREAT,
//! EXPIRETIME, KEYS): each one is a read, or one replicated write whose
//! condition is evaluated at apply, shaped exactly as Redis answers.
//!
//! Limits: KEYS reads the keyspace in pages of `scan_count_max` keys and
//! refuses, with what to do instead, once the reply would pass
//! `reply_bytes_max`; nothing else here holds more than one value.

use bytes::Bytes;

use super::replies::{api_error_reply, byte_range, Step};
use super::shared::Shared;
use crate::api::{KvApi, Value};
use crate::resp::Reply;

/// Per-key charge in KEYS's reply budget: the bulk header and CRLFs.
const KEYS_REPLY_OVERHEAD_BYTES: usize = 16;

impl<A: KvApi> Shared<A> {
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
