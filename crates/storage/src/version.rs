//! Versions: the set of live SSTables per level, and the version edits that
//! move from one version to the next (recorded in the manifest; FORMAT.md,
//! "Manifest").

use crate::coding::{put_length_prefixed, put_varint64, Decoder};
use crate::error::{Error, Result};
use crate::key::{compare_internal, user_key, SeqNo};
use crate::options::LEVELS;
use crate::range_floor::{self, RangeFloor};
use crate::table::Table;
use std::cmp::Ordering;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

/// The manifest format version this build writes (and the newest it
/// reads; version 1, without range deletes, is read too). Version 2 added
/// the range-floor field (tag 9).
pub const MANIFEST_FORMAT_VERSION: u32 = 2;

/// Describes one SSTable as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDesc {
    /// Level, 0..LEVELS.
    pub level: u32,
    /// File number (the name is `{number:06}.sst`).
    pub number: u64,
    /// Size in bytes.
    pub size: u64,
    /// Smallest internal key.
    pub smallest: Vec<u8>,
    /// Largest internal key.
    pub largest: Vec<u8>,
    /// Smallest sequence number inside.
    pub smallest_seq: SeqNo,
    /// Largest sequence number inside.
    pub largest_seq: SeqNo,
}

impl FileDesc {
    /// Smallest user key.
    pub fn smallest_user(&self) -> &[u8] {
        user_key(&self.smallest)
    }
    /// Largest user key.
    pub fn largest_user(&self) -> &[u8] {
        user_key(&self.largest)
    }
    /// True if the file's user-key range meets [lo, hi].
    pub fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        self.largest_user() >= lo && self.smallest_user() <= hi
    }
}

/// A change from one version to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionEdit {
    /// Manifest format version; set in the first edit of every manifest.
    pub format_version: Option<u32>,
    /// WAL segments below this number are no longer needed.
    pub wal_min_segment: Option<u64>,
    /// The next file number to hand out.
    pub next_file_number: Option<u64>,
    /// Every entry with a sequence number at or below this is in an SSTable.
    pub flushed_seq: Option<SeqNo>,
    /// The highest sequence number ever assigned (so it never goes backwards,
    /// even when the WAL that held it is gone).
    pub last_seq: Option<SeqNo>,
    /// Files removed: (level, number).
    pub deleted: Vec<(u32, u64)>,
    /// Files added.
    pub added: Vec<FileDesc>,
    /// Opaque marker stored with a flush (replicated mode records the last
    /// applied Raft log id here).
    pub applied_marker: Option<Vec<u8>>,
    /// The range deletes in force from this edit on (all of them: the
    /// set replaces the previous one, so a fold can also drop floors).
    pub range_floors: Option<Vec<RangeFloor>>,
}

const TAG_FORMAT_VERSION: u64 = 1;
const TAG_WAL_MIN_SEGMENT: u64 = 2;
const TAG_NEXT_FILE: u64 = 3;
const TAG_FLUSHED_SEQ: u64 = 4;
const TAG_LAST_SEQ: u64 = 5;
const TAG_DELETED: u64 = 6;
const TAG_ADDED: u64 = 7;
const TAG_APPLIED_MARKER: u64 = 8;
const TAG_RANGE_FLOORS: u64 = 9;
/// Tags at or above this may be skipped by readers that do not know them.
const TAG_IGNORABLE_FROM: u64 = 64;

