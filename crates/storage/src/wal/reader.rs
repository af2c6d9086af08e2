//! Recovery: reading every record back, the torn-tail rule, single-record
//! reads, and the two ways of cutting the log (torn-tail repair and
//! `truncate_after`).

use super::format::{self, DecodedFile, FileHeader, ScanEnd, FILE_HEADER_LEN, WAL_MAGIC};
use super::segment::{list_segments, segment_path, RecordPos};
use crate::error::{Error, Result};
use crate::fs::{FileHandle, FileSystem, OpenMode};
use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

/// Segments decoded ahead of the consumer in parallel recovery.
const READ_AHEAD_SEGMENTS_MAX: usize = 3;

/// A torn tail found by recovery: the last segment holding data ends in an
/// incomplete record (or the last segment's header was never written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub segment: u64,
    /// Offset of the first byte that is not part of a valid record: where
    /// [`truncate_torn_tail`] cuts the file. 0 means the segment's header was
    /// never completely written, and the whole file goes.
    pub offset: u64,
    /// Bytes from `offset` to the end of the file (what the cut removes).
    pub bytes_dropped: u64,
}

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments read.
    pub segments: u64,
    /// Records returned.
    pub records: u64,
    /// Payload bytes returned (after decompression).
    pub bytes: u64,
    /// Highest segment number present at or above `from_segment`.
    pub last_segment: Option<u64>,
    /// Position of the last record returned.
    pub last_record: Option<RecordPos>,
    /// Where the log's data ends once the torn tail (if any) is cut: the
    /// highest segment that stays and the offset just past its last record
    /// (link record included; the header's end if it holds none). The next
    /// segment's link record names this offset.
    pub kept_end: Option<(u64, u64)>,
    /// Under [`TailPolicy::PointInTime`], the offset of the first valid
    /// record that was cut with the torn tail because an earlier record in
    /// the same (last) segment was damaged.
    pub records_dropped: Option<u64>,
    /// The torn tail, if the log ended in one. It must be repaired (by
    /// [`truncate_torn_tail`], which [`super::Wal::open`] calls) before new
    /// segments are written.
    pub truncated: Option<TornTail>,
}

/// Every record of the log, in order, with the report.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Position and payload of every record.
    pub records: Vec<(RecordPos, Bytes)>,
    /// What recovery found.
    pub report: RecoveryReport,
}

/// How recovery reads damage in the last segment holding data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailPolicy {
    /// Every record was fsynced before the next one was written (the durable
    /// preset), so only the very last write can be torn: a bad record followed
    /// by a valid one is corruption, and recovery refuses to go on.
    Strict,
    /// Several writes may be unsynced at once (balanced, throughput), and a
    /// power loss may keep a later one and lose an earlier one. In the last
    /// segment holding data, everything from the first bad record on is the
    /// torn tail, even if valid records follow (they are cut, and counted in
    /// [`RecoveryReport::records_dropped`]). Earlier segments were sealed by
    /// an fsync before the next one received data, so damage there is still
    /// corruption.
    PointInTime,
}

/// Reads every record of the WAL in `dir` from segments numbered
/// `from_segment` and up, collecting them. See [`replay`].
pub fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    from_segment: u64,
    parallel: bool,
) -> Result<Recovery> {
    recover_with(fs, dir, from_segment, parallel, TailPolicy::Strict)
}

/// [`recover`] with a choice of [`TailPolicy`].
pub fn recover_with(
    fs: &dyn FileSystem,
    dir: &Path,
    from_segment: u64,
    parallel: bool,
    policy: TailPolicy,
) -> Result<Recovery> {
    let mut records = Vec::new();
    let report = replay_with(fs, dir, from_segment, parallel, policy, |pos, payload| {
        records.push((pos, payload));
        Ok(())
    })?;
    Ok(Recovery { records, report })
}

