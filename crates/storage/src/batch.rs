//! Write batches: a list of puts and deletes applied atomically, and the
//! write-group record that carries several batches through the WAL
//! (FORMAT.md, "WAL payload: write group").

use crate::coding::{put_fixed64, put_varint64, Decoder};
use crate::key::{SeqNo, ValueKind};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Bytes of the write-group header: tag, base sequence, entry count.
pub const GROUP_HEADER_LEN: usize = 1 + 8 + 4;
/// The tag of a write-group record (version 1 of the payload format).
pub const GROUP_TAG_V1: u8 = 1;

/// An atomic set of writes. Repeated writes to one key inside a batch
/// coalesce (the last one wins) before the batch reaches the WAL.
///
/// ```
/// use ballast_storage::WriteBatch;
/// let mut b = WriteBatch::new();
/// b.put(b"k", b"v1");
/// b.put(b"k", b"v2");
/// b.delete(b"gone");
/// assert_eq!(b.len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Encoded entries: kind u8, varint key length, key, then for puts a
    /// varint value length and the value (with an 8-byte expire-at prefix
    /// for expiring puts).
    rep: Vec<u8>,
    count: u32,
    /// The longest key seen so far (observed, not a limit).
    longest_key_bytes: usize,
    /// The longest value seen so far (observed, not a limit).
    longest_value_bytes: usize,
    /// Opaque marker recorded with the memtable that receives this batch and
    /// persisted with its flush (replicated mode: the Raft log id of the
    /// entry that carried the batch). Not written to the WAL.
    applied_marker: Option<Vec<u8>>,
}

