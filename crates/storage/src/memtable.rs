//! The memtable: a lock-free skiplist (crossbeam-skiplist) of internal keys.
//!
//! Each entry is one allocation holding the internal key followed by the
//! value; entries of one group commit share their allocation, so a group of
//! a thousand small writes costs one allocation plus the skiplist nodes.

use crate::error::Result;
use crate::iter::InternalIterator;
use crate::key::{compare_internal, SeqNo};
use crate::range_floor::RangeFloor;
use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

/// Bytes charged per entry on top of key and value: the skiplist node and
/// the `Bytes` handle. An estimate; it keeps the size bound honest for small
/// entries.
const ENTRY_OVERHEAD_BYTES: u64 = 80;

/// An internal key with its value, sharing one buffer.
///
/// `prefix` holds the first 16 bytes of the user key (zero-padded,
/// big-endian) inline, so most skiplist comparisons are decided without following the
/// pointer into `buf`: random-key inserts are bound by cache misses, and
/// this halves them. Zero-padding keeps prefix order consistent with
/// bytewise order; equal prefixes fall back to the full comparison.
#[derive(Clone, Debug)]
pub struct MemKey {
    prefix: u128,
    buf: Bytes,
    key_len: u32,
}

#[inline]
fn key_prefix(user_key: &[u8]) -> u128 {
    let mut p = [0u8; 16];
    let n = user_key.len().min(16);
    p[..n].copy_from_slice(&user_key[..n]);
    u128::from_be_bytes(p)
}

impl MemKey {
    /// `buf` holds the internal key in its first `key_len` bytes, then the value.
    pub fn new(buf: Bytes, key_len: usize) -> MemKey {
        debug_assert!(key_len <= buf.len() && key_len >= crate::key::TRAILER_LEN);
        MemKey {
            prefix: key_prefix(&buf[..key_len - crate::key::TRAILER_LEN]),
            buf,
            key_len: key_len as u32,
        }
    }

    /// A key with no value, for lookups.
    pub fn lookup(ikey: &[u8]) -> MemKey {
        MemKey::new(Bytes::copy_from_slice(ikey), ikey.len())
    }

    /// The internal key.
    #[inline]
    pub fn ikey(&self) -> &[u8] {
        &self.buf[..self.key_len as usize]
    }

    /// The value.
    #[inline]
    pub fn value(&self) -> &[u8] {
        &self.buf[self.key_len as usize..]
    }

