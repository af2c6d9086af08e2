//! The Raft log store (`ballast_raft::LogStore`) alone on one turmoil
//! host's simulated disk, under process crashes, power loss and fsync
//! errors, checked against its own contract ([`model`]).
//!
//! One task plays openraft: it appends batches through
//! `RaftLogStorage::append` without waiting for their `IOFlushed`
//! callbacks (openraft pipelines them; the store's flusher fsyncs and
//! answers), saves votes, truncates after a conflict (a new term follows),
//! saves the committed index and advances the state machine's applied
//! index, purges, and now and then asks for a truncation below the applied
//! index, which the store must refuse. The driver crashes the host at a
//! random time or inside an fsync pause, recovers the store and checks it.
//! The log alone runs the durable preset (`FsyncPolicy::Group`: an append
//! is acknowledged once fsynced), and in the `log-throughput-*` scenarios
//! the throughput preset (`FsyncPolicy::WriteBack`: acknowledged from
//! memory; what a crash may take is bounded by time, see
//! [`WRITE_BACK_BOUND`]). The `replicated-*` scenarios add the
//! state machine's engine as the node runs it (`machine.rs`: no engine WAL,
//! applied markers, the flush barrier) on the balanced preset.

pub mod cli;
mod machine;
pub mod model;
mod shared;
mod workload;

use self::model::{LogModel, RecoveredLog};
use self::shared::{Phase, Sh, Shared};
use self::workload::{workload, Machine};
use crate::fs::{Injectors, Latency, SimIo, TurmoilFs};
use crate::trace::Trace;
use ballast_raft::log_store::{AppliedIndex, FsyncPolicy};
use ballast_raft::planted::{NodeBug, Planted};
use ballast_raft::{Error, LogStore};
use ballast_storage::fs::IoOp;
use ballast_storage::wal::WalOptions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The log store's directory on the simulated disk.
const DIR: &str = "/raft";
/// Crash/recover cycles per run.
const CRASHES: u32 = 4;
/// The throughput scenarios' write-back interval: the store's timer hands
/// its buffer to the OS this often.
const WRITE_BACK_INTERVAL_MS: u64 = 10;
/// The throughput scenarios' buffer: smaller than a segment, so buffers
/// reach the OS both when full and on the timer.
const WRITE_BACK_BUFFER_BYTES: u64 = 2 * 1024;
/// The throughput contract of the log alone after a process crash: an
/// append acknowledged this long before the crash survives. One interval
/// (the timer's sleep), two of the slowest fsyncs (the seal of a rolled
/// segment the timed write may have to run first, and its pause), and two
/// 1 ms ticks of slack. After a power loss it promises no time bound, only
/// a log without holes (the model's other checks).
const WRITE_BACK_BOUND: Duration = Duration::from_millis(WRITE_BACK_INTERVAL_MS + 3 + 2);

/// What a log-store scenario does to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogFault {
    /// The process dies; what reached the OS survives.
    ProcessCrash,
    /// Power loss: unsynced data and directory entries dropped.
    PowerLoss,
    /// 4% of file and directory fsyncs fail (Linux semantics: the file's
    /// unsynced writes are dropped), then power loss.
    FsyncError,
}

impl LogFault {
    /// Every kind.
    pub const ALL: [LogFault; 3] = [
        LogFault::ProcessCrash,
        LogFault::PowerLoss,
        LogFault::FsyncError,
    ];

    /// The kind's name.
    pub fn name(self) -> &'static str {
        match self {
            LogFault::ProcessCrash => "process-crash",
            LogFault::PowerLoss => "power-loss",
            LogFault::FsyncError => "fsync-error",
        }
    }
}

/// A fault kind, the log alone or with its state machine, and
/// optionally a planted node bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogScenario {
    /// The fault injected.
    pub fault: LogFault,
    /// Replicated mode: the log store with the state machine's engine
    /// (no engine WAL, applied markers, the flush barrier), as the node
    /// runs them; committed entries are applied, including entries not yet
    /// durable in this log (a follower applies what the quorum committed).
    pub replicated: bool,
    /// The log alone on the throughput preset (write-back buffer), checked
    /// against [`WRITE_BACK_BOUND`]; ignored in replicated mode.
    pub write_back: bool,
    /// A planted bug to switch on in the store.
    pub bug: Option<NodeBug>,
}

impl LogScenario {
    /// `log-{fault}`, `log-throughput-{fault}` or `replicated-{fault}`.
    pub fn name(&self) -> String {
        let what = match (self.replicated, self.write_back) {
            (true, _) => "replicated",
            (false, true) => "log-throughput",
            (false, false) => "log",
        };
        format!("{what}-{}", self.fault.name())
    }

