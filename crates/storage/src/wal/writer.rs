//! The segment writer.

use super::format::{self, Compressor, FILE_HEADER_LEN, RECORD_HEADER_LEN, WAL_MAGIC};
use super::reader::{self, RecoveryReport};
use super::{list_segments, segment_path, RecordPos, WalOptions};
use crate::error::{Error, Result};
use crate::fs::{self, DynFile, DynFs, FileSystem, OpenMode};
use crc32fast::Hasher;
use std::fmt;
use std::path::{Path, PathBuf};

/// Zero-fill writes are at most this large.
const ZERO_CHUNK: usize = 1 << 20;

/// The first failed durability step, after which nothing more is written.
#[derive(Debug, Default)]
pub(crate) struct Poison(Option<(&'static str, String)>);

impl Poison {
    /// Fails with [`Error::WritesStopped`] once poisoned.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.0 {
            None => Ok(()),
            Some((op, reason)) => Err(Error::WritesStopped {
                op,
                reason: reason.clone(),
            }),
        }
    }

    /// Records the failure of `op` and passes the error on.
    pub(crate) fn fail(&mut self, op: &'static str, err: Error) -> Error {
        if self.0.is_none() {
            self.0 = Some((op, err.to_string()));
        }
        err
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.0.is_some()
    }
}

/// An fsync to run outside the WAL's guard: see [`Wal::begin_sync`].
#[derive(Debug)]
pub struct SyncTicket {
    file: DynFile,
    path: PathBuf,
    segment: u64,
    upto: u64,
}

impl SyncTicket {
    /// fdatasyncs the segment the ticket names.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// One open file being appended to: where the next byte goes, the bytes not
/// yet handed to the OS, and how far the file is durable.
#[derive(Debug)]
pub(crate) struct Appender {
    pub(crate) path: PathBuf,
    pub(crate) file: DynFile,
    /// The CRC salt (segment number) already absorbed.
    pub(crate) salted: Hasher,
    /// Bytes handed to the OS; `pending` is written at this offset.
    pub(crate) written: u64,
    /// Encoded records not yet written.
    pub(crate) pending: Vec<u8>,
    /// Bytes made durable by the last successful fsync.
    pub(crate) synced: u64,
    /// Records in the file (written or pending).
    pub(crate) records: u64,
    /// fdatasyncs this appender performed.
    pub(crate) syncs: u64,
}

impl Appender {
    pub(crate) fn new(path: PathBuf, file: DynFile, salt: u64, end: u64) -> Self {
        Appender {
            path,
            file,
            salted: format::salted_hasher(salt),
            written: end,
            pending: Vec::new(),
            synced: end,
            records: 0,
            syncs: 0,
        }
    }

