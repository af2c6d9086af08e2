//! Applying committed entries: each entry's request is planned as of the
//! entry's own time (`at_ms`) into one [`WriteBatch`] carrying the applied
//! marker, then written to the engine in one atomic step (see the TTL and
//! refusal rules in [`super`]'s module docs). A Multi entry's requests see
//! each other's writes through an overlay, because the entry's writes reach
//! the engine only at its end, as one batch.

use super::machine::StateMachine;
use crate::codec::encode_marker_at;
use crate::error::Result;
use crate::planted::NodeBug;
use crate::typ::{BatchOp, EntryPayload, Request, Response, SetCondition, Watched};
use ballast_storage::WriteBatch;
use bytes::Bytes;
use openraft::StoredMembership;
use std::sync::atomic::Ordering;

/// The first key of the user key range: every non-empty key sorts at or
/// after it (the engine refuses empty keys). The node keeps nothing of its
/// own among the engine's keys (applied markers and membership travel in
/// the manifest's applied marker), so FLUSHALL's range delete runs from
/// here to the end.
pub(crate) const USER_KEYS_START: &[u8] = b"\0";

/// The overlay's mark (under the empty key, which no request can name)
/// that an earlier request of the entry deleted every key: keys the overlay
/// does not hold read as absent from then on.
const FLUSHED: &[u8] = b"";

/// A key's value and expiry as of an entry's time.
pub(super) type Live = Option<(Bytes, Option<u64>)>;

/// What the earlier requests of one Multi entry wrote, by key (`None`:
/// deleted), so that a later request of the same entry reads it: the
/// entry's writes reach the engine only at the end, as one batch.
pub(super) type Overlay = std::collections::BTreeMap<Vec<u8>, Option<(Bytes, Option<u64>)>>;

/// Whether applying `req` reads the key's current value (everything but
/// blind writes).
fn reads_before_writing(req: &Request) -> bool {
    !matches!(
        req,
        Request::Put { .. }
            | Request::Batch(_)
            | Request::Set {
                condition: SetCondition::Always,
                return_old: false,
                ..
            }
            | Request::SetWithTtl {
                condition: SetCondition::Always,
                return_old: false,
                ..
            }
    )
}

/// A SET's arguments, its expiry made absolute.
struct SetArgs<'a> {
    key: &'a [u8],
    value: &'a [u8],
    expire_at_ms: Option<u64>,
    condition: SetCondition,
    return_old: bool,
}

/// When a SET's value expires, as of its entry's time `at_ms`: SET's own
/// absolute expiry, or SET with a TTL's deadline from `at_ms` (the same on
/// every replica; saturating: a TTL past the end of time never ends).
/// `None` (no expiry) for every other request.
fn set_expiry(req: &Request, at_ms: u64) -> Option<u64> {
    match req {
        Request::Set { expire_at_ms, .. } => *expire_at_ms,
        Request::SetWithTtl { ttl_ms, .. } => Some(at_ms.saturating_add(*ttl_ms)),
        _ => None,
    }
}

/// Records `batch`'s writes in `overlay`.
fn overlay_writes(overlay: &mut Overlay, batch: &WriteBatch) {
    use ballast_storage::key::ValueKind;
    for e in batch.iter() {
        let written = match e.kind {
            ValueKind::RangeDelete => {
                overlay.clear();
                overlay.insert(FLUSHED.to_vec(), None);
                continue;
            }
            ValueKind::Delete => None,
            ValueKind::Put => Some((Bytes::copy_from_slice(e.value), None)),
            ValueKind::PutExpiring => {
                let (at, value) = e.value.split_at(8);
                let at = u64::from_le_bytes(at.try_into().expect("8 bytes"));
                Some((Bytes::copy_from_slice(value), Some(at)))
            }
        };
        overlay.insert(e.key.to_vec(), written);
    }
}

impl StateMachine {
    /// `key`'s value and expiry as of `at_ms`: what `overlay` says of it
    /// (earlier writes of the same entry), else the engine's.
    pub(super) fn live(&self, overlay: &Overlay, key: &[u8], at_ms: u64) -> Result<Live> {
        match overlay.get(key) {
            Some(Some((_, Some(expire_at)))) if *expire_at <= at_ms => Ok(None),
            Some(written) => Ok(written.clone()),
            None if overlay.contains_key(FLUSHED) => Ok(None),
            None => Ok(self.db.get_entry_as_of(key, at_ms)?),
        }
    }

