//! Rejoining after an unclean shutdown under a relaxed preset.
//!
//! Under balanced and throughput a node acknowledges a log entry before it
//! is fsynced (balanced: once it is in the page cache; throughput: once it
//! is in the log's write-back buffer). If such a node loses power (or,
//! under throughput, its process), it comes back without entries it had
//! acknowledged, and a leader may have counted those acknowledgements
//! toward a commit. If it then voted, the committed entry could be lost
//! while only a minority crashed: leader A commits E with B; A is cut off;
//! B loses E with its power; B and C elect a leader that writes E' at E's
//! index.
//!
//! So a relaxed-preset node that finds no clean-shutdown marker at start
//! waits: it stands for no election (openraft's elections are off) and its
//! [`VoteGate`] refuses votes, until one of:
//!
//! * **a leader has caught it up**: it knows a leader whose own term's
//!   entry it has seen committed (`cluster_committed` in the current term)
//!   and has applied up to it. A leader commits an entry of its term only
//!   when everything committed before is in its log, so this node's log
//!   then holds every committed entry, whatever it lost. The gate opens.
//! * **every voter waits like it** (all answered, all waiting): every
//!   voter restarted uncleanly, nobody holds more than what the preset's
//!   contract lets a cluster-wide crash lose, and waiting longer would
//!   stop the cluster for good. Then only the voters with the highest last
//!   log id may stand, and the others vote only for them: the new leader
//!   holds every entry any node kept, so no node is asked to cut entries it
//!   applied (which it would refuse, and stop). A node with that log opens
//!   its gate and stands; the others are caught up by it.
//!
//! Meanwhile, while every voter answers, it votes for the *clean* voters
//! (those not waiting) whose last log id is the highest among the clean
//! ones: a committed entry whose quorum held a clean node is on that node,
//! and such a candidate's log is at least as up to date as that node's, so
//! Raft's own election check keeps the entry; an entry whose quorum held
//! no clean node was lost by a majority that crashed, which the contract
//! allows. Without this, two waiting nodes and one clean node could never
//! elect anyone. A voter that does not answer could be a clean node
//! holding more, so then nobody is permitted.
//!
//! The marker is written (file and directory fsynced) by a clean shutdown
//! once the log is fsynced and the engine flushed, and removed (durably)
//! at start, before the node takes part in anything. The durable preset
//! acknowledges only fsynced entries, so it never waits.

use ballast_raft::net::{BallastRaft, ForwardClient, VoteGate};
use ballast_raft::{LogId, NodeId};
use ballast_storage::fs::{self as sfs, FileSystem};
use openraft::async_runtime::WatchReceiver;
use openraft::RaftMetrics;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::time::Duration;

/// The clean-shutdown marker's name in the data directory.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// What the marker holds (its presence is what counts; the text is for a
/// person who finds it).
const MARKER_TEXT: &[u8] = b"ballast shut down cleanly: the Raft log was fsynced\n";

/// Removes the clean-shutdown marker from `dir` durably; true if it was
/// there (the last shutdown was clean).
pub fn take_clean_marker(fs: &dyn FileSystem, dir: &Path) -> io::Result<bool> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    if !fs.exists(&path)? {
        return Ok(false);
    }
    fs.remove_file(&path)?;
    fs.sync_dir(dir)?;
    Ok(true)
}

/// Writes the clean-shutdown marker into `dir` (file and directory
/// fsynced).
pub fn write_clean_marker(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    sfs::write_file_durably(fs, &dir.join(CLEAN_SHUTDOWN_FILE), MARKER_TEXT)
}

/// Whether a leader (possibly this node) has caught this node up (see the
/// module docs).
fn caught_up(m: &RaftMetrics<ballast_raft::TypeConfig>) -> bool {
    if m.current_leader.is_none() {
        return false;
    }
    let Some(committed) = m.cluster_committed else {
        return false;
    };
    // The leader may be this node (after every voter waited): a leader
    // that committed an entry of its term holds every committed one.
    committed.leader_id.term == m.current_term
        && m.last_applied.is_some_and(|a| a.index >= committed.index)
}

/// Waits until a leader has caught this node up (opening `gate` earlier
/// if every voter waits, and permitting votes for the best clean voters
/// meanwhile), then marks it caught up. Elections are turned back on when
/// the gate opens. Ends early when Raft shuts down.
pub async fn wait_then_open(
    id: NodeId,
    raft: BallastRaft,
    gate: VoteGate,
    peers: std::sync::Arc<ForwardClient>,
    poll: Duration,
) {
    let mut rx = raft.metrics();
    loop {
        let m = rx.borrow_watched().clone();
        if caught_up(&m) {
            gate.set_caught_up();
            raft.runtime_config().elect(true);
            tracing::info!(
                id,
                "caught up after the unclean restart: votes and elections resume"
            );
            return;
        }
        if !gate.is_open() {
            let own_last = raft.data_metrics().borrow_watched().last_log;
            let voters = poll_voters(id, own_last, &m, &peers, poll).await;
            match decide(id, &voters) {
                Decision::Stand => {
                    gate.set_open();
                    raft.runtime_config().elect(true);
                    tracing::warn!(
                        id,
                        "no clean voter holds as much as this node, which kept the most: \
                         it stands for election; what no node had made safe before the \
                         crash is lost, as the preset allows"
                    );
                }
                Decision::Permit(who) => gate.permit(who),
            }
        }
        // Raft stopped: nothing left to wait for.
        if let Ok(Err(_)) = tokio::time::timeout(poll, rx.changed()).await {
            return;
        }
    }
}

