//! ballast-history: what clients saw, and whether a single copy of each key
//! could have shown it.
//!
//! The cluster simulation (`sim/`) and the chaos controller (`chaos/`)
//! record every request a client sends into a [`History`]: the operation,
//! the time it was invoked, and how it completed (a reply, a definite
//! failure, or unknown: a timeout or a lost connection, after which the
//! write may or may not have happened). [`History::check`] then asks, key
//! by key, whether some order of the operations respects real time (an
//! operation that completed before another was invoked comes first) and
//! makes every reply the one a single register would have given: the
//! definition of linearizability (Herlihy and Wing, 1990).
//!
//! - [`model`]: the register, with read, write, delete, compare-and-set and
//!   increment, and what each replies.
//! - [`history`]: recording operations and their outcomes.
//! - [`wgl`]: the Wing-Gong-Lowe search with memoisation of (operations
//!   linearized, register state), per key, with a step budget.
//! - [`judge`]: reports for people, and the relaxations a preset's
//!   contract allows after a power cut.
//! - [`brute`]: the same question answered by trying every order, for small
//!   histories only; the tests check the two agree.
//!
//! Linearizability is compositional (a history is linearizable iff each
//! key's sub-history is), so checking per key is exact for single-key
//! operations. A multi-key write (MSET) is recorded as one write per key:
//! that checks each key's view of it, not the atomicity across keys.
#![forbid(unsafe_code)]

pub mod brute;
pub mod history;
pub mod judge;
pub mod model;
pub mod wgl;

pub use history::{History, OpId, Operation, Outcome};
pub use model::{Op, Register, Ret, Value};
pub use wgl::{check_from, KeyVerdict, Report, Verdict};