impl VersionEdit {
    /// Encodes as a sequence of (tag varint, length-prefixed body) fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut field = |tag: u64, body: &[u8]| {
            put_varint64(&mut out, tag);
            put_length_prefixed(&mut out, body);
        };
        let var = |v: u64| {
            let mut b = Vec::new();
            put_varint64(&mut b, v);
            b
        };
        if let Some(v) = self.format_version {
            field(TAG_FORMAT_VERSION, &var(u64::from(v)));
        }
        if let Some(v) = self.wal_min_segment {
            field(TAG_WAL_MIN_SEGMENT, &var(v));
        }
        if let Some(v) = self.next_file_number {
            field(TAG_NEXT_FILE, &var(v));
        }
        if let Some(v) = self.flushed_seq {
            field(TAG_FLUSHED_SEQ, &var(v));
        }
        if let Some(v) = self.last_seq {
            field(TAG_LAST_SEQ, &var(v));
        }
        for &(level, number) in &self.deleted {
            let mut b = var(u64::from(level));
            put_varint64(&mut b, number);
            field(TAG_DELETED, &b);
        }
        for f in &self.added {
            let mut b = var(u64::from(f.level));
            put_varint64(&mut b, f.number);
            put_varint64(&mut b, f.size);
            put_length_prefixed(&mut b, &f.smallest);
            put_length_prefixed(&mut b, &f.largest);
            put_varint64(&mut b, f.smallest_seq);
            put_varint64(&mut b, f.largest_seq);
            field(TAG_ADDED, &b);
        }
        if let Some(m) = &self.applied_marker {
            field(TAG_APPLIED_MARKER, m);
        }
        if let Some(f) = &self.range_floors {
            field(TAG_RANGE_FLOORS, &range_floor::encode(f));
        }
        out
    }

    /// Decodes an edit; `path` and `offset` locate it for error messages.
    pub fn decode(buf: &[u8], path: &Path, offset: u64) -> Result<VersionEdit> {
        let bad = |what: &str| Error::corruption(path, offset, format!("version edit: {what}"));
        let mut d = Decoder::new(buf);
        let mut e = VersionEdit::default();
        while !d.is_empty() {
            let tag = d.varint64().ok_or_else(|| bad("truncated tag"))?;
            let body = d.length_prefixed().ok_or_else(|| bad("truncated field"))?;
            let mut b = Decoder::new(body);
            let mut var = || b.varint64().ok_or_else(|| bad("truncated varint"));
            match tag {
                TAG_FORMAT_VERSION => {
                    let v = u32::try_from(var()?).map_err(|_| bad("format version"))?;
                    if v > MANIFEST_FORMAT_VERSION {
                        return Err(Error::UnsupportedFormat {
                            path: path.to_path_buf(),
                            found: v,
                            supported: MANIFEST_FORMAT_VERSION,
                        });
                    }
                    e.format_version = Some(v);
                }
                TAG_WAL_MIN_SEGMENT => e.wal_min_segment = Some(var()?),
                TAG_NEXT_FILE => e.next_file_number = Some(var()?),
                TAG_FLUSHED_SEQ => e.flushed_seq = Some(var()?),
                TAG_LAST_SEQ => e.last_seq = Some(var()?),
                TAG_DELETED => {
                    let level = var()?;
                    let number = var()?;
                    if level >= LEVELS as u64 {
                        return Err(bad("level out of range"));
                    }
                    e.deleted.push((level as u32, number));
                }
                TAG_ADDED => {
                    let level = var()?;
                    if level >= LEVELS as u64 {
                        return Err(bad("level out of range"));
                    }
                    let number = var()?;
                    let size = var()?;
                    let smallest = b
                        .length_prefixed()
                        .ok_or_else(|| bad("smallest key"))?
                        .to_vec();
                    let largest = b
                        .length_prefixed()
                        .ok_or_else(|| bad("largest key"))?
                        .to_vec();
                    let mut var = || b.varint64().ok_or_else(|| bad("truncated varint"));
                    let smallest_seq = var()?;
                    let largest_seq = var()?;
                    if smallest.len() < crate::key::TRAILER_LEN
                        || largest.len() < crate::key::TRAILER_LEN
                    {
                        return Err(bad("key shorter than its trailer"));
                    }
                    e.added.push(FileDesc {
                        level: level as u32,
                        number,
                        size,
                        smallest,
                        largest,
                        smallest_seq,
                        largest_seq,
                    });
                }
                TAG_APPLIED_MARKER => e.applied_marker = Some(body.to_vec()),
                TAG_RANGE_FLOORS => {
                    e.range_floors =
                        Some(range_floor::decode(body).ok_or_else(|| bad("range floors"))?)
                }
                t if t >= TAG_IGNORABLE_FROM => {}
                t => {
                    return Err(Error::UnsupportedFormat {
                        path: path.to_path_buf(),
                        found: t as u32,
                        supported: MANIFEST_FORMAT_VERSION,
                    })
                }
            }
        }
        Ok(e)
    }
}