    /// Plans one entry's request as of `at_ms`: the batch to write and the
    /// answer. Reads see every earlier entry (each is written before the
    /// next is read).
    fn plan_entry(&self, req: &Request, at_ms: u64) -> Result<(WriteBatch, Response)> {
        match req {
            Request::Multi(reqs) => {
                let mut batch = WriteBatch::new();
                let answers =
                    self.plan_each(reqs, at_ms, &mut Overlay::new(), &mut batch, false)?;
                Ok((batch, Response::Multi(answers)))
            }
            Request::Transaction { watched, requests } => {
                self.plan_transaction(watched, requests, at_ms, &Overlay::new())
            }
            _ => self.plan(req, at_ms, &Overlay::new()),
        }
    }

    /// Plans `reqs` one after the other into `batch`, each seeing the
    /// writes of those before it through `overlay` (always when
    /// `overlay_all`, else only while a later request reads), and answers
    /// each on its own.
    fn plan_each(
        &self,
        reqs: &[Request],
        at_ms: u64,
        overlay: &mut Overlay,
        batch: &mut WriteBatch,
        overlay_all: bool,
    ) -> Result<Vec<Response>> {
        let mut answers = Vec::with_capacity(reqs.len());
        // Writes need to be in the overlay only if a later request reads.
        let last_reader = if overlay_all {
            Some(usize::MAX)
        } else {
            reqs.iter().rposition(reads_before_writing)
        };
        for (i, req) in reqs.iter().enumerate() {
            let (b, resp) = match req {
                Request::Transaction { watched, requests } => {
                    self.plan_transaction(watched, requests, at_ms, overlay)?
                }
                _ => self.plan(req, at_ms, overlay)?,
            };
            // Each request is refused on its own for what every replica
            // refuses alike (an empty key: a rule of the engine, not a
            // setting), so the entry's one batch never fails for the
            // others. Size limits were checked where the request entered;
            // checking them here, with this node's settings, would let
            // replicas configured differently apply the entry differently.
            let refused = if self.planted.has(NodeBug::ApplyChecksLocalLimits) {
                self.refused_by_local_limits(batch, &b)?
            } else if b.iter().any(|e| e.key.is_empty()) {
                Some(Response::Rejected(
                    ballast_storage::Error::EmptyKey.to_string(),
                ))
            } else {
                None
            };
            match refused {
                Some(r) => answers.push(r),
                None => {
                    if last_reader.is_some_and(|last| i < last) {
                        overlay_writes(overlay, &b);
                    }
                    batch.append(&b);
                    answers.push(resp);
                }
            }
        }
        Ok(answers)
    }

    /// MULTI ... EXEC as of `at_ms`, after the writes in `overlay`: if a
    /// watched key no longer holds what the client saw at WATCH time,
    /// nothing ([`Response::Aborted`]); else every request in order, each
    /// answered on its own (a refused one does not undo the others, as in
    /// Redis). The comparison is of value and expiry, so a change that
    /// was changed back (A to B to A) is not seen (README).
    fn plan_transaction(
        &self,
        watched: &[Watched],
        requests: &[Request],
        at_ms: u64,
        overlay: &Overlay,
    ) -> Result<(WriteBatch, Response)> {
        for w in watched {
            let now = self.live(overlay, &w.key, at_ms)?;
            let same = match (&now, &w.seen) {
                (None, None) => true,
                (Some((value, expiry)), Some((seen, seen_expiry))) => {
                    value[..] == seen[..] && expiry == seen_expiry
                }
                _ => false,
            };
            if !same && !self.planted.has(NodeBug::WatchIgnored) {
                return Ok((WriteBatch::new(), Response::Aborted));
            }
        }
        // The transaction's own reads see its earlier writes; those of a
        // Multi around it see the Multi's (a clone: bounded by one entry).
        let mut inner = overlay.clone();
        let mut batch = WriteBatch::new();
        let answers = self.plan_each(requests, at_ms, &mut inner, &mut batch, true)?;
        Ok((batch, Response::Multi(answers)))
    }

    /// The planted [`NodeBug::ApplyChecksLocalLimits`]: whether this
    /// node's own engine limits refuse `b` (after `batch`), as apply did
    /// before limits were checked where requests enter.
    fn refused_by_local_limits(
        &self,
        batch: &WriteBatch,
        b: &WriteBatch,
    ) -> Result<Option<Response>> {
        let together = (batch.encoded_len() + b.encoded_len()) as u64;
        match self.db.check_batch(b) {
            Ok(()) if together > self.db.batch_bytes_max() => {
                Ok(Some(Response::Rejected(format!(
                    "this write would take its log entry's batch to {together} bytes, \
                 over batch_bytes_max ({})",
                    self.db.batch_bytes_max()
                ))))
            }
            Ok(()) => Ok(None),
            Err(e) if is_input_error(&e) => Ok(Some(Response::Rejected(e.to_string()))),
            Err(e) => Err(e.into()),
        }
    }

