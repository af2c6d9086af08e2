//! What the hosts and the driver share: the trace, the client history,
//! each node's latest report, node failures, and the driver's requests
//! (membership changes, stop). The simulation runs every host on the
//! driver's thread, so this is a plain `Rc<RefCell>`.

use crate::trace::Trace;
use ballast_history::{History, Op, OpId, Outcome};
use ballast_node::{AdminApi, ApiError, NodeStatus};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

/// Operations on one key before the workload moves to a fresh key (its
/// next generation), so that each key's history stays small enough for
/// the linearizability search.
pub const OPS_PER_KEY_GENERATION: u64 = 120;

/// What a node last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// Which boot of the node it came from.
    pub boot: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// Its term.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// Its last applied index.
    pub applied: Option<u64>,
    /// Its last log index (a purged log counts its last purged index).
    pub last_log: Option<u64>,
    /// Its voters.
    pub voters: Vec<u64>,
    /// Its learners.
    pub learners: Vec<u64>,
    /// The state hash, when asked for.
    pub hash: Option<String>,
    /// When (simulated).
    pub at: Duration,
}

impl NodeReport {
    /// A report from a node's status.
    pub fn from_status(s: &NodeStatus, boot: u64) -> NodeReport {
        NodeReport {
            boot,
            role: s.role.clone(),
            term: s.term,
            leader: s.leader.as_ref().map(|l| l.0),
            applied: s.applied_index,
            last_log: s.last_log_index,
            voters: s.voters.clone(),
            learners: s.learners.clone(),
            hash: s.state_hash.clone(),
            at: now(),
        }
    }
}

/// A membership change the driver asks a node to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipRequest {
    /// Add a node as a learner.
    AddLearner {
        /// Its id.
        id: u64,
        /// Its Raft address.
        raft_addr: String,
        /// Its client address.
        client_addr: String,
    },
    /// Make these the voters (learners among them are promoted; others
    /// leave).
    ChangeVoters(BTreeSet<u64>),
}

impl MembershipRequest {
    /// Runs the change on `node`.
    pub async fn run<A: AdminApi>(&self, node: &A) -> Result<(), ApiError> {
        match self {
            MembershipRequest::AddLearner {
                id,
                raft_addr,
                client_addr,
            } => {
                node.add_learner(*id, raft_addr.clone(), client_addr.clone())
                    .await
            }
            MembershipRequest::ChangeVoters(voters) => {
                node.change_voters(voters.clone(), false).await
            }
        }
    }
}

/// The shared state. See the module docs.
#[derive(Debug, Default)]
pub struct State {
    /// The run's event trace.
    pub trace: Trace,
    /// Every client operation.
    pub history: History,
    /// Each node's latest report.
    pub reports: BTreeMap<u64, NodeReport>,
    /// Node failures (start errors, a stopped server), with the node id.
    pub failures: Vec<(u64, String)>,
    /// Whether reports should carry the state hash (it reads every key).
    pub wants_hash: bool,
    /// Membership requests waiting for a node to pick them up.
    pub membership: BTreeMap<u64, MembershipRequest>,
    /// Outcomes of membership requests.
    pub membership_results: Vec<(u64, Result<(), ApiError>)>,
    /// Clients stop issuing operations.
    pub stop_clients: bool,
    /// Client hosts still running.
    pub clients_running: u32,
    /// Operations issued per key slot (for key generations).
    pub slot_ops: BTreeMap<u32, u64>,
    /// Keys the workload used.
    pub keys: BTreeSet<Vec<u8>>,
    /// Boots per node so far.
    pub boots: BTreeMap<u64, u64>,
    /// A crashed node's process stays down until then.
    pub down_until: BTreeMap<u64, Duration>,
    /// When the driver healed every fault.
    pub healed: Option<Duration>,
    /// Requests sent after the heal that no node answered in time.
    pub unanswered: Vec<String>,
    /// Nodes whose data directory is wiped before their next boot.
    pub wipe_next_boot: BTreeSet<u64>,
    /// Nodes whose data directory was wiped (a lost disk).
    pub wiped: BTreeSet<u64>,
    /// Wiped nodes an operator replaced: they start again on an empty
    /// disk without initial members, to be added back as learners.
    pub replaced: BTreeSet<u64>,
    /// What each running node's Raft log acknowledged as durable.
    pub durable_acks: BTreeMap<u64, ballast_raft::log_store::DurableAcks>,
    /// What a node's log had acknowledged as durable (last index, last
    /// vote) when its power went, until its next start.
    pub acked_at_power_loss: BTreeMap<u64, (Option<u64>, Option<ballast_raft::Vote>)>,
    /// Starts that found the log without entries acknowledged as durable
    /// before a power loss, with the node id.
    pub lost_acked: Vec<(u64, String)>,
}

