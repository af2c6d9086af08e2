//! Planted bugs of the replicated node: switches that each bring back one
//! dangerous behaviour a fix removed, so that the cluster simulation and
//! the chaos scenarios can prove they catch it. Compiled in only with the
//! `planted-bugs` feature; without it [`Planted::has`] is a constant
//! `false` and the switches cannot be turned on.
//!
//! Unlike the engine's thread-local switch (`ballast_storage::planted`),
//! these are carried per node (in its config): a simulation runs several
//! nodes on one thread, a chaos run several processes, and an in-process
//! test several nodes on a multi-threaded runtime beside other tests.
//! A real process reads them from the `BALLAST_PLANTED_BUGS` environment
//! variable (comma-separated names) when built with the feature.

use std::fmt;

/// One dangerous behaviour, brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeBug {
    /// openraft's leader restore stays on and the persisted committed index
    /// is not read back at start: a restarted leader serves linearizable
    /// reads from the state machine it reopened at its last flush
    /// (openraft issue 1511).
    LeaderRestoreUnpersistedCommit,
    /// Requests are not validated where they enter (the node's `KvApi`
    /// writes, the proposer's `submit`, which forwarded writes go through,
    /// and the proposer's check of the entry it forms): an empty or nested
    /// `Multi` reaches the log, and the leader stops on reading it back.
    SkipRequestValidation,
    /// Expiry follows each node's own clock: the state machine switches
    /// its engine back to `expire_by_horizon = false` (flush and compaction
    /// drop keys by the engine's wall clock), and the proposer stamps its
    /// bare clock, so `at_ms` may go backwards across leaders.
    ExpireByLocalClock,
    /// Apply checks key, value and batch limits against the local engine's
    /// config (`Db::write` and the per-request checks of a `Multi`) instead
    /// of writing what the log holds (`Db::write_from_log`).
    ApplyChecksLocalLimits,
    /// The log store's sync ticket is keyed by segment number, so a
    /// segment recreated after a truncation can look already synced: an
    /// fsync of the removed segment `n` that completes after the
    /// truncation marks the new `n` durable up to its offset, and a later
    /// append ending exactly there is acknowledged with no fsync (issue 9,
    /// hole 5; test `durable_acks_follow_their_own_fsync`).
    SyncTicketBySegment,
    /// The durable preset's log append is acknowledged to openraft as soon
    /// as its entries are written to the OS, before their fsync (and the
    /// flusher is never asked for one; membership entries excepted): a
    /// follower counts toward the
    /// commit quorum with entries a power cut then takes away. Planted for
    /// the cluster simulation and chaos's power-loss scenarios (test:
    /// `crash_reopen::the_planted_switch_acknowledges_appends_a_power_cut_loses`).
    AckBeforeLogFsync,
    /// A node with a wiped data directory bootstraps again and votes with
    /// an empty log: `Node::start` skips the probe of the initial members
    /// (so it never refuses to start) and every initial member calls
    /// `Raft::initialize` at once, as before cluster identities; and the
    /// node's handshakes accept every peer's identity (no cluster or
    /// incarnation check, nothing adopted or remembered).
    WipedNodeRebootstraps,
    /// A node restarted after an unclean shutdown under a relaxed preset
    /// votes before a leader has caught it up.
    UncleanNodeVotes,
    /// The log store truncates below the applied index instead of
    /// refusing with `Error::TruncateBelowApplied` and stopping (issue 9,
    /// hole 7; takes effect once the node shares the state machine's
    /// `AppliedIndex` with the store).
    TruncateBelowApplied,
    /// A log store that refuses a truncation below the applied index stops
    /// without first making what it acknowledged durable: its interval
    /// fsync or write-back timer ends with it, so appends a relaxed preset
    /// acknowledged from its buffer stay there, and a process crash any
    /// time later loses them (the throughput preset promises them after
    /// its write-back interval). Planted for the log store's simulation.
    StopLeavesBuffer,
    /// A linearizable read is served from this node's own state machine,
    /// without openraft's read index and without forwarding to the leader:
    /// a follower behind the leader, or a deposed leader that has not
    /// heard of its successor, answers stale values. Planted for the
    /// cluster simulation.
    ReadWithoutReadIndex,
    /// The engine's flush barrier is not installed: the state machine's
    /// engine may write applied entries into a table before the Raft log
    /// entries they came from are durable, so under a relaxed preset a
    /// power loss leaves a state machine ahead of its own log. Planted for
    /// the cluster simulation.
    FlushBarrierSkipped,
    /// The vote is saved without making it durable: the meta file is
    /// written and renamed over the old one with neither the file's nor
    /// the directory's fsync, so a power loss can bring back an older
    /// vote (the node votes twice in one term) or leave the renamed file
    /// empty (the node cannot start). Planted for the cluster
    /// simulation and the log store's own simulation.
    VoteNotFsynced,
    /// A log truncation (`truncate_after`) is not made durable: the cut
    /// segment's `set_len` is not fsynced and the removal of later
    /// segments not committed in the directory, while the entries
    /// appended after the cut are; a power loss brings the removed
    /// entries back in front of the new ones.
    TruncationNotDurable,
    /// A received snapshot's tables are not fsynced before the state
    /// machine installs them (links them into its engine and records them
    /// in the manifest): a power loss after the install leaves tables the
    /// manifest names without their content.
    SnapshotInstallWithoutFsync,
    /// EXEC ignores WATCH: apply runs a transaction whatever its watched
    /// keys hold now (issue 13; test `watch_aborts_exec_when_a_watched_key_changed`).
    WatchIgnored,
    /// EXEC proposes each queued command as a log entry of its own
    /// instead of one Transaction entry: not atomic, and a crash between
    /// entries leaves part of a transaction (issue 13; test
    /// `transactions_are_one_entry_and_all_or_none`).
    ExecProposesEach,
    /// A snapshot is made the state machine's own (linked or copied from
    /// the inbox into its snapshot directory) without checking each
    /// table's CRC against the descriptor, so a copy made through a
    /// corrupting read becomes the durable snapshot a restart installs
    /// from, and the node can never start again.
    SnapshotLinkUnverified,
    /// Flush and compaction keep the entries a range delete (FLUSHALL)
    /// covers: the data a FLUSHALL removed stays on disk for ever (issue
    /// 13; test `planted_range_delete_ignored_by_compaction_is_caught` in
    /// `crates/storage/tests/range_delete.rs`, which switches the engine
    /// the same way).
    RangeDeleteIgnoredByCompaction,
}

