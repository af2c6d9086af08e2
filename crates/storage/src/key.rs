//! Internal keys: a user key followed by an 8-byte trailer that packs the
//! sequence number and the entry kind (FORMAT.md, "Internal keys").
//!
//! Order: user key ascending (bytewise), then sequence number descending, so
//! the newest version of a key comes first.

use std::cmp::Ordering;

/// Sequence numbers are 56 bits; the low byte of the trailer is the kind.
pub type SeqNo = u64;

/// The largest usable sequence number.
pub const SEQ_MAX: SeqNo = (1 << 56) - 1;

/// Bytes in the trailer of an internal key.
pub const TRAILER_LEN: usize = 8;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ValueKind {
    /// A deletion tombstone; the value is empty.
    Delete = 0,
    /// A plain value.
    Put = 1,
    /// A value with an expiry: the value is 8 bytes of little-endian
    /// expire-at (milliseconds since the Unix epoch) followed by the user value.
    PutExpiring = 2,
    /// A range delete (in write batches, the WAL and memtables only, never
    /// in a table): the key is the range's first key, the value its end
    /// (empty: no end); see [`crate::range_floor`].
    RangeDelete = 3,
}

impl ValueKind {
    /// Decodes a kind byte.
    pub fn from_u8(b: u8) -> Option<ValueKind> {
        match b {
            0 => Some(ValueKind::Delete),
            1 => Some(ValueKind::Put),
            2 => Some(ValueKind::PutExpiring),
            3 => Some(ValueKind::RangeDelete),
            _ => None,
        }
    }
}

/// Packs a sequence number and kind into a trailer.
#[inline]
pub fn pack_trailer(seq: SeqNo, kind: ValueKind) -> u64 {
    debug_assert!(seq <= SEQ_MAX);
    (seq << 8) | kind as u64
}

/// Appends the internal key for (`user_key`, `seq`, `kind`) to `dst`.
#[inline]
pub fn append_internal_key(dst: &mut Vec<u8>, user_key: &[u8], seq: SeqNo, kind: ValueKind) {
    dst.extend_from_slice(user_key);
    dst.extend_from_slice(&pack_trailer(seq, kind).to_le_bytes());
}

/// Builds an internal key.
pub fn internal_key(user_key: &[u8], seq: SeqNo, kind: ValueKind) -> Vec<u8> {
    let mut v = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    append_internal_key(&mut v, user_key, seq, kind);
    v
}

/// The key to seek to for reading `user_key` as of snapshot `seq`: it sorts
/// before every version of `user_key` with a sequence number <= `seq`.
pub fn lookup_key(user_key: &[u8], seq: SeqNo) -> Vec<u8> {
    // Kind byte 0xff sorts first among equal sequence numbers (descending trailer).
    let mut v = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    v.extend_from_slice(user_key);
    v.extend_from_slice(&((seq << 8) | 0xff).to_le_bytes());
    v
}

/// A parsed view of an internal key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    /// The user's key.
    pub user_key: &'a [u8],
    /// Sequence number.
    pub seq: SeqNo,
    /// Kind of entry.
    pub kind: ValueKind,
}

/// Splits an internal key; `None` if it is shorter than the trailer or the
/// kind byte is unknown.
#[inline]
pub fn parse_internal_key(ikey: &[u8]) -> Option<ParsedKey<'_>> {
    if ikey.len() < TRAILER_LEN {
        return None;
    }
    let (user_key, t) = ikey.split_at(ikey.len() - TRAILER_LEN);
    let trailer = crate::coding::get_fixed64(t);
    let kind = ValueKind::from_u8((trailer & 0xff) as u8)?;
    Some(ParsedKey {
        user_key,
        seq: trailer >> 8,
        kind,
    })
}

/// The user key part of an internal key (the caller guarantees the length).
#[inline]
pub fn user_key(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len() - TRAILER_LEN]
}

#[inline]
fn trailer(ikey: &[u8]) -> u64 {
    crate::coding::get_fixed64(&ikey[ikey.len() - TRAILER_LEN..])
}

/// Compares two internal keys: user key ascending, then trailer descending.
/// Both must be at least [`TRAILER_LEN`] long.
#[inline]
pub fn compare_internal(a: &[u8], b: &[u8]) -> Ordering {
    match user_key(a).cmp(user_key(b)) {
        Ordering::Equal => trailer(b).cmp(&trailer(a)),
        o => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_sort_first_and_user_keys_ascend() {
        let a5 = internal_key(b"a", 5, ValueKind::Put);
        let a3 = internal_key(b"a", 3, ValueKind::Delete);
        let ab1 = internal_key(b"ab", 1, ValueKind::Put);
        assert_eq!(compare_internal(&a5, &a3), Ordering::Less);
        assert_eq!(compare_internal(&a3, &ab1), Ordering::Less);
        assert_eq!(compare_internal(&lookup_key(b"a", 5), &a5), Ordering::Less);
        assert_eq!(
            compare_internal(&lookup_key(b"a", 4), &a5),
            Ordering::Greater
        );
        assert_eq!(compare_internal(&lookup_key(b"a", 4), &a3), Ordering::Less);
    }

    #[test]
    fn parse_round_trips_and_refuses_garbage() {
        let k = internal_key(b"key", SEQ_MAX, ValueKind::PutExpiring);
        let p = parse_internal_key(&k).unwrap();
        assert_eq!(
            (p.user_key, p.seq, p.kind),
            (&b"key"[..], SEQ_MAX, ValueKind::PutExpiring)
        );
        assert!(parse_internal_key(b"short").is_none());
        let mut bad = k.clone();
        let n = bad.len();
        bad[n - 8] = 9;
        assert!(parse_internal_key(&bad).is_none());
    }
}
