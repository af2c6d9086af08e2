//! Scenarios: one engine on one turmoil host, concurrent clients, a fault
//! kind, and crash/recover cycles, all drawn from one seed.
//!
//! A run boots the host, which recovers the engine (faults disarmed), checks
//! the recovered state against the model and the preset's contract, arms the
//! fault injectors and starts the workload. The driver steps the simulation
//! until the run's crash trigger fires (a random time, or a pause of the
//! engine at a WAL fsync, a table write or the manifest switch), then crashes
//! the host (process crash: `bounce`; power loss: `crash` then `bounce`). The
//! last boot only recovers and checks.

use crate::fs::{Injectors, Latency, SimIo, Tag, TurmoilFs};
use crate::model::{self, Bound, Model, OpRec};
use crate::trace::Trace;
use ballast_storage::fs::IoOp;
use ballast_storage::planted::PlantedBug;
use ballast_storage::{Background, Db, FsyncPolicy, ManualClock, Options, Preset, WriteBatch};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A fault kind: what a scenario does to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The process dies (`bounce`): unsynced data written to the OS survives.
    ProcessCrash,
    /// Power loss (`crash` then `bounce`): everything unsynced is dropped,
    /// un-dir-synced creates and renames are undone.
    PowerLoss,
    /// Power loss on a disk that tears pending writes at 512-byte blocks.
    TornWrite,
    /// Power loss timed on purpose while the engine waits on an fsync with
    /// written but unsynced data.
    LostFsync,
    /// Injected write, fsync and read errors, then power loss.
    IoError,
    /// The disk fills up, then power loss.
    DiskFull,
    /// Reads return flipped bytes, then power loss.
    CorruptRead,
    /// Fsyncs take milliseconds, then power loss.
    SlowDisk,
}

impl FaultKind {
    /// Every fault kind.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::ProcessCrash,
        FaultKind::PowerLoss,
        FaultKind::TornWrite,
        FaultKind::LostFsync,
        FaultKind::IoError,
        FaultKind::DiskFull,
        FaultKind::CorruptRead,
        FaultKind::SlowDisk,
    ];

    /// The kind's name in scenario names.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::ProcessCrash => "process-crash",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::TornWrite => "torn-write",
            FaultKind::LostFsync => "lost-fsync",
            FaultKind::IoError => "io-error",
            FaultKind::DiskFull => "disk-full",
            FaultKind::CorruptRead => "corrupt-read",
            FaultKind::SlowDisk => "slow-disk",
        }
    }

    fn power_loss(self) -> bool {
        self != FaultKind::ProcessCrash
    }

    /// Kinds whose injected errors the engine may report to clients.
    fn errors_expected(self) -> bool {
        matches!(
            self,
            FaultKind::IoError | FaultKind::DiskFull | FaultKind::CorruptRead
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A preset, a fault kind and optionally a planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Durability preset under test.
    pub preset: Preset,
    /// The fault injected.
    pub fault: FaultKind,
    /// A planted engine bug to switch on.
    pub bug: Option<PlantedBug>,
}

impl Scenario {
    /// `{preset}-{fault}`, e.g. `durable-power-loss`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.preset, self.fault)
    }

    /// Parses [`Scenario::name`].
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::all().into_iter().find(|sc| sc.name() == s)
    }

    /// Every preset x fault kind.
    pub fn all() -> Vec<Scenario> {
        let mut v = Vec::new();
        for preset in Preset::ALL {
            for fault in FaultKind::ALL {
                v.push(Scenario {
                    preset,
                    fault,
                    bug: None,
                });
            }
        }
        v
    }

    /// The scenario that must catch `bug`.
    pub fn for_bug(bug: PlantedBug) -> Scenario {
        let fault = match bug {
            PlantedBug::SkipWalFsync => FaultKind::PowerLoss,
            PlantedBug::AckBeforeGroupFsync => FaultKind::LostFsync,
            PlantedBug::SkipSegmentDirSync => FaultKind::PowerLoss,
            PlantedBug::SkipManifestDirSync => FaultKind::PowerLoss,
            PlantedBug::TruncateWalBeforeFlushDurable => FaultKind::PowerLoss,
            PlantedBug::IgnoreCrcMismatch => FaultKind::CorruptRead,
        };
        Scenario {
            preset: Preset::Durable,
            fault,
            bug: Some(bug),
        }
    }
}

