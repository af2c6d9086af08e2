//! The driver of one cluster seed: builds the simulation, waits for a
//! leader, applies the fault schedule while the clients run, heals, and
//! hands what happened to the oracles.

use super::faults::{self, Action, Step, Who};
use super::node_host::{host_name, NodeHost, SkewedClock};
use super::oracle::{self, Cut, Observed, CONVERGED_WITHIN, LEADER_WITHIN};
use super::scenario::{ClusterConfig, ClusterFault, ClusterOutcome, ClusterScenario};
use super::workload;
use super::world::World;
use crate::fs::{Injectors, Latency, SimIo};
use ballast_raft::planted::Planted;
use ballast_storage::Preset;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The founding voters.
const FOUNDERS: [u64; 3] = [1, 2, 3];
/// The node a membership run adds.
const JOINER: u64 = 4;
/// How long the cluster may take to elect its first leader.
const FIRST_LEADER_WITHIN: Duration = Duration::from_secs(10);

mod bad_peer;
mod triggers;

fn lock(io: &Mutex<SimIo>) -> std::sync::MutexGuard<'_, SimIo> {
    io.lock().unwrap_or_else(|e| e.into_inner())
}

/// The run's mutable driver state.
struct Driver {
    sim: turmoil::Sim<'static>,
    world: World,
    rng: StdRng,
    ios: BTreeMap<u64, Arc<Mutex<SimIo>>>,
    clocks: BTreeMap<u64, Arc<SkewedClock>>,
    /// Nodes whose host is crashed (power loss), with their restart time.
    powered_off: BTreeMap<u64, Duration>,
    /// Cluster-wide power losses: (cut, restart).
    cuts: Vec<Cut>,
    /// Nodes whose disk had injected faults.
    disk_faulted: BTreeSet<u64>,
    /// Faults that took effect.
    fired: u32,
    /// Nodes in the run.
    nodes: Vec<u64>,
    /// Failures of the run itself (a host error, a panic in the simulation).
    errors: Vec<String>,
    /// The run's seed.
    seed: u64,
    /// Bad peers started so far.
    poisons: u64,
    /// The power losses in progress (see `Driver::note_rolling_loss`).
    rolling: Option<Rolling>,
    /// Per node, the manifest files it had unsynced writes in at the last
    /// look (see [`Action::PowerAfterFlush`]).
    manifests_in_flight: BTreeMap<u64, BTreeSet<PathBuf>>,
    /// The run's fault kind.
    fault: ClusterFault,
    /// The run's preset.
    preset: Preset,
}

/// Power losses in a row (see `Driver::note_rolling_loss`).
struct Rolling {
    /// The first.
    from: Duration,
    /// When the last node hit is back.
    back: Duration,
    /// Nodes hit.
    nodes: BTreeSet<u64>,
    /// The cut it was recorded as, once it hit every founder.
    cut: Option<usize>,
}

/// How long after a node is back from a power loss it takes, at most, to
/// be caught up again (an election and a round of appends), so that a
/// later power loss of another node no longer rolls on from it.
const CATCH_UP_GRACE: Duration = Duration::from_secs(2);

fn now() -> Duration {
    super::world::now()
}

impl Driver {
    fn step(&mut self) -> bool {
        let r = crate::step_catching_panics(&mut self.sim);
        super::world::set_driver_now(self.sim.elapsed());
        match r {
            Ok(_) => true,
            Err(e) => {
                let e = format!("simulation stopped: {e}");
                self.world.event(e.clone());
                self.errors.push(e);
                false
            }
        }
    }

    /// Steps until `done` or `within` passes; true if `done`.
    fn step_until(&mut self, within: Duration, mut done: impl FnMut(&mut Driver) -> bool) -> bool {
        let deadline = self.sim.elapsed() + within;
        while self.sim.elapsed() < deadline {
            if done(self) {
                return true;
            }
            self.restart_due();
            if !self.step() {
                return false;
            }
        }
        done(self)
    }

