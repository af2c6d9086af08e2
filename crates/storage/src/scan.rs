//! Range scans over a snapshot: a merging iterator over memtables, L0
//! tables and one concatenating iterator per deeper level, filtered to the
//! newest visible version of each user key.

use crate::engine::{Engine, ReadView};
use crate::error::Result;
use crate::iter::InternalIterator;
use crate::key::{compare_internal, lookup_key, parse_internal_key, SeqNo, ValueKind};
use crate::merge::MergingIterator;
use crate::read::Snapshot;
use crate::table::TableIterator;
use crate::version::FileMeta;
use bytes::Bytes;
use std::cmp::Ordering;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// Iterates the tables of one sorted, non-overlapping level in order,
/// opening one table iterator at a time.
pub(crate) struct LevelIterator {
    files: Vec<Arc<FileMeta>>,
    index: usize,
    current: Option<TableIterator>,
}

impl LevelIterator {
    pub(crate) fn new(files: Vec<Arc<FileMeta>>) -> LevelIterator {
        LevelIterator {
            files,
            index: 0,
            current: None,
        }
    }

    fn open(&mut self, index: usize) -> bool {
        self.index = index;
        match self.files.get(index) {
            Some(f) => {
                self.current = Some(f.table.iter());
                true
            }
            None => {
                self.current = None;
                false
            }
        }
    }

    /// Moves to following files until one has an entry.
    fn skip_exhausted(&mut self) -> Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            if !self.open(self.index + 1) {
                break;
            }
            if let Some(c) = self.current.as_mut() {
                c.seek_to_first()?;
            }
        }
        Ok(())
    }
}

impl InternalIterator for LevelIterator {
    fn valid(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.valid())
    }
    fn seek_to_first(&mut self) -> Result<()> {
        if self.open(0) {
            if let Some(c) = self.current.as_mut() {
                c.seek_to_first()?;
            }
        }
        self.skip_exhausted()
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let i = self
            .files
            .partition_point(|f| compare_internal(&f.desc.largest, target) == Ordering::Less);
        if self.open(i) {
            if let Some(c) = self.current.as_mut() {
                c.seek(target)?;
            }
        }
        self.skip_exhausted()
    }
    fn next(&mut self) -> Result<()> {
        if let Some(c) = self.current.as_mut() {
            c.next()?;
        }
        self.skip_exhausted()
    }
    fn key(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |c| c.key())
    }
    fn value(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |c| c.value())
    }
}

/// All internal entries visible through `view`, merged.
pub(crate) fn merged(view: &ReadView) -> MergingIterator {
    let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
    children.push(Box::new(view.mem.iter()));
    for m in &view.imms {
        children.push(Box::new(m.iter()));
    }
    for f in &view.version.levels[0] {
        children.push(Box::new(f.table.iter()));
    }
    for level in &view.version.levels[1..] {
        if !level.is_empty() {
            children.push(Box::new(LevelIterator::new(level.clone())));
        }
    }
    MergingIterator::new(children)
}

/// Iterates live (key, value) pairs of a range in key order, as of a
/// snapshot. Items are owned copies; errors (a corrupt block, an I/O error)
/// are yielded once and end the iteration.
pub struct ScanIter {
    engine: Arc<Engine>,
    _snapshot: Snapshot,
    _view: Arc<ReadView>,
    iter: MergingIterator,
    seq: SeqNo,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    positioned: bool,
    last_key: Option<Vec<u8>>,
    done: bool,
    /// Hide keys expired as of this time instead of the engine's read time.
    as_of_ms: Option<u64>,
    /// The range deletes this scan's snapshot sees.
    floors: Vec<crate::range_floor::RangeFloor>,
}

impl std::fmt::Debug for ScanIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanIter")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