/// Each voter's answer: `(waiting, last log id)`, `None` if it did not
/// answer within `poll`. This node counts as waiting, with `own_last`.
async fn poll_voters(
    id: NodeId,
    own_last: Option<LogId>,
    m: &RaftMetrics<ballast_raft::TypeConfig>,
    peers: &ForwardClient,
    poll: Duration,
) -> BTreeMap<NodeId, Option<(bool, Option<LogId>)>> {
    let membership = m.membership_config.membership();
    let mut out = BTreeMap::new();
    for v in membership.voter_ids() {
        let answer = if v == id {
            Some((true, own_last))
        } else {
            match membership.get_node(&v) {
                None => None,
                Some(node) => {
                    match tokio::time::timeout(poll, peers.rejoin_status(&node.raft_addr)).await {
                        Ok(Ok(a)) => Some(a),
                        Ok(Err(_)) | Err(_) => None,
                    }
                }
            }
        };
        out.insert(v, answer);
    }
    out
}

/// What a waiting node does after polling the voters.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Open the gate and stand for election.
    Stand,
    /// Keep waiting, voting only for these.
    Permit(BTreeSet<NodeId>),
}

/// The waiting node `id`'s choice, given every voter's answer. Only when
/// every voter answered can it tell who holds the most. The voters with
/// the highest last log id may then lead: if a clean voter is among them,
/// the clean ones (a committed entry whose quorum held a clean node is on
/// that node, and Raft's own check keeps it); if not (every voter waits,
/// or the clean ones are behind), the waiting ones with that log stand, as
/// a clean candidate could never win their votes (Raft refuses a candidate
/// less up to date than the voter) and the cluster would wait for good
/// (`cluster-throughput-mixed` seed 326: two nodes SIGKILLed, the third
/// cut off and behind). They hold every entry a clean voter holds: Raft's
/// comparison of last log ids is what the clean voters apply when they
/// vote for them.
fn decide(id: NodeId, voters: &BTreeMap<NodeId, Option<(bool, Option<LogId>)>>) -> Decision {
    let best = best_of(voters, |_| true);
    let clean = best_of(voters, |waiting| !waiting);
    if best.is_empty() || !best.is_disjoint(&clean) {
        return Decision::Permit(clean);
    }
    if best.contains(&id) {
        Decision::Stand
    } else {
        Decision::Permit(best)
    }
}

/// The voters this waiting node may vote for: if every voter answered,
/// those whose waiting state passes `which` and whose last log id is the
/// highest among them; else none (a silent voter may hold more).
fn best_of(
    voters: &BTreeMap<NodeId, Option<(bool, Option<LogId>)>>,
    which: impl Fn(bool) -> bool,
) -> BTreeSet<NodeId> {
    if voters.values().any(Option::is_none) {
        return BTreeSet::new();
    }
    let clean: Vec<(NodeId, Option<LogId>)> = voters
        .iter()
        .filter_map(|(id, a)| match a {
            Some((waiting, last)) if which(*waiting) => Some((*id, *last)),
            _ => None,
        })
        .collect();
    let Some(best) = clean.iter().map(|(_, last)| *last).max() else {
        return BTreeSet::new();
    };
    clean
        .into_iter()
        .filter(|(_, last)| *last == best)
        .map(|(id, _)| id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_raft::LeaderId;

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(LeaderId { term, node_id: 1 }, index))
    }

    #[test]
    fn waiting_voters_ahead_of_every_clean_one_stand() {
        let mut v = BTreeMap::new();
        // Two nodes restarted uncleanly with more than the clean one.
        v.insert(1, Some((true, log(1, 153))));
        v.insert(2, Some((false, log(1, 149))));
        v.insert(3, Some((true, log(1, 153))));
        assert_eq!(decide(1, &v), Decision::Stand);
        assert_eq!(decide(3, &v), Decision::Stand);
        // A clean voter as far along: only the clean ones are permitted.
        v.insert(2, Some((false, log(1, 153))));
        assert_eq!(decide(1, &v), Decision::Permit(BTreeSet::from([2])));
        // One waiting node ahead, one behind: the one behind votes for it.
        v.insert(2, Some((false, log(1, 149))));
        v.insert(3, Some((true, log(1, 150))));
        assert_eq!(decide(3, &v), Decision::Permit(BTreeSet::from([1])));
        // Every voter waits: the one that kept the most stands.
        v.insert(2, Some((true, log(1, 149))));
        assert_eq!(decide(1, &v), Decision::Stand);
        assert_eq!(decide(2, &v), Decision::Permit(BTreeSet::from([1])));
        // A voter that does not answer may hold more: nobody.
        v.insert(2, None);
        assert_eq!(decide(1, &v), Decision::Permit(BTreeSet::new()));
    }

    #[test]
    fn only_the_most_up_to_date_clean_voters_are_permitted_and_only_if_all_answer() {
        let mut v = BTreeMap::new();
        v.insert(1, Some((true, None)));
        v.insert(2, Some((false, log(2, 10))));
        v.insert(3, Some((false, log(2, 12))));
        v.insert(4, Some((false, log(2, 12))));
        v.insert(5, Some((true, log(3, 20))));
        let clean = |waiting: bool| !waiting;
        assert_eq!(best_of(&v, clean), BTreeSet::from([3, 4]));
        assert_eq!(best_of(&v, |_| true), BTreeSet::from([5]));
        v.insert(2, None);
        assert!(
            best_of(&v, clean).is_empty(),
            "a silent voter may hold more"
        );
        v.insert(2, Some((true, None)));
        v.insert(3, Some((true, None)));
        v.insert(4, Some((true, None)));
        assert!(best_of(&v, clean).is_empty(), "no clean voter");
        assert_eq!(best_of(&v, |_| true), BTreeSet::from([5]));
    }
}