    /// The leader most running nodes agree on, if it says so itself.
    fn leader(&self) -> Option<u64> {
        let w = self.world.0.borrow();
        let mut votes: BTreeMap<u64, u32> = BTreeMap::new();
        for (id, r) in &w.reports {
            if self.powered_off.contains_key(id) {
                continue;
            }
            if let Some(l) = r.leader {
                *votes.entry(l).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .filter(|&(l, n)| n >= 2 && w.reports.get(&l).is_some_and(|r| r.role == "leader"))
            .map(|(l, _)| l)
            .next()
    }

    fn resolve(&mut self, who: Who) -> u64 {
        let leader = self.leader();
        match (who, leader) {
            (Who::Node(n), _) => n,
            (Who::Leader, Some(l)) => l,
            (Who::Follower, Some(l)) => {
                let others: Vec<u64> = FOUNDERS.into_iter().filter(|&n| n != l).collect();
                others[self.rng.gen_range(0..others.len())]
            }
            (_, None) => FOUNDERS[self.rng.gen_range(0..FOUNDERS.len())],
        }
    }

    fn others(&self, n: u64) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|&&m| m != n)
            .map(|&m| host_name(m))
            .collect()
    }

    fn heal_links(&mut self) {
        for a in &self.nodes {
            for b in &self.nodes {
                if a < b {
                    self.sim.repair(host_name(*a), host_name(*b));
                    self.sim.release(host_name(*a), host_name(*b));
                }
            }
        }
    }

