//! The file seam: every file operation of the engine (and of the Raft log,
//! which reuses the WAL) goes through [`FileSystem`] and [`FileHandle`].
//!
//! Two implementations matter: [`StdFs`] (std::fs, production) and the
//! simulation's turmoil-backed one (in `sim/`). [`FaultFs`] wraps any
//! implementation to inject fsync failures, write failures and a full disk in
//! ordinary tests. [`VolatileFs`] keeps file writes in memory until their
//! fsync, so that killing a real process (or calling its `cut_power`) is a
//! power loss.
//!
//! The seam is synchronous on purpose: positional reads and writes map onto
//! `pread`/`pwrite` and onto turmoil's std-shaped shim alike. Simulated disk
//! latency comes through [`FileSystem::io_delay`], which the engine awaits
//! (with `tokio::time::sleep`) right before the operation, so a simulated
//! crash can land between a write and its fsync.
//!
//! Durability model the engine assumes (POSIX): data written to a file is
//! durable after `sync_data`; a created, renamed or removed directory entry
//! is durable after `sync_dir` on its parent.

mod fault;
mod seam;
mod std_fs;
mod volatile;

pub use fault::{FaultFs, FaultSwitches};
pub use seam::{
    copy_file, pause, read_file, remove_dir_with_files, sync_parent, write_file_durably, DynFile,
    DynFs, FileHandle, FileSystem, IoOp, OpenMode, COPY_CHUNK_BYTES,
};
pub use std_fs::StdFs;
pub use volatile::VolatileFs;
