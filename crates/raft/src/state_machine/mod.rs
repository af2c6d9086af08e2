//! The replicated state machine over the storage engine.
//!
//! * The engine runs in replicated mode (`Options::wal = false`: the Raft
//!   log is the WAL). Each entry is applied as one atomic [`ballast_storage::WriteBatch`]
//!   carrying the *applied marker* (the applied log id and the last
//!   membership, encoding in `FORMAT-raftlog.md`), which the engine records
//!   with each memtable flush. After a restart, [`StateMachine::open`]
//!   reports the flushed marker as the applied state and openraft re-applies
//!   the log from there.
//! * Every normal entry is applied *as of* its [`crate::Proposal::at_ms`], the
//!   leader's clock when it proposed: each read during apply (IncrBy, Cas,
//!   Set NX/XX/GET, Expire, Persist, Delete, DeleteMany) treats a key whose
//!   expiry is at or before `at_ms` as absent, through
//!   `Db::get_entry_as_of`, never the engine's own clock. TTLs follow
//!   Redis: INCR/INCRBY keep an existing TTL; SET (any form) without an
//!   expiry drops it; EXPIRE sets it on an existing key, keeping the value,
//!   and an expiry at or before `at_ms` deletes the key (answering
//!   `Existed(true)`, as Redis does for a non-positive TTL); PERSIST
//!   answers `Existed(true)` only if it removed a TTL; CAS writes its new
//!   value without a TTL (a swap replaces the value the TTL belonged to).
//! * Apply never refuses an entry for a local setting: key, value and
//!   request sizes are checked where a request enters the cluster
//!   ([`crate::Request::validate`], with the limits of the node that took it),
//!   and the engine writes what the log holds without its own size limits
//!   (`Db::write_from_log`), so replicas configured differently, or a
//!   limit changed before a replay, still apply every entry alike. What
//!   every replica refuses alike (an empty key, from a log written before
//!   validation) is answered with [`crate::Response::Rejected`] and still
//!   advances the marker, so a bad entry can never stop the state machine.
//! * Snapshots are SSTable sets ([`crate::snapshot`]): building one is an
//!   engine checkpoint (a flush, so the applied state is durable up to the
//!   snapshot before openraft purges the log behind it, then hard links of
//!   the tables) into `<dir>/snapshots/snap-{n:020}/` with a descriptor;
//!   TTLs travel inside the tables. Installing one links its tables into
//!   the same place, then switches the engine to them in one manifest edit
//!   (`Db::install`). The newest snapshot (by last log id) stays on disk
//!   as the current one, so [`openraft::storage::RaftStateMachine::get_current_snapshot`]
//!   works after a restart; older ones are deleted as soon as a newer one
//!   is durable and nobody (a snapshot stream to a follower) still holds
//!   them. An install interrupted by a crash after its snapshot directory
//!   became durable is finished by the next [`StateMachine::open`].
//!
//! Expiry is a pure function of the log: relative TTLs become deadlines
//! from the entry's `at_ms`; the engine runs with
//! `Options::expire_by_horizon`, and after each entry the state machine
//! moves the engine's expiry horizon to the largest `at_ms` applied (it
//! travels in the applied marker across restarts), so flush and compaction
//! drop exactly the keys every later entry would find expired, on every
//! replica, whatever its clock. [`state_hash`] hashes the live state as of
//! that horizon, so replicas can be compared from outside.
//!
//! * `machine`: the [`StateMachine`], opening it, and openraft's trait.
//! * `apply`: applying one entry as of its time.
//! * `snapshot_store` and `snapshot_build`: the snapshots kept on disk,
//!   and building one.
//! * `state_hash`: the hash of a replica's live state.

mod apply;
mod float;
mod machine;
mod snapshot_build;
mod snapshot_store;
mod state_hash;
mod strings;

pub use crate::codec::marker::{
    decode_marker, decode_marker_at, encode_marker, encode_marker_at, MarkerAt,
    MARKER_FORMAT_VERSION,
};
pub use crate::snapshot::{Snapshot, SnapshotData};
pub use crate::typ::{SnapshotMeta, StoredMembershipOf};
pub use float::is_redis_float;
pub use machine::{BallastRaft, ProposeContext, StateMachine};
pub use snapshot_build::SnapshotBuilder;
pub use snapshot_store::SNAPSHOTS_DIR;
pub use state_hash::state_hash;
