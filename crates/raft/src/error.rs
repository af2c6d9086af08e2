//! The crate's one error type. Every variant says what the caller can do.

use std::io;
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in ballast's Raft glue.
///
/// openraft's storage traits speak `std::io::Error`; [`From<Error>`] for
/// `io::Error` keeps the variant's message and maps corruption to
/// `InvalidData`, so the reason survives into openraft's `StorageError`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage engine's WAL code (which the Raft log reuses) failed:
    /// I/O, a full disk, corruption it detected, or writes stopped after a
    /// failed fsync. See the inner error for what to do; for a failed fsync,
    /// reopen the log store.
    #[error(transparent)]
    Storage(#[from] ballast_storage::Error),

    /// An I/O error on a file of the Raft log store itself (the meta file).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A Raft log record or the meta file failed a structural check (the
    /// WAL's checksum passed, so this is a bug or a file from something
    /// else). Restore the node's log from a replica.
    #[error("corrupt Raft log data in {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },

    /// A file was written by a newer format version of the Raft log.
    #[error("{path} has Raft log format version {found}, this build reads up to {supported}: upgrade ballast")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// The caller broke a log-store precondition (for example appended an
    /// entry whose index does not follow the last one). This is a bug in
    /// the caller; nothing was written.
    #[error("Raft log misuse: {0}")]
    Misuse(String),

    /// A previous write or fsync of the log failed, so the store no longer
    /// knows what is durable and refuses everything. Reopen it.
    #[error("the Raft log store stopped after a failed write: {0}; reopen it")]
    Stopped(String),

    /// The leader asked this node to truncate its Raft log from index
    /// `truncate_from`, but the state machine already applied entries up
    /// to `applied`: the node holds state the cluster does not (it may have
    /// acknowledged entries it then lost under a relaxed preset). The log
    /// store refused and stopped; the node must be rebuilt.
    #[error(
        "this node's Raft log conflicts with the leader's from index {truncate_from}, \
         below entries it already applied (up to index {applied}); its state cannot be \
         reconciled, so the log store stopped. Rebuild the node: stop it, remove its data \
         directory, and replace it in the cluster (remove it, add it back as a learner, \
         then promote it)"
    )]
    TruncateBelowApplied {
        /// The highest log index the state machine applied.
        applied: u64,
        /// The first log index the truncation would have removed.
        truncate_from: u64,
    },
}

impl Error {
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Corrupt { .. } | Error::UnsupportedFormat { .. } => io::ErrorKind::InvalidData,
            Error::Storage(s) if s.is_corruption() => io::ErrorKind::InvalidData,
            Error::Storage(ballast_storage::Error::DiskFull { .. }) => io::ErrorKind::StorageFull,
            Error::Misuse(_) => io::ErrorKind::InvalidInput,
            Error::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
