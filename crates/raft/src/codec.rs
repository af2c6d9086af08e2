//! Our own encoding of Raft log entries: the payload of one WAL record per
//! entry. The byte layout is in `FORMAT-raftlog.md` beside this crate; keep
//! the two in step. Hand-written (not a serde format) so that the on-disk
//! bytes never change behind our back when a dependency or a derive does.

use crate::typ::{
    BatchOp, Entry, LeaderId, LogId, Membership, Node, NodeId, Proposal, Request, SetCondition,
};
use openraft::EntryPayload;
use std::collections::{BTreeMap, BTreeSet};

/// The entry format version this build writes and the newest it reads.
/// Version 2 added the relative-TTL requests (`SetWithTtl`, `ExpireIn`);
/// version 1 entries are a subset and decode unchanged. A build that
/// reads only version 1 refuses version 2 entries with a version error
/// instead of an unknown request tag.
pub const ENTRY_FORMAT_VERSION: u8 = 2;

/// Bytes before the body: version, kind, term, node id, index.
pub const ENTRY_HEADER_LEN: usize = 1 + 1 + 8 + 8 + 8;

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

const REQ_PUT: u8 = 1;
const REQ_DELETE: u8 = 2;
const REQ_BATCH: u8 = 3;
const REQ_INCR_BY: u8 = 4;
const REQ_CAS: u8 = 5;
const REQ_EXPIRE: u8 = 6;
const REQ_PERSIST: u8 = 7;
const REQ_SET: u8 = 8;
const REQ_DELETE_MANY: u8 = 9;
const REQ_MULTI: u8 = 10;
const REQ_SET_WITH_TTL: u8 = 11;
const REQ_EXPIRE_IN: u8 = 12;

const SET_ALWAYS: u8 = 0;
const SET_IF_ABSENT: u8 = 1;
const SET_IF_PRESENT: u8 = 2;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// Why a record could not be decoded. The log store adds the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Written by a newer format version.
    Version(u8),
    /// Structurally wrong: truncated, unknown tag, trailing bytes.
    Malformed(String),
}

type DResult<T> = Result<T, DecodeError>;

fn malformed<T>(what: impl Into<String>) -> DResult<T> {
    Err(DecodeError::Malformed(what.into()))
}

/// Appends the encoding of `entry` to `dst`.
pub fn encode_entry(dst: &mut Vec<u8>, entry: &Entry) {
    dst.push(ENTRY_FORMAT_VERSION);
    let kind = match &entry.payload {
        EntryPayload::Blank => KIND_BLANK,
        EntryPayload::Normal(_) => KIND_NORMAL,
        EntryPayload::Membership(_) => KIND_MEMBERSHIP,
    };
    dst.push(kind);
    encode_log_id(dst, &entry.log_id);
    match &entry.payload {
        EntryPayload::Blank => {}
        EntryPayload::Normal(p) => {
            dst.extend_from_slice(&p.at_ms.to_le_bytes());
            encode_request(dst, &p.request);
        }
        EntryPayload::Membership(m) => encode_membership(dst, m),
    }
}

/// Decodes one entry; the whole of `src` must be the entry.
pub fn decode_entry(src: &[u8]) -> DResult<Entry> {
    let mut r = Reader(src);
    let version = r.u8()?;
    if version == 0 || version > ENTRY_FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    let kind = r.u8()?;
    let log_id = decode_log_id(&mut r)?;
    let payload = match kind {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => {
            let at_ms = r.u64()?;
            EntryPayload::Normal(Proposal::new(at_ms, decode_request(&mut r)?))
        }
        KIND_MEMBERSHIP => EntryPayload::Membership(decode_membership(&mut r)?),
        k => return malformed(format!("unknown entry kind {k}")),
    };
    r.finish()?;
    Ok(Entry { log_id, payload })
}

/// Reads only the log id of an encoded entry (recovery rebuilds its index
/// from this without decoding bodies).
pub fn decode_log_id_only(src: &[u8]) -> DResult<LogId> {
    let mut r = Reader(src);
    let version = r.u8()?;
    if version == 0 || version > ENTRY_FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    let _kind = r.u8()?;
    decode_log_id(&mut r)
}

fn encode_log_id(dst: &mut Vec<u8>, id: &LogId) {
    dst.extend_from_slice(&id.leader_id.term.to_le_bytes());
    dst.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    dst.extend_from_slice(&id.index.to_le_bytes());
}

