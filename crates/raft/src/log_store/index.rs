//! The log's index: one `(leader id, record position)` per live entry, the
//! only per-entry memory the log store keeps (entry payloads are read back
//! from the WAL segments on demand). Recovery builds it while replaying the
//! WAL; the store keeps it in step with every append, truncation and purge.
//!
//! Limits: one `(LeaderId, RecordPos)` per live entry; purges shrink it.

use crate::typ::{LeaderId, LogId};
use ballast_storage::wal::RecordPos;
use std::collections::VecDeque;

/// Where each live entry is, by log index.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// `entries[i]` is the entry with log index `first + i`.
    pub(super) entries: VecDeque<(LeaderId, RecordPos)>,
    /// Log index of `entries[0]`; meaningless while `entries` is empty.
    pub(super) first: u64,
}

impl Index {
    /// The last live entry's log id, else the last purged one.
    pub(super) fn last_log_id(&self, last_purged: Option<LogId>) -> Option<LogId> {
        match self.entries.back() {
            Some((leader, _)) => Some(LogId::new(
                *leader,
                self.first + self.entries.len() as u64 - 1,
            )),
            None => last_purged,
        }
    }

    /// The log index the next appended entry must have, if constrained
    /// (`purged_upto`: the last purged log index).
    pub(super) fn next_index(&self, purged_upto: Option<u64>) -> Option<u64> {
        if self.entries.is_empty() {
            purged_upto.map(|p| p + 1)
        } else {
            Some(self.first + self.entries.len() as u64)
        }
    }

    /// True if `c` names an entry this log holds, or purged (at or below
    /// `purged_upto`): a commit record for it may follow the entries in
    /// the WAL stream.
    pub(super) fn holds(&self, c: &LogId, purged_upto: Option<u64>) -> bool {
        if purged_upto.is_some_and(|p| c.index <= p) {
            return true;
        }
        if self.entries.is_empty() || c.index < self.first {
            return false;
        }
        usize::try_from(c.index - self.first)
            .ok()
            .and_then(|i| self.entries.get(i))
            .is_some_and(|(leader, _)| *leader == c.leader_id)
    }

    /// Adds the entry `log_id`, at `pos`, after the last one.
    pub(super) fn push(&mut self, log_id: &LogId, pos: RecordPos) {
        if self.entries.is_empty() {
            self.first = log_id.index;
        }
        self.entries.push_back((log_id.leader_id, pos));
    }
}
