//! What a cluster seed runs: a preset, a fault kind and optionally a
//! planted node bug ([`ClusterScenario`]), and what it found
//! ([`ClusterOutcome`]).

use crate::trace::Trace;
use ballast_raft::planted::NodeBug;
use ballast_storage::Preset;
use std::fmt;
use std::time::Duration;

/// A fault kind of the cluster simulation. Each run applies several faults
/// of its kind at seeded times, some overlapping; `Mixed` draws from all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterFault {
    /// One node cut from the others, both ways.
    Partition,
    /// One node's messages to the others dropped, theirs still arrive.
    OneWay,
    /// The current leader cut from everyone.
    LeaderIsolated,
    /// Short partitions on and off in quick succession.
    Flapping,
    /// Random message loss on every link (turmoil's fail and repair rates).
    MessageLoss,
    /// Long and varied message latency (reordering across connections),
    /// and links held then released.
    Delay,
    /// A node paused: everything to and from it held, then released.
    Pause,
    /// A process crash of one node (its page cache survives), down for a
    /// while, then restarted.
    Crash,
    /// The leader killed and restarted within a second, twice.
    LeaderRestart,
    /// Power loss of one node: unsynced data dropped.
    PowerLossOne,
    /// Power loss of the leader (the minority that matters most).
    PowerLossMinority,
    /// Power loss of all three nodes at once.
    PowerLossAll,
    /// Power loss of one node on a disk that tears pending writes at
    /// 512-byte blocks, timed while it has unsynced writes.
    TornWrite,
    /// Injected fsync and write errors on one node's disk.
    FsyncError,
    /// One node's disk fills up.
    DiskFull,
    /// Reads with flipped bytes on one node's disk.
    CorruptRead,
    /// Node clocks skewed by up to minutes, and changed mid-run.
    ClockSkew,
    /// A fourth node added as a learner, promoted, and a founder removed,
    /// while a partition comes and goes.
    Membership,
    /// A peer holding the cluster's secret forwards writes the log cannot
    /// hold (an empty and a nested batch) to the leader over Raft RPC.
    BadPeer,
    /// One follower's disk is lost (wiped) while the other lags and the
    /// leader is cut off (see `faults::Action::LagThenLose`); the wiped
    /// node is replaced afterwards, as an operator would (removed, started
    /// on an empty disk, added as a learner, promoted).
    DiskWipe,
    /// The leader's disk stalls (each fsync takes seconds) as it is cut
    /// off; the stall outlasts the heal, then the node loses power (see
    /// `faults::Action::StallThenLose`).
    DiskStall,
    /// Several kinds at once.
    Mixed,
}

impl ClusterFault {
    /// Every kind.
    pub const ALL: [ClusterFault; 22] = [
        ClusterFault::Partition,
        ClusterFault::OneWay,
        ClusterFault::LeaderIsolated,
        ClusterFault::Flapping,
        ClusterFault::MessageLoss,
        ClusterFault::Delay,
        ClusterFault::Pause,
        ClusterFault::Crash,
        ClusterFault::LeaderRestart,
        ClusterFault::PowerLossOne,
        ClusterFault::PowerLossMinority,
        ClusterFault::PowerLossAll,
        ClusterFault::TornWrite,
        ClusterFault::FsyncError,
        ClusterFault::DiskFull,
        ClusterFault::CorruptRead,
        ClusterFault::ClockSkew,
        ClusterFault::Membership,
        ClusterFault::BadPeer,
        ClusterFault::DiskWipe,
        ClusterFault::DiskStall,
        ClusterFault::Mixed,
    ];

