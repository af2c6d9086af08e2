//! The engine's one error type. Every variant says what the caller can do.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
///
/// `Error` is `Clone` (I/O errors are shared behind an `Arc`) because one
/// failed group commit must be reported to every writer of the group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error on a named file. Retrying may help for
    /// transient errors; for writes the engine has already stopped accepting
    /// new writes (see [`Error::WritesStopped`]).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },

    /// The disk is full. Nothing acknowledged is lost; free space and reopen
    /// the engine to write again.
    #[error("disk full while writing {path}: free space, then reopen the engine")]
    DiskFull {
        /// The file that could not grow.
        path: PathBuf,
    },

    /// A checksum or structural check failed: the named file is damaged at
    /// the given offset. Data is never returned from a damaged region.
    /// Restore the file from a replica or backup.
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged record or block.
        offset: u64,
        /// What check failed.
        reason: String,
    },

    /// A file was written by a newer (or unknown) format version.
    #[error(
        "{path} has format version {found}, this build reads up to {supported}: upgrade ballast"
    )]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },

    /// A durability step (write or fsync) failed earlier. The engine no longer
    /// knows which unsynced writes reached the disk, so it acknowledges none of
    /// them and refuses new writes. Reopen the engine to recover from the
    /// durable state.
    #[error("writes stopped after a failed {op}: {reason}; reopen the engine to recover")]
    WritesStopped {
        /// The operation that failed ("fsync", "write", ...).
        op: &'static str,
        /// The underlying error, as text.
        reason: String,
    },

    /// A key is longer than `key_bytes_max`.
    #[error("key of {len} bytes exceeds key_bytes_max ({max})")]
    KeyTooLarge {
        /// Length of the refused key.
        len: usize,
        /// Configured maximum.
        max: usize,
    },

    /// A key is empty; empty keys are reserved.
    #[error("empty keys are not allowed")]
    EmptyKey,

    /// A value is longer than `value_bytes_max`.
    #[error("value of {len} bytes exceeds value_bytes_max ({max})")]
    ValueTooLarge {
        /// Length of the refused value.
        len: usize,
        /// Configured maximum.
        max: usize,
    },

    /// A write batch is larger than the engine accepts in one atomic record.
    #[error("write batch of {len} bytes exceeds batch_bytes_max ({max}): split it")]
    BatchTooLarge {
        /// Encoded size of the refused batch.
        len: usize,
        /// Configured maximum.
        max: usize,
    },

    /// An option is out of its valid range or malformed.
    #[error("invalid option `{field}`: {reason}")]
    InvalidOption {
        /// The option's name, as in the TOML files.
        field: String,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// The engine was closed.
    #[error("the engine is closed")]
    Closed,

    /// Another process holds the directory's lock.
    #[error("{path} is locked by another process: {reason}")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Why the lock could not be taken.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error on `path`, recognising a full disk.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if is_disk_full(&source) {
            Error::DiskFull { path }
        } else {
            Error::Io {
                path,
                source: Arc::new(source),
            }
        }
    }

    /// A corruption error.
    pub fn corruption(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// An invalid-option error.
    pub fn invalid_option(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidOption {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Checks a format version read at `offset` of `path`: newer than
    /// `supported` is [`Error::UnsupportedFormat`], 0 is corruption (no
    /// version 0 was ever written).
    pub fn check_format_version(
        path: &std::path::Path,
        offset: u64,
        found: u32,
        supported: u32,
    ) -> Result<()> {
        if found > supported {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                found,
                supported,
            });
        }
        if found == 0 {
            return Err(Error::corruption(
                path,
                offset,
                "format version 0 is invalid",
            ));
        }
        Ok(())
    }

    /// True if this is a checksum/structure failure.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

/// True if `err` means "no space left on device" (ENOSPC) or a quota error.
pub fn is_disk_full(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || err.raw_os_error() == Some(libc::ENOSPC)
        || err.raw_os_error() == Some(libc::EDQUOT)
}
