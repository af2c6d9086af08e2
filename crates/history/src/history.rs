//! Recording a history: each operation with its invocation and completion.
//!
//! Times are whatever clock the recorder uses (simulated or real
//! nanoseconds), on one scale for the whole history; only their order
//! matters. An operation that never completed is unknown: it may have taken
//! effect at any time after its invocation, or never.

use crate::model::{Op, Ret};
use serde::{Deserialize, Serialize};

/// An operation's index in its history.
pub type OpId = usize;

/// How an operation completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A reply: the operation took effect (reads included) between its
    /// invocation and its completion.
    Ok(Ret),
    /// It certainly did not take effect (an error reply that says so, or the
    /// request was never sent): it is left out of the check.
    Failed,
    /// A timeout, a lost connection, or an error reply that says the write
    /// may have happened: it took effect once after its invocation, or never.
    Unknown,
}

/// One operation of one client on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Its index in the history.
    pub id: OpId,
    /// The client (one operation at a time per client).
    pub client: u64,
    /// The key.
    pub key: Vec<u8>,
    /// What it asked.
    pub op: Op,
    /// When it was invoked.
    pub invoked: u64,
    /// When it completed; `None` while pending (pending counts as unknown).
    pub completed: Option<u64>,
    /// How it completed; `Unknown` while pending.
    pub outcome: Outcome,
}

/// Every operation clients invoked, in invocation order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    ops: Vec<Operation>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Records that `client` invoked `op` on `key` at time `at`.
    pub fn invoke(&mut self, client: u64, key: impl Into<Vec<u8>>, op: Op, at: u64) -> OpId {
        let id = self.ops.len();
        self.ops.push(Operation {
            id,
            client,
            key: key.into(),
            op,
            invoked: at,
            completed: None,
            outcome: Outcome::Unknown,
        });
        id
    }

    /// Records how operation `id` completed, at time `at` (not before its
    /// invocation: a clock that ran backwards is clamped to it).
    pub fn complete(&mut self, id: OpId, outcome: Outcome, at: u64) {
        let op = &mut self.ops[id];
        op.completed = Some(at.max(op.invoked));
        op.outcome = outcome;
    }

    /// The operations, in invocation order.
    pub fn operations(&self) -> &[Operation] {
        &self.ops
    }

    /// Operations recorded.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True before the first invocation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