/// Calls `f` with the position and payload (decompressed) of every record of
/// the WAL in `dir`, in log order, from segments numbered `from_segment` and
/// up (lower ones are ignored: they may be half deleted). Payloads are
/// zero-copy slices of the segment buffer unless they were compressed.
///
/// Rules (see `FORMAT-wal.md`):
/// * In the last segment holding data, a bad record with no valid record
///   after it in that segment is a torn tail: recovery stops there and
///   reports it in [`RecoveryReport::truncated`]. So is a last segment whose
///   header was never completely written.
/// * Any other damage is [`Error::Corruption`] naming the file and the byte
///   offset of the bad record, and so is a missing segment number between
///   the first and the last. Records before the damage may already have
///   been passed to `f`; a damaged payload never is.
///
/// With `parallel` and several segments, up to three segments are read and
/// decoded ahead on scoped threads; `f` still runs on the calling thread, in
/// order, and the result is identical. Without it no thread is started.
pub fn replay(
    fs: &dyn FileSystem,
    dir: &Path,
    from_segment: u64,
    parallel: bool,
    f: impl FnMut(RecordPos, Bytes) -> Result<()>,
) -> Result<RecoveryReport> {
    replay_with(fs, dir, from_segment, parallel, TailPolicy::Strict, f)
}

/// [`replay`] with a choice of [`TailPolicy`].
pub fn replay_with(
    fs: &dyn FileSystem,
    dir: &Path,
    from_segment: u64,
    parallel: bool,
    policy: TailPolicy,
    mut f: impl FnMut(RecordPos, Bytes) -> Result<()>,
) -> Result<RecoveryReport> {
    let mut segs = list_segments(fs, dir)?;
    segs.retain(|&n| n >= from_segment);
    for w in segs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(Error::corruption(
                segment_path(dir, w[0] + 1),
                0,
                format!("segment missing: the log jumps from {} to {}", w[0], w[1]),
            ));
        }
    }
    if parallel && segs.len() > 1 {
        std::thread::scope(|s| {
            let mut in_flight = VecDeque::new();
            let mut next = 0;
            let mut source = || {
                let head = in_flight.pop_front();
                while in_flight.len() < READ_AHEAD_SEGMENTS_MAX && next < segs.len() {
                    let n = segs[next];
                    in_flight.push_back(s.spawn(move || load_segment(fs, dir, n)));
                    next += 1;
                }
                let head = head.or_else(|| in_flight.pop_front())?;
                Some(
                    head.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                )
            };
            apply(&segs, policy, &mut source, &mut f)
        })
    } else {
        let mut next = 0;
        let mut source = || {
            let n = *segs.get(next)?;
            next += 1;
            Some(load_segment(fs, dir, n))
        };
        apply(&segs, policy, &mut source, &mut f)
    }
}

/// One segment, read and decoded.
struct Segment {
    number: u64,
    path: PathBuf,
    file: DecodedFile,
}

impl Segment {
    /// No records and no damage (header-only, zero-filled or unwritten; a
    /// link record is not data). Damage before such a segment is read as
    /// a torn tail, as it was before link records: it cuts only the last
    /// records of the log, never leaves a hole.
    fn holds_no_data(&self) -> bool {
        self.file.records.is_empty() && matches!(self.file.end, ScanEnd::Clean { .. })
    }
}

/// Reads a whole segment with one large read and decodes it.
fn load_segment(fs: &dyn FileSystem, dir: &Path, number: u64) -> Result<Segment> {
    let path = segment_path(dir, number);
    let data = read_whole(fs, &path)?;
    let file = format::decode_file(&path, Bytes::from(data), &WAL_MAGIC, Some(number))?;
    Ok(Segment { number, path, file })
}

