//! The request codec: one [`Request`] (the body of a normal entry, after
//! its `at_ms`), as tag byte then fields. Byte layout in
//! `FORMAT-raftlog.md`, "Requests"; keep the two in step.
//!
//! Limits: counts (batch ops, keys, the requests of a Multi) are bounded by
//! the bytes left (`ByteReader::count`); a Multi is never empty and
//! never nested, on either side.

use super::write::{put_bytes, put_len, put_opt_u64};
use crate::byte_reader::{malformed, ByteReader, DecodeError};
use crate::typ::{BatchOp, Deadline, ExpireCondition, Request, SetCondition, Watched};

const REQ_PUT: u8 = 1;
const REQ_DELETE: u8 = 2;
const REQ_BATCH: u8 = 3;
const REQ_INCR_BY: u8 = 4;
const REQ_CAS: u8 = 5;
const REQ_EXPIRE: u8 = 6;
const REQ_PERSIST: u8 = 7;
const REQ_SET: u8 = 8;
const REQ_DELETE_MANY: u8 = 9;
pub(super) const REQ_MULTI: u8 = 10;
const REQ_SET_WITH_TTL: u8 = 11;
const REQ_EXPIRE_IN: u8 = 12;
// Tags 13 to 22 came with the Redis string and transaction commands: a
// node that predates them refuses such an entry as malformed (see
// FORMAT-raftlog.md, "Rolling upgrades"); the tags above never change.
const REQ_GET_DEL: u8 = 13;
const REQ_GET_EX: u8 = 14;
const REQ_APPEND: u8 = 15;
const REQ_SET_RANGE: u8 = 16;
const REQ_INCR_BY_FLOAT: u8 = 17;
const REQ_RENAME: u8 = 18;
const REQ_MSET_NX: u8 = 19;
const REQ_EXPIRE_WHEN: u8 = 20;
const REQ_READ: u8 = 21;
const REQ_TRANSACTION: u8 = 22;
/// FLUSHALL (issue 13): no body. Older nodes refuse the tag as unknown.
const REQ_FLUSH_ALL: u8 = 23;

const DEADLINE_PERSIST: u8 = 0;
const DEADLINE_AT: u8 = 1;
const DEADLINE_IN: u8 = 2;

const EXPIRE_NX: u8 = 1;
const EXPIRE_XX: u8 = 2;
const EXPIRE_GT: u8 = 4;
const EXPIRE_LT: u8 = 8;

const SET_ALWAYS: u8 = 0;
const SET_IF_ABSENT: u8 = 1;
const SET_IF_PRESENT: u8 = 2;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

type DResult<T> = Result<T, DecodeError>;