    fn power_off(&mut self, ids: &[u64], down: Duration) {
        let until = now() + down;
        // Only nodes that are up lose anything: a planned loss of a node
        // still off changes nothing, and counting it stretched a rolling
        // loss to its phantom restart, so a later loss of one node merged
        // into an earlier cut of all three (`cluster-throughput-mixed`
        // seed 9002: the judged epoch then spanned the real restart).
        let hit: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| !self.powered_off.contains_key(id))
            .collect();
        if !hit.is_empty() {
            self.note_rolling_loss(&hit, until);
        }
        for id in hit {
            let dirty = lock(&self.ios[&id]).dirty.len();
            self.world.event(format!(
                "power loss n{id} ({dirty} files with unsynced writes), back at {:.3}",
                until.as_secs_f64()
            ));
            // The old process's files stop working before turmoil runs its
            // destructors (a dead process writes nothing more).
            lock(&self.ios[&id]).crashed(true);
            self.world.power_lost(id);
            self.sim.crash(host_name(id));
            self.world.0.borrow_mut().reports.remove(&id);
            self.powered_off.insert(id, until);
            self.fired += 1;
        }
    }

    /// Power losses (and under throughput, process crashes) that follow
    /// one another before the nodes they hit are back and caught up
    /// (within [`CATCH_UP_GRACE`] of the last restart) form one rolling
    /// loss; once it has hit every founder it is a cluster-wide loss,
    /// judged as one cut (from its first loss to its last restart): no
    /// node kept the data through it. Losses after that start a new roll.
    fn note_rolling_loss(&mut self, ids: &[u64], until: Duration) {
        let t = now();
        let rolling = match self.rolling.take() {
            // A roll that has hit every founder is a cut, and its restart
            // is where the judged epochs part: a later loss starts a new
            // roll instead of moving that restart past operations the
            // restarted cluster already answered (`cluster-throughput-mixed`
            // seed 9015: n3 lost power again 0.45 s after the cut's
            // restart, and the epoch before the cut took in what came after).
            Some(mut r) if r.cut.is_none() && t <= r.back + CATCH_UP_GRACE => {
                r.nodes.extend(ids.iter().copied());
                r.back = r.back.max(until);
                r
            }
            _ => Rolling {
                from: t,
                back: until,
                nodes: ids.iter().copied().collect(),
                cut: None,
            },
        };
        let mut rolling = rolling;
        if FOUNDERS.iter().all(|n| rolling.nodes.contains(n)) {
            let cut = Cut {
                at: rolling.from,
                restart: rolling.back,
            };
            match rolling.cut {
                Some(i) => self.cuts[i] = cut,
                None => {
                    rolling.cut = Some(self.cuts.len());
                    self.cuts.push(cut);
                }
            }
        }
        self.rolling = Some(rolling);
    }

    fn restart_due(&mut self) {
        let t = now();
        let due: Vec<u64> = self
            .powered_off
            .iter()
            .filter(|(_, &at)| at <= t)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.powered_off.remove(&id);
            self.world.event(format!("restart n{id}"));
            self.sim.bounce(host_name(id));
        }
    }

    fn apply(&mut self, action: &Action) {
        match action {
            Action::Cut { who, oneway } => {
                let n = self.resolve(*who);
                self.world.event(format!(
                    "cut n{n}{}",
                    if *oneway { " (outgoing only)" } else { "" }
                ));
                for o in self.others(n) {
                    if *oneway {
                        self.sim.partition_oneway(host_name(n), o);
                    } else {
                        self.sim.partition(host_name(n), o);
                    }
                }
                self.fired += 1;
            }
            Action::Heal => {
                self.world.event("heal links".into());
                self.heal_links();
            }
            Action::Loss(rate) => {
                self.world.event(format!("message loss {rate:.3}"));
                self.sim.set_fail_rate(*rate);
                if *rate > 0.0 {
                    self.fired += 1;
                } else {
                    self.heal_links();
                }
            }
            Action::Latency(max_ms) => {
                self.world.event(format!("latency up to {max_ms} ms"));
                self.sim.set_max_message_latency(Duration::from_millis(
                    (*max_ms).max(NORMAL_LATENCY_MS),
                ));
                self.fired += u32::from(*max_ms > 0);
            }
            Action::Hold(who) => {
                let n = self.resolve(*who);
                self.world.event(format!("hold n{n}"));
                for o in self.others(n) {
                    self.sim.hold(host_name(n), o);
                }
                self.fired += 1;
            }
            Action::Crash { who, down } => {
                let n = self.resolve(*who);
                if self.powered_off.contains_key(&n) {
                    return;
                }
                self.world
                    .event(format!("process crash n{n}, down {} ms", down.as_millis()));
                self.world.0.borrow_mut().reports.remove(&n);
                self.world.set_down_until(n, now() + *down);
                // A SIGKILL: the page cache survives, but the process's destructors
                // (the engine's flush of its write-back buffer) must not run as
                // turmoil's bounce would let them.
                lock(&self.ios[&n]).crashed(false);
                self.sim.bounce(host_name(n));
                self.fired += 1;
                // Under throughput a process crash loses the node's
                // write-back buffer, acknowledged entries in it: as a power
                // loss does, it takes the node's copy of what no node had
                // written out (`cluster-throughput-mixed` seed 5013: n3's
                // power, n1's process, then n2's power, before any caught
                // up).
                if self.preset == Preset::Throughput {
                    self.note_rolling_loss(&[n], now() + *down);
                }
            }
            Action::Wipe { who, down } => {
                let n = self.resolve(*who);
                self.world.wipe_on_next_boot(n);
                self.power_off(&[n], *down);
                // A lost disk takes what it acknowledged with it.
                self.world.0.borrow_mut().acked_at_power_loss.remove(&n);
            }
            Action::Power { who, down } => {
                let ids: Vec<u64> = if who.is_empty() {
                    FOUNDERS.to_vec()
                } else {
                    who.iter().map(|w| self.resolve(*w)).collect()
                };
                self.power_off(&ids, *down);
            }
            Action::Unstall(who) => {
                let n = self.resolve(*who);
                self.world.event(format!("n{n}'s disk no longer stalls"));
                lock(&self.ios[&n]).latency = disk_latency(self.fault);
            }
            // Expanded by the step loop.
            Action::PowerWhenDirty { .. }
            | Action::PowerAfterFlush { .. }
            | Action::LagThenLose { .. }
            | Action::StallThenLose { .. }
            | Action::Replace { .. } => {}
            Action::Disk { who, injectors } => {
                let n = self.resolve(*who);
                self.world
                    .event(format!("disk faults on n{n}: {injectors:?}"));
                let mut io = lock(&self.ios[&n]);
                io.injectors = *injectors;
                io.arm(true);
                drop(io);
                self.disk_faulted.insert(n);
            }
            Action::DiskOff => {
                self.world.event("disks healthy".into());
                for io in self.ios.values() {
                    lock(io).arm(false);
                }
            }
            Action::Skew { node, ms } => {
                self.world.event(format!("clock n{node} skewed {ms} ms"));
                self.clocks[node].set_skew_ms(*ms);
                self.fired += 1;
            }
            Action::Poison => {
                let Some(l) = self.leader() else {
                    self.world.event("bad peer skipped: no leader".into());
                    return;
                };
                self.poisons += 1;
                let name = format!("rogue{}", self.poisons);
                let (world, seed) = (self.world.clone(), self.seed ^ self.poisons);
                self.world.event(format!(
                    "bad peer {name} forwards unloggable batches to n{l}"
                ));
                self.sim.host(name.clone(), move || {
                    let (world, name) = (world.clone(), name.clone());
                    async move {
                        bad_peer::bad_peer(&name, l, seed, &world).await;
                        Ok(())
                    }
                });
                self.fired += 1;
            }
            Action::AddLearner | Action::Promote | Action::RemoveFounder => {
                let Some(l) = self.leader() else {
                    self.world
                        .event("membership change skipped: no leader".into());
                    return;
                };
                let req = match action {
                    Action::AddLearner => super::world::MembershipRequest::AddLearner {
                        id: JOINER,
                        raft_addr: format!("{}:{}", host_name(JOINER), super::node_host::RAFT_PORT),
                        client_addr: format!(
                            "{}:{}",
                            host_name(JOINER),
                            super::node_host::RESP_PORT
                        ),
                    },
                    Action::Promote => super::world::MembershipRequest::ChangeVoters(
                        FOUNDERS.into_iter().chain([JOINER]).collect(),
                    ),
                    _ => {
                        let leaving = FOUNDERS.into_iter().find(|&n| n != l).unwrap_or(1);
                        let voters = self
                            .world
                            .0
                            .borrow()
                            .reports
                            .get(&l)
                            .map(|r| r.voters.clone())
                            .unwrap_or_default();
                        super::world::MembershipRequest::ChangeVoters(
                            voters.into_iter().filter(|&v| v != leaving).collect(),
                        )
                    }
                };
                self.world.event(format!("ask n{l}: {req:?}"));
                self.world.0.borrow_mut().membership.insert(l, req);
            }
        }
    }
}