impl NodeBug {
    /// Every switch.
    pub const ALL: [NodeBug; 19] = [
        NodeBug::LeaderRestoreUnpersistedCommit,
        NodeBug::SkipRequestValidation,
        NodeBug::ExpireByLocalClock,
        NodeBug::ApplyChecksLocalLimits,
        NodeBug::SyncTicketBySegment,
        NodeBug::AckBeforeLogFsync,
        NodeBug::WipedNodeRebootstraps,
        NodeBug::UncleanNodeVotes,
        NodeBug::TruncateBelowApplied,
        NodeBug::StopLeavesBuffer,
        NodeBug::ReadWithoutReadIndex,
        NodeBug::FlushBarrierSkipped,
        NodeBug::VoteNotFsynced,
        NodeBug::TruncationNotDurable,
        NodeBug::SnapshotInstallWithoutFsync,
        NodeBug::WatchIgnored,
        NodeBug::ExecProposesEach,
        NodeBug::SnapshotLinkUnverified,
        NodeBug::RangeDeleteIgnoredByCompaction,
    ];

    /// The switch's name in flags, reports and `BALLAST_PLANTED_BUGS`.
    pub fn name(self) -> &'static str {
        match self {
            NodeBug::LeaderRestoreUnpersistedCommit => "leader-restore-unpersisted-commit",
            NodeBug::SkipRequestValidation => "skip-request-validation",
            NodeBug::ExpireByLocalClock => "expire-by-local-clock",
            NodeBug::ApplyChecksLocalLimits => "apply-checks-local-limits",
            NodeBug::SyncTicketBySegment => "sync-ticket-by-segment",
            NodeBug::AckBeforeLogFsync => "ack-before-log-fsync",
            NodeBug::WipedNodeRebootstraps => "wiped-node-rebootstraps",
            NodeBug::UncleanNodeVotes => "unclean-node-votes",
            NodeBug::TruncateBelowApplied => "truncate-below-applied",
            NodeBug::StopLeavesBuffer => "stop-leaves-buffer",
            NodeBug::ReadWithoutReadIndex => "read-without-read-index",
            NodeBug::FlushBarrierSkipped => "flush-barrier-skipped",
            NodeBug::VoteNotFsynced => "vote-not-fsynced",
            NodeBug::TruncationNotDurable => "truncation-not-durable",
            NodeBug::SnapshotInstallWithoutFsync => "snapshot-install-without-fsync",
            NodeBug::WatchIgnored => "watch-ignored",
            NodeBug::ExecProposesEach => "exec-proposes-each",
            NodeBug::SnapshotLinkUnverified => "snapshot-link-unverified",
            NodeBug::RangeDeleteIgnoredByCompaction => "range-delete-ignored-by-compaction",
        }
    }

    /// Parses [`NodeBug::name`].
    pub fn parse(s: &str) -> Option<NodeBug> {
        NodeBug::ALL.into_iter().find(|b| b.name() == s)
    }

    #[cfg_attr(not(feature = "planted-bugs"), allow(dead_code))]
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// The set of switches one node runs with. Empty by default, and always
/// empty without the `planted-bugs` feature.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Planted {
    #[cfg_attr(not(feature = "planted-bugs"), allow(dead_code))]
    bits: u32,
}

