//! The request codec: one [`Request`] (the body of a normal entry, after
//! its `at_ms`), as tag byte then fields. Byte layout in
//! `FORMAT-raftlog.md`, "Requests"; keep the two in step.
//!
//! Limits: counts (batch ops, keys, the requests of a Multi) are bounded by
//! the bytes left (`ByteReader::count`); a Multi is never empty and
//! never nested, on either side.

use super::write::{put_bytes, put_len, put_opt_u64};
use crate::byte_reader::{malformed, ByteReader, DecodeError};
use crate::typ::{BatchOp, Request, SetCondition};

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
    decode_request_in(r, false)
}

/// Decodes one request; `nested` inside a Multi, where another Multi is
/// corruption.
fn decode_request_in(r: &mut ByteReader<'_>, nested: bool) -> DResult<Request> {
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
            // Each request takes at least its tag and one 4-byte length.
            let n = r.count(5, "multi request count")?;
            if n == 0 {
                return malformed("an empty multi".to_string());
            }
            let mut reqs = Vec::with_capacity(n);
            for _ in 0..n {
                reqs.push(decode_request_in(r, true)?);
            }
            Request::Multi(reqs)
        }
        t => return malformed(format!("unknown request tag {t}")),
    })
}