/// A handle on the shared state.
#[derive(Debug, Clone, Default)]
pub struct World(pub Rc<RefCell<State>>);

thread_local! {
    /// The simulated time as of the driver's last step, for code the
    /// driver runs outside any host (where turmoil has no current time).
    static DRIVER_NOW: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// Sets the time [`now`] answers outside a host.
pub fn set_driver_now(t: Duration) {
    DRIVER_NOW.with(|c| c.set(t));
}

/// Simulated time now: the host's inside a host, the driver's outside.
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_else(|| DRIVER_NOW.with(std::cell::Cell::get))
}

impl World {
    /// A world whose trace keeps its lines when `keep`.
    pub fn new(keep: bool, echo: bool) -> World {
        World(Rc::new(RefCell::new(State {
            trace: Trace::new(keep, echo),
            ..State::default()
        })))
    }

    /// Records a trace event, stamped with the simulated time.
    pub fn event(&self, what: String) {
        let t = now();
        self.0
            .borrow_mut()
            .trace
            .event(format!("{:>9.3} {what}", t.as_secs_f64()));
    }

    /// Records node `id`'s start (boot `boot`): checks that its log still
    /// holds everything it acknowledged as durable before its last power
    /// loss, and keeps its acknowledgements for the next.
    pub fn started(&self, id: u64, boot: u64, node: &ballast_node::Node) {
        let opened = node.opened();
        let last = opened.log_last_index;
        let (index, vote) = {
            let mut s = self.0.borrow_mut();
            s.durable_acks.insert(id, node.log_durable_acks());
            s.acked_at_power_loss.remove(&id).unwrap_or_default()
        };
        let mut lost = Vec::new();
        if let Some(acked) = index.filter(|&a| last.is_none_or(|l| l < a)) {
            lost.push(format!(
                "boot {boot}: its Raft log acknowledged entries up to {acked} as durable before \
                 the power loss, and ends at {} after it",
                last.map_or_else(|| "nothing".into(), |l| l.to_string())
            ));
        }
        // A vote may only move forward: one that went back (or sideways, to
        // another candidate in the same term) lets the node vote twice.
        if let Some(saved) = vote {
            let kept = opened.vote.is_some_and(|v| {
                matches!(
                    v.partial_cmp(&saved),
                    Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                )
            });
            if !kept {
                lost.push(format!(
                    "boot {boot}: it saved the vote {saved} before the power loss and \
                     came back with {}",
                    opened.vote.map_or_else(|| "none".into(), |v| v.to_string())
                ));
            }
        }
        for what in lost {
            self.event(format!("n{id} LOST ACKNOWLEDGED STATE, {what}"));
            self.0.borrow_mut().lost_acked.push((id, what));
        }
    }

    /// Records node `id`'s power loss: what its log acknowledged as
    /// durable must be there at its next start.
    pub fn power_lost(&self, id: u64) {
        let mut s = self.0.borrow_mut();
        if let Some(acks) = s.durable_acks.remove(&id) {
            s.acked_at_power_loss.insert(id, (acks.get(), acks.vote()));
        }
    }

    /// Records a node failure.
    pub fn node_failed(&self, id: u64, what: String) {
        self.event(format!("n{id} FAILED {what}"));
        self.0.borrow_mut().failures.push((id, what));
    }

    /// Stores node `id`'s report; a change of role, term or leader is a
    /// trace event.
    pub fn report(&self, id: u64, r: NodeReport) {
        let changed = {
            let s = self.0.borrow();
            s.reports.get(&id).is_none_or(|old| {
                (old.boot, &old.role, old.term, old.leader) != (r.boot, &r.role, r.term, r.leader)
            })
        };
        if changed {
            self.event(format!(
                "n{id} {} term {} leader {:?} applied {:?}",
                r.role, r.term, r.leader, r.applied
            ));
            // Raft stops only on a fatal error (a storage failure, a log
            // it cannot read): a failure of the node.
            if r.role == "shutdown" {
                self.0
                    .borrow_mut()
                    .failures
                    .push((id, format!("Raft stopped (boot {})", r.boot)));
            }
        }
        // A state machine never runs ahead of its own log: what it applied
        // came from entries the log must still hold (or a snapshot it
        // purged them into). Ahead means the engine kept entries a power
        // loss took from the log.
        if let (Some(a), Some(l)) = (r.applied, r.last_log) {
            let reported = self
                .0
                .borrow()
                .failures
                .iter()
                .any(|(n, w)| *n == id && w.contains(&format!("boot {}:", r.boot)));
            if a > l && !reported {
                self.node_failed(
                    id,
                    format!(
                        "boot {}: applied index {a} is ahead of its last log index {l}",
                        r.boot
                    ),
                );
            }
        }
        self.0.borrow_mut().reports.insert(id, r);
    }

