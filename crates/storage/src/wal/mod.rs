//! The write-ahead log: a directory of numbered segment files holding
//! checksummed records (byte layout in `FORMAT-wal.md` beside this crate).
//!
//! * [`Wal`] appends records. Appending is split in steps, so the engine
//!   can build group commit and its three fsync policies on top:
//!   [`Wal::add_record`] encodes into memory and says where the record will
//!   land, [`Wal::write_pending`] hands the buffered bytes to the OS in one
//!   positional write, and [`Wal::sync`] makes them durable (fdatasync).
//!   After any failed write or fsync the writer is *poisoned* and refuses
//!   everything (see [`Wal`]).
//! * [`recover`] / [`replay`] read every record back after a restart, stop
//!   at a torn tail and report it, and fail with [`Error::Corruption`] on
//!   damage anywhere else. [`Wal::open`] repairs the torn tail (using the
//!   recovery report) and then always starts a new segment.
//! * [`read_record_at`] and [`truncate_after`] serve the Raft log, which
//!   reuses these segments.
//! * [`LogFile`] and [`read_log`] are the same record format and torn-tail
//!   rules for a single file (the manifest).
//!
//! Nothing here uses threads except [`replay`] with `parallel = true`, and
//! nothing reads clocks or randomness: under the simulator the WAL is
//! deterministic. All I/O goes through [`crate::fs`].
//!
//! [`Error::Corruption`]: crate::Error::Corruption

pub mod format;
mod log_file;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use log_file::{read_log, LogContents, LogFile};
pub use reader::{
    read_record_at, recover, recover_with, replay, replay_with, truncate_after, truncate_torn_tail,
    Recovery, RecoveryReport, TailPolicy, TornTail,
};
pub use writer::{prepare_segment, PreparedSegment, SyncTicket, Wal, PREPARED_SUFFIX};

use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::options::Options;
use std::path::{Path, PathBuf};

/// Where a record landed: its segment, the byte offset of its header in the
/// segment file, and its encoded length (header plus stored payload).
/// Ordered by segment, then offset: the log's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordPos {
    /// Segment number.
    pub segment: u64,
    /// Offset of the record header within the segment file.
    pub offset: u64,
    /// Encoded length in bytes, header included.
    pub len: u64,
}

impl RecordPos {
    /// Offset just past the record.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Smallest accepted `segment_bytes`.
pub const MIN_SEGMENT_BYTES: u64 = 64;

/// How the WAL writes segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Size at which a segment is sealed and the next one started. A single
    /// record larger than this gets a segment of its own, which grows past it.
    pub segment_bytes: u64,
    /// Zero-fill each new segment to `segment_bytes` (real zero writes, then
    /// fsync) before use, so that later fdatasyncs need no metadata update.
    pub preallocate: bool,
    /// Payloads of at least this many bytes are snappy-compressed when that
    /// makes them smaller; 0 disables compression.
    pub compression_threshold_bytes: u64,
}

impl WalOptions {
    /// The WAL options of an engine configuration.
    pub fn from_options(o: &Options) -> Self {
        WalOptions {
            segment_bytes: o.wal_segment_bytes,
            preallocate: o.wal_preallocate,
            compression_threshold_bytes: o.wal_compression_threshold_bytes,
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(Error::invalid_option(
                "wal_segment_bytes",
                format!("must be at least {MIN_SEGMENT_BYTES}"),
            ));
        }
        Ok(())
    }
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            preallocate: false,
            compression_threshold_bytes: 0,
        }
    }
}

/// The file name of segment `number`: 20 decimal digits and `.wal`.
pub fn segment_file_name(number: u64) -> String {
    format!("{number:020}.wal")
}

/// The path of segment `number` in `dir`.
pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(segment_file_name(number))
}

/// Parses a segment file name; other names give `None`.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment numbers present in `dir`, ascending. Other files are ignored.
pub fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<u64>> {
    let names = fs.list_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut segs: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    segs.sort_unstable();
    Ok(segs)
}
