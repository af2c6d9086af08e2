//! Range deletes as *sequence floors*: "every entry of a key in
//! `[start, end)` with a sequence number at or below `seq` is gone"
//! (FORMAT.md, "Range deletes"). One floor replaces a key-by-key loop: a
//! FLUSHALL costs one record whatever the data, and readers, flush,
//! compaction and checkpoints each apply the same rule ([`hides`]).
//!
//! A floor lives in the memtable that received it (and in the WAL record
//! of its write group, in standalone mode) until that memtable is
//! flushed; the flush's manifest edit then carries it, together with the
//! flushed tables and the applied marker, so in replicated mode the floor
//! is never durable ahead of the entries it follows. Once no table holds
//! an entry it covers, the floor is dropped
//! (`Version::floors_still_needed`), so the set
//! stays as small as the data it still has to hide.
//!
//! Everything here is pure.

use crate::coding::{put_length_prefixed, put_varint64, Decoder};
use crate::key::SeqNo;

/// A range delete at a sequence number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RangeFloor {
    /// First user key covered (non-empty).
    pub start: Vec<u8>,
    /// First user key past the range; `None`: no end.
    pub end: Option<Vec<u8>>,
    /// The range delete's own sequence number: entries at or below it are
    /// covered, for readers at or above it.
    pub seq: SeqNo,
}

impl RangeFloor {
    /// True if `key` is inside the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    /// True if the entry (`key`, `entry_seq`) is gone for a reader at
    /// `read_seq`.
    pub fn hides(&self, key: &[u8], entry_seq: SeqNo, read_seq: SeqNo) -> bool {
        entry_seq <= self.seq && self.seq <= read_seq && self.contains(key)
    }

    /// True if a table with user keys from `smallest` to `largest` and
    /// sequence numbers from `smallest_seq` on may hold an entry this
    /// floor covers.
    pub fn may_cover(&self, smallest: &[u8], largest: &[u8], smallest_seq: SeqNo) -> bool {
        smallest_seq <= self.seq
            && largest >= self.start.as_slice()
            && self.end.as_deref().is_none_or(|e| smallest < e)
    }

    /// True if this floor hides everything `other` hides (same or wider
    /// range, same or later sequence number).
    fn subsumes(&self, other: &RangeFloor) -> bool {
        self.seq >= other.seq
            && self.start <= other.start
            && match (&self.end, &other.end) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => a >= b,
            }
    }
}

/// True if any of `floors` hides (`key`, `entry_seq`) from a reader at `read_seq`.
pub fn hides(floors: &[RangeFloor], key: &[u8], entry_seq: SeqNo, read_seq: SeqNo) -> bool {
    floors.iter().any(|f| f.hides(key, entry_seq, read_seq))
}

/// `a` and `b` together, without floors another one subsumes, sorted.
pub fn merge(a: &[RangeFloor], b: &[RangeFloor]) -> Vec<RangeFloor> {
    let all: Vec<&RangeFloor> = a.iter().chain(b).collect();
    let mut out: Vec<RangeFloor> = Vec::new();
    for (i, f) in all.iter().enumerate() {
        // Of two equal floors keep the first only.
        let dominated = all
            .iter()
            .enumerate()
            .any(|(j, g)| j != i && g.subsumes(f) && (!f.subsumes(g) || j < i));
        if !dominated {
            out.push((*f).clone());
        }
    }
    out.sort();
    out
}

/// Encodes floors for the manifest: varint count, then per floor varint
/// seq, length-prefixed start, length-prefixed end (empty: no end).
pub fn encode(floors: &[RangeFloor]) -> Vec<u8> {
    let mut b = Vec::new();
    put_varint64(&mut b, floors.len() as u64);
    for f in floors {
        put_varint64(&mut b, f.seq);
        put_length_prefixed(&mut b, &f.start);
        put_length_prefixed(&mut b, f.end.as_deref().unwrap_or(&[]));
    }
    b
}

/// Decodes [`encode`]'s output; `None` if malformed (a count past the
/// body, an empty start, trailing bytes).
pub fn decode(body: &[u8]) -> Option<Vec<RangeFloor>> {
    let mut d = Decoder::new(body);
    let n = d.varint64()?;
    // Each floor takes at least 3 bytes, so a count past that is damage
    // (and cannot make us reserve unbounded memory).
    if n > body.len() as u64 / 3 {
        return None;
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let seq = d.varint64()?;
        let start = d.length_prefixed()?.to_vec();
        let end = d.length_prefixed()?;
        if start.is_empty() {
            return None;
        }
        out.push(RangeFloor {
            start,
            end: (!end.is_empty()).then(|| end.to_vec()),
            seq,
        });
    }
    d.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor(start: &[u8], end: Option<&[u8]>, seq: SeqNo) -> RangeFloor {
        RangeFloor {
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
            seq,
        }
    }

    #[test]
    fn a_floor_hides_older_entries_in_range_from_later_readers_only() {
        let f = floor(b"b", Some(b"d"), 10);
        assert!(f.hides(b"b", 10, 10));
        assert!(f.hides(b"c", 3, 50));
        assert!(!f.hides(b"c", 11, 50), "written after the floor");
        assert!(!f.hides(b"c", 3, 9), "a reader from before the floor");
        assert!(!f.hides(b"d", 3, 50), "the end is exclusive");
        assert!(!f.hides(b"a", 3, 50));
        assert!(floor(b"\0", None, 10).hides(b"\xff\xff", 1, 10));
    }

    #[test]
    fn merging_drops_subsumed_floors_and_keeps_one_of_equals() {
        let got = merge(
            &[floor(b"a", None, 5), floor(b"b", Some(b"c"), 9)],
            &[floor(b"a", None, 7), floor(b"a", None, 7)],
        );
        assert_eq!(got, vec![floor(b"a", None, 7), floor(b"b", Some(b"c"), 9)]);
    }

    #[test]
    fn a_floor_may_cover_a_table_that_meets_its_range_below_its_seq() {
        let f = floor(b"k", Some(b"m"), 5);
        assert!(f.may_cover(b"a", b"k", 5));
        assert!(f.may_cover(b"l", b"z", 1));
        assert!(!f.may_cover(b"a", b"k", 6), "all written after the floor");
        assert!(!f.may_cover(b"m", b"z", 1), "past the exclusive end");
        assert!(!f.may_cover(b"a", b"j", 1), "before the start");
    }

    #[test]
    fn floors_round_trip_and_damage_is_refused() {
        let floors = vec![floor(b"a", None, 5), floor(b"b", Some(b"c"), 1 << 50)];
        let buf = encode(&floors);
        assert_eq!(decode(&buf), Some(floors));
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), None, "cut at {cut}");
        }
        let mut extra = buf.clone();
        extra.push(0);
        assert_eq!(decode(&extra), None);
        assert_eq!(decode(&encode(&[floor(b"", None, 1)])), None);
    }
}