/// Appends the encoding of `req` to `dst`.
pub fn encode_request(dst: &mut Vec<u8>, req: &Request) {
    match req {
        Request::Put {
            key,
            value,
            expire_at_ms,
        } => {
            dst.push(REQ_PUT);
            put_bytes(dst, key);
            put_bytes(dst, value);
            put_opt_u64(dst, *expire_at_ms);
        }
        Request::Delete { key } => {
            dst.push(REQ_DELETE);
            put_bytes(dst, key);
        }
        Request::Batch(ops) => {
            dst.push(REQ_BATCH);
            put_len(dst, ops.len());
            for op in ops {
                match op {
                    BatchOp::Put { key, value } => {
                        dst.push(OP_PUT);
                        put_bytes(dst, key);
                        put_bytes(dst, value);
                    }
                    BatchOp::Delete { key } => {
                        dst.push(OP_DELETE);
                        put_bytes(dst, key);
                    }
                }
            }
        }
        Request::IncrBy { key, delta } => {
            dst.push(REQ_INCR_BY);
            put_bytes(dst, key);
            dst.extend_from_slice(&delta.to_le_bytes());
        }
        Request::Cas { key, expected, new } => {
            dst.push(REQ_CAS);
            put_bytes(dst, key);
            match expected {
                None => dst.push(0),
                Some(v) => {
                    dst.push(1);
                    put_bytes(dst, v);
                }
            }
            put_bytes(dst, new);
        }
        Request::Expire { key, expire_at_ms } => {
            dst.push(REQ_EXPIRE);
            put_bytes(dst, key);
            dst.extend_from_slice(&expire_at_ms.to_le_bytes());
        }
        Request::Persist { key } => {
            dst.push(REQ_PERSIST);
            put_bytes(dst, key);
        }
        Request::Set {
            key,
            value,
            expire_at_ms,
            condition,
            return_old,
        } => {
            dst.push(REQ_SET);
            put_bytes(dst, key);
            put_bytes(dst, value);
            put_opt_u64(dst, *expire_at_ms);
            dst.push(set_condition_byte(*condition));
            dst.push(u8::from(*return_old));
        }
        Request::SetWithTtl {
            key,
            value,
            ttl_ms,
            condition,
            return_old,
        } => {
            dst.push(REQ_SET_WITH_TTL);
            put_bytes(dst, key);
            put_bytes(dst, value);
            dst.extend_from_slice(&ttl_ms.to_le_bytes());
            dst.push(set_condition_byte(*condition));
            dst.push(u8::from(*return_old));
        }
        Request::ExpireIn { key, ttl_ms } => {
            dst.push(REQ_EXPIRE_IN);
            put_bytes(dst, key);
            dst.extend_from_slice(&ttl_ms.to_le_bytes());
        }
        Request::DeleteMany { keys } => {
            dst.push(REQ_DELETE_MANY);
            put_len(dst, keys.len());
            for k in keys {
                put_bytes(dst, k);
            }
        }
        Request::GetDel { key } => {
            dst.push(REQ_GET_DEL);
            put_bytes(dst, key);
        }
        Request::GetEx { key, expiry } => {
            dst.push(REQ_GET_EX);
            put_bytes(dst, key);
            put_deadline(dst, *expiry);
        }
        Request::Append {
            key,
            value,
            value_bytes_max,
        } => {
            dst.push(REQ_APPEND);
            put_bytes(dst, key);
            put_bytes(dst, value);
            dst.extend_from_slice(&value_bytes_max.to_le_bytes());
        }
        Request::SetRange { key, offset, value } => {
            dst.push(REQ_SET_RANGE);
            put_bytes(dst, key);
            dst.extend_from_slice(&offset.to_le_bytes());
            put_bytes(dst, value);
        }
        Request::IncrByFloat { key, increment } => {
            dst.push(REQ_INCR_BY_FLOAT);
            put_bytes(dst, key);
            put_bytes(dst, increment);
        }
        Request::Rename {
            from,
            to,
            only_if_absent,
        } => {
            dst.push(REQ_RENAME);
            put_bytes(dst, from);
            put_bytes(dst, to);
            dst.push(u8::from(*only_if_absent));
        }
        Request::MSetNx { pairs } => {
            dst.push(REQ_MSET_NX);
            put_len(dst, pairs.len());
            for (k, v) in pairs {
                put_bytes(dst, k);
                put_bytes(dst, v);
            }
        }
        Request::ExpireWhen {
            key,
            deadline,
            condition,
        } => {
            dst.push(REQ_EXPIRE_WHEN);
            put_bytes(dst, key);
            put_deadline(dst, Some(*deadline));
            let flag = |on: bool, bit: u8| if on { bit } else { 0 };
            dst.push(
                flag(condition.nx, EXPIRE_NX)
                    | flag(condition.xx, EXPIRE_XX)
                    | flag(condition.gt, EXPIRE_GT)
                    | flag(condition.lt, EXPIRE_LT),
            );
        }
        Request::FlushAll => dst.push(REQ_FLUSH_ALL),
        Request::Read { keys } => {
            dst.push(REQ_READ);
            put_len(dst, keys.len());
            for k in keys {
                put_bytes(dst, k);
            }
        }
        Request::Transaction { watched, requests } => {
            // Never empty, never nested, never holding a Multi: as for
            // Multi, `check_structure` refuses what the decoder would.
            dst.push(REQ_TRANSACTION);
            put_len(dst, watched.len());
            for w in watched {
                put_bytes(dst, &w.key);
                match &w.seen {
                    None => dst.push(0),
                    Some((value, expire_at_ms)) => {
                        dst.push(1);
                        put_bytes(dst, value);
                        put_opt_u64(dst, *expire_at_ms);
                    }
                }
            }
            put_len(dst, requests.len());
            for r in requests {
                encode_request(dst, r);
            }
        }
        Request::Multi(reqs) => {
            // Never empty, never nested: the decoder refuses both, and so
            // does `Request::check_structure`, which the proposer runs on
            // every entry before proposing it (the codec test pairs the
            // two). Writing such a request anyway would be a poison entry.
            dst.push(REQ_MULTI);
            put_len(dst, reqs.len());
            for r in reqs {
                encode_request(dst, r);
            }
        }
    }
}