    /// Plans one request applied as of `at_ms`, after the writes in
    /// `overlay`: the batch to write and the answer.
    fn plan(&self, req: &Request, at_ms: u64, overlay: &Overlay) -> Result<(WriteBatch, Response)> {
        let mut b = WriteBatch::new();
        let put = |b: &mut WriteBatch, key: &[u8], value: &[u8], expire_at_ms: Option<u64>| {
            match expire_at_ms {
                Some(at) => b.put_expiring(key, value, at),
                None => b.put(key, value),
            };
        };
        let resp = match req {
            Request::Put {
                key,
                value,
                expire_at_ms,
            } => {
                put(&mut b, key, value, *expire_at_ms);
                Response::Done
            }
            Request::Delete { key } => {
                let existed = self.live(overlay, key, at_ms)?.is_some();
                b.delete(key);
                Response::Existed(existed)
            }
            Request::Batch(ops) => {
                for op in ops {
                    match op {
                        BatchOp::Put { key, value } => b.put(key, value),
                        BatchOp::Delete { key } => b.delete(key),
                    };
                }
                Response::Done
            }
            Request::IncrBy { key, delta } => {
                let (cur, ttl) = match self.live(overlay, key, at_ms)? {
                    None => (Some(0), None),
                    Some((v, ttl)) => (redis_integer(&v), ttl),
                };
                match cur.map(|c| c.checked_add(*delta)) {
                    None => Response::Rejected("value is not an integer or out of range".into()),
                    Some(None) => {
                        Response::Rejected("increment or decrement would overflow".into())
                    }
                    Some(Some(n)) => {
                        // Like Redis, INCR keeps the key's TTL.
                        put(&mut b, key, n.to_string().as_bytes(), ttl);
                        Response::Integer(n)
                    }
                }
            }
            Request::Cas { key, expected, new } => {
                let current = self.live(overlay, key, at_ms)?.map(|(v, _)| v.to_vec());
                let swapped = current == *expected;
                if swapped {
                    // The new value has no TTL (documented in the module docs).
                    b.put(key, new);
                }
                Response::Cas { swapped, current }
            }
            Request::Expire { key, expire_at_ms } => {
                self.plan_expire(&mut b, key, *expire_at_ms, at_ms, overlay)?
            }
            // The deadline comes from the entry's time, the same on every
            // replica (saturating: a TTL past the end of time never ends).
            Request::ExpireIn { key, ttl_ms } => {
                self.plan_expire(&mut b, key, at_ms.saturating_add(*ttl_ms), at_ms, overlay)?
            }
            Request::Persist { key } => match self.live(overlay, key, at_ms)? {
                Some((v, Some(_))) => {
                    b.put(key, &v);
                    Response::Existed(true)
                }
                Some((_, None)) | None => Response::Existed(false),
            },
            // SET with a TTL is a SET whose deadline comes from the entry's
            // time (see `set_expiry`).
            Request::Set {
                key,
                value,
                condition,
                return_old,
                ..
            }
            | Request::SetWithTtl {
                key,
                value,
                condition,
                return_old,
                ..
            } => {
                let set = SetArgs {
                    key,
                    value,
                    expire_at_ms: set_expiry(req, at_ms),
                    condition: *condition,
                    return_old: *return_old,
                };
                self.plan_set(&mut b, set, at_ms, overlay)?
            }
            // Only nested (plan_entry and plan_each take the outer ones);
            // the codec refuses such entries, so this is never logged.
            Request::Multi(_) => Response::Rejected("a multi inside a multi".into()),
            Request::Transaction { .. } => {
                Response::Rejected("a transaction inside a transaction".into())
            }
            Request::GetDel { .. }
            | Request::GetEx { .. }
            | Request::Append { .. }
            | Request::SetRange { .. }
            | Request::IncrByFloat { .. }
            | Request::Rename { .. }
            | Request::MSetNx { .. }
            | Request::ExpireWhen { .. }
            | Request::Read { .. } => self.plan_string(&mut b, req, at_ms, overlay)?,
            Request::FlushAll => {
                b.delete_range(USER_KEYS_START, None);
                Response::Done
            }
            Request::DeleteMany { keys } => {
                // A key named twice counts once, as in Redis: the second
                // occurrence finds it already gone.
                let mut gone = std::collections::BTreeSet::new();
                let mut existed = 0i64;
                for key in keys {
                    if gone.insert(key.as_slice()) && self.live(overlay, key, at_ms)?.is_some() {
                        existed += 1;
                    }
                    b.delete(key);
                }
                Response::Integer(existed)
            }
        };
        Ok((b, resp))
    }

    /// EXPIRE at `expire_at_ms` of `key`, applied as of `at_ms`.
    fn plan_expire(
        &self,
        b: &mut WriteBatch,
        key: &[u8],
        expire_at_ms: u64,
        at_ms: u64,
        overlay: &Overlay,
    ) -> Result<Response> {
        Ok(match self.live(overlay, key, at_ms)? {
            Some(_) if expire_at_ms <= at_ms => {
                // Redis deletes a key given a TTL in the past.
                b.delete(key);
                Response::Existed(true)
            }
            Some((v, _)) => {
                b.put_expiring(key, &v, expire_at_ms);
                Response::Existed(true)
            }
            None => Response::Existed(false),
        })
    }

