//! Whether a node grants votes.
//!
//! A node that restarted after an unclean shutdown under a relaxed preset
//! may have lost log entries it had already acknowledged (they were in the
//! page cache or in its write-back buffer). If it voted freely, one power
//! loss plus one partition could let it and another node elect a leader
//! that lacks a committed entry. So until a leader has caught it up, its
//! [`VoteGate`] is closed: the RPC server refuses Vote and PreVote
//! requests (the candidate counts a refusal as no vote), except from the
//! candidates the gate *permits*, and the node itself stands for no
//! election (the node turns openraft's elections off meanwhile). See
//! `crates/node/src/rejoin.rs` for when it opens and whom it permits.

use crate::typ::NodeId;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Open (votes granted as Raft decides) or closed (votes refused but to
/// permitted candidates). Clones share the state.
#[derive(Debug, Clone)]
pub struct VoteGate {
    open: Arc<AtomicBool>,
    /// Restarted uncleanly and not caught up yet (what peers are told; it
    /// can stay true after the gate opened because every voter waited).
    waiting: Arc<AtomicBool>,
    permitted: Arc<Mutex<BTreeSet<NodeId>>>,
}

impl Default for VoteGate {
    /// Open: a node votes as Raft decides.
    fn default() -> Self {
        VoteGate::open()
    }
}

impl VoteGate {
    fn new(open: bool) -> VoteGate {
        VoteGate {
            open: Arc::new(AtomicBool::new(open)),
            waiting: Arc::new(AtomicBool::new(!open)),
            permitted: Arc::default(),
        }
    }

    /// A gate that lets votes through.
    pub fn open() -> VoteGate {
        VoteGate::new(true)
    }

    /// A gate that refuses every vote until [`VoteGate::set_open`].
    pub fn closed() -> VoteGate {
        VoteGate::new(false)
    }

    /// True if votes go through.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Lets votes through from now on (the node still reports itself as
    /// waiting until [`VoteGate::set_caught_up`]).
    pub fn set_open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// A leader caught this node up: votes go through and it no longer
    /// waits.
    pub fn set_caught_up(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.waiting.store(false, Ordering::SeqCst);
    }

    /// True while the node restarted uncleanly and no leader has caught it
    /// up yet.
    pub fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst)
    }

    /// While closed, the candidates whose vote requests still go to Raft
    /// (which then applies its own checks); replaces the earlier set.
    pub fn permit(&self, candidates: BTreeSet<NodeId>) {
        *self.permitted.lock().unwrap_or_else(|e| e.into_inner()) = candidates;
    }

    /// True if a vote request of `candidate` goes to Raft.
    pub fn admits(&self, candidate: NodeId) -> bool {
        self.is_open()
            || self
                .permitted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&candidate)
    }
}
