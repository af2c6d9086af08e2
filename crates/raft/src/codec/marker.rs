//! The applied marker: what the engine records with each memtable flush
//! in replicated mode (the applied log id, the last membership and the
//! time of the last applied entry), and what a snapshot descriptor carries
//! as its meta. Byte layout in `FORMAT-raftlog.md`, "The applied marker".
//!
//! Limits: the membership is the marker's last part and must end it
//! exactly (trailing bytes are refused).

use super::entry::{decode_log_id, encode_log_id_into};
use super::membership::{decode_membership, encode_membership};
use crate::byte_reader::{ByteReader, DecodeError};
use crate::error::Error;
use crate::typ::{LogId, StoredMembershipOf};
use openraft::StoredMembership;
use std::path::Path;

/// Applied-marker format version: the newest this build reads. Version 2
/// added the time of the last applied entry (flag 4); a marker without it
/// is still written as version 1, so snapshot descriptors stay readable by
/// older builds.
pub const MARKER_FORMAT_VERSION: u8 = 2;

const MARKER_APPLIED: u8 = 1;
const MARKER_MEMBERSHIP_LOG_ID: u8 = 2;
const MARKER_AT_MS: u8 = 4;

/// What an applied marker holds: the applied log id, the membership, and
/// the time of the last applied entry (version 2 markers).
pub type MarkerAt = (Option<LogId>, StoredMembershipOf, Option<u64>);

/// Encodes the applied marker: what the engine records with each flush.
pub fn encode_marker(applied: Option<&LogId>, membership: &StoredMembershipOf) -> Vec<u8> {
    encode_marker_at(applied, membership, None)
}

/// [`encode_marker`] with the time of the last applied entry (its
/// effective `at_ms`), which a restart resumes the expiry horizon and the
/// non-decreasing entry time from.
pub fn encode_marker_at(
    applied: Option<&LogId>,
    membership: &StoredMembershipOf,
    at_ms: Option<u64>,
) -> Vec<u8> {
    let version = if at_ms.is_some() { 2 } else { 1 };
    let mut out = vec![version, 0];
    if let Some(a) = applied {
        out[1] |= MARKER_APPLIED;
        encode_log_id_into(&mut out, a);
    }
    if let Some(m) = membership.log_id() {
        out[1] |= MARKER_MEMBERSHIP_LOG_ID;
        encode_log_id_into(&mut out, m);
    }
    if let Some(at) = at_ms {
        out[1] |= MARKER_AT_MS;
        out.extend_from_slice(&at.to_le_bytes());
    }
    encode_membership(&mut out, membership.membership());
    out
}

/// Decodes an applied marker written by [`encode_marker`].
pub fn decode_marker(src: &[u8]) -> Result<(Option<LogId>, StoredMembershipOf), DecodeError> {
    decode_marker_at(src).map(|(a, m, _)| (a, m))
}

/// The applied log id, membership and applied time ([`encode_marker_at`]).
pub fn decode_marker_at(src: &[u8]) -> Result<MarkerAt, DecodeError> {
    let mut r = ByteReader::new(src);
    let version = r.u8("applied marker version")?;
    if version == 0 || version > MARKER_FORMAT_VERSION {
        return Err(DecodeError::Version(version));
    }
    let flags = r.u8("applied marker flags")?;
    let known = if version >= 2 {
        MARKER_APPLIED | MARKER_MEMBERSHIP_LOG_ID | MARKER_AT_MS
    } else {
        MARKER_APPLIED | MARKER_MEMBERSHIP_LOG_ID
    };
    if flags & !known != 0 {
        return Err(DecodeError::Malformed(format!(
            "unknown marker flags {flags:#x}"
        )));
    }
    let mut applied = None;
    if flags & MARKER_APPLIED != 0 {
        applied = Some(decode_log_id(&mut r)?);
    }
    let mut membership_log_id = None;
    if flags & MARKER_MEMBERSHIP_LOG_ID != 0 {
        membership_log_id = Some(decode_log_id(&mut r)?);
    }
    let mut at_ms = None;
    if flags & MARKER_AT_MS != 0 {
        at_ms = Some(r.u64("applied marker time")?);
    }
    let membership = decode_membership(&mut r)?;
    r.finish("applied marker")?;
    Ok((
        applied,
        StoredMembership::new(membership_log_id, membership),
        at_ms,
    ))
}

/// The error for an applied marker in `dir` that did not decode.
pub(crate) fn marker_error(dir: &Path, d: DecodeError) -> Error {
    match d {
        DecodeError::Version(v) => Error::UnsupportedFormat {
            path: dir.to_path_buf(),
            found: u32::from(v),
            supported: u32::from(MARKER_FORMAT_VERSION),
        },
        DecodeError::Malformed(why) => Error::corrupt(dir, format!("applied marker: {why}")),
    }
}