    /// Offset the next record will get.
    pub(crate) fn end(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// Encodes a record (stored form already chosen) into `pending`.
    #[inline]
    pub(crate) fn push(&mut self, stored: &[u8], compressed: bool) -> (u64, u64) {
        let offset = self.end();
        format::encode_record(&mut self.pending, &self.salted, stored, compressed);
        self.records += 1;
        (offset, (RECORD_HEADER_LEN + stored.len()) as u64)
    }

    /// One positional write of `pending`.
    pub(crate) fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&self.pending, self.written)
            .map_err(|e| Error::io(&self.path, e))?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes `pending`, then fdatasyncs unless everything is durable already.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.write_pending()?;
        if self.synced == self.written {
            return Ok(());
        }
        if crate::planted::active(crate::planted::PlantedBug::SkipWalFsync) {
            self.synced = self.written;
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        self.synced = self.written;
        self.syncs += 1;
        Ok(())
    }
}

/// Checks the payload size limit.
pub(crate) fn check_payload_len(len: usize) -> Result<()> {
    if len > format::MAX_PAYLOAD_LEN {
        return Err(Error::BatchTooLarge {
            len,
            max: format::MAX_PAYLOAD_LEN,
        });
    }
    Ok(())
}

/// The WAL writer. See the [module docs](super) for the protocol.
///
/// # Poisoning
///
/// After any failed write, fsync or segment creation, the writer is
/// poisoned: that call returns the underlying error (for example
/// [`Error::DiskFull`]), and every later [`Wal::add_record`],
/// [`Wal::write_pending`], [`Wal::sync`], [`Wal::roll`] and
/// [`Wal::truncate_after`] returns [`Error::WritesStopped`]. A failed fsync
/// may have dropped dirty pages that a retry would then report as clean
/// (the PostgreSQL fsync lesson), so nothing written since the last
/// successful [`Wal::sync`] may be acknowledged, and the only way forward is
/// to reopen: recover, then [`Wal::open`] a new segment.
///
/// # Segments
///
/// Segment `n` is always fsynced ("sealed") before segment `n + 1` receives
/// any record, so after a crash only the last segment holding data can end
/// in a torn record. A new segment is created, its header written,
/// zero-filled to `segment_bytes` if preallocating, fsynced, and its
/// directory entry fsynced, all before any record goes into it.
pub struct Wal {
    fs: DynFs,
    dir: PathBuf,
    options: WalOptions,
    seg: Appender,
    segment: u64,
    /// fdatasyncs of earlier segments and of segment creation (the current
    /// appender counts its own).
    syncs_before: u64,
    compressor: Compressor,
    poison: Poison,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("segment", &self.segment)
            .field("end", &self.seg.end())
            .field("pending", &self.seg.pending.len())
            .field("poisoned", &self.poison.is_poisoned())
            .finish()
    }
}

impl Wal {
    /// Opens the WAL in `dir` for appending, after recovery: repairs the torn
    /// tail that `recovered` reports (see [`super::truncate_torn_tail`]), then
    /// creates a new segment numbered one above the highest in `dir` (1 for
    /// an empty or new directory). It never appends into an existing segment.
    /// `recovered` must come from recovering this directory just before;
    /// `RecoveryReport::default()` is right for a new, empty directory.
    pub fn open(
        fs: DynFs,
        dir: &Path,
        options: WalOptions,
        recovered: &RecoveryReport,
    ) -> Result<Wal> {
        options.validate()?;
        fs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        fs::sync_parent(&*fs, dir).map_err(|e| Error::io(dir, e))?;
        if let Some(torn) = &recovered.truncated {
            reader::truncate_torn_tail(&*fs, dir, torn)?;
        }
        let next = list_segments(&*fs, dir)?.last().map_or(1, |n| n + 1);
        let seg = create_segment(&*fs, dir, next, &options)?;
        Ok(Wal {
            compressor: Compressor::new(options.compression_threshold_bytes),
            fs,
            dir: dir.to_path_buf(),
            options,
            seg,
            segment: next,
            // Creating the segment fsynced it once.
            syncs_before: 1,
            poison: Poison::default(),
        })
    }

    /// fdatasyncs of WAL segment files so far (group syncs, seals at roll,
    /// segment creation); directory fsyncs are not counted.
    pub fn syncs(&self) -> u64 {
        self.syncs_before + self.seg.syncs
    }

    /// Encodes a record for `payload` into the pending buffer and returns
    /// where it will land. Nothing is written to the OS unless the record
    /// does not fit the current segment and that segment already holds
    /// records: then the writer rolls first (pending bytes written, the
    /// segment fsynced, a new one created). Payloads over `u32::MAX` bytes
    /// are refused with [`Error::BatchTooLarge`].
    pub fn add_record(&mut self, payload: &[u8]) -> Result<RecordPos> {
        self.poison.check()?;
        check_payload_len(payload.len())?;
        let compressed = self.compressor.compress(payload);
        let stored_len = compressed.unwrap_or(payload.len());
        let enc_len = (RECORD_HEADER_LEN + stored_len) as u64;
        if self.seg.records > 0 && self.seg.end() + enc_len > self.options.segment_bytes {
            self.roll_now()?;
        }
        let (offset, len) = match compressed {
            Some(n) => self.seg.push(self.compressor.compressed(n), true),
            None => self.seg.push(payload, false),
        };
        Ok(RecordPos {
            segment: self.segment,
            offset,
            len,
        })
    }