/// turmoil's message latency outside the delay faults, in milliseconds.
const NORMAL_LATENCY_MS: u64 = 1;

fn disk_latency(fault: ClusterFault) -> Latency {
    match fault {
        ClusterFault::TornWrite => Latency::SLOW,
        _ => Latency::NORMAL,
    }
}

/// Runs one seed of `scenario`.
pub fn run(scenario: ClusterScenario, seed: u64, cfg: ClusterConfig) -> ClusterOutcome {
    oracle::count_panics();
    let panics_before = oracle::panics();
    super::world::set_driver_now(Duration::ZERO);
    let world = World::new(cfg.keep_trace, cfg.echo);
    world.event(format!(
        "run {} seed {seed} bug {:?}",
        scenario.name(),
        scenario.bug.map(|b| b.name())
    ));
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(24 * 3600))
        .tcp_capacity(1 << 16)
        // A fixed latency outside the delay faults: when a host crashes,
        // tokio drops its tasks (and so closes its connections) in an order
        // that depends on process-global task ids, so the messages telling
        // peers about it are sent in an order that differs from run to
        // run; with one latency for all, that order cannot change when
        // each is delivered, and a seed replays exactly.
        .min_message_latency(Duration::from_millis(NORMAL_LATENCY_MS))
        .max_message_latency(Duration::from_millis(NORMAL_LATENCY_MS));
    if scenario.fault == ClusterFault::TornWrite {
        builder.fs().block_size(512);
    }
    let sim = builder.build();
    let membership = scenario.fault == ClusterFault::Membership;
    let nodes: Vec<u64> = if membership {
        FOUNDERS.into_iter().chain([JOINER]).collect()
    } else {
        FOUNDERS.to_vec()
    };
    let mut d = Driver {
        sim,
        world: world.clone(),
        rng: StdRng::seed_from_u64(seed ^ 0xc1a5_7e00_0000_0010),
        ios: BTreeMap::new(),
        clocks: BTreeMap::new(),
        powered_off: BTreeMap::new(),
        cuts: Vec::new(),
        disk_faulted: BTreeSet::new(),
        fired: 0,
        seed,
        poisons: 0,
        rolling: None,
        manifests_in_flight: BTreeMap::new(),
        fault: scenario.fault,
        preset: scenario.preset,
        nodes: nodes.clone(),
        errors: Vec::new(),
    };
    let planted = scenario
        .bug
        .map_or(Planted::NONE, |b| Planted::NONE.with(b));
    for &id in &nodes {
        let io = SimIo::new(
            seed ^ id,
            disk_latency(scenario.fault),
            Injectors::default(),
        );
        let clock = Arc::new(SkewedClock::default());
        d.ios.insert(id, io.clone());
        d.clocks.insert(id, clock.clone());
        let host = NodeHost {
            id,
            founders: if FOUNDERS.contains(&id) {
                FOUNDERS.to_vec()
            } else {
                Vec::new()
            },
            preset: scenario.preset,
            planted,
            io,
            clock,
            seed,
        };
        let w = world.clone();
        d.sim.host(host_name(id), move || {
            let host = host.clone();
            let w = w.clone();
            async move {
                let boot = w.next_boot(host.id);
                if let Some(until) = w.down_until(host.id) {
                    tokio::time::sleep(until.saturating_sub(now())).await;
                }
                host.run(w, boot).await;
                Ok(())
            }
        });
    }
    // Wait for the first leader before the clients start, so that the
    // faults meet a working cluster.
    if !d.step_until(FIRST_LEADER_WITHIN, |d| d.leader().is_some()) {
        d.errors.push("no first leader within 10 s".into());
    }
    // One host per client: when a node crashes, the order in which its
    // connections close is not the same from run to run (see the message
    // latency above), and a host holding several of them would see the
    // closures in that order; a client alone on its host sees only its own.
    for c in 1..=u64::from(cfg.clients) {
        let w = world.clone();
        d.sim.host(format!("c{c}"), move || {
            let w = w.clone();
            async move {
                workload::client(c, FOUNDERS.to_vec(), w, seed).await;
                Ok(())
            }
        });
    }
    let start = now();
    let mut steps: std::collections::VecDeque<Step> = if cfg.faults {
        faults::plan(scenario.fault, &mut d.rng, start, cfg.workload)
    } else {
        Vec::new()
    }
    .into();
    let end = start + cfg.workload;
    while now() < end && d.errors.is_empty() {
        while steps.front().is_some_and(|s| s.at <= now()) {
            let Some(s) = steps.pop_front() else { break };
            let later = match s.action {
                Action::LagThenLose {
                    wipe,
                    lose_after,
                    down,
                    heal_after,
                } => Some(d.lag_then_lose(wipe, lose_after, down, heal_after)),
                Action::StallThenLose {
                    isolate,
                    stall_ms,
                    unstall_after,
                    lose_after,
                } => Some(d.stall_then_lose(isolate, stall_ms, unstall_after, lose_after)),
                Action::Replace { who, step } => {
                    let n = d.resolve(who);
                    Some(d.replace_step(n, step))
                }
                _ => None,
            };
            if let Some(later) = later {
                for step in later {
                    let at = steps.partition_point(|x| x.at <= step.at);
                    steps.insert(at, step);
                }
            } else if let Action::PowerAfterFlush { deadline } = s.action {
                let landed = d.edit_landed_before_the_log();
                if landed.is_some() || now() >= deadline {
                    let down = Duration::from_millis(d.rng.gen_range(100..1_000));
                    // The node whose engine may be ahead of its log comes
                    // back last, after the others have elected a leader
                    // and written on.
                    let late = landed.map(|n| {
                        (
                            n,
                            down + Duration::from_millis(d.rng.gen_range(1_000..2_000)),
                        )
                    });
                    let first: Vec<u64> = FOUNDERS
                        .into_iter()
                        .filter(|&n| late.is_none_or(|(l, _)| l != n))
                        .collect();
                    d.power_off(&first, down);
                    if let Some((n, later)) = late {
                        d.power_off(&[n], later);
                    }
                } else {
                    steps.push_front(Step {
                        at: now() + Duration::from_millis(1),
                        action: s.action,
                    });
                    break;
                }
            } else if let Action::PowerWhenDirty { who, deadline } = s.action {
                let n = d.resolve(who);
                let dirty = !lock(&d.ios[&n]).dirty.is_empty();
                if dirty || now() >= deadline {
                    let down = Duration::from_millis(d.rng.gen_range(100..1_000));
                    d.power_off(&[n], down);
                } else {
                    steps.push_front(Step {
                        at: now() + Duration::from_millis(1),
                        action: Action::PowerWhenDirty {
                            who: Who::Node(n),
                            deadline,
                        },
                    });
                    break;
                }
            } else {
                d.apply(&s.action);
            }
        }
        d.restart_due();
        if !d.step() {
            break;
        }
    }
    // Heal: links, disks, clocks; every node powered back on; a node whose
    // disk failed is restarted (what an operator does once the disk is
    // fixed), so that it can recover and catch up.
    world.event("heal everything".into());
    d.sim.set_fail_rate(0.0);
    d.sim
        .set_max_message_latency(Duration::from_millis(NORMAL_LATENCY_MS));
    d.heal_links();
    for io in d.ios.values() {
        lock(io).arm(false);
    }
    for (id, clock) in &d.clocks {
        if clock.skew_ms() != 0 {
            world.event(format!("clock n{id} back in step"));
        }
        clock.set_skew_ms(0);
    }
    for (_, at) in d.powered_off.iter_mut() {
        *at = now();
    }
    // A cut whose nodes come back early ends now: the throughput judgement
    // starts the next epoch at the restart, and operations invoked after
    // it see the rolled-back state.
    for c in d.cuts.iter_mut() {
        c.restart = c.restart.min(now());
    }
    d.restart_due();
    for id in d.disk_faulted.clone() {
        world.event(format!("restart n{id} after its disk faults"));
        world.0.borrow_mut().reports.remove(&id);
        lock(&d.ios[&id]).crashed(false);
        d.sim.bounce(host_name(id));
    }
    let healed = now();
    world.set_healed(healed);
    let leader_at = d
        .step_until(LEADER_WITHIN, |d| d.leader().is_some())
        .then(now);
    world.0.borrow_mut().stop_clients = true;
    let clients_done = d.step_until(workload::CLIENT_TIMEOUT + Duration::from_secs(1), |d| {
        d.world.0.borrow().clients_running == 0
    });
    // The final read of every key, through fresh connections.
    let unread = Arc::new(Mutex::new(None::<usize>));
    {
        let w = world.clone();
        let unread = unread.clone();
        let members = d.members();
        d.sim.host("final", move || {
            let w = w.clone();
            let unread = unread.clone();
            let members = members.clone();
            async move {
                let n = workload::final_reads(members, w, LEADER_WITHIN).await;
                *unread.lock().unwrap_or_else(|e| e.into_inner()) = Some(n);
                Ok(())
            }
        });
    }
    d.step_until(LEADER_WITHIN + Duration::from_secs(1), |_| {
        unread.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    });
    world.0.borrow_mut().wants_hash = true;
    let converged = d.step_until(CONVERGED_WITHIN, |d| d.converged().is_ok());
    let divergence = d.converged().err();
    let unread = *unread.lock().unwrap_or_else(|e| e.into_inner());
    let observed = Observed {
        preset: scenario.preset,
        cuts: d.cuts.clone(),
        healed,
        leader_after: leader_at.map(|t| t - healed),
        clients_done,
        unread,
        converged,
        divergence,
        disk_faulted: d.disk_faulted.clone(),
        panics: oracle::panics() - panics_before,
        errors: d.errors.clone(),
        sync_window: sync_window(scenario),
    };
    let (linearizable, violations) = oracle::judge(&world, &observed);
    for v in &violations {
        world.event(format!("VIOLATION {v}"));
    }
    let trace = world.0.borrow().trace.clone();
    let operations = world.0.borrow().history.len();
    ClusterOutcome {
        scenario,
        seed,
        trace,
        fired: d.fired + fired_on_disks(&d),
        operations,
        linearizable,
        violations,
        simulated: now(),
    }
}