/// Size knobs of a run.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Keys per client.
    pub keys: u32,
    /// Operations each client attempts per boot.
    pub ops_per_boot: usize,
    /// Crash/recover cycles per run.
    pub crashes: u32,
    /// Keep every trace line (for comparison and replay).
    pub keep_trace: bool,
    /// Log every trace line through `tracing`.
    pub echo: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            clients: 3,
            keys: 6,
            ops_per_boot: 40,
            crashes: 3,
            keep_trace: false,
            echo: false,
        }
    }
}

/// Where the driver crashes the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// At a random time after the workload starts.
    At(Duration),
    /// During the k-th fsync pause with written, unsynced data.
    SyncWindow(u32),
    /// During the k-th pause of a table write (flush or compaction).
    Table(u32),
    /// During the k-th pause of a manifest switch or edit.
    Manifest(u32),
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario run.
    pub scenario: Scenario,
    /// Its seed.
    pub seed: u64,
    /// Contract violations (empty: the run passed).
    pub violations: Vec<String>,
    /// The scenario's fault actually fired (at least once).
    pub fired: bool,
    /// Crash/recover cycles completed.
    pub cycles: u32,
    /// The event trace.
    pub trace: Trace,
}

impl Outcome {
    /// A command that replays this run.
    pub fn repro(&self) -> String {
        let bug = self
            .scenario
            .bug
            .map(|b| format!(" --bug {}", b.name()))
            .unwrap_or_default();
        format!(
            "cargo run -p ballast-sim --release -- run --scenario {}{bug} --seed {}",
            self.scenario.name(),
            self.seed
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Booting,
    Running,
    Idle,
    Done,
}

struct Shared {
    model: Model,
    trace: Trace,
    violations: Vec<String>,
    epoch: u32,
    phase: Phase,
    final_boot: bool,
    /// Simulated time and kind (power loss?) of the last crash.
    last_crash: Option<(Duration, bool)>,
    /// Fault time bound of the crashed boot.
    crashed_first_fault: Option<Duration>,
    torn_tails: u32,
    started_at: Duration,
    ops_this_boot: u64,
}

impl Shared {
    fn event(&mut self, line: String) {
        self.trace.event(line);
    }
    fn violation(&mut self, v: String) {
        self.trace.event(format!("VIOLATION {v}"));
        self.violations.push(v);
    }
}

type Sh = Rc<RefCell<Shared>>;

const DB_DIR: &str = "/ballast";
const KIB: u64 = 1024;

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1e3)
}

/// The engine options a scenario runs with: small memtables and tables so
/// that flushes and compactions happen under the workload.
pub fn options(preset: Preset, io: Arc<Mutex<SimIo>>) -> Options {
    let mut o = Options::preset(preset);
    o.background = Background::Tasks;
    o.fs = TurmoilFs::new(io);
    o.clock = ManualClock::new(1_700_000_000_000);
    o.memtable_bytes = 64 * KIB;
    o.wal_segment_bytes = 64 * KIB;
    o.table_target_bytes = 64 * KIB;
    o.level_base_bytes = 128 * KIB;
    o.l0_compaction_trigger = 2;
    o.l0_stop_writes_trigger = 8;
    o.block_bytes = 1024;
    // No cache: every table read reaches the simulated disk, and hashing
    // inside the cache cannot influence which reads happen.
    o.block_cache_bytes = 0;
    o.group_commit_bytes_max = 64 * KIB;
    o.batch_bytes_max = 64 * KIB;
    if preset == Preset::Throughput {
        o.fsync = FsyncPolicy::WriteBack {
            buffer_bytes: 16 * KIB,
            flush_interval_ms: 10,
        };
    }
    o
}

fn latency(fault: FaultKind) -> Latency {
    if fault == FaultKind::SlowDisk {
        Latency::SLOW
    } else {
        Latency::NORMAL
    }
}

fn injectors(fault: FaultKind, rng: &mut StdRng) -> Injectors {
    match fault {
        FaultKind::IoError => Injectors {
            write_error: 0.01,
            sync_error: 0.03,
            read_error: 0.005,
            ..Injectors::default()
        },
        FaultKind::DiskFull => Injectors {
            space_bytes: Some(rng.gen_range(16..160) * KIB),
            ..Injectors::default()
        },
        FaultKind::CorruptRead => Injectors {
            corrupt_read: 0.02,
            ..Injectors::default()
        },
        _ => Injectors::default(),
    }
}