/// A live SSTable: its description and the open table. When the last
/// version holding an obsolete file drops it, its number goes to the
/// graveyard, and the engine deletes the file.
pub struct FileMeta {
    /// What the manifest says about the file.
    pub desc: FileDesc,
    /// The open table.
    pub table: Arc<Table>,
    obsolete: AtomicBool,
    graveyard: Arc<Mutex<Vec<u64>>>,
}

impl std::fmt::Debug for FileMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMeta")
            .field("desc", &self.desc)
            .finish()
    }
}

impl FileMeta {
    /// Wraps an open table.
    pub fn new(
        desc: FileDesc,
        table: Arc<Table>,
        graveyard: Arc<Mutex<Vec<u64>>>,
    ) -> Arc<FileMeta> {
        Arc::new(FileMeta {
            desc,
            table,
            obsolete: AtomicBool::new(false),
            graveyard,
        })
    }

    /// Marks the file for deletion once no version uses it. Call only after
    /// the edit that removed it is durable in the manifest.
    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, AtomicOrdering::SeqCst);
    }
}

impl Drop for FileMeta {
    fn drop(&mut self) {
        if self.obsolete.load(AtomicOrdering::SeqCst) {
            if let Ok(mut g) = self.graveyard.lock() {
                g.push(self.desc.number);
            }
        }
    }
}

/// An immutable set of live files per level.
#[derive(Debug, Clone, Default)]
pub struct Version {
    /// L0 newest first (by largest sequence number); deeper levels sorted by
    /// smallest key, not overlapping.
    pub levels: [Vec<Arc<FileMeta>>; LEVELS],
    /// The range deletes whose memtables are flushed and that may still
    /// cover entries in these tables.
    pub floors: Vec<RangeFloor>,
}

/// What a point lookup found in the tables.
#[derive(Debug, Clone)]
pub struct Found {
    /// The internal key of the entry.
    pub ikey: bytes::Bytes,
    /// Its stored value.
    pub value: bytes::Bytes,
}