fn read_whole(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>> {
    if crate::planted::active(crate::planted::PlantedBug::ReadErrorAsEndOfLog) {
        return read_until_error(fs, path).map_err(|e| Error::io(path, e));
    }
    crate::fs::read_file(fs, path).map_err(|e| Error::io(path, e))
}

/// The planted `read-error-as-end-of-log`: reads 4 KiB at a time and
/// stops at the first read error as if the file ended there.
fn read_until_error(fs: &dyn FileSystem, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open(path, OpenMode::Read)?;
    let len = file.len()?;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 4096];
    while (out.len() as u64) < len {
        let n = chunk.len().min((len - out.len() as u64) as usize);
        if file
            .read_exact_at(&mut chunk[..n], out.len() as u64)
            .is_err()
        {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// The in-order part of recovery, shared by the sequential and parallel
/// paths: yields records and applies the torn-tail rule across segments.
fn apply(
    segs: &[u64],
    policy: TailPolicy,
    source: &mut dyn FnMut() -> Option<Result<Segment>>,
    f: &mut dyn FnMut(RecordPos, Bytes) -> Result<()>,
) -> Result<RecoveryReport> {
    let mut report = RecoveryReport {
        last_segment: segs.last().copied(),
        ..RecoveryReport::default()
    };
    let mut seen = 0usize;
    // The previous segment read and where its records ended.
    let mut prev_end: Option<(u64, u64)> = None;
    while let Some(seg) = source() {
        let seg = seg?;
        seen += 1;
        report.segments += 1;
        let is_last = seen == segs.len();
        check_link(&seg, prev_end)?;
        if seg.file.header == FileHeader::Unwritten {
            if is_last {
                report.truncated = Some(TornTail {
                    segment: seg.number,
                    offset: 0,
                    bytes_dropped: seg.file.file_len,
                });
                break;
            }
            return Err(Error::corruption(
                &seg.path,
                0,
                "segment header incomplete (short, zeroed or torn, with no data after it) but later segments exist",
            ));
        }
        for (offset, len, payload) in seg.file.records {
            let pos = RecordPos {
                segment: seg.number,
                offset,
                len,
            };
            report.records += 1;
            report.bytes += payload.len() as u64;
            report.last_record = Some(pos);
            f(pos, payload)?;
        }
        match seg.file.end {
            ScanEnd::Clean { offset } => {
                prev_end = Some((seg.number, offset));
                report.kept_end = prev_end;
            }
            ScanEnd::Bad {
                offset,
                reason,
                valid_after: Some(p),
            } if policy == TailPolicy::Strict => {
                return Err(Error::corruption(
                    &seg.path,
                    offset,
                    format!("{reason}; a valid record follows at offset {p}"),
                ));
            }
            ScanEnd::Bad {
                offset,
                reason,
                valid_after,
            } => {
                report.records_dropped = valid_after;
                // A torn tail only if no later segment holds data.
                while let Some(later) = source() {
                    let later = later?;
                    seen += 1;
                    report.segments += 1;
                    let later_is_last = seen == segs.len();
                    let empty = later.holds_no_data()
                        && (later.file.header != FileHeader::Unwritten || later_is_last);
                    if !empty {
                        return Err(Error::corruption(
                            &seg.path,
                            offset,
                            format!(
                                "{reason}, and a later segment ({}) holds data",
                                later.number
                            ),
                        ));
                    }
                }
                report.truncated = Some(TornTail {
                    segment: seg.number,
                    offset,
                    bytes_dropped: seg.file.file_len - offset,
                });
                report.kept_end = Some((seg.number, offset));
                break;
            }
        }
    }
    Ok(report)
}

/// Checks `seg`'s link record against where the segment before it (read
/// just before, if it was) really ends. Segment `n` is durable before
/// segment `n + 1` gets its link record, so a difference is damage to
/// data already fsynced: a record at the end of `n` lost (a misdirected or
/// lost write reads as a clean end there), or bytes that should not be
/// there. Without this check recovery replayed `n + 1` over the hole (the
/// engine simulation's `balanced-misdirected-write` seed 53).
fn check_link(seg: &Segment, prev_end: Option<(u64, u64)>) -> Result<()> {
    let (Some(link), Some((prev, end))) = (seg.file.link, prev_end) else {
        return Ok(());
    };
    if link == super::format::PREV_END_UNKNOWN
        || prev + 1 != seg.number
        || link == end
        || crate::planted::active(crate::planted::PlantedBug::IgnoreSegmentLink)
    {
        return Ok(());
    }
    Err(Error::corruption(
        &seg.path,
        FILE_HEADER_LEN as u64,
        format!(
            "segment {prev} ends at offset {end}, but this segment's link record says it ended at {link}: records at the end of segment {prev} are lost or damaged"
        ),
    ))
}

/// Repairs a torn tail reported by recovery so that the next segment can be
/// written: removes every segment numbered above `torn.segment` (they hold
/// no data), highest first, each removal made durable before the next; then
/// cuts `torn.segment` at `torn.offset` (set_len, fdatasync), or removes it
/// if its header was never written (`offset` 0). Idempotent.
pub fn truncate_torn_tail(fs: &dyn FileSystem, dir: &Path, torn: &TornTail) -> Result<()> {
    truncate_torn_tail_with(fs, dir, torn, true)
}

/// [`truncate_torn_tail`], with its fsyncs only when `durable` (false only
/// for the replicated node's planted bug `TruncationNotDurable`).
pub(crate) fn truncate_torn_tail_with(
    fs: &dyn FileSystem,
    dir: &Path,
    torn: &TornTail,
    durable: bool,
) -> Result<()> {
    remove_segments_above(fs, dir, torn.segment, durable)?;
    let path = segment_path(dir, torn.segment);
    if torn.offset < format::FILE_HEADER_LEN as u64 {
        match fs.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&path, e)),
        }
        if !durable {
            return Ok(());
        }
        return fs.sync_dir(dir).map_err(|e| Error::io(dir, e));
    }
    let file = fs
        .open(&path, OpenMode::Write)
        .map_err(|e| Error::io(&path, e))?;
    cut(&*file, &path, torn.offset, durable)
}