/// One decoded entry of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchEntry<'a> {
    /// What the entry does.
    pub kind: ValueKind,
    /// The user key.
    pub key: &'a [u8],
    /// The stored value: empty for deletes; for expiring puts, 8 bytes of
    /// little-endian expire-at milliseconds followed by the user value.
    pub value: &'a [u8],
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Adds a put.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.push(ValueKind::Put, key, None, value);
        self
    }

    /// Adds a put that expires at `expire_at_ms` (milliseconds since the Unix
    /// epoch, read from the engine's clock). From then on the key reads as absent.
    pub fn put_expiring(&mut self, key: &[u8], value: &[u8], expire_at_ms: u64) -> &mut Self {
        self.push(ValueKind::PutExpiring, key, Some(expire_at_ms), value);
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.rep.push(ValueKind::Delete as u8);
        put_varint64(&mut self.rep, key.len() as u64);
        self.rep.extend_from_slice(key);
        self.count += 1;
        self.longest_key_bytes = self.longest_key_bytes.max(key.len());
        self
    }

    /// Adds a range delete: every key from `start` (non-empty) up to
    /// `end` (exclusive; `None`: no end) written before this entry reads as
    /// absent. One entry whatever the data in the range: see
    /// [`crate::range_floor`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use ballast_storage::{Db, Options, Preset, WriteBatch};
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = Db::open(dir.path(), Options::preset(Preset::Durable)).await.unwrap();
    /// db.put(b"a1", b"x").await.unwrap();
    /// db.put(b"b1", b"y").await.unwrap();
    /// let mut b = WriteBatch::new();
    /// b.delete_range(b"a", Some(b"b")).put(b"a2", b"z");
    /// db.write(b).await.unwrap();
    /// assert_eq!(db.get(b"a1").unwrap(), None);
    /// assert!(db.get(b"a2").unwrap().is_some() && db.get(b"b1").unwrap().is_some());
    /// # });
    /// ```
    pub fn delete_range(&mut self, start: &[u8], end: Option<&[u8]>) -> &mut Self {
        self.push(ValueKind::RangeDelete, start, None, end.unwrap_or(&[]));
        self
    }

    fn push(&mut self, kind: ValueKind, key: &[u8], expire_at_ms: Option<u64>, value: &[u8]) {
        self.rep.push(kind as u8);
        put_varint64(&mut self.rep, key.len() as u64);
        self.rep.extend_from_slice(key);
        let stored = value.len() + if expire_at_ms.is_some() { 8 } else { 0 };
        put_varint64(&mut self.rep, stored as u64);
        if let Some(t) = expire_at_ms {
            put_fixed64(&mut self.rep, t);
        }
        self.rep.extend_from_slice(value);
        self.count += 1;
        self.longest_key_bytes = self.longest_key_bytes.max(key.len());
        self.longest_value_bytes = self.longest_value_bytes.max(value.len());
    }

    /// Attaches an applied marker (see [`crate::Db::applied_marker`]). A batch
    /// with a marker and no entries still records the marker.
    pub fn set_applied_marker(&mut self, marker: &[u8]) -> &mut Self {
        self.applied_marker = Some(marker.to_vec());
        self
    }

    /// The attached applied marker.
    pub fn applied_marker(&self) -> Option<&[u8]> {
        self.applied_marker.as_deref()
    }

    /// Number of entries (before coalescing).
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.rep.len()
    }

    /// Length in bytes of the longest key and of the longest value in the
    /// batch (observed, not limits: the limits are `Options::key_bytes_max`
    /// and `value_bytes_max`).
    pub fn longest_key_and_value_bytes(&self) -> (usize, usize) {
        (self.longest_key_bytes, self.longest_value_bytes)
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.rep.clear();
        self.count = 0;
        self.longest_key_bytes = 0;
        self.longest_value_bytes = 0;
        self.applied_marker = None;
    }

    /// Adds every entry of `other` after this batch's entries (its applied
    /// marker is not taken).
    pub fn append(&mut self, other: &WriteBatch) -> &mut Self {
        self.rep.extend_from_slice(&other.rep);
        self.count += other.count;
        self.longest_key_bytes = self.longest_key_bytes.max(other.longest_key_bytes);
        self.longest_value_bytes = self.longest_value_bytes.max(other.longest_value_bytes);
        self
    }

    /// The entries in order.
    pub fn iter(&self) -> BatchIter<'_> {
        BatchIter {
            d: Decoder::new(&self.rep),
            left: self.count,
        }
    }

    /// Drops every entry that a later entry of the same key overrides.
    pub fn coalesce(&mut self) {
        if self.count < 2 {
            return;
        }
        // Only looked up, never iterated, so the map's order cannot leak
        // into behaviour; the fixed-key hasher keeps it deterministic anyway.
        let mut last: HashMap<&[u8], usize, BuildHasherDefault<DefaultHasher>> =
            HashMap::with_capacity_and_hasher(self.count as usize, Default::default());
        let entries: Vec<BatchEntry<'_>> = self.iter().collect();
        let mut ranges = 0;
        for (i, e) in entries.iter().enumerate() {
            // A range delete is no write to its start key: it never
            // replaces, and is never replaced by, a point write.
            if e.kind == ValueKind::RangeDelete {
                ranges += 1;
            } else {
                last.insert(e.key, i);
            }
        }
        if last.len() + ranges == entries.len() {
            return;
        }
        let mut out = WriteBatch::new();
        out.applied_marker = self.applied_marker.clone();
        for (i, e) in entries.iter().enumerate() {
            if e.kind == ValueKind::RangeDelete || last.get(e.key) == Some(&i) {
                out.push_entry(e);
            }
        }
        *self = out;
    }

    fn push_entry(&mut self, e: &BatchEntry<'_>) {
        match e.kind {
            ValueKind::Delete => {
                self.delete(e.key);
            }
            kind => {
                self.rep.push(kind as u8);
                put_varint64(&mut self.rep, e.key.len() as u64);
                self.rep.extend_from_slice(e.key);
                put_varint64(&mut self.rep, e.value.len() as u64);
                self.rep.extend_from_slice(e.value);
                self.count += 1;
                self.longest_key_bytes = self.longest_key_bytes.max(e.key.len());
                self.longest_value_bytes = self.longest_value_bytes.max(e.value.len());
            }
        }
    }

    pub(crate) fn rep(&self) -> &[u8] {
        &self.rep
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }
}

/// Iterates the entries of an encoded batch (or of a write group's body).
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    d: Decoder<'a>,
    left: u32,
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = BatchEntry<'a>;
    fn next(&mut self) -> Option<BatchEntry<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // A batch built by this module always decodes; group bodies read from
        // disk are checked by `decode_group` before iteration.
        decode_entry(&mut self.d)
    }
}

fn decode_entry<'a>(d: &mut Decoder<'a>) -> Option<BatchEntry<'a>> {
    let kind = ValueKind::from_u8(d.u8()?)?;
    let key = d.length_prefixed()?;
    let value = match kind {
        ValueKind::Delete => &[][..],
        ValueKind::Put | ValueKind::RangeDelete => d.length_prefixed()?,
        ValueKind::PutExpiring => {
            let v = d.length_prefixed()?;
            if v.len() < 8 {
                return None;
            }
            v
        }
    };
    Some(BatchEntry { kind, key, value })
}

