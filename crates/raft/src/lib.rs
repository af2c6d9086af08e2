//! ballast-raft: openraft glue for ballast.
//!
//! * [`typ`]: the openraft type configuration (node ids, node addresses, the
//!   replicated [`Request`] and its [`Response`], the runtime).
//! * [`log_store`]: the Raft log store, built on the storage engine's WAL
//!   segments: one WAL record per log entry, in our own encoding
//!   ([`codec`], byte layout in `FORMAT-raftlog.md` beside this crate), the
//!   vote and last purged log id in a small [`meta`] file.
//! * [`state_machine`]: the state machine over `ballast_storage::Db` in
//!   replicated mode (no engine WAL; the applied log id rides on each
//!   flush), applying each entry as of its proposal time with Redis TTL
//!   semantics.
//! * [`snapshot`]: Raft snapshots as SSTable sets (engine checkpoints,
//!   hard-linked) with a versioned descriptor, installed by the engine's
//!   atomic switch; and their chunked, CRC-checked transfer stream, the
//!   [`transfer::SnapshotTransfer`] the network moves (byte layouts in
//!   `FORMAT-snapshot.md`).
//! * [`transfer`] (in [`snapshot`]): what the network needs from snapshot
//!   data.
//! * `byte_reader`: the one bounds-checked reader of the crate's byte
//!   formats; [`nonce`]: where randomness comes from.
//! * [`identity`]: the cluster id and the data directory's incarnation,
//!   kept in the data directory and checked in every peer handshake.
//!
//! * [`propose`]: the leader's proposer, which turns concurrent writes into
//!   few log entries ([`Request::Multi`]).
//! * [`net`]: the Raft network (TCP, bincode frames in `FORMAT-rpc.md`,
//!   HMAC challenge-response between peers, snapshots streamed in chunks)
//!   and the RPC server, which also serves writes and reads forwarded by
//!   followers.
//!
//! * [`identity`]: the cluster id and this data directory's incarnation,
//!   checked in every peer handshake.
//! * [`planted`]: the node's planted-bug switches (for the simulation and
//!   chaos runs that prove each check catches its bug).
//!
//! The committed log id is persisted as a commit record in the log's own
//! WAL stream (`save_committed`), and openraft's leader restore is off: a
//! restarted node never serves reads from a state older than what the
//! cluster had committed (openraft issue 1511).
//!
//! All file I/O goes through `ballast_storage::fs`, the file seam the
//! simulation replaces; nothing here reads clocks, starts threads or draws
//! unseeded random numbers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod byte_reader;
pub mod codec;
pub mod error;
pub mod identity;
pub mod log_store;
pub mod meta;
pub mod net;
pub mod nonce;
pub mod planted;
pub mod propose;
pub mod runtime;
pub mod snapshot;
pub mod state_machine;
pub mod typ;

/// What the network needs from snapshot data; kept at its old path.
pub use snapshot::transfer;

pub use error::{Error, Result};
pub use log_store::{LogReader, LogStore, OpenReport};
pub use typ::{
    BatchOp, Entry, LeaderId, LogId, Membership, Node, NodeId, Proposal, Request, Response,
    SetCondition, TypeConfig, Vote,
};
