//! The named scenarios: which fault, how often, and for which presets the
//! cluster contract promises that every acknowledged write survives it.
//!
//! A run starts a fresh cluster and the workload, then repeats the
//! scenario's fault until the duration is spent: a quiet spell (1.5 to 3 s,
//! drawn from the run's seed), the fault, its hold time, the repair. Every
//! fault goes into the timeline with its start and end. After the last
//! one, every fault is repaired (links healed, paused nodes resumed,
//! stopped nodes started), and the checks run (see [`crate::check`]).

use crate::cluster::Cluster;
use crate::proxy::NodeId;
use anyhow::Result;
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;
use std::time::{Duration, Instant};

/// One named scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// What it does, in one line.
    pub about: &'static str,
    /// The fault it repeats.
    pub fault: Fault,
    /// Nodes run with `--volatile-fs` (a SIGKILL is a power cut).
    pub power_loss: bool,
    /// Presets this scenario runs under in the standard set: those whose
    /// contract covers the fault with nothing lost, and for a cluster-wide
    /// power cut also the relaxed presets, each judged by its bound
    /// (`run::loss_windows` for balanced, `run::rollback_cuts` for
    /// throughput).
    pub presets: &'static [&'static str],
}

/// A fault and its hold time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the leader; start it again after `down_ms` (0: at once).
    KillLeader { down_ms: u64 },
    /// SIGKILL a follower; start it again after `down_ms`.
    KillFollower { down_ms: u64 },
    /// SIGSTOP the leader for `ms`, then SIGCONT.
    PauseLeader { ms: u64 },
    /// SIGTERM each node in turn and start it again.
    RollingRestart,
    /// SIGKILL every node at once; start them again after `down_ms`.
    KillAll { down_ms: u64 },
    /// Cut the leader off from the others, both ways, for `ms`.
    IsolateLeader { ms: u64 },
    /// Cut one follower off (a minority of one against a majority of two).
    IsolateFollower { ms: u64 },
    /// The leader hears nobody (links into it cut) but is heard, for `ms`.
    LeaderDeaf { ms: u64 },
    /// A random node is cut off and let back every 200 to 700 ms, for `ms`.
    Flapping { ms: u64 },
    /// Every peer link delayed by `delay_ms`, for `ms`.
    SlowNetwork { delay_ms: u64, ms: u64 },
    /// A new, empty node added as a learner (caught up), promoted to voter,
    /// and removed again after `ms`.
    MembershipChurn { ms: u64 },
}

const ALL: &[&str] = &["durable", "balanced", "throughput"];
const OS_KEEPS: &[&str] = &["durable", "balanced"];

