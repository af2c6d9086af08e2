//! The merging iterator: one ordered view over several sorted children
//! (memtables, L0 tables, levels).

use crate::error::Result;
use crate::iter::InternalIterator;
use crate::key::compare_internal;
use std::cmp::Ordering;

/// Merges children in internal-key order. Children are few (memtables, at
/// most `l0_stop_writes_trigger` L0 tables and one per deeper level), so the
/// smallest is found by a linear scan rather than a heap.
pub struct MergingIterator {
    children: Vec<Box<dyn InternalIterator>>,
    current: Option<usize>,
}

impl std::fmt::Debug for MergingIterator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergingIterator")
            .field("children", &self.children.len())
            .field("current", &self.current)
            .finish()
    }
}

impl MergingIterator {
    /// Merges `children`. On equal internal keys (which the engine never
    /// produces) the earlier child wins.
    pub fn new(children: Vec<Box<dyn InternalIterator>>) -> MergingIterator {
        MergingIterator {
            children,
            current: None,
        }
    }

    fn find_smallest(&mut self) {
        let mut best: Option<usize> = None;
        for (i, c) in self.children.iter().enumerate() {
            if !c.valid() {
                continue;
            }
            best = match best {
                Some(b)
                    if compare_internal(self.children[b].key(), c.key()) != Ordering::Greater =>
                {
                    Some(b)
                }
                _ => Some(i),
            };
        }
        self.current = best;
    }
}

impl InternalIterator for MergingIterator {
    fn valid(&self) -> bool {
        self.current.is_some()
    }
    fn seek_to_first(&mut self) -> Result<()> {
        self.current = None;
        for c in &mut self.children {
            c.seek_to_first()?;
        }
        self.find_smallest();
        Ok(())
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.current = None;
        for c in &mut self.children {
            c.seek(target)?;
        }
        self.find_smallest();
        Ok(())
    }
    fn next(&mut self) -> Result<()> {
        if let Some(i) = self.current.take() {
            self.children[i].next()?;
            self.find_smallest();
        }
        Ok(())
    }
    fn key(&self) -> &[u8] {
        self.current.map_or(&[], |i| self.children[i].key())
    }
    fn value(&self) -> &[u8] {
        self.current.map_or(&[], |i| self.children[i].value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{internal_key, parse_internal_key, ValueKind};
    use crate::memtable::{MemKey, MemTable};
    use bytes::Bytes;

    #[test]
    fn merges_children_in_order() {
        let a = MemTable::new(1);
        let b = MemTable::new(1);
        for (m, k, s) in [(&a, b"a", 1), (&b, b"a", 2), (&a, b"c", 3), (&b, b"b", 4)] {
            let ik = internal_key(k, s, ValueKind::Put);
            let n = ik.len();
            m.insert(MemKey::new(Bytes::from(ik), n), s);
        }
        let mut it = MergingIterator::new(vec![Box::new(a.iter()), Box::new(b.iter())]);
        it.seek_to_first().unwrap();
        let mut got = Vec::new();
        while it.valid() {
            let p = parse_internal_key(it.key()).unwrap();
            got.push((p.user_key.to_vec(), p.seq));
            it.next().unwrap();
        }
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), 2),
                (b"a".to_vec(), 1),
                (b"b".to_vec(), 4),
                (b"c".to_vec(), 3)
            ]
        );
    }
}