/// Injected disk faults that fired.
fn fired_on_disks(d: &Driver) -> u32 {
    d.ios
        .values()
        .map(|io| {
            let f = lock(io).fired;
            (f.write_errors + f.sync_errors + f.read_errors + f.corrupt_reads + f.disk_full) as u32
        })
        .sum()
}

/// Balanced's loss bound before a power loss of all nodes: one sync
/// interval plus one fsync (the slowest the simulated disk takes), plus a
/// tick of the simulation's clock.
fn sync_window(scenario: ClusterScenario) -> Duration {
    let sync_interval = match ballast_storage::Options::preset(scenario.preset).fsync {
        ballast_storage::FsyncPolicy::Interval { sync_interval_ms } => {
            Duration::from_millis(sync_interval_ms)
        }
        _ => Duration::ZERO,
    };
    sync_interval + disk_latency(scenario.fault).max_sync() + Duration::from_millis(1)
}

impl Driver {
    /// The members (voters and learners) the leader reports, or the
    /// founders.
    fn members(&self) -> Vec<u64> {
        let w = self.world.0.borrow();
        let members: Vec<u64> = self
            .leader()
            .and_then(|l| w.reports.get(&l))
            .map(|r| r.voters.iter().chain(&r.learners).copied().collect())
            .unwrap_or_else(|| FOUNDERS.to_vec());
        // A node that lost its disk is out until the operator's
        // replacement (`Driver::replace_step`) starts it again as a new
        // member; until then its peers refuse it.
        members
            .into_iter()
            .filter(|m| !w.wiped.contains(m) || w.replaced.contains(m))
            .collect()
    }

    /// Ok when every member reports the same applied index and state hash.
    fn converged(&self) -> Result<(), String> {
        let members = self.members();
        let w = self.world.0.borrow();
        let seen: Vec<(u64, Option<u64>, Option<String>)> = members
            .iter()
            .map(|m| {
                let r = w.reports.get(m);
                (
                    *m,
                    r.and_then(|r| r.applied),
                    r.and_then(|r| r.hash.clone()),
                )
            })
            .collect();
        let first = seen.first().map(|s| (s.1, s.2.clone()));
        if seen
            .iter()
            .all(|s| s.2.is_some() && Some((s.1, s.2.clone())) == first)
        {
            Ok(())
        } else {
            Err(seen
                .iter()
                .map(|(m, a, h)| format!("n{m} applied {a:?} hash {h:?}"))
                .collect::<Vec<_>>()
                .join(", "))
        }
    }
}
