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
//! Files, one concept each: `format.rs` (pure: bytes of headers and
//! records), `segment.rs` (names, positions, options), `appender.rs` (one
//! file being appended to), `segment_file.rs` (creating and preparing
//! segment files), `writer.rs` ([`Wal`]), `reader.rs` (recovery, replay,
//! truncation), `log_file.rs` ([`LogFile`]), and `tests.rs`.
//!
//! Nothing here uses threads except [`replay`] with `parallel = true`, and
//! nothing reads clocks or randomness: under the simulator the WAL is
//! deterministic. All I/O goes through [`crate::fs`].
//!
//! [`Error::Corruption`]: crate::Error::Corruption

mod appender;
pub mod format;
mod log_file;
mod reader;
mod segment;
mod segment_file;
mod writer;

#[cfg(test)]
mod tests;

pub use log_file::{read_log, LogContents, LogFile};
pub use reader::{
    read_record_at, recover, recover_with, replay, replay_with, truncate_after, truncate_torn_tail,
    Recovery, RecoveryReport, TailPolicy, TornTail,
};
pub use segment::{
    list_segments, parse_segment_file_name, segment_file_name, segment_path, RecordPos, WalOptions,
    SEGMENT_BYTES_MIN,
};
pub use segment_file::{prepare_segment, PreparedSegment, PREPARED_SUFFIX};
pub use writer::{sync_existing_segments, SyncTicket, Wal};
