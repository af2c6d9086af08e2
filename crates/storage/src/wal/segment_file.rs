//! Creating segment files: a new segment written in place (header,
//! optional zero fill, fsyncs) and a segment prepared ahead under a
//! temporary name for the Raft log's rolls, plus the clean-up of prepared
//! files a crash left behind. Byte layout in `FORMAT-wal.md` ("Writing").
//!
//! Limits: zero-fill writes are at most [`ZERO_CHUNK_BYTES_MAX`]; a
//! segment being prepared is fdatasynced every [`PREPARE_SYNC_BYTES_MAX_MAX`]
//! of zeros, so no single fsync holds a runtime thread for long.

use super::appender::Appender;
use super::format::{self, FILE_HEADER_LEN, WAL_MAGIC};
use super::segment::{segment_path, WalOptions};
use crate::error::{Error, Result};
use crate::fs::{self, DynFile, FileSystem, IoOp, OpenMode};
use std::path::{Path, PathBuf};

/// Zero-fill writes are at most this large.
const ZERO_CHUNK_BYTES_MAX: usize = 1 << 20;

/// A segment file made ready ahead of its use by [`prepare_segment`], off
/// whatever guards the [`Wal`](super::Wal): created under a temporary name, header
/// written, zero-filled if preallocating, fsynced. A roll renames it into
/// place instead of creating a segment while appends wait.
#[derive(Debug)]
pub struct PreparedSegment {
    pub(crate) number: u64,
    pub(crate) tmp_path: PathBuf,
    pub(crate) file: DynFile,
}

impl PreparedSegment {
    /// The segment number it was prepared for (its header and CRC salt).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Removes its file (best effort: a leftover is ignored by recovery and
    /// removed by the next [`Wal::open`](super::Wal::open)).
    pub fn discard(self, fs: &dyn FileSystem) {
        drop(self.file);
        let _ = fs.remove_file(&self.tmp_path);
    }
}

/// Suffix of a prepared segment's temporary file name: `{number:020}.{tag}.prep`.
/// Such names are not segment names, so recovery, truncation and purge
/// never see them.
pub const PREPARED_SUFFIX: &str = ".prep";

/// Prepares segment `number` in `dir` under a temporary name unique by
/// `tag` (see [`PreparedSegment`]). Does the slow part of a roll (zero
/// fill, fsync) and none of the ordering-sensitive part, so it can run
/// while the current segment fills. The temporary name needs no directory
/// fsync: the roll's seal fsyncs the directory after the rename.
pub async fn prepare_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    tag: u64,
    options: &WalOptions,
) -> Result<PreparedSegment> {
    let tmp_path = dir.join(format!("{number:020}.{tag}{PREPARED_SUFFIX}"));
    fs::pause(fs, IoOp::Metadata).await;
    let file = fs
        .open(&tmp_path, OpenMode::CreateNew)
        .map_err(|e| Error::io(&tmp_path, e))?;
    if let Err(e) = fill_in_steps(fs, &*file, number, options).await {
        drop(file);
        let _ = fs.remove_file(&tmp_path);
        return Err(Error::io(&tmp_path, e));
    }
    Ok(PreparedSegment {
        number,
        tmp_path,
        file,
    })
}

/// Zero-fill bytes between two fdatasyncs of a segment being prepared, so
/// that no single fsync holds a runtime thread for long.
const PREPARE_SYNC_BYTES_MAX: u64 = 16 << 20;

/// [`write_header_and_fill`] in steps that yield to other tasks: the zero
/// fill of a 128 MiB segment would otherwise hold a runtime thread for the
/// whole write and fsync.
async fn fill_in_steps(
    fs: &dyn FileSystem,
    file: &dyn crate::fs::FileHandle,
    number: u64,
    options: &WalOptions,
) -> std::io::Result<()> {
    let header = format::encode_file_header(&WAL_MAGIC, format::SEGMENT_FORMAT_VERSION, number);
    fs::pause(fs, IoOp::Write).await;
    file.write_all_at(&header, 0)?;
    if options.preallocate {
        let total = options.segment_bytes;
        let mut at = FILE_HEADER_LEN as u64;
        let chunk = (total.saturating_sub(at)).min(ZERO_CHUNK_BYTES_MAX as u64) as usize;
        let zeros = vec![0u8; chunk];
        let mut unsynced = 0u64;
        while at < total {
            let n = (total - at).min(chunk as u64) as usize;
            fs::pause(fs, IoOp::Write).await;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
            unsynced += n as u64;
            if unsynced >= PREPARE_SYNC_BYTES_MAX {
                fs::pause(fs, IoOp::Sync).await;
                file.sync_data()?;
                unsynced = 0;
            }
            tokio::task::yield_now().await;
        }
    }
    fs::pause(fs, IoOp::Sync).await;
    file.sync_data()
}

/// Creates segment `number`: header and link record (the previous
/// segment's data ended at `prev_end`, or [`format::PREV_END_UNKNOWN`]),
/// optional zero fill, fsync, directory fsync. The caller has made the
/// previous segment durable up to `prev_end` first. On failure the partial
/// file is removed (best effort), so that a full disk gets its space back.
pub(crate) fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    options: &WalOptions,
    prev_end: u64,
) -> Result<Appender> {
    let path = segment_path(dir, number);
    let file = fs
        .open(&path, OpenMode::CreateNew)
        .map_err(|e| Error::io(&path, e))?;
    if let Err(e) = write_header_and_fill(&*file, number, options, prev_end) {
        drop(file);
        let _ = fs.remove_file(&path);
        let _ = fs.sync_dir(dir);
        return Err(Error::io(&path, e));
    }
    if !crate::planted::active(crate::planted::PlantedBug::SkipSegmentDirSync) {
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    let end = (FILE_HEADER_LEN + format::LINK_RECORD_LEN) as u64;
    Ok(Appender::new(path, file, number, end))
}

/// Header, link record, optional zero fill, fdatasync: a new segment's
/// content before any data record.
fn write_header_and_fill(
    file: &dyn crate::fs::FileHandle,
    number: u64,
    options: &WalOptions,
    prev_end: u64,
) -> std::io::Result<()> {
    let mut start =
        format::encode_file_header(&WAL_MAGIC, format::SEGMENT_FORMAT_VERSION, number).to_vec();
    format::encode_link_record(&mut start, &format::salted_hasher(number), prev_end);
    file.write_all_at(&start, 0)?;
    if options.preallocate {
        let mut at = start.len() as u64;
        let total = options.segment_bytes;
        let chunk = (total.saturating_sub(at)).min(ZERO_CHUNK_BYTES_MAX as u64) as usize;
        let zeros = vec![0u8; chunk];
        while at < total {
            let n = (total - at).min(chunk as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
    }
    file.sync_data()
}

/// Removes prepared segments a previous writer left behind (a crash, or a
/// store closed while one was being prepared). Their names were never
/// segment names, so nothing refers to them.
pub(crate) fn remove_prepared_leftovers(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let names = fs.list_dir(dir).map_err(|e| Error::io(dir, e))?;
    for name in names.iter().filter(|n| n.ends_with(PREPARED_SUFFIX)) {
        let path = dir.join(name);
        match fs.remove_file(&path) {
            // The preparer of a store closed just before may discard its
            // own file meanwhile.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(&path, e));
            }
            _ => {}
        }
    }
    Ok(())
}