    /// Writes the pending buffer to the OS with one positional write.
    pub fn write_pending(&mut self) -> Result<()> {
        self.poison.check()?;
        let r = self.seg.write_pending();
        r.map_err(|e| self.poison.fail("write", e))
    }

    /// Writes pending bytes, then fdatasyncs the current segment (skipped if
    /// nothing was written since the last successful sync). Every record
    /// added before a successful `sync` is durable.
    pub fn sync(&mut self) -> Result<()> {
        self.poison.check()?;
        let r = self.seg.sync();
        r.map_err(|e| self.poison.fail("fsync", e))
    }

    /// The first half of a sync that need not hold whatever guards this
    /// WAL while the disk works: writes the pending bytes and returns what
    /// to fsync, or `None` if everything written is durable already. Run
    /// [`SyncTicket::sync`] without the guard, then give its result to
    /// [`Wal::finish_sync`]; only then is every record added before
    /// `begin_sync` durable. Records added meanwhile are not covered.
    pub fn begin_sync(&mut self) -> Result<Option<SyncTicket>> {
        self.poison.check()?;
        if let Err(e) = self.seg.write_pending() {
            return Err(self.poison.fail("write", e));
        }
        if self.seg.synced == self.seg.written {
            return Ok(None);
        }
        if crate::planted::active(crate::planted::PlantedBug::SkipWalFsync) {
            self.seg.synced = self.seg.written;
            return Ok(None);
        }
        Ok(Some(SyncTicket {
            file: self.seg.file.clone(),
            path: self.seg.path.clone(),
            segment: self.segment,
            upto: self.seg.written,
        }))
    }

    /// The second half of a sync begun with [`Wal::begin_sync`]: records
    /// the fsync's outcome. A failed fsync poisons the WAL, as in
    /// [`Wal::sync`]. If the segment was sealed meanwhile (a roll fsyncs
    /// it), the ticket's bytes were durable already.
    pub fn finish_sync(&mut self, ticket: SyncTicket, outcome: std::io::Result<()>) -> Result<()> {
        self.poison.check()?;
        if let Err(e) = outcome {
            return Err(self.poison.fail("fsync", Error::io(&ticket.path, e)));
        }
        if ticket.segment == self.segment {
            self.seg.synced = self.seg.synced.max(ticket.upto);
            self.seg.syncs += 1;
        } else {
            self.syncs_before += 1;
        }
        Ok(())
    }

    /// Seals the current segment and starts a new one, so that every later
    /// record lands in a segment numbered at or above the returned one and
    /// every earlier record below it (used when the engine switches
    /// memtables). If the current segment holds no record yet, it is kept
    /// and its number returned.
    pub fn roll(&mut self) -> Result<u64> {
        self.poison.check()?;
        if self.seg.records > 0 {
            self.roll_now()?;
        }
        Ok(self.segment)
    }

    fn roll_now(&mut self) -> Result<()> {
        let r = self.seg.sync();
        r.map_err(|e| self.poison.fail("fsync", e))?;
        self.start_segment(self.segment + 1)
    }

    fn start_segment(&mut self, number: u64) -> Result<()> {
        let r = create_segment(&*self.fs, &self.dir, number, &self.options);
        let sealed = self.seg.syncs;
        self.seg = r.map_err(|e| self.poison.fail("segment creation", e))?;
        self.syncs_before += sealed + 1;
        self.segment = number;
        Ok(())
    }

    /// Cuts the log right after the record at `pos` (which must hold a valid
    /// record; a Raft log conflict): pending bytes are written first, later
    /// segments removed, `pos`'s segment cut (see [`super::truncate_after`]),
    /// and a new segment `pos.segment + 1` started for the next records.
    pub fn truncate_after(&mut self, pos: RecordPos) -> Result<()> {
        self.poison.check()?;
        let r = self.seg.write_pending();
        r.map_err(|e| self.poison.fail("write", e))?;
        // A bad position is the caller's error and changes nothing.
        self.read_record(pos)?;
        let r = reader::truncate_after(&*self.fs, &self.dir, pos);
        r.map_err(|e| self.poison.fail("truncate", e))?;
        self.start_segment(pos.segment + 1)
    }