/// Runs one seed of `scenario`.
pub fn run(scenario: Scenario, seed: u64, cfg: RunConfig) -> Outcome {
    ballast_storage::planted::set(scenario.bug);
    let out = run_inner(scenario, seed, cfg);
    ballast_storage::planted::set(None);
    out
}

fn run_inner(scenario: Scenario, seed: u64, cfg: RunConfig) -> Outcome {
    let mut drng = StdRng::seed_from_u64(seed ^ 0xd41e_0000_0000_0003);
    let io = SimIo::new(seed, latency(scenario.fault), Injectors::default());
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .tick_duration(Duration::from_millis(1))
        .simulation_duration(Duration::from_secs(3600));
    if scenario.fault == FaultKind::TornWrite {
        builder.fs().block_size(512);
    }
    let mut sim = builder.build();
    let sh: Sh = Rc::new(RefCell::new(Shared {
        model: Model::new(cfg.clients, cfg.keys),
        trace: Trace::new(cfg.keep_trace, cfg.echo),
        violations: Vec::new(),
        epoch: 0,
        phase: Phase::Booting,
        final_boot: false,
        last_crash: None,
        crashed_first_fault: None,
        torn_tails: 0,
        started_at: Duration::ZERO,
        ops_this_boot: 0,
    }));
    sh.borrow_mut().event(format!(
        "run {} seed {seed} bug {:?}",
        scenario.name(),
        scenario.bug.map(|b| b.name())
    ));
    {
        let sh = sh.clone();
        let io = io.clone();
        sim.host("node", move || {
            let sh = sh.clone();
            let io = io.clone();
            async move {
                boot(scenario, cfg, sh, io, seed).await;
                Ok(())
            }
        });
    }

    let mut fired = false;
    let mut cycles = 0;
    let phase = |sh: &Sh| sh.borrow().phase;
    for cycle in 0..=cfg.crashes {
        if cycle == cfg.crashes {
            sh.borrow_mut().final_boot = true;
        }
        // Wait for recovery and the check to finish.
        let mut steps = 0;
        while phase(&sh) == Phase::Booting {
            if let Err(e) = sim.step() {
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
        if phase(&sh) == Phase::Done || cycle == cfg.crashes || !sh.borrow().violations.is_empty() {
            break;
        }
        // Choose and await the crash trigger.
        let trigger = if scenario.fault == FaultKind::LostFsync {
            Trigger::SyncWindow(drng.gen_range(1..6))
        } else {
            match drng.gen_range(0..4) {
                0 => Trigger::At(Duration::from_micros(drng.gen_range(500..40_000))),
                1 => Trigger::SyncWindow(drng.gen_range(1..8)),
                2 => Trigger::Table(drng.gen_range(1..4)),
                _ => Trigger::Manifest(drng.gen_range(1..3)),
            }
        };
        let start = sim.elapsed();
        let mut seen = 0u32;
        let mut last_pause = None;
        let mut how = "timeout";
        let mut idle_since = None;
        loop {
            if let Err(e) = sim.step() {
                sh.borrow_mut().violation(format!("host failed: {e}"));
                break;
            }
            let t = sim.elapsed();
            let io = io.lock().unwrap_or_else(|e| e.into_inner());
            let hit = match trigger {
                Trigger::At(d) => t >= start + d,
                _ => {
                    let (op, tag) = match trigger {
                        Trigger::SyncWindow(_) => (Some(IoOp::Sync), None),
                        Trigger::Table(_) => (None, Some(Tag::Table)),
                        _ => (None, None),
                    };
                    let in_window = io.paused_at(t, op, tag)
                        && match trigger {
                            Trigger::SyncWindow(_) => !io.dirty.is_empty(),
                            Trigger::Manifest(_) => io
                                .pause
                                .is_some_and(|p| matches!(p.tag, Tag::Manifest | Tag::Current)),
                            _ => true,
                        };
                    let fresh = in_window && io.pause != last_pause;
                    if fresh {
                        last_pause = io.pause;
                        seen += 1;
                    }
                    let k = match trigger {
                        Trigger::SyncWindow(k) | Trigger::Table(k) | Trigger::Manifest(k) => k,
                        Trigger::At(_) => 0,
                    };
                    fresh && seen >= k
                }
            };
            if hit {
                how = "trigger";
                break;
            }
            if phase(&sh) == Phase::Idle && idle_since.is_none() {
                idle_since = Some(t);
            }
            // The workload is over: let timers run a little, then crash.
            let idle_done = idle_since.is_some_and(|i| t >= i + Duration::from_millis(8));
            if idle_done || t > start + Duration::from_millis(400) || phase(&sh) == Phase::Done {
                break;
            }
        }
        // Crash.
        let t = sim.elapsed();
        let (dirty, in_sync_pause, first_fault, fault_counts) = {
            let io = io.lock().unwrap_or_else(|e| e.into_inner());
            (
                io.dirty.len(),
                io.paused_at(t, Some(IoOp::Sync), None),
                io.first_fault,
                io.fired,
            )
        };
        let power = scenario.fault.power_loss();
        {
            let mut s = sh.borrow_mut();
            let ops = s.ops_this_boot;
            fired |= match scenario.fault {
                FaultKind::ProcessCrash => ops > 0,
                FaultKind::PowerLoss => dirty > 0,
                FaultKind::TornWrite => false, // counted from recovery reports
                FaultKind::LostFsync => how == "trigger" && in_sync_pause && dirty > 0,
                FaultKind::IoError => {
                    fault_counts.write_errors + fault_counts.sync_errors + fault_counts.read_errors
                        > 0
                }
                FaultKind::DiskFull => fault_counts.disk_full > 0,
                FaultKind::CorruptRead => fault_counts.corrupt_reads > 0,
                FaultKind::SlowDisk => fault_counts.slow_pauses > 0 && dirty > 0,
            };
            s.event(format!(
                "crash {} at {} by {how} ({trigger:?}) after {} ops: dirty files {dirty}, in fsync pause {in_sync_pause}, faults {fault_counts:?}",
                if power { "power-loss" } else { "process" },
                ms(t),
                ops
            ));
            s.last_crash = Some((t, power));
            s.crashed_first_fault = first_fault;
            s.phase = Phase::Booting;
        }
        if power {
            sim.crash("node");
        }
        sim.bounce("node");
        cycles += 1;
    }
    let s = sh.borrow();
    if scenario.fault == FaultKind::TornWrite {
        fired = s.torn_tails > 0;
    }
    Outcome {
        scenario,
        seed,
        violations: s.violations.clone(),
        fired,
        cycles,
        trace: s.trace.clone(),
    }
}

/// One boot of the node: recover, check, run the workload.
async fn boot(scenario: Scenario, cfg: RunConfig, sh: Sh, io: Arc<Mutex<SimIo>>, seed: u64) {
    let epoch = {
        let mut s = sh.borrow_mut();
        s.epoch += 1;
        s.epoch
    };
    io.lock().unwrap_or_else(|e| e.into_inner()).arm(false);
    let opts = options(scenario.preset, io.clone());
    let db = match Db::open(DB_DIR, opts).await {
        Ok(db) => db,
        Err(e) => {
            let mut s = sh.borrow_mut();
            s.violation(format!("boot {epoch}: recovery failed: {e}"));
            s.phase = Phase::Done;
            return;
        }
    };
    {
        let r = db.recovery_report();
        let mut s = sh.borrow_mut();
        if r.truncated_tail.is_some() {
            s.torn_tails += 1;
        }
        s.event(format!(
            "boot {epoch} at {}: recovered {} WAL records, {} entries, torn tail {:?}",
            ms(now()),
            r.wal_records,
            r.entries,
            r.truncated_tail
        ));
    }
    verify(&db, scenario, &sh, epoch);
    if sh.borrow().final_boot || !sh.borrow().violations.is_empty() {
        let r = db.close().await;
        let mut s = sh.borrow_mut();
        s.event(format!(
            "final close: {:?}",
            r.as_ref().map_err(|e| e.to_string())
        ));
        s.phase = Phase::Done;
        return;
    }
    {
        let mut rng = StdRng::seed_from_u64(seed ^ u64::from(epoch).wrapping_mul(0x9e37_79b9));
        let mut io = io.lock().unwrap_or_else(|e| e.into_inner());
        io.injectors = injectors(scenario.fault, &mut rng);
        io.arm(true);
    }
    {
        let mut s = sh.borrow_mut();
        s.phase = Phase::Running;
        s.started_at = now();
        s.ops_this_boot = 0;
    }
    let db = Rc::new(db);
    let mut tasks = Vec::new();
    for c in 0..cfg.clients {
        let rng = StdRng::seed_from_u64(
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ (u64::from(epoch) << 32) ^ c as u64,
        );
        tasks.push(tokio::task::spawn_local(client(
            c,
            db.clone(),
            sh.clone(),
            epoch,
            rng,
            cfg,
            scenario.fault,
        )));
    }
    let admin_rng = StdRng::seed_from_u64(seed ^ (u64::from(epoch) << 40) ^ 0xad);
    tasks.push(tokio::task::spawn_local(admin(
        db.clone(),
        sh.clone(),
        admin_rng,
        scenario.fault,
    )));
    for t in tasks {
        let _ = t.await;
    }
    sh.borrow_mut().phase = Phase::Idle;
    // Stay up (timers keep syncing) until the driver crashes the node.
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Checks the recovered engine against the model and the contract, then
/// continues the model from the recovered cut.
fn verify(db: &Db, scenario: Scenario, sh: &Sh, epoch: u32) {
    let mut s = sh.borrow_mut();
    let clients = s.model.clients.len();
    let mut cut = vec![0usize; clients];
    for (c, m) in cut.iter_mut().enumerate() {
        match db.get(&model::marker_key(c)) {
            Ok(v) => match s.model.cut_of_marker(c, v.as_deref()) {
                Ok(n) => *m = n,
                Err(v) => {
                    s.violation(v);
                    return;
                }
            },
            Err(e) => {
                s.violation(format!(
                    "boot {epoch}: reading client {c}'s marker failed: {e}"
                ));
                return;
            }
        }
    }
    let expected = s.model.expected_db(&cut);
    let mut actual = BTreeMap::new();
    match db.scan::<&[u8]>(..) {
        Ok(it) => {
            for kv in it {
                match kv {
                    Ok((k, v)) => {
                        actual.insert(k.to_vec(), v);
                    }
                    Err(e) => {
                        s.violation(format!("boot {epoch}: scan after recovery failed: {e}"));
                        return;
                    }
                }
            }
        }
        Err(e) => {
            s.violation(format!("boot {epoch}: scan after recovery failed: {e}"));
            return;
        }
    }
    if actual != expected {
        let keys: std::collections::BTreeSet<&Vec<u8>> =
            actual.keys().chain(expected.keys()).collect();
        for k in keys {
            let (a, e) = (actual.get(k), expected.get(k));
            if a != e {
                let show = |v: Option<&bytes::Bytes>| {
                    v.map_or("<absent>".to_string(), |v| {
                        String::from_utf8_lossy(&v[..v.len().min(24)]).into_owned()
                    })
                };
                s.violation(format!(
                    "boot {epoch}: recovered state is not the model's state after cut {cut:?}: key {} is {} but should be {}",
                    String::from_utf8_lossy(k),
                    show(a),
                    show(e)
                ));
                return;
            }
        }
    }
    for (k, v) in &expected {
        match db.get(k) {
            Ok(Some(got)) if got == v => {}
            other => {
                s.violation(format!(
                    "boot {epoch}: get({}) after recovery disagrees with scan: {:?}",
                    String::from_utf8_lossy(k),
                    other.map(|o| o.map(|b| b.len()))
                ));
                return;
            }
        }
    }
    let bound = match s.last_crash {
        None => Bound { acked_by: None },
        Some((crash, power)) => {
            let window = match (scenario.preset, power) {
                (Preset::Durable, _) => Some(Duration::ZERO),
                (Preset::Balanced, false) => Some(Duration::ZERO),
                (Preset::Balanced, true) => {
                    let interval = Duration::from_millis(5);
                    // One interval, one fsync, and a tick of timer slack.
                    Some(interval + latency(scenario.fault).max_sync() + Duration::from_millis(2))
                }
                (Preset::Throughput, _) => None,
            };
            // After a failed fsync or write the engine stops; the relaxed
            // presets promise nothing for writes after the first fault.
            let end = match (scenario.preset, s.crashed_first_fault) {
                (Preset::Durable, _) | (_, None) => crash,
                (_, Some(f)) => f.min(crash),
            };
            Bound {
                acked_by: window.and_then(|w| end.checked_sub(w)),
            }
        }
    };
    let (found, violations) = s.model.check_cut(&cut, epoch.saturating_sub(1), bound);
    let lost: usize = found.iter().map(|r| r.lost_acked).sum();
    s.event(format!(
        "boot {epoch}: verified cut {cut:?} ({} keys), acknowledged-but-lost {lost}, bound {:?}",
        expected.len(),
        bound.acked_by.map(ms)
    ));
    for v in violations {
        s.violation(format!("boot {epoch}: {v}"));
    }
    s.model.truncate(&cut);
}

/// One client: a sequence of reads and write batches on its own keys.
async fn client(
    c: usize,
    db: Rc<Db>,
    sh: Sh,
    epoch: u32,
    mut rng: StdRng,
    cfg: RunConfig,
    fault: FaultKind,
) {
    for _ in 0..cfg.ops_per_boot {
        if rng.gen_bool(0.3) {
            tokio::time::sleep(Duration::from_micros(rng.gen_range(100..3_000))).await;
        }
        let roll = rng.gen_range(0..100);
        if roll < 20 {
            let k = rng.gen_range(0..cfg.keys);
            let res = db.get(&model::key(c, k));
            let mut s = sh.borrow_mut();
            let len = s.model.clients[c].len();
            let expected = s.model.state_after(c, len).get(&k).cloned();
            match res {
                Ok(v) if v == expected => {
                    s.event(format!("c{c} get k{k} -> {:?}", v.map(|v| v.len())));
                }
                Ok(v) => s.violation(format!(
                    "c{c} get k{k} returned {:?} but the model holds {:?}",
                    v.map(|v| String::from_utf8_lossy(&v[..v.len().min(24)]).into_owned()),
                    expected.map(|v| String::from_utf8_lossy(&v[..v.len().min(24)]).into_owned())
                )),
                Err(e) => {
                    s.event(format!("c{c} get k{k} -> error {e}"));
                    if !fault.errors_expected() {
                        s.violation(format!(
                            "c{c} get k{k} failed without an injected fault: {e}"
                        ));
                    }
                }
            }
            continue;
        }
        // A write: put (one key), delete (one key) or a batch of several.
        let nkeys = if roll < 70 { 1 } else { rng.gen_range(2..=4) };
        let (n, writes) = {
            let s = sh.borrow();
            let n = s.model.clients[c].len() as u64 + 1;
            let mut writes = Vec::new();
            for _ in 0..nkeys {
                let k = rng.gen_range(0..cfg.keys);
                let delete = (55..70).contains(&roll) || (nkeys > 1 && rng.gen_bool(0.2));
                let v = (!delete).then(|| model::value(c, epoch, n, k, rng.gen_range(64..1_600)));
                writes.retain(|(kk, _)| *kk != k);
                writes.push((k, v));
            }
            (n, writes)
        };
        let mut batch = WriteBatch::new();
        for (k, v) in &writes {
            match v {
                Some(v) => batch.put(&model::key(c, *k), v),
                None => batch.delete(&model::key(c, *k)),
            };
        }
        batch.put(&model::marker_key(c), &model::marker_value(epoch, n));
        {
            let mut s = sh.borrow_mut();
            s.ops_this_boot += 1;
            s.model.clients[c].push(OpRec {
                n,
                epoch,
                writes: writes.clone(),
                invoked: now(),
                acked: None,
                failed: false,
            });
        }
        let res = db.write(batch).await;
        let mut s = sh.borrow_mut();
        let t = now();
        let Some(op) = s.model.clients[c].last_mut() else {
            return;
        };
        match res {
            Ok(()) => {
                op.acked = Some(t);
                s.event(format!(
                    "c{c} op n{n} ({} keys) acked at {}",
                    writes.len(),
                    ms(t)
                ));
            }
            Err(e) => {
                op.failed = true;
                s.event(format!("c{c} op n{n} failed at {}: {e}", ms(t)));
                if !fault.errors_expected() {
                    s.violation(format!("c{c} write failed without an injected fault: {e}"));
                }
                // The outcome is unknown; this client stops for this boot.
                return;
            }
        }
    }
}

/// Flushes and compactions at random moments under the clients.
async fn admin(db: Rc<Db>, sh: Sh, mut rng: StdRng, fault: FaultKind) {
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_micros(rng.gen_range(2_000..15_000))).await;
        let compact = rng.gen_bool(0.4);
        let res = if compact {
            db.compact().await
        } else {
            db.flush().await
        };
        let mut s = sh.borrow_mut();
        let what = if compact { "compact" } else { "flush" };
        match res {
            Ok(()) => s.event(format!("admin {what} done at {}", ms(now()))),
            Err(e) => {
                s.event(format!("admin {what} failed: {e}"));
                if !fault.errors_expected() {
                    s.violation(format!("{what} failed without an injected fault: {e}"));
                }
                return;
            }
        }
    }
}