fn owned<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl ScanIter {
    pub(crate) fn new<K: AsRef<[u8]>>(
        engine: Arc<Engine>,
        snapshot: Snapshot,
        range: impl RangeBounds<K>,
    ) -> Result<ScanIter> {
        let view = engine.read_view();
        let iter = merged(&view);
        let mut floors = view.floors();
        floors.retain(|f| f.seq <= snapshot.seq());
        Ok(ScanIter {
            floors,
            seq: snapshot.seq(),
            engine,
            _snapshot: snapshot,
            _view: view,
            iter,
            start: owned(range.start_bound()),
            end: owned(range.end_bound()),
            positioned: false,
            last_key: None,
            done: false,
            as_of_ms: None,
        })
    }

    fn position(&mut self) -> Result<()> {
        self.positioned = true;
        match &self.start {
            Bound::Unbounded => self.iter.seek_to_first(),
            Bound::Included(k) | Bound::Excluded(k) => {
                let target = lookup_key(k, self.seq);
                self.iter.seek(&target)?;
                if let Bound::Excluded(k) = &self.start {
                    self.last_key = Some(k.clone());
                }
                Ok(())
            }
        }
    }

    fn past_end(&self, ukey: &[u8]) -> bool {
        match &self.end {
            Bound::Unbounded => false,
            Bound::Included(e) => ukey > e.as_slice(),
            Bound::Excluded(e) => ukey >= e.as_slice(),
        }
    }

    /// This scan, yielding each key's expiry too, as of `now_ms`.
    pub fn with_expiry_as_of(mut self, now_ms: u64) -> ExpiryScanIter {
        self.as_of_ms = Some(now_ms);
        ExpiryScanIter(self)
    }

    fn advance(&mut self) -> Result<Option<(Bytes, Bytes, Option<u64>)>> {
        if !self.positioned {
            self.position()?;
        }
        let now_ms = self.as_of_ms.unwrap_or_else(|| self.engine.read_now_ms());
        while self.iter.valid() {
            let ikey = self.iter.key();
            let p = parse_internal_key(ikey).ok_or_else(|| {
                crate::error::Error::corruption(
                    &self.engine.dir,
                    0,
                    "unparsable internal key in scan",
                )
            })?;
            if p.seq > self.seq || self.last_key.as_deref() == Some(p.user_key) {
                self.iter.next()?;
                continue;
            }
            if self.past_end(p.user_key) {
                return Ok(None);
            }
            self.last_key = Some(p.user_key.to_vec());
            let value = self.iter.value();
            let hidden = crate::range_floor::hides(&self.floors, p.user_key, p.seq, self.seq);
            let item = match p.kind {
                _ if hidden => None,
                ValueKind::Delete | ValueKind::RangeDelete => None,
                ValueKind::Put => Some((Bytes::copy_from_slice(value), None)),
                ValueKind::PutExpiring => {
                    let at = (value.len() >= 8).then(|| crate::coding::get_fixed64(value));
                    at.filter(|at| *at > now_ms)
                        .map(|at| (Bytes::copy_from_slice(&value[8..]), Some(at)))
                }
            };
            let key = Bytes::copy_from_slice(p.user_key);
            self.iter.next()?;
            if let Some((v, at)) = item {
                return Ok(Some((key, v, at)));
            }
        }
        Ok(None)
    }
}

impl Iterator for ScanIter {
    type Item = Result<(Bytes, Bytes)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().map(|r| r.map(|(k, v, _)| (k, v)))
    }
}

/// A [`ScanIter`] that yields each live key's value and expiry (ms since
/// the Unix epoch; `None` for a key that never expires), as of a fixed time.
#[derive(Debug)]
pub struct ExpiryScanIter(ScanIter);

impl Iterator for ExpiryScanIter {
    type Item = Result<(Bytes, Bytes, Option<u64>)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_entry()
    }
}

impl ScanIter {
    fn next_entry(&mut self) -> Option<Result<(Bytes, Bytes, Option<u64>)>> {
        if self.done {
            return None;
        }
        match self.advance() {
            Ok(Some(kv)) => Some(Ok(kv)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