fn decode_log_id(r: &mut Reader<'_>) -> DResult<LogId> {
    let term = r.u64()?;
    let node_id = r.u64()?;
    let index = r.u64()?;
    Ok(LogId::new(LeaderId { term, node_id }, index))
}

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

fn decode_set_condition(r: &mut Reader<'_>) -> DResult<SetCondition> {
    Ok(match r.u8()? {
        SET_ALWAYS => SetCondition::Always,
        SET_IF_ABSENT => SetCondition::IfAbsent,
        SET_IF_PRESENT => SetCondition::IfPresent,
        c => return malformed(format!("unknown set condition {c}")),
    })
}

fn decode_flag(r: &mut Reader<'_>) -> DResult<bool> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        f => malformed(format!("bad flag {f}")),
    }
}

fn decode_request(r: &mut Reader<'_>) -> DResult<Request> {
    decode_request_in(r, false)
}

/// Decodes one request; `nested` inside a Multi, where another Multi is
/// corruption.
fn decode_request_in(r: &mut Reader<'_>, nested: bool) -> DResult<Request> {
    let tag = r.u8()?;
    Ok(match tag {
        REQ_PUT => Request::Put {
            key: r.bytes()?,
            value: r.bytes()?,
            expire_at_ms: r.opt_u64()?,
        },
        REQ_DELETE => Request::Delete { key: r.bytes()? },
        REQ_BATCH => {
            // Each op takes at least 5 bytes (tag and a key length), so the
            // count is bounded by what is left: no allocation from a bad count.
            let n = r.count(5)?;
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                ops.push(match r.u8()? {
                    OP_PUT => BatchOp::Put {
                        key: r.bytes()?,
                        value: r.bytes()?,
                    },
                    OP_DELETE => BatchOp::Delete { key: r.bytes()? },
                    t => return malformed(format!("unknown batch op {t}")),
                });
            }
            Request::Batch(ops)
        }
        REQ_INCR_BY => Request::IncrBy {
            key: r.bytes()?,
            delta: r.u64()? as i64,
        },
        REQ_CAS => {
            let key = r.bytes()?;
            let expected = match r.u8()? {
                0 => None,
                1 => Some(r.bytes()?),
                f => return malformed(format!("bad option flag {f}")),
            };
            Request::Cas {
                key,
                expected,
                new: r.bytes()?,
            }
        }
        REQ_EXPIRE => Request::Expire {
            key: r.bytes()?,
            expire_at_ms: r.u64()?,
        },
        REQ_PERSIST => Request::Persist { key: r.bytes()? },
        REQ_SET => Request::Set {
            key: r.bytes()?,
            value: r.bytes()?,
            expire_at_ms: r.opt_u64()?,
            condition: decode_set_condition(r)?,
            return_old: decode_flag(r)?,
        },
        REQ_SET_WITH_TTL => Request::SetWithTtl {
            key: r.bytes()?,
            value: r.bytes()?,
            ttl_ms: r.u64()?,
            condition: decode_set_condition(r)?,
            return_old: decode_flag(r)?,
        },
        REQ_EXPIRE_IN => Request::ExpireIn {
            key: r.bytes()?,
            ttl_ms: r.u64()?,
        },
        REQ_DELETE_MANY => {
            // Each key takes at least its 4-byte length.
            let n = r.count(4)?;
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                keys.push(r.bytes()?);
            }
            Request::DeleteMany { keys }
        }
        REQ_MULTI if nested => return malformed("a multi inside a multi".to_string()),
        REQ_MULTI => {
            // Each request takes at least its tag and one 4-byte length.
            let n = r.count(5)?;
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

/// Appends the encoding of a membership (the body of a membership entry).
pub fn encode_membership(dst: &mut Vec<u8>, m: &Membership) {
    let configs = m.get_joint_config();
    put_len(dst, configs.len());
    for config in configs {
        put_len(dst, config.len());
        for id in config {
            dst.extend_from_slice(&id.to_le_bytes());
        }
    }
    let nodes: Vec<(&NodeId, &Node)> = m.nodes().collect();
    put_len(dst, nodes.len());
    for (id, node) in nodes {
        dst.extend_from_slice(&id.to_le_bytes());
        put_bytes(dst, node.raft_addr.as_bytes());
        put_bytes(dst, node.client_addr.as_bytes());
    }
}

/// Decodes a membership encoded by [`encode_membership`] that makes up the
/// whole of `src`.
pub fn decode_membership_exact(src: &[u8]) -> DResult<Membership> {
    let mut r = Reader(src);
    let m = decode_membership(&mut r)?;
    r.finish()?;
    Ok(m)
}

/// Appends a log id: term, node id, index (24 bytes).
pub fn encode_log_id_into(dst: &mut Vec<u8>, id: &LogId) {
    encode_log_id(dst, id)
}

/// Decodes a log id written by [`encode_log_id_into`] from the front of
/// `src`; returns it and the rest.
pub fn decode_log_id_prefix(src: &[u8]) -> DResult<(LogId, &[u8])> {
    let mut r = Reader(src);
    let id = decode_log_id(&mut r)?;
    Ok((id, r.0))
}

/// Appends length-prefixed bytes (u32 length).
pub fn encode_bytes_into(dst: &mut Vec<u8>, b: &[u8]) {
    put_bytes(dst, b)
}

/// Decodes length-prefixed bytes from the front of `src`; returns them and
/// the rest.
pub fn decode_bytes_prefix(src: &[u8]) -> DResult<(&[u8], &[u8])> {
    let mut r = Reader(src);
    let n = r.u32()? as usize;
    let b = r.take(n)?;
    let rest = r.0;
    Ok((b, rest))
}

fn decode_membership(r: &mut Reader<'_>) -> DResult<Membership> {
    let n_configs = r.count(4)?;
    let mut configs = Vec::with_capacity(n_configs);
    for _ in 0..n_configs {
        let n = r.count(8)?;
        let mut set = BTreeSet::new();
        for _ in 0..n {
            set.insert(r.u64()?);
        }
        configs.push(set);
    }
    let n_nodes = r.count(16)?;
    let mut nodes = BTreeMap::new();
    for _ in 0..n_nodes {
        let id = r.u64()?;
        let raft_addr = r.string()?;
        let client_addr = r.string()?;
        nodes.insert(
            id,
            Node {
                raft_addr,
                client_addr,
            },
        );
    }
    Membership::new(configs, nodes).or_else(|e| malformed(format!("invalid membership: {e}")))
}

/// Lengths are u32 on disk. Every length we write is of something already
/// in memory and bounded by the WAL's u32 record payload limit, which the
/// WAL enforces on the whole record; saturating keeps the encoder total.
fn put_len(dst: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    dst.extend_from_slice(&len.to_le_bytes());
}

fn put_bytes(dst: &mut Vec<u8>, b: &[u8]) {
    put_len(dst, b.len());
    dst.extend_from_slice(b);
}

fn put_opt_u64(dst: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => dst.push(0),
        Some(v) => {
            dst.push(1);
            dst.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// A cursor over an encoded entry; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> DResult<&'a [u8]> {
        if self.0.len() < n {
            return malformed(format!(
                "truncated: wanted {n} bytes, {} left",
                self.0.len()
            ));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> DResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> DResult<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> DResult<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    /// A u32 element count, refused if `count * min_elem_bytes` exceeds
    /// what is left.
    fn count(&mut self, min_elem_bytes: usize) -> DResult<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_elem_bytes) > self.0.len() {
            return malformed(format!("count {n} exceeds the remaining bytes"));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> DResult<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    fn string(&mut self) -> DResult<String> {
        String::from_utf8(self.bytes()?).or_else(|_| malformed("address is not UTF-8"))
    }

    fn opt_u64(&mut self) -> DResult<Option<u64>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u64()?)),
            f => malformed(format!("bad option flag {f}")),
        }
    }

    fn finish(&self) -> DResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            malformed(format!("{} trailing bytes", self.0.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(
            LeaderId {
                term,
                node_id: node,
            },
            index,
        )
    }

    fn round_trip(payload: EntryPayload<Proposal, NodeId, Node>) {
        let entry = Entry {
            log_id: log_id(3, 2, 17),
            payload,
        };
        let mut buf = Vec::new();
        encode_entry(&mut buf, &entry);
        let back = decode_entry(&buf).expect("decodes");
        assert_eq!(back, entry);
        assert_eq!(decode_log_id_only(&buf), Ok(entry.log_id));
        // Every strict prefix is refused, never misread.
        for cut in 0..buf.len() {
            assert!(decode_entry(&buf[..cut]).is_err(), "prefix {cut} accepted");
        }
    }

    #[test]
    fn every_request_kind_round_trips_and_prefixes_are_refused() {
        let reqs = vec![
            Request::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                expire_at_ms: None,
            },
            Request::Put {
                key: b"k".to_vec(),
                value: vec![],
                expire_at_ms: Some(u64::MAX),
            },
            Request::Delete { key: b"k".to_vec() },
            Request::Batch(vec![
                BatchOp::Put {
                    key: b"a".to_vec(),
                    value: b"1".to_vec(),
                },
                BatchOp::Delete { key: b"b".to_vec() },
            ]),
            Request::Batch(vec![]),
            Request::incr("n"),
            Request::IncrBy {
                key: b"n".to_vec(),
                delta: i64::MIN,
            },
            Request::Cas {
                key: b"k".to_vec(),
                expected: None,
                new: b"x".to_vec(),
            },
            Request::Cas {
                key: b"k".to_vec(),
                expected: Some(b"old".to_vec()),
                new: b"x".to_vec(),
            },
            Request::Expire {
                key: b"k".to_vec(),
                expire_at_ms: 42,
            },
            Request::Persist { key: b"k".to_vec() },
            Request::Set {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                expire_at_ms: Some(7),
                condition: SetCondition::IfAbsent,
                return_old: true,
            },
            Request::Set {
                key: b"k".to_vec(),
                value: vec![],
                expire_at_ms: None,
                condition: SetCondition::IfPresent,
                return_old: false,
            },
            Request::DeleteMany {
                keys: vec![b"a".to_vec(), vec![], b"a".to_vec()],
            },
            Request::DeleteMany { keys: vec![] },
            Request::SetWithTtl {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ttl_ms: 1_500,
                condition: SetCondition::IfAbsent,
                return_old: true,
            },
            Request::ExpireIn {
                key: b"k".to_vec(),
                ttl_ms: u64::MAX,
            },
            Request::Multi(vec![
                Request::incr("n"),
                Request::Set {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    expire_at_ms: None,
                    condition: SetCondition::Always,
                    return_old: false,
                },
                Request::Batch(vec![]),
            ]),
        ];
        for r in reqs {
            round_trip(EntryPayload::Normal(Proposal::new(1_700_000_000_000, r)));
        }
        round_trip(EntryPayload::Blank);
    }

    #[test]
    fn a_nested_or_empty_multi_is_corruption() {
        let encode = |body: &[u8]| {
            let mut buf = Vec::new();
            encode_entry(
                &mut buf,
                &Entry {
                    log_id: log_id(1, 1, 1),
                    payload: EntryPayload::Normal(Proposal::new(5, Request::Batch(vec![]))),
                },
            );
            // Replace the request (tag and count of the empty batch) by `body`.
            buf.truncate(buf.len() - 5);
            buf.extend_from_slice(body);
            buf
        };
        let mut nested = vec![REQ_MULTI, 1, 0, 0, 0, REQ_MULTI, 1, 0, 0, 0];
        encode_request(&mut nested, &Request::Delete { key: b"k".to_vec() });
        assert!(matches!(
            decode_entry(&encode(&nested)),
            Err(DecodeError::Malformed(m)) if m.contains("multi inside a multi")
        ));
        assert!(matches!(
            decode_entry(&encode(&[REQ_MULTI, 0, 0, 0, 0])),
            Err(DecodeError::Malformed(m)) if m.contains("empty multi")
        ));
        // The same bytes with one level of Multi decode.
        let mut single = vec![REQ_MULTI, 1, 0, 0, 0];
        encode_request(&mut single, &Request::Delete { key: b"k".to_vec() });
        assert!(decode_entry(&encode(&single)).is_ok());
    }

    /// Requests of every kind, with empty and non-empty keys, and `Multi`s
    /// of them: empty, one level, nested.
    fn requests_to_depth(depth: usize) -> Vec<Request> {
        let mut leaves = Vec::new();
        for key in [vec![], b"k".to_vec()] {
            leaves.extend([
                Request::Put {
                    key: key.clone(),
                    value: b"v".to_vec(),
                    expire_at_ms: Some(9),
                },
                Request::Delete { key: key.clone() },
                Request::Batch(vec![BatchOp::Delete { key: key.clone() }]),
                Request::IncrBy {
                    key: key.clone(),
                    delta: -3,
                },
                Request::Cas {
                    key: key.clone(),
                    expected: Some(vec![]),
                    new: b"n".to_vec(),
                },
                Request::Expire {
                    key: key.clone(),
                    expire_at_ms: 1,
                },
                Request::Persist { key: key.clone() },
                Request::Set {
                    key: key.clone(),
                    value: vec![],
                    expire_at_ms: None,
                    condition: SetCondition::IfPresent,
                    return_old: true,
                },
                Request::DeleteMany {
                    keys: vec![key.clone(), b"x".to_vec()],
                },
                Request::SetWithTtl {
                    key: key.clone(),
                    value: b"v".to_vec(),
                    ttl_ms: 10,
                    condition: SetCondition::Always,
                    return_old: false,
                },
                Request::ExpireIn {
                    key: key.clone(),
                    ttl_ms: 0,
                },
            ]);
        }
        leaves.extend([Request::Batch(vec![]), Request::DeleteMany { keys: vec![] }]);
        let mut all = leaves.clone();
        if depth > 0 {
            let inner = requests_to_depth(depth - 1);
            all.push(Request::Multi(vec![]));
            for r in &inner {
                all.push(Request::Multi(vec![r.clone()]));
                all.push(Request::Multi(vec![leaves[0].clone(), r.clone()]));
            }
        }
        all
    }

    /// The encoder and decoder accept exactly the same set, and it is the
    /// set `Request::check_structure` accepts; `Request::validate` (what
    /// the node checks where a request enters) accepts a subset of it. So
    /// nothing validated can become an entry the log cannot read back.
    #[test]
    fn the_codec_reads_back_exactly_what_the_validator_lets_through() {
        let limits = crate::typ::RequestLimits {
            key_bytes_max: 16,
            value_bytes_max: 16,
            request_bytes_max: 1 << 20,
        };
        let (mut accepted, mut refused) = (0, 0);
        for req in requests_to_depth(2) {
            let entry = Entry {
                log_id: log_id(2, 1, 9),
                payload: EntryPayload::Normal(Proposal::new(77, req.clone())),
            };
            let mut buf = Vec::new();
            encode_entry(&mut buf, &entry);
            let decoded = decode_entry(&buf);
            match req.check_structure() {
                Ok(()) => {
                    accepted += 1;
                    assert_eq!(decoded.as_ref(), Ok(&entry), "{req:?}");
                }
                Err(e) => {
                    refused += 1;
                    assert!(decoded.is_err(), "{req:?} refused ({e}) but decodes");
                }
            }
            if req.validate(&limits).is_ok() {
                assert!(req.check_structure().is_ok(), "{req:?}");
                assert!(!matches!(req, Request::Multi(_)), "{req:?}");
            }
        }
        // Both sides of the equivalence were exercised.
        assert!(accepted > 50 && refused > 50, "{accepted} / {refused}");
    }

    /// Version 1 entries (written before the relative-TTL requests) still
    /// decode: their bytes are those of version 2 but for the version.
    #[test]
    fn version_1_entries_still_decode() {
        let entry = Entry {
            log_id: log_id(4, 1, 3),
            payload: EntryPayload::Normal(Proposal::new(
                1_000,
                Request::Set {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    expire_at_ms: Some(2_000),
                    condition: SetCondition::Always,
                    return_old: false,
                },
            )),
        };
        let mut buf = Vec::new();
        encode_entry(&mut buf, &entry);
        buf[0] = 1;
        assert_eq!(decode_entry(&buf), Ok(entry));
    }

    #[test]
    fn membership_entries_round_trip_with_node_addresses() {
        let mut nodes = BTreeMap::new();
        nodes.insert(1, Node::new("127.0.0.1:7001", "127.0.0.1:6001"));
        nodes.insert(2, Node::new("127.0.0.1:7002", "127.0.0.1:6002"));
        nodes.insert(3, Node::new("127.0.0.1:7003", "127.0.0.1:6003"));
        let configs = vec![BTreeSet::from([1, 2]), BTreeSet::from([1, 2, 3])];
        let m = Membership::new(configs, nodes).expect("valid");
        round_trip(EntryPayload::Membership(m));
    }

    #[test]
    fn newer_versions_and_trailing_bytes_are_refused() {
        let entry = Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Blank,
        };
        let mut buf = Vec::new();
        encode_entry(&mut buf, &entry);
        let mut newer = buf.clone();
        newer[0] = ENTRY_FORMAT_VERSION + 1;
        assert_eq!(
            decode_entry(&newer),
            Err(DecodeError::Version(ENTRY_FORMAT_VERSION + 1))
        );
        buf.push(0);
        assert!(matches!(decode_entry(&buf), Err(DecodeError::Malformed(_))));
    }
}
