//! One file being appended to, record by record: the bytes not yet handed
//! to the OS, where the next record lands, how far the file is durable, and
//! the poison that stops everything after the first failed write or fsync.
//! Shared by the segment writer ([`super::Wal`]) and single-file logs
//! ([`super::LogFile`]).
//!
//! Limit: a stored payload is at most `u32::MAX` bytes
//! ([`check_payload_len`]).

use super::format::{self, RECORD_HEADER_LEN};
use crate::error::{Error, Result};
use crate::fs::DynFile;
use crc32fast::Hasher;
use std::path::PathBuf;

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
        if op == "fsync" && crate::planted::active(crate::planted::PlantedBug::RetryFailedFsync) {
            return err;
        }
        if self.0.is_none() {
            self.0 = Some((op, err.to_string()));
        }
        err
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.0.is_some()
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

    /// Encodes the link record of a new segment (not counted as a record;
    /// see [`format::KIND_LINK`]) into `pending`: the previous segment's
    /// data ended at `prev_end`.
    pub(crate) fn push_link(&mut self, prev_end: u64) {
        format::encode_link_record(&mut self.pending, &self.salted, prev_end);
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
    if len > format::PAYLOAD_BYTES_MAX {
        return Err(Error::BatchTooLarge {
            len,
            max: format::PAYLOAD_BYTES_MAX,
        });
    }
    Ok(())
}
