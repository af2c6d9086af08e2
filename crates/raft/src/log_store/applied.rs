//! The state machine's applied index as the log store sees it: shared, so
//! that a truncation never cuts entries already applied.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The state machine's applied index, shared with the log store so that a
/// truncation never cuts entries already applied (DESIGN.md: "a node never
/// truncates its log below its applied index"). Whoever applies entries
/// calls [`AppliedIndex::set`]; clones share one value.
#[derive(Clone, Debug, Default)]
pub struct AppliedIndex(Arc<AtomicU64>);

impl AppliedIndex {
    /// Nothing applied yet.
    pub fn new() -> AppliedIndex {
        AppliedIndex::default()
    }

    /// Records that every entry up to and including log index `index` is
    /// applied. The value never goes down.
    pub fn set(&self, index: u64) {
        // Stored plus one, so that 0 can mean "nothing applied".
        self.0.fetch_max(index.saturating_add(1), Ordering::SeqCst);
    }

    /// The highest applied log index, if any entry was applied.
    pub fn get(&self) -> Option<u64> {
        self.0.load(Ordering::SeqCst).checked_sub(1)
    }
}

/// What a durable append records in [`DurableAcks`]: the epoch it was
/// made in, its last index.
pub(super) type Acked = Option<(DurableAcks, u64, u64)>;

/// What the store told openraft was durable, which a power loss must not
/// take away: the last log index (the durable policy's flusher calls back
/// only after the fsync that covers an append), lowered by every
/// truncation below it, and the last vote saved. Kept in memory, for
/// diagnostics and the cluster simulation, which compares it with what
/// the log holds after the node's next start. Clones share one value.
#[derive(Clone, Debug, Default)]
pub struct DurableAcks(Arc<std::sync::Mutex<AckState>>);

#[derive(Debug, Default)]
struct AckState {
    /// Truncations so far: an acknowledgement of an append made before
    /// the last one no longer speaks for the entries at its indexes.
    epoch: u64,
    index: Option<u64>,
    vote: Option<crate::typ::Vote>,
}

impl DurableAcks {
    fn state(&self) -> std::sync::MutexGuard<'_, AckState> {
        // Every critical section leaves the state consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The number of truncations so far (taken with an append, under the
    /// store's lock).
    pub(super) fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// Records that the append ending at `index`, made in `epoch`, was
    /// acknowledged as durable.
    pub(super) fn acknowledged(&self, epoch: u64, index: u64) {
        let mut s = self.state();
        if s.epoch == epoch {
            s.index = s.index.max(Some(index));
        }
    }

    /// Records a truncation that keeps the entries up to `last` (none:
    /// every entry goes).
    pub(super) fn truncated(&self, last: Option<u64>) {
        let mut s = self.state();
        s.epoch += 1;
        s.index = match (s.index, last) {
            (Some(i), Some(l)) => Some(i.min(l)),
            _ => None,
        };
    }

    /// The last log index acknowledged as durable since the store opened
    /// (and not truncated since).
    pub fn get(&self) -> Option<u64> {
        self.state().index
    }

    /// Records that `vote` was saved.
    pub(super) fn vote_saved(&self, vote: crate::typ::Vote) {
        self.state().vote = Some(vote);
    }

    /// The last vote saved since the store opened.
    pub fn vote(&self) -> Option<crate::typ::Vote> {
        self.state().vote
    }
}
