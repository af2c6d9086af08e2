//! The segment writer, [`Wal`]: appends records, rolls to the next segment
//! (sealing the last one first), runs the three steps of an fsync outside
//! the caller's guard ([`SyncTicket`]), truncates for the Raft log, and
//! removes old segments. Limits and layout in `FORMAT-wal.md` ("Writing").

use super::appender::{check_payload_len, Appender, Poison};
use super::format::{self, Compressor, FILE_HEADER_LEN, RECORD_HEADER_LEN};
use super::reader::{self, RecoveryReport};
use super::segment::{list_segments, segment_path, RecordPos, WalOptions};
use super::segment_file::{create_segment, remove_prepared_leftovers, PreparedSegment};
use crate::error::{Error, Result};
use crate::fs::{self, DynFile, DynFs};
use std::fmt;
use std::path::{Path, PathBuf};

/// An fsync to run outside the WAL's guard: see [`Wal::begin_sync`].
///
/// A ticket names the file it syncs by the writer's *generation* of that
/// file, a number that never repeats within a [`Wal`], not by segment
/// number: a truncation can remove segment `n` and create a new segment `n`
/// while an fsync of the old one runs, and that fsync proves nothing about
/// the new file.
#[derive(Debug)]
pub struct SyncTicket {
    kind: TicketKind,
}

#[derive(Debug)]
enum TicketKind {
    /// fdatasync of the current segment up to `upto`.
    Data {
        file: DynFile,
        path: PathBuf,
        segment: u64,
        generation: u64,
        upto: u64,
    },
    /// The seal of a roll to a prepared segment: fdatasync of the segment
    /// rolled away from (if it has unsynced bytes), then an fsync of the
    /// directory holding the new segment's name. The new segment's records
    /// stay in memory until it is done.
    Seal {
        prev: Option<(DynFile, PathBuf)>,
        fs: DynFs,
        dir: PathBuf,
        generation: u64,
    },
}

impl SyncTicket {
    /// Runs the ticket's fsyncs.
    pub fn sync(&self) -> Result<()> {
        match &self.kind {
            TicketKind::Data { file, path, .. } => file.sync_data().map_err(|e| Error::io(path, e)),
            TicketKind::Seal { prev, fs, dir, .. } => {
                if let Some((file, path)) = prev {
                    file.sync_data().map_err(|e| Error::io(path, e))?;
                }
                fs.sync_dir(dir).map_err(|e| Error::io(dir, e))
            }
        }
    }

    /// True if the ticket only seals a rolled segment: after
    /// [`Wal::finish_sync`], call [`Wal::begin_sync`] again to write and
    /// fsync the records of the new segment.
    pub fn seals_only(&self) -> bool {
        matches!(self.kind, TicketKind::Seal { .. })
    }
}

/// A roll to a prepared segment whose seal (see [`TicketKind::Seal`]) has
/// not run yet.
#[derive(Debug)]
struct PendingSeal {
    prev: Option<(DynFile, PathBuf)>,
    generation: u64,
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
    /// Generation of `seg`: bumped for every segment file the writer starts,
    /// never repeated, so a sync ticket can tell a recreated segment `n`
    /// from the one it synced.
    generation: u64,
    /// A segment made ready ahead (see [`prepare_segment`]).
    prepared: Option<PreparedSegment>,
    /// A roll to a prepared segment whose seal has not run: until it has,
    /// the new segment's records stay in memory.
    seal: Option<PendingSeal>,
    /// Planted bug: sync tickets match by segment number (the old keying).
    ticket_by_segment: bool,
    /// Planted bug: truncations are not fsynced (`TruncationNotDurable`).
    truncation_not_durable: bool,
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
            .field("prepared", &self.prepared.as_ref().map(|p| p.number))
            .field("sealing", &self.seal.is_some())
            .field("poisoned", &self.poison.is_poisoned())
            .finish()
    }
}

/// Fsyncs every segment in `segments`: cheap when they are durable already
/// (nothing dirty), and required when a process crash left them in the
/// page cache only.
/// Fsyncs every segment in `dir`: what recovery reads may sit only in
/// the page cache after a process crash.
pub fn sync_existing_segments(fs: &dyn fs::FileSystem, dir: &Path) -> Result<()> {
    let existing = list_segments(fs, dir)?;
    sync_segments(fs, dir, &existing)
}