/// The standard set, in the order `standard` runs them.
pub const STANDARD: &[Scenario] = &[
    Scenario {
        name: "leader-kill",
        about: "SIGKILL the leader, start it again after 2 s",
        fault: Fault::KillLeader { down_ms: 2_000 },
        power_loss: false,
        presets: ALL,
    },
    Scenario {
        name: "leader-quick-restart",
        about: "SIGKILL the leader and start it again at once (under a second)",
        fault: Fault::KillLeader { down_ms: 0 },
        power_loss: false,
        presets: ALL,
    },
    Scenario {
        name: "follower-kill",
        about: "SIGKILL a follower, start it again after 3 s",
        fault: Fault::KillFollower { down_ms: 3_000 },
        power_loss: false,
        presets: ALL,
    },
    Scenario {
        name: "leader-pause",
        about: "SIGSTOP the leader for 3 s, then SIGCONT",
        fault: Fault::PauseLeader { ms: 3_000 },
        power_loss: false,
        presets: ALL,
    },
    Scenario {
        name: "rolling-restart",
        about: "SIGTERM and restart each node in turn",
        fault: Fault::RollingRestart,
        power_loss: false,
        presets: ALL,
    },
    Scenario {
        name: "kill-all",
        about: "SIGKILL all three at once, start them again after 1 s",
        fault: Fault::KillAll { down_ms: 1_000 },
        power_loss: false,
        presets: OS_KEEPS,
    },
    Scenario {
        name: "partition-leader",
        about: "cut the leader off from both followers for 4 s",
        fault: Fault::IsolateLeader { ms: 4_000 },
        power_loss: false,
        presets: ALL,
    },
    Scenario {
        name: "partition-minority",
        about: "cut one follower off from the majority for 4 s",
        fault: Fault::IsolateFollower { ms: 4_000 },
        power_loss: false,
        presets: ALL,
    },
    Scenario {
        name: "partition-one-way",
        about: "the leader hears nobody but is heard, for 4 s",
        fault: Fault::LeaderDeaf { ms: 4_000 },
        power_loss: false,
        presets: ALL,
    },
    Scenario {
        name: "partition-flapping",
        about: "a random node cut off and let back every 200-700 ms, for 5 s",
        fault: Fault::Flapping { ms: 5_000 },
        power_loss: false,
        presets: ALL,
    },
    Scenario {
        name: "slow-network",
        about: "every peer link delayed by 100 ms for 5 s",
        fault: Fault::SlowNetwork {
            delay_ms: 100,
            ms: 5_000,
        },
        power_loss: false,
        presets: ALL,
    },
    Scenario {
        name: "membership-churn",
        about: "add an empty node as learner, promote it, remove it",
        fault: Fault::MembershipChurn { ms: 1_500 },
        power_loss: false,
        presets: ALL,
    },
    Scenario {
        name: "power-loss-leader",
        about: "power cut of the leader (volatile file system), back at once",
        fault: Fault::KillLeader { down_ms: 0 },
        power_loss: true,
        presets: ALL,
    },
    Scenario {
        name: "power-loss-all",
        about: "power cut of all three nodes at once (volatile file system)",
        fault: Fault::KillAll { down_ms: 500 },
        power_loss: true,
        presets: ALL,
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<Scenario> {
    STANDARD.iter().copied().find(|s| s.name == name)
}

/// One fault in the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct FaultEvent {
    /// What happened, e.g. `kill leader 2`.
    pub what: String,
    /// Nanoseconds since the workload started.
    pub start_ns: u64,
    /// When it was repaired.
    pub end_ns: u64,
}

/// Drives one scenario's faults until `until`, recording each.
pub struct Driver<'a> {
    /// The cluster.
    pub cluster: &'a mut Cluster,
    /// The run's random source.
    pub rng: StdRng,
    /// Time zero of the history.
    pub zero: Instant,
    /// Faults so far.
    pub timeline: Vec<FaultEvent>,
    /// Called with a short description of each fault as it starts.
    pub on_fault: Box<dyn FnMut(&str) + 'a>,
}

