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