    /// The kind's name in scenario names.
    pub fn name(self) -> &'static str {
        match self {
            ClusterFault::Partition => "partition",
            ClusterFault::OneWay => "one-way",
            ClusterFault::LeaderIsolated => "leader-isolated",
            ClusterFault::Flapping => "flapping",
            ClusterFault::MessageLoss => "message-loss",
            ClusterFault::Delay => "delay",
            ClusterFault::Pause => "pause",
            ClusterFault::Crash => "crash",
            ClusterFault::LeaderRestart => "leader-restart",
            ClusterFault::PowerLossOne => "power-loss-one",
            ClusterFault::PowerLossMinority => "power-loss-leader",
            ClusterFault::PowerLossAll => "power-loss-all",
            ClusterFault::TornWrite => "torn-write",
            ClusterFault::FsyncError => "fsync-error",
            ClusterFault::DiskFull => "disk-full",
            ClusterFault::CorruptRead => "corrupt-read",
            ClusterFault::ClockSkew => "clock-skew",
            ClusterFault::Membership => "membership",
            ClusterFault::BadPeer => "bad-peer",
            ClusterFault::Mixed => "mixed",
            ClusterFault::DiskWipe => "disk-wipe",
            ClusterFault::DiskStall => "disk-stall",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<ClusterFault> {
        ClusterFault::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for ClusterFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A preset, a fault kind and optionally a planted node bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterScenario {
    /// The preset every node runs.
    pub preset: Preset,
    /// The fault kind.
    pub fault: ClusterFault,
    /// A planted bug switched on in every node.
    pub bug: Option<NodeBug>,
}

impl ClusterScenario {
    /// `cluster-{preset}-{fault}`.
    pub fn name(&self) -> String {
        format!("cluster-{}-{}", self.preset.name(), self.fault.name())
    }

    /// Parses `cluster-{preset}-{fault}`.
    pub fn parse(s: &str) -> Option<ClusterScenario> {
        let rest = s.strip_prefix("cluster-")?;
        let (preset, fault) = rest.split_once('-')?;
        Some(ClusterScenario {
            preset: Preset::parse(preset).ok()?,
            fault: ClusterFault::parse(fault)?,
            bug: None,
        })
    }

    /// Every preset x fault kind.
    pub fn all() -> Vec<ClusterScenario> {
        Preset::ALL
            .into_iter()
            .flat_map(|preset| {
                ClusterFault::ALL
                    .into_iter()
                    .map(move |fault| ClusterScenario {
                        preset,
                        fault,
                        bug: None,
                    })
            })
            .collect()
    }
}

/// A run's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Client hosts.
    pub clients: u32,
    /// How long the workload and the faults run (simulated).
    pub workload: Duration,
    /// Keep the trace's lines (for replay and the determinism diff).
    pub keep_trace: bool,
    /// Log every trace event.
    pub echo: bool,
    /// Apply the scenario's fault plan (off: the cluster under load
    /// alone, for `cluster-speed`).
    pub faults: bool,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            clients: 4,
            workload: Duration::from_secs(6),
            keep_trace: false,
            echo: false,
            faults: true,
        }
    }
}

/// What one seed found.
#[derive(Debug, Clone)]
pub struct ClusterOutcome {
    /// The scenario.
    pub scenario: ClusterScenario,
    /// The seed.
    pub seed: u64,
    /// The trace.
    pub trace: Trace,
    /// Faults applied that took effect (a crash of a running node, a
    /// partition of live links, an injector that fired...).
    pub fired: u32,
    /// Client operations recorded.
    pub operations: usize,
    /// Whether the client history was linearizable (under the preset's
    /// contract for what the faults did).
    pub linearizable: bool,
    /// Every violation, one line each.
    pub violations: Vec<String>,
    /// Simulated time the run took.
    pub simulated: Duration,
}

impl ClusterOutcome {
    /// The one-line replay command.
    pub fn repro(&self) -> String {
        let bug = self
            .scenario
            .bug
            .map(|b| format!(" --bug {}", b.name()))
            .unwrap_or_default();
        format!(
            "cargo run -p ballast-sim -- cluster --scenario {}{bug} --seed {}",
            self.scenario.name(),
            self.seed
        )
    }
}