impl Version {
    /// Finds the newest entry for `lookup`'s user key at or below its sequence number.
    pub fn get(&self, lookup: &[u8]) -> Result<Option<Found>> {
        let ukey = user_key(lookup);
        for f in &self.levels[0] {
            if ukey < f.desc.smallest_user() || ukey > f.desc.largest_user() {
                continue;
            }
            if let Some((ikey, value)) = f.table.get(lookup)? {
                return Ok(Some(Found { ikey, value }));
            }
        }
        for level in &self.levels[1..] {
            if level.is_empty() {
                continue;
            }
            // First file whose largest key is >= lookup.
            let i = level
                .partition_point(|f| compare_internal(&f.desc.largest, lookup) == Ordering::Less);
            if let Some(f) = level.get(i) {
                if ukey >= f.desc.smallest_user() {
                    if let Some((ikey, value)) = f.table.get(lookup)? {
                        return Ok(Some(Found { ikey, value }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Applies an edit: `added` are the opened new files.
    pub fn apply(&self, deleted: &[(u32, u64)], added: Vec<Arc<FileMeta>>) -> Version {
        let mut v = self.clone();
        for &(level, number) in deleted {
            v.levels[level as usize].retain(|f| f.desc.number != number);
        }
        for f in added {
            v.levels[f.desc.level as usize].push(f);
        }
        v.levels[0].sort_by(|a, b| {
            b.desc
                .largest_seq
                .cmp(&a.desc.largest_seq)
                .then(b.desc.number.cmp(&a.desc.number))
        });
        for level in &mut v.levels[1..] {
            level.sort_by(|a, b| compare_internal(&a.desc.smallest, &b.desc.smallest));
        }
        v
    }

    /// Those of `floors` that some table of this version may still hold
    /// covered entries for. Entries written after a floor have larger
    /// sequence numbers (and the memtables after the floor's own hold only
    /// such), so once no table may hold one it covers, the floor can hide
    /// nothing any more and is dropped: the set stays as small as the data
    /// it still hides.
    pub fn floors_still_needed(&self, floors: &[RangeFloor]) -> Vec<RangeFloor> {
        floors
            .iter()
            .filter(|f| {
                self.levels.iter().flatten().any(|t| {
                    f.may_cover(
                        t.desc.smallest_user(),
                        t.desc.largest_user(),
                        t.desc.smallest_seq,
                    )
                })
            })
            .cloned()
            .collect()
    }

    /// Total bytes in `level`.
    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|f| f.desc.size).sum()
    }

    /// Files of `level` whose user-key range meets [lo, hi].
    pub fn overlapping(&self, level: usize, lo: &[u8], hi: &[u8]) -> Vec<Arc<FileMeta>> {
        self.levels[level]
            .iter()
            .filter(|f| f.desc.overlaps(lo, hi))
            .cloned()
            .collect()
    }

    /// Every live file number.
    pub fn live_files(&self) -> Vec<u64> {
        self.levels
            .iter()
            .flatten()
            .map(|f| f.desc.number)
            .collect()
    }

    /// Descriptions of every file, for a manifest snapshot.
    pub fn descs(&self) -> Vec<FileDesc> {
        self.levels
            .iter()
            .flatten()
            .map(|f| f.desc.clone())
            .collect()
    }

    /// Checks the ordering invariants of deeper levels; an error names the
    /// first violation. Used after every edit in debug builds and by tests.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        for (l, level) in self.levels.iter().enumerate().skip(1) {
            for w in level.windows(2) {
                if compare_internal(&w[0].desc.largest, &w[1].desc.smallest) != Ordering::Less
                    || w[0].desc.largest_user() >= w[1].desc.smallest_user()
                {
                    return Err(format!(
                        "L{l}: files {} and {} overlap",
                        w[0].desc.number, w[1].desc.number
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{internal_key, ValueKind};

    #[test]
    fn edits_round_trip() {
        let e = VersionEdit {
            format_version: Some(1),
            wal_min_segment: Some(7),
            next_file_number: Some(42),
            flushed_seq: Some(1000),
            last_seq: Some(1200),
            deleted: vec![(0, 3), (1, 9)],
            added: vec![FileDesc {
                level: 1,
                number: 11,
                size: 4096,
                smallest: internal_key(b"a", 5, ValueKind::Put),
                largest: internal_key(b"z", 9, ValueKind::Delete),
                smallest_seq: 5,
                largest_seq: 9,
            }],
            applied_marker: Some(b"term=3,index=77".to_vec()),
            range_floors: Some(vec![RangeFloor {
                start: b"\0".to_vec(),
                end: None,
                seq: 1100,
            }]),
        };
        let buf = e.encode();
        assert_eq!(
            VersionEdit::decode(&buf, Path::new("MANIFEST"), 0).unwrap(),
            e
        );
        // A cut inside a field is an error; a cut between fields decodes
        // to a smaller edit. Never the original, never a panic.
        for cut in 1..buf.len() {
            if let Ok(partial) = VersionEdit::decode(&buf[..cut], Path::new("M"), 0) {
                assert_ne!(partial, e, "cut {cut}");
            }
        }
    }

    #[test]
    fn unknown_required_tags_and_newer_versions_are_refused() {
        let mut buf = Vec::new();
        put_varint64(&mut buf, 30);
        put_length_prefixed(&mut buf, b"x");
        assert!(matches!(
            VersionEdit::decode(&buf, Path::new("M"), 0),
            Err(Error::UnsupportedFormat { .. })
        ));
        let mut ok = Vec::new();
        put_varint64(&mut ok, 100);
        put_length_prefixed(&mut ok, b"future");
        assert_eq!(
            VersionEdit::decode(&ok, Path::new("M"), 0).unwrap(),
            VersionEdit::default()
        );
        let newer = VersionEdit {
            format_version: Some(MANIFEST_FORMAT_VERSION + 1),
            ..Default::default()
        };
        assert!(matches!(
            VersionEdit::decode(&newer.encode(), Path::new("M"), 0),
            Err(Error::UnsupportedFormat { .. })
        ));
    }
}