fn cut(file: &dyn FileHandle, path: &Path, len: u64, durable: bool) -> Result<()> {
    file.set_len(len).map_err(|e| Error::io(path, e))?;
    if !durable {
        return Ok(());
    }
    file.sync_data().map_err(|e| Error::io(path, e))
}

/// Removes the segments numbered above `n`, highest first, fsyncing the
/// directory after each removal so that a crash always leaves a prefix of
/// the log (never a gap).
fn remove_segments_above(fs: &dyn FileSystem, dir: &Path, n: u64, durable: bool) -> Result<()> {
    for s in list_segments(fs, dir)?.into_iter().rev() {
        if s <= n {
            break;
        }
        let path = segment_path(dir, s);
        fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
        if durable {
            fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        }
    }
    Ok(())
}

/// Cuts the log right after the record at `pos` (a Raft log conflict): checks
/// that a valid record is at `pos`, removes every later segment (highest
/// first, each removal fsynced in the directory, so a crash leaves a prefix
/// of the old log), then cuts `pos`'s segment at `pos.end()` (set_len,
/// fdatasync). A writer must not be appending to this directory meanwhile:
/// use [`super::Wal::truncate_after`] when one is.
pub fn truncate_after(fs: &dyn FileSystem, dir: &Path, pos: RecordPos) -> Result<()> {
    truncate_after_with(fs, dir, pos, true)
}

/// [`truncate_after`], with its fsyncs only when `durable` (false only for
/// the replicated node's planted bug `TruncationNotDurable`).
pub(crate) fn truncate_after_with(
    fs: &dyn FileSystem,
    dir: &Path,
    pos: RecordPos,
    durable: bool,
) -> Result<()> {
    let path = segment_path(dir, pos.segment);
    let file = fs
        .open(&path, OpenMode::Write)
        .map_err(|e| Error::io(&path, e))?;
    read_record_in(&*file, &path, pos)?;
    remove_segments_above(fs, dir, pos.segment, durable)?;
    cut(&*file, &path, pos.end(), durable)
}

/// Reads the record at `pos` back (decompressed), checking its checksum with
/// the segment's salt and that its length matches `pos.len`. A position that
/// does not hold a valid record is [`Error::Corruption`] at `pos.offset`.
pub fn read_record_at(fs: &dyn FileSystem, dir: &Path, pos: RecordPos) -> Result<Vec<u8>> {
    let path = segment_path(dir, pos.segment);
    let file = fs
        .open(&path, OpenMode::Read)
        .map_err(|e| Error::io(&path, e))?;
    read_record_in(&*file, &path, pos)
}

/// [`read_record_at`] on an open segment file.
pub(crate) fn read_record_in(
    file: &dyn FileHandle,
    path: &Path,
    pos: RecordPos,
) -> Result<Vec<u8>> {
    let len = usize::try_from(pos.len)
        .ok()
        .filter(|&l| l <= format::RECORD_HEADER_LEN + format::PAYLOAD_BYTES_MAX)
        .ok_or_else(|| Error::corruption(path, pos.offset, "record length out of range"))?;
    let mut buf = vec![0u8; len];
    match file.read_exact_at(&mut buf, pos.offset) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(Error::corruption(
                path,
                pos.offset,
                "record position runs past the end of the file",
            ))
        }
        Err(e) => return Err(Error::io(path, e)),
    }
    format::decode_single_record(path, pos.offset, buf, pos.segment)
}