/// A deadline, or (`None`) PERSIST: a kind byte, then the u64 if any.
fn put_deadline(dst: &mut Vec<u8>, deadline: Option<Deadline>) {
    match deadline {
        None => dst.push(DEADLINE_PERSIST),
        Some(Deadline::At(ms)) => {
            dst.push(DEADLINE_AT);
            dst.extend_from_slice(&ms.to_le_bytes());
        }
        Some(Deadline::In(ms)) => {
            dst.push(DEADLINE_IN);
            dst.extend_from_slice(&ms.to_le_bytes());
        }
    }
}

fn decode_deadline(r: &mut ByteReader<'_>) -> DResult<Option<Deadline>> {
    Ok(match r.u8("deadline kind")? {
        DEADLINE_PERSIST => None,
        DEADLINE_AT => Some(Deadline::At(r.u64("deadline")?)),
        DEADLINE_IN => Some(Deadline::In(r.u64("deadline")?)),
        k => return malformed(format!("unknown deadline kind {k}")),
    })
}

fn decode_expire_condition(r: &mut ByteReader<'_>) -> DResult<ExpireCondition> {
    let bits = r.u8("expire condition")?;
    if bits & !(EXPIRE_NX | EXPIRE_XX | EXPIRE_GT | EXPIRE_LT) != 0 {
        return malformed(format!("unknown expire condition bits {bits:#x}"));
    }
    Ok(ExpireCondition {
        nx: bits & EXPIRE_NX != 0,
        xx: bits & EXPIRE_XX != 0,
        gt: bits & EXPIRE_GT != 0,
        lt: bits & EXPIRE_LT != 0,
    })
}

fn set_condition_byte(c: SetCondition) -> u8 {
    match c {
        SetCondition::Always => SET_ALWAYS,
        SetCondition::IfAbsent => SET_IF_ABSENT,
        SetCondition::IfPresent => SET_IF_PRESENT,
    }
}

fn decode_set_condition(r: &mut ByteReader<'_>) -> DResult<SetCondition> {
    Ok(match r.u8("set condition")? {
        SET_ALWAYS => SetCondition::Always,
        SET_IF_ABSENT => SetCondition::IfAbsent,
        SET_IF_PRESENT => SetCondition::IfPresent,
        c => return malformed(format!("unknown set condition {c}")),
    })
}

fn decode_flag(r: &mut ByteReader<'_>, what: &str) -> DResult<bool> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        f => malformed(format!("bad flag {f}")),
    }
}

/// Decodes one request from the front of `r`.
pub(super) fn decode_request(r: &mut ByteReader<'_>) -> DResult<Request> {
    decode_request_in(r, Level::Top)
}

/// Where a request sits: inside a Multi another Multi is corruption,
/// inside a Transaction a Multi or a Transaction is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    InMulti,
    InTransaction,
}

