//! The commit record: openraft's committed log id as a record of its own in
//! the Raft log's WAL stream, after the entries it covers (see
//! `FORMAT-raftlog.md`, "Commit records", and [`crate::log_store`]).
//!
//! Limits: exactly [`COMMIT_RECORD_LEN`] bytes; anything else is not a
//! commit record.

use super::entry::decode_log_id;
use crate::byte_reader::ByteReader;
use crate::typ::LogId;

/// First payload byte of a commit record. An entry record starts with its
/// format version (1), so the two kinds never share a first byte; a build
/// that predates commit records refuses one as a newer entry format.
pub const COMMIT_RECORD_KIND: u8 = 0x81;
/// Payload length of a commit record: kind, term, leader node id, index.
pub const COMMIT_RECORD_LEN: usize = 25;

/// The commit record naming `c`.
pub fn encode_commit_record(c: &LogId) -> [u8; COMMIT_RECORD_LEN] {
    let mut b = [0u8; COMMIT_RECORD_LEN];
    b[0] = COMMIT_RECORD_KIND;
    b[1..9].copy_from_slice(&c.leader_id.term.to_le_bytes());
    b[9..17].copy_from_slice(&c.leader_id.node_id.to_le_bytes());
    b[17..25].copy_from_slice(&c.index.to_le_bytes());
    b
}

/// The log id a commit record names, or `None` if `b` is not one.
pub fn decode_commit_record(b: &[u8]) -> Option<LogId> {
    if b.len() != COMMIT_RECORD_LEN || b[0] != COMMIT_RECORD_KIND {
        return None;
    }
    decode_log_id(&mut ByteReader::new(&b[1..])).ok()
}