    /// SET (any form) applied as of `at_ms`.
    fn plan_set(
        &self,
        b: &mut WriteBatch,
        set: SetArgs<'_>,
        at_ms: u64,
        overlay: &Overlay,
    ) -> Result<Response> {
        // A plain SET needs no read of the old value: skip the engine
        // lookup (most of a blind write's apply cost).
        let needs_current = set.return_old || set.condition != SetCondition::Always;
        let current = if needs_current {
            self.live(overlay, set.key, at_ms)?.map(|(v, _)| v)
        } else {
            None
        };
        let written = match set.condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => current.is_none(),
            SetCondition::IfPresent => current.is_some(),
        };
        if written {
            match set.expire_at_ms {
                Some(at) => b.put_expiring(set.key, set.value, at),
                None => b.put(set.key, set.value),
            };
        }
        Ok(Response::Set {
            written,
            old: if set.return_old {
                current.map(|v| v.to_vec())
            } else {
                None
            },
        })
    }

    /// Applies one committed entry and returns its answer. This is what
    /// [`openraft::storage::RaftStateMachine::apply`] does for each entry of its stream.
    pub async fn apply_entry(&mut self, entry: crate::typ::Entry) -> Result<Response> {
        let (mut batch, resp) = match &entry.payload {
            EntryPayload::Blank => (WriteBatch::new(), Response::Done),
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                (WriteBatch::new(), Response::Done)
            }
            EntryPayload::Normal(p) => {
                // The entry's own time: apply reads and computes relative
                // deadlines as of it, never the clock. The proposer stamps
                // no entry below the last one in the log, so the horizon
                // (the largest time applied) is the time of the last
                // entry, and no later entry reads below it: a key a flush
                // dropped at the horizon is one every later entry would
                // have found expired.
                self.applied_at_ms.fetch_max(p.at_ms, Ordering::AcqRel);
                let at_ms = p.at_ms;
                self.plan_entry(&p.request, at_ms)?
            }
        };
        self.applied = Some(entry.log_id);
        self.publish_applied();
        let at_ms = self.applied_at_ms();
        let marker = encode_marker_at(self.applied.as_ref(), &self.membership, Some(at_ms));
        batch.set_applied_marker(&marker);
        let written = if self.planted.has(NodeBug::ApplyChecksLocalLimits) {
            self.db.write(batch).await
        } else {
            // No local limit applies to what the log holds (see
            // `Db::write_from_log`); what it still refuses, it refuses on
            // every replica alike.
            self.db.write_from_log(batch).await
        };
        // Once the entry is in the engine, keys expired at or before its
        // time may go at the next flush or compaction: every later entry
        // reads them as absent on every replica.
        let horizon = || self.db.set_expiry_horizon_ms(at_ms);
        match written {
            Ok(()) => {
                horizon();
                Ok(resp)
            }
            Err(e) if is_input_error(&e) => {
                // The request itself is unacceptable; the entry still counts
                // as applied, so the marker moves on without its writes.
                let mut only_marker = WriteBatch::new();
                only_marker.set_applied_marker(&marker);
                self.db.write(only_marker).await?;
                horizon();
                Ok(Response::Rejected(e.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A stored value as an integer, read as Redis's `string2ll` reads it:
/// only the canonical decimal form counts (`5`, `-5`, `0`), so `+5`,
/// `007`, `-0` and ` 5` are not integers for INCR, as in Redis. Rust's
/// `i64::from_str` alone would take the first three.
fn redis_integer(value: &[u8]) -> Option<i64> {
    let magnitude = value.strip_prefix(b"-").unwrap_or(value);
    let canonical = match magnitude {
        [b'0'] => magnitude.len() == value.len(),
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

pub(super) fn is_input_error(e: &ballast_storage::Error) -> bool {
    use ballast_storage::Error as E;
    matches!(
        e,
        E::EmptyKey | E::KeyTooLarge { .. } | E::ValueTooLarge { .. } | E::BatchTooLarge { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::redis_integer;

    #[test]
    fn only_canonical_decimals_are_integers_for_incr() {
        for (text, parsed) in [
            ("0", Some(0)),
            ("5", Some(5)),
            ("-5", Some(-5)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("+5", None),
            ("007", None),
            ("-0", None),
            (" 5", None),
            ("5 ", None),
            ("", None),
            ("-", None),
            ("1e3", None),
        ] {
            assert_eq!(redis_integer(text.as_bytes()), parsed, "{text:?}");
        }
    }
}
