//! ballast-raft: openraft glue for ballast.
//!
//! * [`typ`]: the openraft type configuration (node ids, node addresses, the
//!   replicated [`Request`] and its [`Response`], the runtime).
//! * [`log_store`]: the Raft log store, built on the storage engine's WAL
//!   segments: one WAL record per log entry, in our own encoding
//!   ([`codec`], byte layout in `FORMAT-raftlog.md` beside this crate), the
//!   vote and last purged log id in a small [`meta`] file.
//! * [`state_machine`]: an *interim* state machine over
//!   `ballast_storage::Db` in replicated mode (no engine WAL; the applied
//!   log id rides on each flush), with logical-dump snapshots. Its module
//!   docs say exactly what is real and what is not yet.
//!
//! * [`net`]: the Raft network (TCP, bincode frames in `FORMAT-rpc.md`).
//!
//! Still to come: SSTable-set snapshots streamed in chunks, and persisting
//! the committed log id (`save_committed` keeps openraft's default for now, so the node must call
//! `Raft::wait_for_recovery` before serving reads after a restart).
//!
//! All file I/O goes through `ballast_storage::fs`, the file seam the
//! simulation replaces; nothing here reads clocks, starts threads or draws
//! unseeded random numbers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod error;
pub mod log_store;
pub mod meta;
pub mod net;
pub mod state_machine;
pub mod transfer;
pub mod typ;

pub use error::{Error, Result};
pub use log_store::{LogReader, LogStore, OpenReport};
pub use typ::{
    BatchOp, Entry, LeaderId, LogId, Membership, Node, NodeId, Proposal, Request, Response,
    SetCondition, TypeConfig, Vote,
};
