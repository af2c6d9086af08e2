//! A single-file log with the WAL's record format and torn-tail rules, for
//! the manifest and other small append-only files.

use super::appender::{check_payload_len, Appender, Poison};
use super::format::{self, Compressor, FileHeader, ScanEnd, FILE_HEADER_LEN};
use super::reader::TornTail;
use crate::error::{Error, Result};
use crate::fs::{self, DynFs, OpenMode};
use bytes::Bytes;
use std::fmt;
use std::path::Path;

/// What [`read_log`] found in a single-file log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogContents {
    /// The number in the file header (0 if the header was never written).
    pub number: u64,
    /// Every record's payload, in order.
    pub records: Vec<Bytes>,
    /// Offset just past the last valid record: where appending resumes.
    pub end: u64,
    /// The torn tail, if the file ended in one (`segment` is the header's
    /// number; `offset` 0 if the header itself was never written).
    pub torn: Option<TornTail>,
}

/// Decodes a whole single-file log held in `data` (read from `path`, which
/// only names the file in errors) whose header carries `magic`. The file is
/// its own last segment: a bad record with no valid record after it is a
/// torn tail, reported in [`LogContents::torn`]; a bad record with a valid
/// one after it is [`Error::Corruption`] at the bad record's offset.
pub fn read_log(path: &Path, data: Bytes, magic: &[u8; 8]) -> Result<LogContents> {
    let decoded = format::decode_file(path, data, magic, None)?;
    let number = match decoded.header {
        FileHeader::Valid(n) => n,
        FileHeader::Unwritten => {
            return Ok(LogContents {
                number: 0,
                records: Vec::new(),
                end: 0,
                torn: Some(TornTail {
                    segment: 0,
                    offset: 0,
                    bytes_dropped: decoded.file_len,
                }),
            })
        }
    };
    let records = decoded.records.into_iter().map(|(_, _, p)| p).collect();
    match decoded.end {
        ScanEnd::Clean { offset } => Ok(LogContents {
            number,
            records,
            end: offset,
            torn: None,
        }),
        ScanEnd::Bad {
            offset,
            valid_after: None,
            ..
        } => Ok(LogContents {
            number,
            records,
            end: offset,
            torn: Some(TornTail {
                segment: number,
                offset,
                bytes_dropped: decoded.file_len - offset,
            }),
        }),
        ScanEnd::Bad {
            offset,
            reason,
            valid_after: Some(p),
        } => Err(Error::corruption(
            path,
            offset,
            format!("{reason}; a valid record follows at offset {p}"),
        )),
    }
}

/// Appends records to one file, with the WAL's encoding, step split and
/// poisoning rules (see [`super::Wal`]): [`LogFile::add_record`] buffers,
/// [`LogFile::write_pending`] writes, [`LogFile::sync`] fdatasyncs; after a
/// failed write or fsync every call fails with [`Error::WritesStopped`].
pub struct LogFile {
    fs: DynFs,
    out: Appender,
    compressor: Compressor,
    poison: Poison,
}

impl fmt::Debug for LogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogFile")
            .field("path", &self.out.path)
            .field("end", &self.out.end())
            .field("poisoned", &self.poison.is_poisoned())
            .finish()
    }
}

impl LogFile {
    /// Creates a new log file at `path` (it must not exist) with a header of
    /// `magic` and `number` (the CRC salt of its records), fsyncs it and its
    /// directory. Payloads of at least `compression_threshold_bytes` are
    /// compressed when that helps (0 = never).
    pub fn create(
        fs: DynFs,
        path: &Path,
        magic: &[u8; 8],
        number: u64,
        compression_threshold_bytes: u64,
    ) -> Result<LogFile> {
        let file = fs
            .open(path, OpenMode::CreateNew)
            .map_err(|e| Error::io(path, e))?;
        let header = format::encode_file_header(magic, format::LOG_FILE_FORMAT_VERSION, number);
        file.write_all_at(&header, 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(path, e))?;
        fs::sync_parent(&*fs, path).map_err(|e| Error::io(path, e))?;
        Ok(LogFile {
            out: Appender::new(path.to_path_buf(), file, number, FILE_HEADER_LEN as u64),
            compressor: Compressor::new(compression_threshold_bytes),
            fs,
            poison: Poison::default(),
        })
    }

    /// Opens an existing log file to append to it: reads it (see
    /// [`read_log`]), cuts a torn tail off (set_len, fdatasync) so that old
    /// garbage can never precede new records, and returns the writer with
    /// what was read. A file whose header was never written is refused with
    /// [`Error::Corruption`]: its number is unknown; create it anew.
    pub fn open_append(
        fs: DynFs,
        path: &Path,
        magic: &[u8; 8],
        compression_threshold_bytes: u64,
    ) -> Result<(LogFile, LogContents)> {
        let file = fs
            .open(path, OpenMode::Write)
            .map_err(|e| Error::io(path, e))?;
        let data = fs::read_file(&*fs, path).map_err(|e| Error::io(path, e))?;
        let contents = read_log(path, Bytes::from(data), magic)?;
        if let Some(torn) = &contents.torn {
            if torn.offset == 0 {
                return Err(Error::corruption(
                    path,
                    0,
                    "log file header was never written",
                ));
            }
            file.set_len(torn.offset)
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::io(path, e))?;
        }
        let mut out = Appender::new(path.to_path_buf(), file, contents.number, contents.end);
        out.records = contents.records.len() as u64;
        Ok((
            LogFile {
                out,
                compressor: Compressor::new(compression_threshold_bytes),
                fs,
                poison: Poison::default(),
            },
            contents,
        ))
    }

    /// Encodes a record into the pending buffer; returns its offset in the
    /// file.
    pub fn add_record(&mut self, payload: &[u8]) -> Result<u64> {
        self.poison.check()?;
        check_payload_len(payload.len())?;
        let (offset, _) = match self.compressor.compress(payload) {
            Some(n) => self.out.push(self.compressor.compressed(n), true),
            None => self.out.push(payload, false),
        };
        Ok(offset)
    }

    /// Writes the pending buffer with one positional write.
    pub fn write_pending(&mut self) -> Result<()> {
        self.poison.check()?;
        let r = self.out.write_pending();
        r.map_err(|e| self.poison.fail("write", e))
    }

    /// Writes pending bytes and fdatasyncs.
    pub fn sync(&mut self) -> Result<()> {
        self.poison.check()?;
        let r = self.out.sync();
        r.map_err(|e| self.poison.fail("fsync", e))
    }

    /// Bytes encoded but not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.out.pending.len()
    }

    /// Length of the log including pending bytes.
    pub fn len(&self) -> u64 {
        self.out.end()
    }

    /// True if the log holds no records.
    pub fn is_empty(&self) -> bool {
        self.out.records == 0
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.out.path
    }

    /// The file system.
    pub fn fs(&self) -> &DynFs {
        &self.fs
    }

    /// True once a write or fsync has failed.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_poisoned()
    }
}