    /// The value as a shared handle.
    #[inline]
    pub fn value_bytes(&self) -> Bytes {
        self.buf.slice(self.key_len as usize..)
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for MemKey {}
impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MemKey {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        match self.prefix.cmp(&other.prefix) {
            Ordering::Equal => compare_internal(self.ikey(), other.ikey()),
            o => o,
        }
    }
}

/// One memtable.
#[derive(Debug)]
pub struct MemTable {
    map: SkipMap<MemKey, ()>,
    approx_bytes: AtomicU64,
    /// Highest sequence number inserted.
    max_seq: AtomicU64,
    /// The first WAL segment that may hold this memtable's entries. When the
    /// memtable is flushed, segments older than the next memtable's
    /// `first_wal_segment` are no longer needed.
    pub first_wal_segment: u64,
    /// The newest applied marker of the batches inserted here.
    applied_marker: std::sync::Mutex<Option<Vec<u8>>>,
    /// The range deletes inserted here (kept beside the skiplist: they
    /// cover keys rather than being one), moved to the manifest by the
    /// flush of this memtable.
    range_floors: std::sync::Mutex<Vec<RangeFloor>>,
    /// True once `range_floors` is not empty: reads skip the lock until then.
    has_range_floors: std::sync::atomic::AtomicBool,
}

impl MemTable {
    /// An empty memtable whose entries start in WAL segment `first_wal_segment`.
    pub fn new(first_wal_segment: u64) -> Arc<MemTable> {
        Arc::new(MemTable {
            map: SkipMap::new(),
            approx_bytes: AtomicU64::new(0),
            max_seq: AtomicU64::new(0),
            first_wal_segment,
            applied_marker: std::sync::Mutex::new(None),
            range_floors: std::sync::Mutex::new(Vec::new()),
            has_range_floors: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Inserts an entry. Entries are never replaced: every write has its own
    /// sequence number, so internal keys are unique.
    pub fn insert(&self, entry: MemKey, seq: SeqNo) {
        if let Some(p) = crate::key::parse_internal_key(entry.ikey()) {
            if p.kind == crate::key::ValueKind::RangeDelete {
                self.add_range_floor(RangeFloor {
                    start: p.user_key.to_vec(),
                    end: (!entry.value().is_empty()).then(|| entry.value().to_vec()),
                    seq,
                });
                self.max_seq.fetch_max(seq, AtomicOrdering::Relaxed);
                return;
            }
        }
        let charge = entry.buf.len() as u64 + ENTRY_OVERHEAD_BYTES;
        self.map.insert(entry, ());
        self.approx_bytes.fetch_add(charge, AtomicOrdering::Relaxed);
        self.max_seq.fetch_max(seq, AtomicOrdering::Relaxed);
    }

    /// Inserts `entries` in key order, draining the vector. Every entry has
    /// its own sequence number and readers see none of them before the
    /// caller publishes the new visible sequence, so insertion order is
    /// free; sorted insertion keeps consecutive skiplist searches on warm
    /// cache lines, several times cheaper than random order for large
    /// groups and for recovery.
    pub(crate) fn insert_sorted(&self, entries: &mut Vec<(MemKey, SeqNo)>) {
        if entries.len() > 8 {
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        for (k, seq) in entries.drain(..) {
            self.insert(k, seq);
        }
    }

    /// The first entry at or after `lookup` (an internal key), if its user
    /// key is the same as the lookup's.
    pub fn get(&self, lookup: &[u8]) -> Option<MemKey> {
        if self.map.is_empty() {
            return None;
        }
        let probe = MemKey::lookup(lookup);
        let entry = self.map.lower_bound(Bound::Included(&probe))?;
        let found = entry.key();
        (crate::key::user_key(found.ikey()) == crate::key::user_key(lookup)).then(|| found.clone())
    }

    fn add_range_floor(&self, floor: RangeFloor) {
        let mut floors = self.range_floors.lock().unwrap_or_else(|e| e.into_inner());
        let charge = (floor.start.len() + floor.end.as_ref().map_or(0, Vec::len)) as u64;
        *floors = crate::range_floor::merge(&floors, std::slice::from_ref(&floor));
        self.approx_bytes
            .fetch_add(charge + ENTRY_OVERHEAD_BYTES, AtomicOrdering::Relaxed);
        self.has_range_floors.store(true, AtomicOrdering::Release);
    }

    /// The range deletes inserted here (subsumed ones merged away).
    pub fn range_floors(&self) -> Vec<RangeFloor> {
        if !self.has_range_floors.load(AtomicOrdering::Acquire) {
            return Vec::new();
        }
        self.range_floors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the newest applied marker (called in commit order).
    pub fn set_applied_marker(&self, marker: &[u8]) {
        let mut m = self
            .applied_marker
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m = Some(marker.to_vec());
    }

    /// The newest applied marker inserted, if any.
    pub fn applied_marker(&self) -> Option<Vec<u8>> {
        self.applied_marker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Approximate memory use in bytes.
    pub fn approx_bytes(&self) -> u64 {
        self.approx_bytes.load(AtomicOrdering::Relaxed)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if it holds entries or an applied marker: something a flush
    /// must make durable (a marker alone moves the applied state on).
    pub fn has_content(&self) -> bool {
        !self.is_empty()
            || self.applied_marker().is_some()
            || self.has_range_floors.load(AtomicOrdering::Acquire)
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Highest sequence number inserted (0 if none).
    pub fn max_seq(&self) -> SeqNo {
        self.max_seq.load(AtomicOrdering::Relaxed)
    }

    /// An iterator over the entries in internal-key order.
    pub fn iter(self: &Arc<Self>) -> MemTableIterator {
        MemTableIterator {
            mem: self.clone(),
            ahead: std::collections::VecDeque::new(),
        }
    }
}

/// Entries an iterator copies out of the skiplist per search.
const ITER_BATCH_ENTRIES_MAX: usize = 64;

/// Iterates a memtable. It holds entries by value (cheap handle clones), so
/// it needs no borrow of the skiplist: each refill searches once from the
/// last entry and copies out the next `ITER_BATCH_ENTRIES_MAX` entries, so a full
/// scan costs one O(log n) search per batch rather than per entry.
#[derive(Debug)]
pub struct MemTableIterator {
    mem: Arc<MemTable>,
    /// The current entry first, then the following ones.
    ahead: std::collections::VecDeque<MemKey>,
}

impl MemTableIterator {
    fn fill_from(&mut self, from: Bound<&MemKey>) {
        self.ahead.clear();
        let range = self.mem.map.range((from, Bound::Unbounded));
        self.ahead
            .extend(range.take(ITER_BATCH_ENTRIES_MAX).map(|e| e.key().clone()));
    }
}

impl InternalIterator for MemTableIterator {
    fn valid(&self) -> bool {
        !self.ahead.is_empty()
    }
    fn seek_to_first(&mut self) -> Result<()> {
        self.fill_from(Bound::Unbounded);
        Ok(())
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let probe = MemKey::lookup(target);
        self.fill_from(Bound::Included(&probe));
        Ok(())
    }
    fn next(&mut self) -> Result<()> {
        if let Some(cur) = self.ahead.pop_front() {
            if self.ahead.is_empty() {
                self.fill_from(Bound::Excluded(&cur));
            }
        }
        Ok(())
    }
    fn key(&self) -> &[u8] {
        self.ahead.front().map_or(&[], |c| c.ikey())
    }
    fn value(&self) -> &[u8] {
        self.ahead.front().map_or(&[], |c| c.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{internal_key, lookup_key, ValueKind};

    fn entry(k: &[u8], seq: u64, v: &[u8]) -> MemKey {
        let mut buf = internal_key(k, seq, ValueKind::Put);
        let klen = buf.len();
        buf.extend_from_slice(v);
        MemKey::new(Bytes::from(buf), klen)
    }

    #[test]
    fn get_sees_the_newest_version_at_or_below_the_snapshot() {
        let m = MemTable::new(1);
        m.insert(entry(b"a", 1, b"one"), 1);
        m.insert(entry(b"a", 3, b"three"), 3);
        m.insert(entry(b"b", 2, b"bee"), 2);
        assert_eq!(m.get(&lookup_key(b"a", 10)).unwrap().value(), b"three");
        assert_eq!(m.get(&lookup_key(b"a", 2)).unwrap().value(), b"one");
        assert!(m.get(&lookup_key(b"a", 0)).is_none());
        assert!(m.get(&lookup_key(b"c", 10)).is_none());
        assert!(m.get(&lookup_key(b"", 10)).is_none());
        assert_eq!(m.max_seq(), 3);
        assert!(m.approx_bytes() >= 3 * ENTRY_OVERHEAD_BYTES);
    }

    #[test]
    fn iterator_walks_in_internal_key_order() {
        let m = MemTable::new(1);
        for (k, s) in [(&b"b"[..], 5), (b"a", 1), (b"a", 7), (b"c", 2)] {
            m.insert(entry(k, s, b"v"), s);
        }
        let mut it = m.iter();
        it.seek_to_first().unwrap();
        let mut seen = Vec::new();
        while it.valid() {
            let p = crate::key::parse_internal_key(it.key()).unwrap();
            seen.push((p.user_key.to_vec(), p.seq));
            it.next().unwrap();
        }
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), 7),
                (b"a".to_vec(), 1),
                (b"b".to_vec(), 5),
                (b"c".to_vec(), 2)
            ]
        );
        it.seek(&lookup_key(b"a", 3)).unwrap();
        assert_eq!(crate::key::parse_internal_key(it.key()).unwrap().seq, 1);
    }
}