fn sync_segments(fs: &dyn fs::FileSystem, dir: &Path, segments: &[u64]) -> Result<()> {
    for &n in segments {
        let path = segment_path(dir, n);
        // Opened for writing: a file system that holds writes until their
        // fsync (`VolatileFs`) writes them through this handle, and a
        // read-only descriptor refuses that with EBADF.
        let file = fs
            .open(&path, fs::OpenMode::Write)
            .map_err(|e| Error::io(&path, e))?;
        file.sync_data().map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

impl Wal {
    /// Opens the WAL in `dir` for appending, after recovery: repairs the torn
    /// tail that `recovered` reports (see [`super::truncate_torn_tail`]),
    /// fsyncs the segments already there (recovery may have read them from
    /// the page cache), then creates a new segment numbered one above the highest in `dir` (1 for
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
        remove_prepared_leftovers(&*fs, dir)?;
        let existing = list_segments(&*fs, dir)?;
        // After a process crash the segments recovery just read may hold
        // data only in the page cache. New records go to a new segment that
        // is fsynced on its own schedule, so unless the old ones are made
        // durable first, a later power loss could keep newer records and
        // lose older ones: a hole in history (found by the simulation's
        // crash-then-power-loss scenario; seed in sim/tests).
        if !crate::planted::active(crate::planted::PlantedBug::SkipRecoveryWalSync) {
            sync_segments(&*fs, dir, &existing)?;
        }
        // Never below a segment recovery saw: repairing a torn tail may
        // have removed the highest segment (a damaged header), and if it
        // was the only one, numbering from the listing would restart at 1,
        // below the manifest's first live segment, and the next recovery
        // would skip the new segments (found by the simulation's bit-rot
        // scenario; seed in sim/tests).
        let mut next = existing.last().map_or(1, |n| n + 1);
        if !crate::planted::active(crate::planted::PlantedBug::WalNumberFromListing) {
            next = next.max(recovered.last_segment.unwrap_or(0));
        }
        // The new segment's link record names where the one before it
        // ends (after the repair above), when recovery read that one.
        let prev_end = recovered
            .kept_end
            .filter(|&(segment, _)| segment + 1 == next)
            .map_or(format::PREV_END_UNKNOWN, |(_, end)| end);
        let seg = create_segment(&*fs, dir, next, &options, prev_end)?;
        Ok(Wal {
            compressor: Compressor::new(options.compression_threshold_bytes),
            fs,
            dir: dir.to_path_buf(),
            options,
            seg,
            segment: next,
            generation: 1,
            prepared: None,
            seal: None,
            ticket_by_segment: false,
            truncation_not_durable: false,
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

    /// Writes the pending buffer to the OS with one positional write. If a
    /// roll's seal is pending (see [`Wal::seal_ticket`]), it runs first,
    /// here: run the seal ticket outside the guard beforehand to avoid that.
    pub fn write_pending(&mut self) -> Result<()> {
        self.poison.check()?;
        self.seal_now()?;
        let r = self.seg.write_pending();
        r.map_err(|e| self.poison.fail("write", e))
    }

    /// Writes pending bytes, then fdatasyncs the current segment (skipped if
    /// nothing was written since the last successful sync). Every record
    /// added before a successful `sync` is durable.
    pub fn sync(&mut self) -> Result<()> {
        self.poison.check()?;
        self.seal_now()?;
        let r = self.seg.sync();
        r.map_err(|e| self.poison.fail("fsync", e))
    }

    /// The first half of a sync that need not hold whatever guards this
    /// WAL while the disk works: writes the pending bytes and returns what
    /// to fsync, or `None` if everything written is durable already. Run
    /// [`SyncTicket::sync`] without the guard, then give its result to
    /// [`Wal::finish_sync`]; only then is every record added before
    /// `begin_sync` durable, unless the ticket [`SyncTicket::seals_only`]:
    /// then call `begin_sync` again. Records added meanwhile are not
    /// covered.
    pub fn begin_sync(&mut self) -> Result<Option<SyncTicket>> {
        self.poison.check()?;
        if let Some(t) = self.seal_ticket() {
            return Ok(Some(t));
        }
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
            kind: TicketKind::Data {
                file: self.seg.file.clone(),
                path: self.seg.path.clone(),
                segment: self.segment,
                generation: self.generation,
                upto: self.seg.written,
            },
        }))
    }

    /// The seal of the last roll, if it is still pending: run it outside
    /// the guard and give its result to [`Wal::finish_sync`]. Until then
    /// the current segment's records are not written to the OS (segment
    /// `n` must be durable before any byte of `n + 1` can reach the disk,
    /// or a power loss could leave a torn record before data).
    pub fn seal_ticket(&self) -> Option<SyncTicket> {
        let seal = self.seal.as_ref()?;
        Some(SyncTicket {
            kind: TicketKind::Seal {
                prev: seal.prev.clone(),
                fs: self.fs.clone(),
                dir: self.dir.clone(),
                generation: seal.generation,
            },
        })
    }

    /// The second half of a sync begun with [`Wal::begin_sync`] (or
    /// [`Wal::seal_ticket`]): records the fsync's outcome. A failed fsync
    /// poisons the WAL, as in [`Wal::sync`]. A ticket of an earlier segment
    /// file (rolled away from, or removed by a truncation) changes nothing
    /// about the current one: it is matched by generation, never by number.
    pub fn finish_sync(&mut self, ticket: SyncTicket, outcome: Result<()>) -> Result<()> {
        self.poison.check()?;
        if let Err(e) = outcome {
            return Err(self.poison.fail("fsync", e));
        }
        match ticket.kind {
            TicketKind::Data {
                segment,
                generation,
                upto,
                ..
            } => {
                let current = if self.ticket_by_segment {
                    segment == self.segment
                } else {
                    generation == self.generation
                };
                if current {
                    self.seg.synced = self.seg.synced.max(upto);
                    self.seg.syncs += 1;
                } else {
                    self.syncs_before += 1;
                }
            }
            TicketKind::Seal {
                prev, generation, ..
            } => {
                if self
                    .seal
                    .as_ref()
                    .is_some_and(|s| s.generation == generation)
                {
                    self.seal = None;
                }
                if prev.is_some() {
                    self.syncs_before += 1;
                }
            }
        }
        Ok(())
    }

    /// Runs a pending seal here, under the caller's guard (the fallback;
    /// see [`Wal::seal_ticket`]).
    fn seal_now(&mut self) -> Result<()> {
        if let Some(t) = self.seal_ticket() {
            let r = t.sync();
            let r = r.map_err(|e| self.poison.fail("fsync", e));
            r?;
            self.finish_sync(t, Ok(()))?;
        }
        Ok(())
    }

    /// The segment number a [`prepare_segment`](super::prepare_segment) should make ready now, if
    /// none is installed for it: the one after the current segment, once
    /// the current one is half full. (Half a segment of appends is ample
    /// time to prepare the next, and an idle or short-lived log never
    /// writes a second preallocated segment.)
    pub fn segment_to_prepare(&self) -> Option<u64> {
        if self.seg.end() < self.options.segment_bytes / 2 {
            return None;
        }
        self.next_unprepared()
    }

    /// The segment after the current one, unless it is prepared already.
    fn next_unprepared(&self) -> Option<u64> {
        if self.poison.is_poisoned() {
            return None;
        }
        let want = self.segment + 1;
        match &self.prepared {
            Some(p) if p.number == want => None,
            _ => Some(want),
        }
    }

    /// Installs a prepared segment for the next roll. Hands it back if it
    /// is not for the segment after the current one (a truncation moved the
    /// log meanwhile) or one is installed already: discard it then.
    pub fn install_prepared(
        &mut self,
        prepared: PreparedSegment,
    ) -> std::result::Result<(), PreparedSegment> {
        if self.next_unprepared() != Some(prepared.number) {
            return Err(prepared);
        }
        if let Some(stale) = self.prepared.replace(prepared) {
            stale.discard(&*self.fs);
        }
        Ok(())
    }

    /// Marks this writer's sync tickets to match by segment number, the
    /// keying that let a segment recreated by a truncation look synced
    /// (planted bug `SyncTicketBySegment` of the replicated node).
    #[cfg(feature = "planted-bugs")]
    pub fn plant_sync_ticket_by_segment(&mut self) {
        self.ticket_by_segment = true;
    }

    /// Makes this writer's truncations skip their fsyncs (planted bug
    /// `TruncationNotDurable` of the replicated node): the cut and the
    /// removed segments may come back after a power loss.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_truncation_not_durable(&mut self) {
        self.truncation_not_durable = true;
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
        // At most one roll waits for its seal: an earlier one seals here.
        self.seal_now()?;
        let number = self.segment + 1;
        if let Some(p) = self.prepared.take() {
            if p.number == number {
                return self.roll_to_prepared(p);
            }
            p.discard(&*self.fs);
        }
        let r = self.seg.sync();
        r.map_err(|e| self.poison.fail("fsync", e))?;
        let prev_end = self.seg.end();
        self.start_segment(number, prev_end)
    }

    /// A roll that only switches files: the current segment's pending bytes
    /// go to the OS, the prepared file is renamed into place, and the fsync
    /// of the old segment plus the directory fsync for the new name become
    /// a pending seal that runs outside the guard (see [`Wal::seal_ticket`]).
    fn roll_to_prepared(&mut self, p: PreparedSegment) -> Result<()> {
        let r = self.seg.write_pending();
        r.map_err(|e| self.poison.fail("write", e))?;
        let path = segment_path(&self.dir, p.number);
        if let Err(e) = self.fs.rename(&p.tmp_path, &path) {
            // Nothing changed on disk that matters: roll the slow way.
            tracing::warn!(error = %e, path = %p.tmp_path.display(), "WAL: prepared segment could not be renamed; creating the segment in place");
            let number = p.number;
            p.discard(&*self.fs);
            let r = self.seg.sync();
            r.map_err(|e| self.poison.fail("fsync", e))?;
            let prev_end = self.seg.end();
            return self.start_segment(number, prev_end);
        }
        let number = p.number;
        let mut next = Appender::new(path, p.file, number, FILE_HEADER_LEN as u64);
        // Written with the new segment's first records, after the seal.
        next.push_link(self.seg.end());
        let prev = std::mem::replace(&mut self.seg, next);
        self.syncs_before += prev.syncs;
        self.generation += 1;
        self.seal = Some(PendingSeal {
            prev: (prev.synced != prev.written).then_some((prev.file, prev.path)),
            generation: self.generation,
        });
        self.segment = number;
        Ok(())
    }

    /// Starts segment `number` in place; the segment before it is durable
    /// and its data ends at `prev_end` (its link record says so).
    fn start_segment(&mut self, number: u64, prev_end: u64) -> Result<()> {
        if let Some(p) = self.prepared.take() {
            p.discard(&*self.fs);
        }
        let r = create_segment(&*self.fs, &self.dir, number, &self.options, prev_end);
        let sealed = self.seg.syncs;
        self.seg = r.map_err(|e| self.poison.fail("segment creation", e))?;
        self.syncs_before += sealed + 1;
        self.segment = number;
        self.generation += 1;
        Ok(())
    }

    /// Cuts the log right after the record at `pos` (which must hold a valid
    /// record; a Raft log conflict): pending bytes are written first, later
    /// segments removed, `pos`'s segment cut (see [`super::truncate_after`]),
    /// and a new segment `pos.segment + 1` started for the next records.
    pub fn truncate_after(&mut self, pos: RecordPos) -> Result<()> {
        self.poison.check()?;
        self.seal_now()?;
        let r = self.seg.write_pending();
        r.map_err(|e| self.poison.fail("write", e))?;
        // A bad position is the caller's error and changes nothing.
        self.read_record(pos)?;
        let durable = !self.truncation_not_durable;
        let r = reader::truncate_after_with(&*self.fs, &self.dir, pos, durable);
        r.map_err(|e| self.poison.fail("truncate", e))?;
        self.start_segment(pos.segment + 1, pos.end())
    }

    /// Cuts the log right *before* the record at `pos` (which must hold a
    /// valid record): everything from it on goes, exactly as recovery cuts
    /// a torn tail (later segments removed highest first with a directory
    /// fsync each, then `set_len` and `fdatasync`), and a new segment
    /// `pos.segment + 1` is started. Used when no record before `pos` may
    /// stay (a Raft log conflict at its first live entry).
    pub fn truncate_before(&mut self, pos: RecordPos) -> Result<()> {
        self.poison.check()?;
        self.seal_now()?;
        let r = self.seg.write_pending();
        r.map_err(|e| self.poison.fail("write", e))?;
        self.read_record(pos)?;
        let torn = reader::TornTail {
            segment: pos.segment,
            offset: pos.offset,
            bytes_dropped: 0,
        };
        let durable = !self.truncation_not_durable;
        let r = reader::truncate_torn_tail_with(&*self.fs, &self.dir, &torn, durable);
        r.map_err(|e| self.poison.fail("truncate", e))?;
        self.start_segment(pos.segment + 1, pos.offset)
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

    /// The number of the prepared segment installed for the next roll.
    pub fn prepared_segment(&self) -> Option<u64> {
        self.prepared.as_ref().map(|p| p.number)
    }

    /// True while a roll's seal is pending (see [`Wal::seal_ticket`]).
    pub fn is_sealing(&self) -> bool {
        self.seal.is_some()
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
        self.seal.is_none() && self.seg.pending.is_empty() && self.seg.synced == self.seg.written
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
