//! The writers matching [`crate::byte_reader::ByteReader`]'s reads:
//! u32 lengths, length-prefixed bytes, optional u64s, little-endian.
//!
//! Limits: lengths are u32 on disk (see [`put_len`]).

use crate::byte_reader::{ByteReader, DecodeError};

/// Lengths are u32 on disk. Every length we write is of something already
/// in memory and bounded by the WAL's u32 record payload limit, which the
/// WAL enforces on the whole record; saturating keeps the encoder total.
pub(super) fn put_len(dst: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    dst.extend_from_slice(&len.to_le_bytes());
}

pub(super) fn put_bytes(dst: &mut Vec<u8>, b: &[u8]) {
    put_len(dst, b.len());
    dst.extend_from_slice(b);
}

pub(super) fn put_opt_u64(dst: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => dst.push(0),
        Some(v) => {
            dst.push(1);
            dst.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Appends length-prefixed bytes (u32 length).
pub fn encode_bytes_into(dst: &mut Vec<u8>, b: &[u8]) {
    put_bytes(dst, b)
}

/// Decodes length-prefixed bytes from the front of `src`; returns them and
/// the rest.
pub fn decode_bytes_prefix(src: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut r = ByteReader::new(src);
    let b = r.bytes_ref("bytes")?;
    Ok((b, r.rest()))
}
