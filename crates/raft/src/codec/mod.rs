//! Our own encodings of what the Raft log and the state machine keep on
//! disk. Hand-written (not a serde format) so that the on-disk bytes never
//! change behind our back when a dependency or a derive does. The byte
//! layouts are in `FORMAT-raftlog.md` beside this crate; keep the two in
//! step. Everything here is pure: bytes in, values out.
//!
//! * [`entry`]: one log entry, the payload of one WAL record, and its log
//!   id.
//! * [`request`]: the replicated [`crate::Request`] inside a normal entry.
//! * [`membership`]: the body of a membership entry.
//! * [`commit_record`]: the committed log id, a record of its own in the
//!   log's WAL stream.
//! * [`marker`]: the applied marker the engine records with each flush,
//!   also the meta of a snapshot descriptor.
//! * `write`: the length-prefixed writers matching the one byte reader,
//!   `crate::byte_reader`.

pub mod commit_record;
pub mod entry;
pub mod marker;
pub mod membership;
pub mod request;
mod write;

#[cfg(test)]
mod tests;

pub use crate::byte_reader::DecodeError;
pub use commit_record::{
    decode_commit_record, encode_commit_record, COMMIT_RECORD_KIND, COMMIT_RECORD_LEN,
};
pub use entry::{
    decode_entry, decode_log_id_only, decode_log_id_prefix, encode_entry, encode_log_id_into,
    ENTRY_FORMAT_VERSION, ENTRY_HEADER_LEN,
};
pub use marker::{
    decode_marker, decode_marker_at, encode_marker, encode_marker_at, MarkerAt,
    MARKER_FORMAT_VERSION,
};
pub use membership::{decode_membership_exact, encode_membership};
pub use request::encode_request;
pub use write::{decode_bytes_prefix, encode_bytes_into};
