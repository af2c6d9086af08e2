//! Where records live: segment file names, the positions of records in
//! them, and the options a segment is written with. Pure except
//! [`list_segments`], which lists a directory.
//!
//! Limit: a segment is at least [`SEGMENT_BYTES_MIN`] bytes
//! (`WalOptions::segment_bytes`).

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
pub const SEGMENT_BYTES_MIN: u64 = 64;

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
        if self.segment_bytes < SEGMENT_BYTES_MIN {
            return Err(Error::invalid_option(
                "wal_segment_bytes",
                format!("must be at least {SEGMENT_BYTES_MIN}"),
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