/// Decodes one request at `level`.
fn decode_request_in(r: &mut ByteReader<'_>, level: Level) -> DResult<Request> {
    let nested = level != Level::Top;
    let tag = r.u8("request tag")?;
    Ok(match tag {
        REQ_PUT => Request::Put {
            key: r.bytes("key")?,
            value: r.bytes("value")?,
            expire_at_ms: r.opt_u64("expire_at_ms")?,
        },
        REQ_DELETE => Request::Delete {
            key: r.bytes("key")?,
        },
        REQ_BATCH => {
            // Each op takes at least 5 bytes (tag and a key length), so the
            // count is bounded by what is left: no allocation from a bad count.
            let n = r.count(5, "batch op count")?;
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                ops.push(match r.u8("batch op tag")? {
                    OP_PUT => BatchOp::Put {
                        key: r.bytes("key")?,
                        value: r.bytes("value")?,
                    },
                    OP_DELETE => BatchOp::Delete {
                        key: r.bytes("key")?,
                    },
                    t => return malformed(format!("unknown batch op {t}")),
                });
            }
            Request::Batch(ops)
        }
        REQ_INCR_BY => Request::IncrBy {
            key: r.bytes("key")?,
            delta: r.u64("delta")? as i64,
        },
        REQ_CAS => {
            let key = r.bytes("key")?;
            let expected = match r.u8("expected flag")? {
                0 => None,
                1 => Some(r.bytes("expected value")?),
                f => return malformed(format!("bad option flag {f}")),
            };
            Request::Cas {
                key,
                expected,
                new: r.bytes("new value")?,
            }
        }
        REQ_EXPIRE => Request::Expire {
            key: r.bytes("key")?,
            expire_at_ms: r.u64("expire_at_ms")?,
        },
        REQ_PERSIST => Request::Persist {
            key: r.bytes("key")?,
        },
        REQ_SET => Request::Set {
            key: r.bytes("key")?,
            value: r.bytes("value")?,
            expire_at_ms: r.opt_u64("expire_at_ms")?,
            condition: decode_set_condition(r)?,
            return_old: decode_flag(r, "return_old")?,
        },
        REQ_SET_WITH_TTL => Request::SetWithTtl {
            key: r.bytes("key")?,
            value: r.bytes("value")?,
            ttl_ms: r.u64("ttl_ms")?,
            condition: decode_set_condition(r)?,
            return_old: decode_flag(r, "return_old")?,
        },
        REQ_EXPIRE_IN => Request::ExpireIn {
            key: r.bytes("key")?,
            ttl_ms: r.u64("ttl_ms")?,
        },
        REQ_DELETE_MANY => {
            // Each key takes at least its 4-byte length.
            let n = r.count(4, "key count")?;
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                keys.push(r.bytes("key")?);
            }
            Request::DeleteMany { keys }
        }
        REQ_MULTI if nested => return malformed("a multi inside a multi".to_string()),
        REQ_MULTI => {
            // A request takes at least its tag byte (FlushAll is nothing
            // more), which still bounds the allocation by the entry's size.
            let n = r.count(1, "multi request count")?;
            if n == 0 {
                return malformed("an empty multi".to_string());
            }
            let mut reqs = Vec::with_capacity(n);
            for _ in 0..n {
                reqs.push(decode_request_in(r, Level::InMulti)?);
            }
            Request::Multi(reqs)
        }
        REQ_GET_DEL => Request::GetDel {
            key: r.bytes("key")?,
        },
        REQ_GET_EX => Request::GetEx {
            key: r.bytes("key")?,
            expiry: decode_deadline(r)?,
        },
        REQ_APPEND => Request::Append {
            key: r.bytes("key")?,
            value: r.bytes("value")?,
            value_bytes_max: r.u64("value_bytes_max")?,
        },
        REQ_SET_RANGE => Request::SetRange {
            key: r.bytes("key")?,
            offset: r.u64("offset")?,
            value: r.bytes("value")?,
        },
        REQ_INCR_BY_FLOAT => Request::IncrByFloat {
            key: r.bytes("key")?,
            increment: r.bytes("increment")?,
        },
        REQ_RENAME => Request::Rename {
            from: r.bytes("key")?,
            to: r.bytes("new key")?,
            only_if_absent: decode_flag(r, "only_if_absent")?,
        },
        REQ_MSET_NX => {
            // Each pair takes at least its two 4-byte lengths.
            let n = r.count(8, "pair count")?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                pairs.push((r.bytes("key")?, r.bytes("value")?));
            }
            Request::MSetNx { pairs }
        }
        REQ_EXPIRE_WHEN => {
            let key = r.bytes("key")?;
            let Some(deadline) = decode_deadline(r)? else {
                return malformed("an expire without a deadline".to_string());
            };
            Request::ExpireWhen {
                key,
                deadline,
                condition: decode_expire_condition(r)?,
            }
        }
        REQ_READ => {
            let n = r.count(4, "key count")?;
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                keys.push(r.bytes("key")?);
            }
            Request::Read { keys }
        }
        REQ_FLUSH_ALL => Request::FlushAll,
        REQ_TRANSACTION if level == Level::InTransaction => {
            return malformed("a transaction inside a transaction".to_string())
        }
        REQ_TRANSACTION => {
            // Each watched key takes its length and a flag byte.
            let n = r.count(5, "watched key count")?;
            let mut watched = Vec::with_capacity(n);
            for _ in 0..n {
                let key = r.bytes("key")?;
                let seen = match r.u8("watched value flag")? {
                    0 => None,
                    1 => Some((r.bytes("watched value")?, r.opt_u64("watched expiry")?)),
                    f => return malformed(format!("bad option flag {f}")),
                };
                watched.push(Watched { key, seen });
            }
            let n = r.count(1, "transaction request count")?;
            if n == 0 {
                return malformed("an empty transaction".to_string());
            }
            let mut requests = Vec::with_capacity(n);
            for _ in 0..n {
                requests.push(decode_request_in(r, Level::InTransaction)?);
            }
            Request::Transaction { watched, requests }
        }
        t => return malformed(format!("unknown request tag {t}")),
    })
}