impl Planted {
    /// No switch on.
    pub const NONE: Planted = Planted { bits: 0 };

    /// True if `bug` is switched on for this node.
    #[inline]
    pub fn has(self, bug: NodeBug) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.bits & bug.bit() != 0
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            let _ = bug;
            false
        }
    }

    /// This set with `bug` switched on.
    #[cfg(feature = "planted-bugs")]
    pub fn with(self, bug: NodeBug) -> Planted {
        Planted {
            bits: self.bits | bug.bit(),
        }
    }

    /// The set named in `BALLAST_PLANTED_BUGS` (comma-separated names), or
    /// an error naming the switch it does not know. Empty without the
    /// feature, whatever the variable says.
    pub fn from_env() -> Result<Planted, String> {
        #[cfg(feature = "planted-bugs")]
        {
            let mut set = Planted::NONE;
            if let Ok(list) = std::env::var("BALLAST_PLANTED_BUGS") {
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let bug = NodeBug::parse(name).ok_or_else(|| {
                        format!("BALLAST_PLANTED_BUGS: unknown planted bug {name:?}")
                    })?;
                    set = set.with(bug);
                }
            }
            Ok(set)
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            Ok(Planted::NONE)
        }
    }

    /// The switches that are on.
    pub fn active(self) -> impl Iterator<Item = NodeBug> {
        NodeBug::ALL.into_iter().filter(move |b| self.has(*b))
    }
}

impl fmt::Debug for Planted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.active().map(NodeBug::name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bits_are_distinct() {
        let mut seen = 0u32;
        for b in NodeBug::ALL {
            assert_eq!(NodeBug::parse(b.name()), Some(b));
            assert_eq!(seen & b.bit(), 0, "{b:?} shares a bit");
            seen |= b.bit();
        }
        assert_eq!(NodeBug::parse("no-such-bug"), None);
    }

    #[test]
    fn without_the_feature_nothing_is_on() {
        #[cfg(not(feature = "planted-bugs"))]
        assert!(NodeBug::ALL.iter().all(|b| !Planted { bits: !0 }.has(*b)));
        #[cfg(feature = "planted-bugs")]
        assert!(Planted::NONE
            .with(NodeBug::TruncateBelowApplied)
            .has(NodeBug::TruncateBelowApplied));
    }
}
