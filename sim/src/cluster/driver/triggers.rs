//! The driver's fault triggers that watch the run: a power loss right
//! after a manifest edit landed before the Raft log's fsync, and a lagging
//! quorum that loses power in its other member, and a stalled disk cut
//! off and then powered off.

use super::{lock, now, Driver, FOUNDERS};
use crate::cluster::faults::{Action, ReplaceStep, Step, Who};
use crate::cluster::node_host::{host_name, RAFT_PORT, RESP_PORT};
use crate::cluster::world::MembershipRequest;
use rand::Rng;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

impl Driver {
    /// The first node whose manifest left the unsynced set since the last
    /// look (an edit, such as a flush's, became durable) while its Raft log
    /// has unsynced writes. Updates what was in flight.
    pub(super) fn edit_landed_before_the_log(&mut self) -> Option<u64> {
        let mut landed = None;
        for &id in &FOUNDERS {
            let (manifest, log_dirty) = {
                let io = lock(&self.ios[&id]);
                let manifest: BTreeSet<PathBuf> = io
                    .dirty
                    .iter()
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("MANIFEST"))
                    })
                    .cloned()
                    .collect();
                let log_dirty = io
                    .dirty
                    .iter()
                    .any(|p| p.components().any(|c| c.as_os_str() == "raft-log"));
                (manifest, log_dirty)
            };
            let before = self.manifests_in_flight.insert(id, manifest.clone());
            let synced = before.is_some_and(|b| b.iter().any(|m| !manifest.contains(m)));
            if synced && log_dirty {
                self.world.event(format!(
                    "n{id} made a manifest edit durable while its Raft log has unsynced writes"
                ));
                landed = landed.or(Some(id));
            }
        }
        landed
    }

    /// Starts [`Action::LagThenLose`] now: cuts one follower off and
    /// returns the later steps, with the nodes they act on fixed now.
    pub(super) fn lag_then_lose(
        &mut self,
        wipe: bool,
        lose_after: Duration,
        down: Duration,
        heal_after: Duration,
    ) -> Vec<Step> {
        let leader = self.resolve(Who::Leader);
        let followers: Vec<u64> = FOUNDERS.into_iter().filter(|&n| n != leader).collect();
        let lagging = followers[self.rng.gen_range(0..followers.len())];
        let losing = followers.into_iter().find(|&n| n != lagging);
        self.apply(&Action::Cut {
            who: Who::Node(lagging),
            oneway: false,
        });
        let Some(losing) = losing else {
            return Vec::new();
        };
        let lose = now() + lose_after;
        let heal = lose + down + heal_after;
        let mut replace = Vec::new();
        if wipe {
            // The operator replaces the wiped node after the heal.
            replace.push(Step {
                at: heal + Duration::from_millis(200),
                action: Action::Replace {
                    who: Who::Node(losing),
                    step: ReplaceStep::Remove,
                },
            });
        }
        let mut steps = vec![
            Step {
                at: lose,
                action: Action::Heal,
            },
            Step {
                at: lose,
                action: Action::Cut {
                    who: Who::Node(leader),
                    oneway: false,
                },
            },
            Step {
                at: lose,
                action: if wipe {
                    Action::Wipe {
                        who: Who::Node(losing),
                        down,
                    }
                } else {
                    Action::Power {
                        who: vec![Who::Node(losing)],
                        down,
                    }
                },
            },
            Step {
                at: heal,
                action: Action::Heal,
            },
        ];
        steps.extend(replace);
        steps
    }

    /// Runs one step of an operator's replacement of node `n`, whose disk
    /// was lost, once what it waits for is there: remove it from the
    /// voters (a leader), start it on an empty disk without initial
    /// members (the removal done), add it as a learner (a leader, the new
    /// node up), promote it (it is a learner). Returns the next step, or
    /// this one again a little later.
    pub(super) fn replace_step(&mut self, n: u64, step: ReplaceStep) -> Vec<Step> {
        let leader = self.leader().filter(|&l| l != n);
        let membership = leader.and_then(|l| {
            let w = self.world.0.borrow();
            w.reports
                .get(&l)
                .map(|r| (r.voters.clone(), r.learners.clone()))
        });
        let ready = match step {
            ReplaceStep::Remove => leader.is_some(),
            ReplaceStep::NewDisk => membership
                .as_ref()
                .is_some_and(|(v, l)| !v.contains(&n) && !l.contains(&n)),
            ReplaceStep::AddLearner => {
                leader.is_some() && self.world.0.borrow().reports.contains_key(&n)
            }
            ReplaceStep::Promote => membership.as_ref().is_some_and(|(_, l)| l.contains(&n)),
        };
        let again = |step| {
            vec![Step {
                at: now() + Duration::from_millis(100),
                action: Action::Replace {
                    who: Who::Node(n),
                    step,
                },
            }]
        };
        let Some(l) = leader.filter(|_| ready) else {
            return again(step);
        };
        let (req, next) = match step {
            ReplaceStep::Remove => (
                MembershipRequest::ChangeVoters(FOUNDERS.into_iter().filter(|&v| v != n).collect()),
                Some(ReplaceStep::NewDisk),
            ),
            ReplaceStep::NewDisk => {
                self.world
                    .event(format!("operator: n{n} starts again on an empty disk"));
                self.world.replace(n);
                self.world.0.borrow_mut().reports.remove(&n);
                lock(&self.ios[&n]).crashed(false);
                self.sim.bounce(host_name(n));
                return again(ReplaceStep::AddLearner);
            }
            ReplaceStep::AddLearner => (
                MembershipRequest::AddLearner {
                    id: n,
                    raft_addr: format!("{}:{RAFT_PORT}", host_name(n)),
                    client_addr: format!("{}:{RESP_PORT}", host_name(n)),
                },
                Some(ReplaceStep::Promote),
            ),
            ReplaceStep::Promote => (
                MembershipRequest::ChangeVoters(FOUNDERS.into_iter().collect()),
                None,
            ),
        };
        self.world.event(format!("operator: ask n{l}: {req:?}"));
        self.world.0.borrow_mut().membership.insert(l, req);
        next.map(again).unwrap_or_default()
    }

    /// Starts [`Action::StallThenLose`] now: stalls the leader's disk and
    /// cuts it off; returns the later steps, with the node fixed now.
    pub(super) fn stall_then_lose(
        &mut self,
        isolate: Duration,
        stall_ms: (u64, u64),
        unstall_after: Duration,
        lose_after: Duration,
    ) -> Vec<Step> {
        let leader = self.resolve(Who::Leader);
        self.world.event(format!(
            "n{leader}'s disk stalls: fsyncs take {}-{} ms",
            stall_ms.0, stall_ms.1
        ));
        lock(&self.ios[&leader]).latency.sync_us = (stall_ms.0 * 1_000, stall_ms.1 * 1_000);
        self.fired += 1;
        self.apply(&Action::Cut {
            who: Who::Node(leader),
            oneway: false,
        });
        let heal = now() + isolate;
        vec![
            Step {
                at: heal,
                action: Action::Heal,
            },
            Step {
                at: heal + unstall_after,
                action: Action::Unstall(Who::Node(leader)),
            },
            Step {
                at: heal + lose_after,
                action: Action::PowerWhenDirty {
                    who: Who::Node(leader),
                    deadline: heal + lose_after + Duration::from_secs(1),
                },
            },
        ]
    }
}