/// Encodes a write group: the batches get consecutive sequence numbers from
/// `base_seq`, in order. Returns the payload.
pub fn encode_group(dst: &mut Vec<u8>, base_seq: SeqNo, batches: &[WriteBatch]) {
    let count: u32 = batches.iter().map(|b| b.count()).sum();
    dst.push(GROUP_TAG_V1);
    put_fixed64(dst, base_seq);
    dst.extend_from_slice(&count.to_le_bytes());
    for b in batches {
        dst.extend_from_slice(b.rep());
    }
}

/// A decoded write group.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    /// Sequence number of the first entry.
    pub base_seq: SeqNo,
    /// Number of entries.
    pub count: u32,
    body: &'a [u8],
}

impl<'a> Group<'a> {
    /// The entries, with their sequence numbers.
    pub fn entries(&self) -> impl Iterator<Item = (SeqNo, BatchEntry<'a>)> + 'a {
        let base = self.base_seq;
        BatchIter {
            d: Decoder::new(self.body),
            left: self.count,
        }
        .enumerate()
        .map(move |(i, e)| (base + i as u64, e))
    }

    /// Sequence number of the last entry.
    pub fn last_seq(&self) -> SeqNo {
        self.base_seq + u64::from(self.count).saturating_sub(1)
    }
}

/// Decodes and fully validates a write-group payload; `None` if malformed.
pub fn decode_group(payload: &[u8]) -> Option<Group<'_>> {
    let mut d = Decoder::new(payload);
    if d.u8()? != GROUP_TAG_V1 {
        return None;
    }
    let base_seq = d.fixed64()?;
    let count = d.fixed32()?;
    let body = &payload[d.position()..];
    let mut check = Decoder::new(body);
    for _ in 0..count {
        decode_entry(&mut check)?;
    }
    if !check.is_empty() || base_seq == 0 {
        return None;
    }
    Some(Group {
        base_seq,
        count,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_keeps_both_batches_entries_in_order() {
        let mut a = WriteBatch::new();
        a.put(b"a", b"1");
        let mut b = WriteBatch::new();
        b.delete(b"b").put_expiring(b"c", &[9; 300], 42);
        b.set_applied_marker(b"m");
        a.append(&b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.longest_key_and_value_bytes(), (1, 300));
        assert_eq!(a.applied_marker(), None);
        let keys: Vec<&[u8]> = a.iter().map(|e| e.key).collect();
        assert_eq!(keys, [&b"a"[..], b"b", b"c"]);
        let last = a.iter().last().expect("three entries");
        assert_eq!(last.kind, ValueKind::PutExpiring);
        assert_eq!(&last.value[..8], &42u64.to_le_bytes());
    }

    #[test]
    fn coalescing_keeps_the_last_write_per_key_in_order() {
        let mut b = WriteBatch::new();
        b.put(b"a", b"1")
            .put(b"b", b"2")
            .delete(b"a")
            .put_expiring(b"b", b"3", 99)
            .put(b"c", b"4");
        b.coalesce();
        let got: Vec<_> = b.iter().map(|e| (e.kind, e.key.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (ValueKind::Delete, b"a".to_vec()),
                (ValueKind::PutExpiring, b"b".to_vec()),
                (ValueKind::Put, b"c".to_vec())
            ]
        );
        let b_entry = b.iter().nth(1).unwrap();
        assert_eq!(crate::coding::get_fixed64(b_entry.value), 99);
        assert_eq!(&b_entry.value[8..], b"3");
    }

    #[test]
    fn group_round_trips_with_consecutive_sequence_numbers() {
        let mut a = WriteBatch::new();
        a.put(b"x", b"1").delete(b"y");
        let mut b = WriteBatch::new();
        b.put(b"z", b"2");
        let mut buf = Vec::new();
        encode_group(&mut buf, 10, &[a, b]);
        let g = decode_group(&buf).unwrap();
        let got: Vec<_> = g.entries().map(|(s, e)| (s, e.key.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (10, b"x".to_vec()),
                (11, b"y".to_vec()),
                (12, b"z".to_vec())
            ]
        );
        assert_eq!(g.last_seq(), 12);
    }

    #[test]
    fn malformed_groups_are_refused() {
        let mut a = WriteBatch::new();
        a.put(b"x", b"1");
        let mut buf = Vec::new();
        encode_group(&mut buf, 1, std::slice::from_ref(&a));
        for cut in 0..buf.len() {
            assert!(decode_group(&buf[..cut]).is_none(), "cut at {cut}");
        }
        let mut bad = buf.clone();
        bad[GROUP_HEADER_LEN] = 7; // unknown kind
        assert!(decode_group(&bad).is_none());
        let mut extra = buf.clone();
        extra.push(0);
        assert!(decode_group(&extra).is_none());
    }
}