    /// Every scenario, without bugs.
    pub fn all() -> Vec<LogScenario> {
        [(false, false), (false, true), (true, false)]
            .into_iter()
            .flat_map(|(replicated, write_back)| {
                LogFault::ALL.into_iter().map(move |fault| LogScenario {
                    fault,
                    replicated,
                    write_back,
                    bug: None,
                })
            })
            .collect()
    }

    /// Parses [`LogScenario::name`].
    pub fn parse(s: &str) -> Option<LogScenario> {
        LogScenario::all().into_iter().find(|sc| sc.name() == s)
    }

    /// The scenario that must catch `bug`, if the log store acts on it.
    pub fn for_bug(bug: NodeBug) -> Option<LogScenario> {
        let (fault, replicated, write_back) = match bug {
            NodeBug::VoteNotFsynced
            | NodeBug::TruncationNotDurable
            | NodeBug::SyncTicketBySegment
            | NodeBug::AckBeforeLogFsync => (LogFault::PowerLoss, false, false),
            NodeBug::TruncateBelowApplied => (LogFault::ProcessCrash, false, false),
            // The throughput bound after a process crash: what the store
            // acknowledged before it stopped must survive.
            NodeBug::StopLeavesBuffer => (LogFault::ProcessCrash, false, true),
            NodeBug::FlushBarrierSkipped => (LogFault::PowerLoss, true, false),
            _ => return None,
        };
        Some(LogScenario {
            fault,
            replicated,
            write_back,
            bug: Some(bug),
        })
    }
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct LogOutcome {
    /// The scenario run.
    pub scenario: LogScenario,
    /// Its seed.
    pub seed: u64,
    /// Contract violations (empty: the run passed).
    pub violations: Vec<String>,
    /// The fault fired at least once.
    pub fired: bool,
    /// Crash/recover cycles.
    pub cycles: u32,
    /// The event trace.
    pub trace: Trace,
    /// Throughput scenarios: appends acknowledged (from memory) that a
    /// crash took, within what the contract allows. Above zero in some
    /// seeds shows the bound is not vacuous.
    pub lost_within_bound: u64,
}

impl LogOutcome {
    /// A command that replays this run.
    pub fn repro(&self) -> String {
        let bug = self.scenario.bug.map(NodeBug::name);
        crate::trace::repro_line("log", &self.scenario.name(), bug, self.seed)
    }
}

fn lock(io: &Mutex<SimIo>) -> std::sync::MutexGuard<'_, SimIo> {
    io.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs one seed of `scenario`; `keep_trace` keeps every line (for
/// comparison and replay), `echo` logs them.
pub fn run(scenario: LogScenario, seed: u64, keep_trace: bool, echo: bool) -> LogOutcome {
    let mut drng = StdRng::seed_from_u64(seed ^ 0x10c5_7043_0000_0001);
    let io = SimIo::new(seed, Latency::NORMAL, Injectors::default());
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(3600))
        .build();
    let sh: Sh = Rc::new(RefCell::new(Shared {
        model: LogModel::default(),
        trace: Trace::new(keep_trace, echo),
        violations: Vec::new(),
        phase: Phase::Booting,
        epoch: 0,
        ops: 0,
        final_boot: false,
        applied: BTreeMap::new(),
        acked_at: BTreeMap::new(),
        unpromised: Vec::new(),
        lost_within_bound: 0,
    }));
    sh.borrow_mut().event(format!(
        "run {} seed {seed} bug {:?}",
        scenario.name(),
        scenario.bug.map(NodeBug::name)
    ));
    {
        let (sh, io) = (sh.clone(), io.clone());
        sim.host("log", move || {
            let (sh, io) = (sh.clone(), io.clone());
            async move {
                boot(scenario, sh, io, seed).await;
                Ok(())
            }
        });
    }
    let mut fired = false;
    let mut cycles = 0;
    for cycle in 0..=CRASHES {
        sh.borrow_mut().final_boot = cycle == CRASHES;
        let mut steps = 0;
        while sh.borrow().phase == Phase::Booting {
            if let Err(e) = crate::step_catching_panics(&mut sim) {
                sh.borrow_mut().violation(format!("host failed: {e}"));
                break;
            }
            steps += 1;
            if steps > 20_000 {
                sh.borrow_mut()
                    .violation("recovery did not finish within 20 s".into());
                break;
            }
        }
        if cycle == CRASHES || sh.borrow().phase == Phase::Done {
            break;
        }
        // The crash: at a random time, or inside the k-th fsync pause with
        // unsynced data.
        let in_sync = drng.gen_bool(0.5);
        let k = drng.gen_range(1..8u32);
        let until = sim.elapsed() + Duration::from_micros(drng.gen_range(500..40_000));
        let mut seen = 0;
        let mut last_pause = None;
        loop {
            if let Err(e) = crate::step_catching_panics(&mut sim) {
                sh.borrow_mut().violation(format!("host failed: {e}"));
                break;
            }
            let t = sim.elapsed();
            let g = lock(&io);
            if in_sync && g.paused_at(t, Some(IoOp::Sync), None) && !g.dirty.is_empty() {
                if g.pause != last_pause {
                    last_pause = g.pause;
                    seen += 1;
                }
                if seen >= k {
                    break;
                }
            }
            drop(g);
            if (!in_sync && t >= until) || t > until + Duration::from_millis(400) {
                break;
            }
        }
        let power = match scenario.fault {
            LogFault::ProcessCrash => false,
            LogFault::PowerLoss | LogFault::FsyncError => true,
        };
        let (lost, sync_errors, io_ops, io_hash) = {
            let mut g = lock(&io);
            let errors = g.fired.sync_errors;
            (g.crashed(power), errors, g.io_ops, g.io_hash)
        };
        if scenario.write_back && !scenario.replicated {
            promise_write_back(&mut sh.borrow_mut(), sim.elapsed(), power);
        }
        {
            let mut s = sh.borrow_mut();
            fired |= match scenario.fault {
                LogFault::ProcessCrash => s.ops > 0,
                LogFault::PowerLoss => lost,
                LogFault::FsyncError => sync_errors > 0,
            };
            let line = format!(
                "crash {} at {:?} after {} ops: lost {lost}, io ops {io_ops} hash {io_hash:016x}",
                if power { "power-loss" } else { "process" },
                sim.elapsed(),
                s.ops
            );
            s.event(line);
            s.phase = Phase::Booting;
        }
        if power {
            sim.crash("log");
        }
        sim.bounce("log");
        cycles += 1;
    }
    let end = {
        let g = lock(&io);
        format!("end: io ops {} hash {:016x}", g.io_ops, g.io_hash)
    };
    sh.borrow_mut().event(end);
    let s = sh.borrow();
    LogOutcome {
        scenario,
        seed,
        violations: s.violations.clone(),
        fired,
        cycles,
        trace: s.trace.clone(),
        lost_within_bound: s.lost_within_bound,
    }
}

/// At a crash of a throughput log at `now`: appends acknowledged at least
/// [`WRITE_BACK_BOUND`] before it are promised across a process crash
/// (the model then requires them); a power loss promises none.
fn promise_write_back(s: &mut Shared, now: Duration, power: bool) {
    let acked = std::mem::take(&mut s.acked_at);
    s.unpromised.clear();
    let mut promised = 0;
    for ((i, term), at) in acked {
        let slot = s.model.log.get_mut(&i).filter(|e| e.term == term);
        let Some(slot) = slot else {
            continue;
        };
        if !power && at + WRITE_BACK_BOUND <= now {
            slot.acked = true;
            promised += 1;
        } else {
            s.unpromised.push((i, term));
        }
    }
    s.event(format!(
        "write-back at crash: {promised} acknowledged appends promised, {} not",
        s.unpromised.len()
    ));
}

fn wal_options() -> WalOptions {
    // Small segments: rolls, seals, purges of whole segments and
    // truncations across segments happen in every run.
    WalOptions {
        segment_bytes: 4 * 1024,
        preallocate: true,
        compression_threshold_bytes: 0,
    }
}

/// The log alone runs the durable preset. Replicated mode runs the
/// balanced one (an append is acknowledged once written to the OS, the log
/// fsynced every 20 ms): there the flush barrier is what keeps a flush of
/// applied state from getting ahead of the durable log.
fn policy(scenario: LogScenario) -> FsyncPolicy {
    if scenario.replicated {
        FsyncPolicy::Interval {
            sync_interval_ms: 20,
        }
    } else if scenario.write_back {
        FsyncPolicy::WriteBack {
            buffer_bytes: WRITE_BACK_BUFFER_BYTES,
            flush_interval_ms: WRITE_BACK_INTERVAL_MS,
        }
    } else {
        FsyncPolicy::Group
    }
}

fn planted(scenario: LogScenario) -> Planted {
    scenario
        .bug
        .map_or(Planted::NONE, |b| Planted::NONE.with(b))
}

/// One boot: recover, check, run the workload.
async fn boot(scenario: LogScenario, sh: Sh, io: Arc<Mutex<SimIo>>, seed: u64) {
    let epoch = sh.borrow().epoch + 1;
    sh.borrow_mut().epoch = epoch;
    lock(&io).arm(false);
    let fs = TurmoilFs::new(io.clone());
    let opened = LogStore::open_planted(
        fs,
        Path::new(DIR),
        wal_options(),
        policy(scenario),
        planted(scenario),
    )
    .await;
    let mut store = match opened {
        Ok((store, _)) => store,
        Err(e) => {
            let mut s = sh.borrow_mut();
            s.violation(format!("boot {epoch}: recovery failed: {e}"));
            s.phase = Phase::Done;
            return;
        }
    };
    let mut log_end = 0;
    match recovered(&store) {
        Ok(r) => {
            log_end = r.entries.last().map(|e| e.0).or(r.purged).unwrap_or(0);
            let mut s = sh.borrow_mut();
            for v in s.model.check(&r) {
                s.violation(format!("boot {epoch}: {v}"));
            }
            let got: std::collections::BTreeSet<(u64, u64)> = r.entries.iter().copied().collect();
            let lost = s.unpromised.iter().filter(|e| !got.contains(e)).count();
            s.lost_within_bound += lost as u64;
            s.event(format!(
                "boot {epoch}: recovered entries {:?}..{:?}, purged {:?}, vote {:?}, committed {:?}",
                r.entries.first(),
                r.entries.last(),
                r.purged,
                r.vote,
                r.committed
            ));
            s.model.reset_to(&r);
        }
        Err(e) => sh.borrow_mut().violation(format!(
            "boot {epoch}: reading the recovered log failed: {e}"
        )),
    }
    if sh.borrow().final_boot || !sh.borrow().violations.is_empty() {
        sh.borrow_mut().phase = Phase::Done;
        return;
    }
    // Replicated mode: the state machine's engine, recovered to its last
    // flush; the log replays what it applied after that.
    let mut db = None;
    let mut applied_to = 0;
    if scenario.replicated {
        let barrier =
            (!planted(scenario).has(NodeBug::FlushBarrierSkipped)).then(|| store.syncer());
        match machine::open(io.clone(), barrier).await {
            Ok(d) => {
                let m = machine::marker(&d).await;
                let mut s = sh.borrow_mut();
                let found = machine::check(&d, m, log_end, &s.applied);
                for v in found {
                    s.violation(format!("boot {epoch}: {v}"));
                }
                s.applied.retain(|&i, _| i <= m);
                s.event(format!("boot {epoch}: engine applied marker {m}"));
                applied_to = m;
                db = Some(d);
            }
            Err(e) => sh
                .borrow_mut()
                .violation(format!("boot {epoch}: the engine failed to recover: {e}")),
        }
        if !sh.borrow().violations.is_empty() {
            sh.borrow_mut().phase = Phase::Done;
            return;
        }
    }
    let applied = AppliedIndex::new();
    if applied_to > 0 {
        applied.set(applied_to);
    }
    let setup = store
        .set_planted(planted(scenario))
        .and_then(|()| store.set_applied_index(applied.clone()));
    if let Err(e) = setup {
        sh.borrow_mut()
            .violation(format!("boot {epoch}: setting up the store failed: {e}"));
    }
    {
        let mut g = lock(&io);
        g.injectors = Injectors {
            sync_error: if scenario.fault == LogFault::FsyncError {
                0.04
            } else {
                0.0
            },
            ..Injectors::default()
        };
        g.arm(true);
    }
    {
        let mut s = sh.borrow_mut();
        s.phase = Phase::Running;
        s.ops = 0;
    }
    let rng = StdRng::seed_from_u64(seed ^ (u64::from(epoch) << 40) ^ 0x0b5);
    let machine = Machine {
        db: db.as_ref(),
        applied: &applied,
        applied_to,
        // Balanced acknowledges what a process crash keeps, not what a
        // power loss keeps; throughput neither (bounded by time instead).
        acks_durable: if scenario.replicated {
            scenario.fault == LogFault::ProcessCrash
        } else {
            !scenario.write_back
        },
        write_back: scenario.write_back && !scenario.replicated,
    };
    if let Err(e) = workload(&mut store, machine, &sh, rng, epoch).await {
        let mut s = sh.borrow_mut();
        s.event(format!("boot {epoch}: the store stopped: {e}"));
        if scenario.fault != LogFault::FsyncError {
            s.violation(format!(
                "boot {epoch}: the store failed without a fault: {e}"
            ));
        }
    }
    // Stay up until the driver crashes the host.
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The recovered log, vote, purge and committed index.
fn recovered(store: &LogStore) -> Result<RecoveredLog, Error> {
    let state = store.log_state()?;
    let entries = store
        .entries(..)?
        .iter()
        .map(|e| (e.log_id.index, e.log_id.leader_id.term))
        .collect();
    Ok(RecoveredLog {
        entries,
        purged: state.last_purged_log_id.map(|l| l.index),
        vote: store.vote()?.map(|v| v.leader_id.term),
        committed: store.committed_log_id()?.map(|l| l.index),
    })
}
