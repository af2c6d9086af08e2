//! The entry codec: one Raft log entry as the payload of one WAL record
//! (version, kind, log id, then the body), and the log id on its own.
//! Byte layout in `FORMAT-raftlog.md`; keep the two in step.
//!
//! Limits: a record is one whole entry (trailing bytes are refused); the
//! WAL bounds the record's length.

use super::membership::{decode_membership, encode_membership};
use super::request::{decode_request, encode_request};
use crate::byte_reader::{malformed, ByteReader, DecodeError};
use crate::typ::{Entry, EntryPayload, LeaderId, LogId, Proposal};

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

type DResult<T> = Result<T, DecodeError>;

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
    let mut r = ByteReader::new(src);
    let kind = decode_version_and_kind(&mut r)?;
    let log_id = decode_log_id(&mut r)?;
    let payload = match kind {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => {
            let at_ms = r.u64("at_ms")?;
            EntryPayload::Normal(Proposal::new(at_ms, decode_request(&mut r)?))
        }
        KIND_MEMBERSHIP => EntryPayload::Membership(decode_membership(&mut r)?),
        k => return malformed(format!("unknown entry kind {k}")),
    };
    r.finish("entry")?;
    Ok(Entry { log_id, payload })
}

/// Reads only the log id of an encoded entry (recovery rebuilds its index
/// from this without decoding bodies).
pub fn decode_log_id_only(src: &[u8]) -> DResult<LogId> {
    let mut r = ByteReader::new(src);
    let _kind = decode_version_and_kind(&mut r)?;
    decode_log_id(&mut r)
}

/// The version (refused if unknown) and the kind of an entry.
fn decode_version_and_kind(r: &mut ByteReader<'_>) -> DResult<u8> {
    let version = r.u8("entry version")?;
    if version == 0 || version > ENTRY_FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    r.u8("entry kind")
}

fn encode_log_id(dst: &mut Vec<u8>, id: &LogId) {
    dst.extend_from_slice(&id.leader_id.term.to_le_bytes());
    dst.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    dst.extend_from_slice(&id.index.to_le_bytes());
}

/// Decodes a log id (term, node id, index) from the front of `r`.
pub(super) fn decode_log_id(r: &mut ByteReader<'_>) -> DResult<LogId> {
    let term = r.u64("term")?;
    let node_id = r.u64("leader node id")?;
    let index = r.u64("index")?;
    Ok(LogId::new(LeaderId { term, node_id }, index))
}

/// Appends a log id: term, node id, index (24 bytes).
pub fn encode_log_id_into(dst: &mut Vec<u8>, id: &LogId) {
    encode_log_id(dst, id)
}

/// Decodes a log id written by [`encode_log_id_into`] from the front of
/// `src`; returns it and the rest.
pub fn decode_log_id_prefix(src: &[u8]) -> DResult<(LogId, &[u8])> {
    let mut r = ByteReader::new(src);
    let id = decode_log_id(&mut r)?;
    Ok((id, r.rest()))
}