impl Driver<'_> {
    fn now(&self) -> u64 {
        self.zero.elapsed().as_nanos() as u64
    }

    fn leader_or_any(&self) -> NodeId {
        self.cluster
            .wait_for_leader(Duration::from_secs(5))
            .unwrap_or_else(|_| self.cluster.ids()[0])
    }

    fn follower(&mut self, leader: NodeId) -> NodeId {
        let others: Vec<NodeId> = self
            .cluster
            .ids()
            .into_iter()
            .filter(|&n| n != leader)
            .collect();
        others[self.rng.gen_range(0..others.len())]
    }

    /// Repeats the fault until `until`, then repairs everything.
    pub fn run(&mut self, fault: Fault, until: Instant) -> Result<()> {
        while Instant::now() < until {
            let quiet = Duration::from_millis(self.rng.gen_range(1_500..3_000));
            std::thread::sleep(quiet.min(until.saturating_duration_since(Instant::now())));
            if Instant::now() >= until {
                break;
            }
            self.once(fault)?;
        }
        self.repair_all()
    }

    fn record<T>(&mut self, what: String, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        (self.on_fault)(&what);
        let start_ns = self.now();
        let out = f(self);
        let end_ns = self.now();
        self.timeline.push(FaultEvent {
            what,
            start_ns,
            end_ns,
        });
        out
    }

    fn once(&mut self, fault: Fault) -> Result<()> {
        let hold = |ms: u64| std::thread::sleep(Duration::from_millis(ms));
        match fault {
            Fault::KillLeader { down_ms } => {
                let id = self.leader_or_any();
                self.record(format!("kill leader {id}"), |d| {
                    d.cluster.kill(id);
                    hold(down_ms);
                    d.cluster.restart(id)
                })
            }
            Fault::KillFollower { down_ms } => {
                let leader = self.leader_or_any();
                let id = self.follower(leader);
                self.record(format!("kill follower {id}"), |d| {
                    d.cluster.kill(id);
                    hold(down_ms);
                    d.cluster.restart(id)
                })
            }
            Fault::PauseLeader { ms } => {
                let id = self.leader_or_any();
                self.record(format!("pause leader {id}"), |d| {
                    d.cluster.pause(id);
                    hold(ms);
                    d.cluster.resume(id);
                    Ok(())
                })
            }
            Fault::RollingRestart => {
                for id in self.cluster.ids() {
                    self.record(format!("restart {id}"), |d| {
                        d.cluster.stop(id);
                        d.cluster.restart(id)?;
                        d.cluster
                            .wait_for_leader(Duration::from_secs(10))
                            .map(|_| ())
                    })?;
                }
                Ok(())
            }
            Fault::KillAll { down_ms } => self.record("kill all".to_string(), |d| {
                for id in d.cluster.ids() {
                    d.cluster.kill(id);
                }
                hold(down_ms);
                for id in d.cluster.ids() {
                    d.cluster.restart(id)?;
                }
                Ok(())
            }),
            Fault::IsolateLeader { ms } => {
                let id = self.leader_or_any();
                self.record(format!("isolate leader {id}"), |d| {
                    d.cluster.links.isolate(id);
                    hold(ms);
                    d.cluster.links.heal();
                    Ok(())
                })
            }
            Fault::IsolateFollower { ms } => {
                let leader = self.leader_or_any();
                let id = self.follower(leader);
                self.record(format!("isolate follower {id}"), |d| {
                    d.cluster.links.isolate(id);
                    hold(ms);
                    d.cluster.links.heal();
                    Ok(())
                })
            }
            Fault::LeaderDeaf { ms } => {
                let id = self.leader_or_any();
                self.record(format!("leader {id} deaf"), |d| {
                    for other in d.cluster.ids().into_iter().filter(|&n| n != id) {
                        d.cluster.links.cut(other, id);
                    }
                    hold(ms);
                    d.cluster.links.heal();
                    Ok(())
                })
            }
            Fault::Flapping { ms } => self.record("flapping partitions".to_string(), |d| {
                let end = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < end {
                    let ids = d.cluster.ids();
                    let id = ids[d.rng.gen_range(0..ids.len())];
                    d.cluster.links.isolate(id);
                    hold(d.rng.gen_range(200..700));
                    d.cluster.links.heal();
                    hold(d.rng.gen_range(200..700));
                }
                Ok(())
            }),
            Fault::MembershipChurn { ms } => self.churn(ms),
            Fault::SlowNetwork { delay_ms, ms } => {
                self.record(format!("links delayed {delay_ms} ms"), |d| {
                    d.cluster.links.delay_all(delay_ms);
                    hold(ms);
                    d.cluster.links.heal();
                    Ok(())
                })
            }
        }
    }

    /// `POST path` on whichever node leads, until it answers one of `done`
    /// (a retry after an answer was lost may find the change made), for
    /// 30 s at most.
    fn on_leader(&mut self, path: &str, done: &[u16]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(leader) = self.cluster.wait_for_leader(Duration::from_secs(5)) {
                match self.cluster.admin_post(leader, path) {
                    Some((code, _)) if done.contains(&code) => return Ok(()),
                    Some((code, body)) => last = format!("{code} {body}"),
                    None => last = "no answer".into(),
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        anyhow::bail!("POST {path}: {last}")
    }

    fn churn(&mut self, ms: u64) -> Result<()> {
        let id = self.cluster.add_node()?;
        let p = self.cluster.ports(id);
        let steps = self.record(format!("add {id}, promote, remove"), |d| {
            d.on_leader(
                &format!(
                    "/membership/learner?id={id}&raft_addr=127.0.0.1%3A{}&client_addr=127.0.0.1%3A{}",
                    p.proxy, p.client
                ),
                &[200, 409],
            )?;
            d.on_leader(&format!("/membership/promote?id={id}"), &[200, 409])?;
            std::thread::sleep(Duration::from_millis(ms));
            d.on_leader(&format!("/membership/remove?id={id}"), &[200, 404])
        });
        // A node left in the membership stays and is checked with the rest;
        // one that is out is stopped and forgotten.
        let leader = self.cluster.wait_for_leader(Duration::from_secs(10)).ok();
        let member = leader
            .and_then(|l| self.cluster.status(l))
            .is_some_and(|s| s.voters.contains(&id));
        if !member {
            self.cluster.forget_node(id);
        }
        steps
    }

    /// Heals every link, resumes every node, starts every stopped one.
    pub fn repair_all(&mut self) -> Result<()> {
        self.cluster.links.heal();
        for id in self.cluster.ids() {
            self.cluster.resume(id);
            self.cluster.restart(id)?;
        }
        Ok(())
    }
}