    /// Whether reports should carry the state hash.
    pub fn wants_hash(&self) -> bool {
        self.0.borrow().wants_hash
    }

    /// The membership request waiting for node `id`, taken.
    pub fn take_membership_request(&self, id: u64) -> Option<MembershipRequest> {
        self.0.borrow_mut().membership.remove(&id)
    }

    /// Records a membership request's outcome.
    pub fn membership_done(&self, id: u64, r: Result<(), ApiError>) {
        self.event(format!("n{id} membership change: {r:?}"));
        self.0.borrow_mut().membership_results.push((id, r));
    }

    /// The key for `slot` now, moving to a new generation every
    /// [`OPS_PER_KEY_GENERATION`] operations.
    pub fn key_for(&self, slot: u32) -> Vec<u8> {
        let mut s = self.0.borrow_mut();
        let n = s.slot_ops.entry(slot).or_default();
        let key = format!("k{slot}-g{}", *n / OPS_PER_KEY_GENERATION).into_bytes();
        *n += 1;
        s.keys.insert(key.clone());
        key
    }

    /// Records an invocation.
    pub fn invoke(&self, client: u64, key: Vec<u8>, op: Op) -> OpId {
        let at = now().as_nanos() as u64;
        self.0.borrow_mut().history.invoke(client, key, op, at)
    }

    /// Records a completion.
    pub fn complete(&self, id: OpId, outcome: Outcome) {
        let at = now().as_nanos() as u64;
        self.0.borrow_mut().history.complete(id, outcome, at);
    }

    /// The next boot number of node `id` (1 for the first).
    pub fn next_boot(&self, id: u64) -> u64 {
        let mut s = self.0.borrow_mut();
        let b = s.boots.entry(id).or_default();
        *b += 1;
        *b
    }

    /// The boot number node `id` is on.
    pub fn boot_of(&self, id: u64) -> u64 {
        self.0.borrow().boots.get(&id).copied().unwrap_or(0)
    }

    /// Keeps node `id`'s process down until `until`.
    pub fn set_down_until(&self, id: u64, until: Duration) {
        self.0.borrow_mut().down_until.insert(id, until);
    }

    /// When node `id`'s process may boot, if it must wait.
    pub fn down_until(&self, id: u64) -> Option<Duration> {
        self.0.borrow_mut().down_until.remove(&id)
    }

    /// Wipes node `id`'s data directory before its next boot (its disk is
    /// lost and replaced by an empty one).
    pub fn wipe_on_next_boot(&self, id: u64) {
        self.0.borrow_mut().wipe_next_boot.insert(id);
    }

    /// Marks node `id` replaced: its next boot is on an empty disk,
    /// without initial members.
    pub fn replace(&self, id: u64) {
        let mut s = self.0.borrow_mut();
        s.wipe_next_boot.insert(id);
        s.replaced.insert(id);
    }

    /// True if node `id` was replaced after losing its disk.
    pub fn is_replaced(&self, id: u64) -> bool {
        self.0.borrow().replaced.contains(&id)
    }

    /// True (once) if node `id`'s data directory must be wiped now.
    pub fn take_wipe(&self, id: u64) -> bool {
        let mut s = self.0.borrow_mut();
        let wipe = s.wipe_next_boot.remove(&id);
        if wipe {
            s.wiped.insert(id);
        }
        wipe
    }

    /// True if node `id` lost its disk during the run.
    pub fn was_wiped(&self, id: u64) -> bool {
        self.0.borrow().wiped.contains(&id)
    }

    /// Records the heal.
    pub fn set_healed(&self, at: Duration) {
        self.0.borrow_mut().healed = Some(at);
    }

    /// When the faults were healed, if they were.
    pub fn healed(&self) -> Option<Duration> {
        self.0.borrow().healed
    }

    /// Whether clients should stop.
    pub fn stopping(&self) -> bool {
        self.0.borrow().stop_clients
    }
}
