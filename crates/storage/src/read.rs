//! Point reads and snapshots: the newest entry for a key as of a sequence
//! number, searched in the readers' view (active memtable, frozen ones
//! newest first, then the tables level by level), and the registry of
//! snapshots that keeps compaction from dropping what a reader may still ask
//! for. Scans are in `scan.rs`.

use crate::engine::Engine;
use crate::error::Result;
use crate::key::{lookup_key, parse_internal_key, SeqNo, ValueKind};
use crate::lock::lock;
use crate::stats::add;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A point-in-time view: reads through it see exactly the writes
/// acknowledged before it was taken. Compaction keeps what it needs.
#[derive(Debug)]
pub struct Snapshot {
    seq: SeqNo,
    engine: Arc<Engine>,
}

impl Snapshot {
    /// The sequence number the snapshot reads at.
    pub fn seq(&self) -> SeqNo {
        self.seq
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut s = lock(&self.engine.snapshots);
        if let Some(n) = s.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                s.remove(&self.seq);
            }
        }
    }
}

impl Engine {
    /// Takes a snapshot of everything acknowledged so far.
    pub(crate) fn snapshot(self: &Arc<Self>) -> Snapshot {
        let mut s = lock(&self.snapshots);
        // Read the sequence under the lock so compaction, which reads the
        // oldest snapshot under the same lock, never misses this one.
        let seq = self.visible_seq.load(Ordering::Acquire);
        *s.entry(seq).or_insert(0) += 1;
        Snapshot {
            seq,
            engine: self.clone(),
        }
    }

    /// Another snapshot at `seq` (one a caller already holds), for a scan
    /// that must keep its own.
    pub(crate) fn snapshot_at(self: &Arc<Self>, seq: SeqNo) -> Snapshot {
        let snap = Snapshot {
            seq,
            engine: self.clone(),
        };
        *lock(&self.snapshots).entry(snap.seq).or_insert(0) += 1;
        snap
    }

    /// The oldest sequence number any reader may still ask for.
    pub(crate) fn oldest_snapshot(&self) -> SeqNo {
        let s = lock(&self.snapshots);
        let visible = self.visible_seq.load(Ordering::Acquire);
        if crate::planted::active(crate::planted::PlantedBug::CompactionIgnoresSnapshots) {
            return visible;
        }
        s.keys().next().copied().unwrap_or(visible).min(visible)
    }

    /// The value of `key` as of `seq`, or `None` if absent, deleted or expired.
    pub(crate) fn get_at(&self, key: &[u8], seq: SeqNo) -> Result<Option<Bytes>> {
        Ok(self.find(key, seq)?.and_then(|(kind, value)| {
            resolve_entry(kind, value, || self.read_now_ms()).map(|(v, _)| v)
        }))
    }

    /// The newest entry for `key` at or below `seq`: its kind and stored
    /// value (tombstones and expired entries included).
    pub(crate) fn find(&self, key: &[u8], seq: SeqNo) -> Result<Option<(ValueKind, Bytes)>> {
        add(&self.stats.gets, 1);
        let view = self.read_view();
        let lookup = lookup_key(key, seq);
        let floors = view.floors();
        // A version a range delete covers reads as a tombstone: it and
        // every older version of the key are gone for this reader.
        let kind = |ikey: &[u8]| {
            parse_internal_key(ikey).map(|p| {
                if crate::range_floor::hides(&floors, key, p.seq, seq) {
                    ValueKind::Delete
                } else {
                    p.kind
                }
            })
        };
        if let Some(e) = view.mem.get(&lookup) {
            return Ok(kind(e.ikey()).map(|k| (k, e.value_bytes())));
        }
        for m in &view.imms {
            if let Some(e) = m.get(&lookup) {
                return Ok(kind(e.ikey()).map(|k| (k, e.value_bytes())));
            }
        }
        Ok(view
            .version
            .get(&lookup)?
            .and_then(|f| kind(&f.ikey).map(|k| (k, f.value))))
    }
}

/// Turns a found entry into what the user sees: the value and its expiry,
/// or `None` for a tombstone or an entry expired at or before `now_ms()`
/// (called only for expiring entries, so plain reads never touch a clock).
pub(crate) fn resolve_entry(
    kind: ValueKind,
    value: Bytes,
    now_ms: impl FnOnce() -> u64,
) -> Option<(Bytes, Option<u64>)> {
    match kind {
        // A range delete never reaches a memtable's skiplist or a table.
        ValueKind::Delete | ValueKind::RangeDelete => None,
        ValueKind::Put => Some((value, None)),
        ValueKind::PutExpiring => {
            // Every writer puts the 8-byte expiry first (tables and the WAL
            // are CRC-checked, so a shorter value cannot come from disk).
            if value.len() < 8 {
                return None;
            }
            let at = crate::coding::get_fixed64(&value);
            (at > now_ms()).then(|| (value.slice(8..), Some(at)))
        }
    }
}
