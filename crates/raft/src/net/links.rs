//! Cut links: a test seam that makes chosen peers unreachable from one
//! node, for partition tests of in-process clusters.
//!
//! A node's [`NetConfig`](super::NetConfig) may carry a [`Links`]; every
//! outgoing connection and every call on it first asks whether the link to
//! its address is cut, and fails like an unreachable peer if it is. Every
//! Raft RPC and forwarded request starts at a client, so cutting A→B on A
//! and B→A on B separates them in both directions; [`Links`] values are
//! shared handles, so one test can hold each node's and cut or heal them
//! while the nodes run. Production leaves it unset (nothing is checked).
//! Real processes are partitioned by the chaos fault proxy, and the
//! simulation by turmoil's network, not by this.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// The peer addresses one node cannot reach right now. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Links {
    cut: Arc<Mutex<BTreeSet<String>>>,
}

impl Links {
    /// No link cut.
    pub fn new() -> Links {
        Links::default()
    }

    fn set(&self) -> MutexGuard<'_, BTreeSet<String>> {
        // Inserts and removes leave the set consistent: a poisoned lock
        // still guards good data.
        self.cut.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `addr` unreachable from this node.
    pub fn cut(&self, addr: &str) {
        self.set().insert(addr.to_string());
    }

    /// Makes `addr` reachable again.
    pub fn heal(&self, addr: &str) {
        self.set().remove(addr);
    }

    /// Makes every peer reachable again.
    pub fn heal_all(&self) {
        self.set().clear();
    }

    /// True if the link to `addr` is cut.
    pub fn is_cut(&self, addr: &str) -> bool {
        self.set().contains(addr)
    }
}