    /// Reads the record at `pos` back, also from the pending buffer.
    pub fn read_record(&self, pos: RecordPos) -> Result<Vec<u8>> {
        if pos.segment == self.segment {
            if pos.offset >= self.seg.written {
                let start = usize::try_from(pos.offset - self.seg.written).ok();
                let rec = start
                    .zip(usize::try_from(pos.len).ok())
                    .and_then(|(s, l)| self.seg.pending.get(s..s.checked_add(l)?));
                let Some(rec) = rec else {
                    return Err(Error::corruption(
                        &self.seg.path,
                        pos.offset,
                        "record position runs past the end of the log",
                    ));
                };
                return format::decode_single_record(
                    &self.seg.path,
                    pos.offset,
                    rec.to_vec(),
                    pos.segment,
                );
            }
            return reader::read_record_in(&*self.seg.file, &self.seg.path, pos);
        }
        reader::read_record_at(&*self.fs, &self.dir, pos)
    }

    /// Removes every whole segment numbered below `n` (never the current
    /// one), lowest first, fsyncing the directory after each removal so that
    /// a crash never leaves a gap. Returns how many were removed. Does not
    /// poison the writer on failure.
    pub fn remove_segments_below(&mut self, n: u64) -> Result<usize> {
        let limit = n.min(self.segment);
        let mut removed = 0;
        for s in list_segments(&*self.fs, &self.dir)? {
            if s >= limit {
                break;
            }
            let path = segment_path(&self.dir, s);
            self.fs
                .remove_file(&path)
                .map_err(|e| Error::io(&path, e))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| Error::io(&self.dir, e))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The segment numbers present in the directory, ascending.
    pub fn segments(&self) -> Result<Vec<u64>> {
        list_segments(&*self.fs, &self.dir)
    }

    /// The segment receiving records.
    pub fn current_segment(&self) -> u64 {
        self.segment
    }

    /// Bytes encoded but not yet written to the OS.
    pub fn pending_bytes(&self) -> usize {
        self.seg.pending.len()
    }

    /// Where the next record would start in the current segment.
    pub fn end_offset(&self) -> u64 {
        self.seg.end()
    }

    /// True if everything added so far has been written and fsynced.
    pub fn is_synced(&self) -> bool {
        self.seg.pending.is_empty() && self.seg.synced == self.seg.written
    }

    /// True once a write or fsync has failed (see [`Wal`]).
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_poisoned()
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options in use.
    pub fn options(&self) -> &WalOptions {
        &self.options
    }
}

/// Creates segment `number`: header, optional zero fill, fsync, directory
/// fsync. On failure the partial file is removed (best effort), so that a
/// full disk gets its space back.
fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    options: &WalOptions,
) -> Result<Appender> {
    let path = segment_path(dir, number);
    let file = fs
        .open(&path, OpenMode::CreateNew)
        .map_err(|e| Error::io(&path, e))?;
    let header = format::encode_file_header(&WAL_MAGIC, number);
    let step = || -> std::io::Result<()> {
        file.write_all_at(&header, 0)?;
        if options.preallocate {
            let mut at = FILE_HEADER_LEN as u64;
            let total = options.segment_bytes;
            let chunk = (total.saturating_sub(at)).min(ZERO_CHUNK as u64) as usize;
            let zeros = vec![0u8; chunk];
            while at < total {
                let n = (total - at).min(chunk as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
        }
        file.sync_data()
    };
    if let Err(e) = step() {
        drop(file);
        let _ = fs.remove_file(&path);
        let _ = fs.sync_dir(dir);
        return Err(Error::io(&path, e));
    }
    if !crate::planted::active(crate::planted::PlantedBug::SkipSegmentDirSync) {
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(Appender::new(path, file, number, FILE_HEADER_LEN as u64))
}
