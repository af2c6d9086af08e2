//! SCAN cursors. Redis's cursor is an integer; ballast's scan position is
//! a key. The server keeps a bounded map from cursor number to the key the
//! next page starts at.
//!
//! - A cursor is used once: SCAN removes it and, when the scan is not
//!   finished, issues a new number. So each scan in progress holds one
//!   entry, however many pages it has read.
//! - Bounded by count and by bytes (keys can be 64 KiB): when either is
//!   exceeded the oldest cursors are evicted.
//! - An unknown cursor (evicted, already used, or never issued) is an
//!   error, not a silent restart: a restart would hand the client keys it
//!   already saw and could loop forever under eviction pressure. The
//!   client starts again from 0.
//!
//! Numbers count up from 1 and are never 0 (0 means "start" and "done").

use bytes::Bytes;
use std::collections::BTreeMap;

/// The cursor table.
#[derive(Debug)]
pub(crate) struct Cursors {
    entries_max: usize,
    bytes_max: usize,
    bytes: usize,
    next_number: u64,
    /// Ordered by number, which is issue order: the first entry is the
    /// oldest, evicted first.
    entries: BTreeMap<u64, Bytes>,
}

impl Cursors {
    pub(crate) fn new(entries_max: usize, bytes_max: usize) -> Cursors {
        Cursors {
            entries_max: entries_max.max(1),
            bytes_max,
            bytes: 0,
            next_number: 1,
            entries: BTreeMap::new(),
        }
    }

    /// Registers `next_key` as where a scan continues; returns its cursor.
    pub(crate) fn issue(&mut self, next_key: Bytes) -> u64 {
        let number = self.next_number;
        // u64 does not wrap in practice (one cursor per nanosecond for 584
        // years), but 0 must never be issued even then.
        self.next_number = self.next_number.checked_add(1).unwrap_or(1);
        self.bytes += next_key.len();
        self.entries.insert(number, next_key);
        while self.entries.len() > self.entries_max
            || (self.bytes > self.bytes_max && self.entries.len() > 1)
        {
            if let Some((_, evicted)) = self.entries.pop_first() {
                self.bytes -= evicted.len();
            }
        }
        number
    }

    /// Where the scan with `cursor` continues, consuming the cursor.
    pub(crate) fn take(&mut self, cursor: u64) -> Option<Bytes> {
        let key = self.entries.remove(&cursor)?;
        self.bytes -= key.len();
        Some(key)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_used_once() {
        let mut cursors = Cursors::new(4, 1024);
        let cursor = cursors.issue(Bytes::from("k5"));
        assert_ne!(cursor, 0);
        assert_eq!(cursors.take(cursor), Some(Bytes::from("k5")));
        assert_eq!(cursors.take(cursor), None);
        assert_eq!(cursors.take(12345), None);
    }

    #[test]
    fn the_oldest_cursors_are_evicted_by_count_and_by_bytes() {
        let mut cursors = Cursors::new(2, 1024);
        let first = cursors.issue(Bytes::from("a"));
        let second = cursors.issue(Bytes::from("b"));
        let third = cursors.issue(Bytes::from("c"));
        assert_eq!(cursors.len(), 2);
        assert_eq!(cursors.take(first), None);
        assert_eq!(cursors.take(second), Some(Bytes::from("b")));
        assert_eq!(cursors.take(third), Some(Bytes::from("c")));

        let mut cursors = Cursors::new(100, 10);
        let big = cursors.issue(Bytes::from(vec![b'x'; 8]));
        let other = cursors.issue(Bytes::from(vec![b'y'; 8]));
        assert_eq!(cursors.take(big), None);
        assert_eq!(cursors.take(other).map(|k| k.len()), Some(8));
    }
}
