//! Engine scenarios: one engine on one turmoil host, concurrent clients, a fault
//! kind, and crash/recover cycles, all drawn from one seed.
//!
//! A run boots the host, which recovers the engine (faults disarmed), checks
//! the recovered state against the model and the preset's contract, arms the
//! fault injectors and starts the workload. The driver steps the simulation
//! until the run's crash trigger fires (a random time, or a pause of the
//! engine at a WAL fsync, a table write or the manifest switch), then crashes
//! the host (process crash: `bounce`; power loss: `crash` then `bounce`). The
//! last boot only recovers and checks.

mod checkpoint;
mod shared;
mod verify;
mod workload;

pub use self::shared::options;
use self::shared::*;
use self::verify::verify;
use self::workload::{admin, bulk, client};
use crate::fs::{Injectors, SimIo, Tag, TurmoilFs};
use crate::model::Model;
use crate::scenario::{FaultKind, Outcome, RunConfig, Scenario};
use crate::trace::Trace;
use ballast_storage::fs::IoOp;
use ballast_storage::{Db, Preset};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the driver crashes the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// At a random time after the workload starts.
    At(Duration),
    /// During the k-th fsync pause with written, unsynced data.
    SyncWindow(u32),
    /// During the k-th fsync pause of a WAL segment with written, unsynced
    /// data (the one a writer waits on; tables and the manifest fsync far
    /// more often in the deep tree's runs, and would take the crash).
    WalSyncWindow(u32),
    /// During the k-th pause of a table write (flush or compaction).
    Table(u32),
    /// During the k-th pause of a manifest switch or edit.
    Manifest(u32),
}

fn injectors(fault: FaultKind, rng: &mut StdRng) -> Injectors {
    match fault {
        FaultKind::IoError => Injectors {
            write_error: 0.01,
            sync_error: 0.03,
            read_error: 0.005,
            meta_error: 0.1,
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
        FaultKind::LatentSector => Injectors {
            latent_read: 0.02,
            ..Injectors::default()
        },
        FaultKind::MisdirectedWrite => Injectors {
            misdirected_write: 0.01,
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
    if scenario.fault.torn_blocks() {
        builder.fs().block_size(512);
    }
    let mut sim = builder.build();
    let sh: Sh = Rc::new(RefCell::new(Shared {
        // The bulk client is the last one.
        model: Model::new(cfg.clients + 1, cfg.keys),
        trace: Trace::new(cfg.keep_trace, cfg.echo),
        violations: Vec::new(),
        epoch: 0,
        phase: Phase::Booting,
        final_boot: false,
        last_crash: None,
        recovery_crashes: Vec::new(),
        opened: false,
        crashed_first_fault: None,
        torn_tails: 0,
        started_at: Duration::ZERO,
        ops_this_boot: 0,
        io: io.clone(),
        tree: Default::default(),
        boot_tree: Default::default(),
        boot_base: Default::default(),
        tree_faulted: Default::default(),
        bulk_next: cfg.bulk_keys,
        checkpoint: None,
        checkpoints_checked: 0,
        installs: 0,
        refused: false,
        wal_damage_checked: 0,
        wal_damaged: false,
        wal_cut_after_damage: false,
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
    let mut process_crash_with_ops = false;
    let mut crashed_in_recovery = false;
    let mut cycles = 0;
    let phase = |sh: &Sh| sh.borrow().phase;
    for cycle in 0..=cfg.crashes {
        if cycle == cfg.crashes {
            sh.borrow_mut().final_boot = true;
        }
        // Wait for recovery and the check to finish, crashing the recovery
        // itself where the kind says: at the first step after the k-th I/O
        // pause since the crash, if `Db::open` has not returned by then
        // (the host then sits at one of its await points).
        let mut recovery_crashes = match scenario.fault {
            FaultKind::RecoveryCrash => drng.gen_range(1..=2),
            FaultKind::Mixed => u32::from(drng.gen_bool(0.3)),
            _ => 0,
        };
        let mut target = None;
        let mut steps = 0;
        while phase(&sh) == Phase::Booting {
            if recovery_crashes > 0 && target.is_none() {
                let pauses = io.lock().unwrap_or_else(|e| e.into_inner()).pauses;
                target = Some(pauses + drng.gen_range(1..=3));
            }
            if let Err(e) = crate::step_catching_panics(&mut sim) {
                sh.borrow_mut().violation(format!("host failed: {e}"));
                break;
            }
            if let Some(k) = target {
                let t = sim.elapsed();
                let in_open = !sh.borrow().opened;
                let mut g = io.lock().unwrap_or_else(|e| e.into_inner());
                if !in_open {
                    // Recovery finished before the k-th pause: no crash.
                    recovery_crashes = 0;
                    target = None;
                } else if g.pauses >= k {
                    let power = drng.gen_bool(0.5);
                    let pause = g.pause;
                    let lost = g.crashed(power);
                    let (io_ops, io_hash) = (g.io_ops, g.io_hash);
                    drop(g);
                    crashed_in_recovery = true;
                    {
                        let mut s = sh.borrow_mut();
                        s.event(format!(
                            "crash {} in recovery at {} (pause {k}: {pause:?}), lost {lost}, io ops {io_ops} hash {io_hash:016x}",
                            if power { "power-loss" } else { "process" },
                            ms(t)
                        ));
                        s.recovery_crashes.push((t, power));
                    }
                    sh.borrow_mut().end_boot();
                    if power {
                        sim.crash("node");
                    }
                    sim.bounce("node");
                    recovery_crashes -= 1;
                    target = None;
                    cycles += 1;
                }
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
            let k = drng.gen_range(1..6);
            if scenario.preset == Preset::Throughput {
                // No writer waits on a WAL fsync there: any fsync counts.
                Trigger::SyncWindow(k)
            } else {
                Trigger::WalSyncWindow(k)
            }
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
            if let Err(e) = crate::step_catching_panics(&mut sim) {
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
                        Trigger::WalSyncWindow(_) => (Some(IoOp::Sync), Some(Tag::Wal)),
                        Trigger::Table(_) => (None, Some(Tag::Table)),
                        _ => (None, None),
                    };
                    let in_window = io.paused_at(t, op, tag)
                        && match trigger {
                            Trigger::SyncWindow(_) | Trigger::WalSyncWindow(_) => {
                                !io.dirty.is_empty()
                            }
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
                        Trigger::SyncWindow(k)
                        | Trigger::WalSyncWindow(k)
                        | Trigger::Table(k)
                        | Trigger::Manifest(k) => k,
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
        let (dirty, in_sync_pause, in_wal_sync_pause, first_fault, fault_counts) = {
            let io = io.lock().unwrap_or_else(|e| e.into_inner());
            (
                io.dirty.len(),
                io.paused_at(t, Some(IoOp::Sync), None),
                io.paused_at(t, Some(IoOp::Sync), Some(Tag::Wal)),
                io.first_fault,
                io.fired,
            )
        };
        let power = scenario.fault.power_loss(cycle, || drng.gen_bool(0.5));
        // Whether the power loss dropped anything that existed at this
        // moment (unsynced data or directory entries); the seam resets its
        // record of both at every power loss.
        let (lost, io_ops, io_hash) = {
            let mut g = io.lock().unwrap_or_else(|e| e.into_inner());
            (g.crashed(power), g.io_ops, g.io_hash)
        };
        {
            let mut s = sh.borrow_mut();
            let ops = s.ops_this_boot;
            fired |= match scenario.fault {
                FaultKind::ProcessCrash => ops > 0,
                FaultKind::RecoveryCrash => crashed_in_recovery,
                // A power loss with unsynced data after a process crash that
                // hit a boot with writes.
                FaultKind::Mixed => {
                    process_crash_with_ops |= !power && ops > 0;
                    power && process_crash_with_ops && lost
                }
                FaultKind::PowerLoss => lost,
                FaultKind::TornWrite => false, // counted from recovery reports
                // A WAL fsync a writer waits on (throughput: no writer waits
                // on one, so any fsync of unsynced data), and the crash
                // dropped something.
                FaultKind::LostFsync => {
                    let window = if scenario.preset == Preset::Throughput {
                        in_sync_pause
                    } else {
                        in_wal_sync_pause
                    };
                    how == "trigger" && window && lost
                }
                FaultKind::IoError => {
                    fault_counts.write_errors
                        + fault_counts.sync_errors
                        + fault_counts.read_errors
                        + fault_counts.meta_errors
                        > 0
                }
                FaultKind::DiskFull => fault_counts.disk_full > 0,
                FaultKind::CorruptRead => fault_counts.corrupt_reads > 0,
                // Slow fsyncs a writer waited on (throughput: no writer waits
                // on a WAL fsync, flushes wait on table and manifest ones),
                // and a crash that lost data.
                FaultKind::SlowDisk => {
                    let slow = if scenario.preset == Preset::Throughput {
                        fault_counts.slow_dirty_syncs
                    } else {
                        fault_counts.slow_wal_syncs
                    };
                    slow > 0 && lost
                }
                // Counted from the disk at the end of the run: the damage
                // may come after the last crash (rot) or end the run.
                FaultKind::BitRot | FaultKind::LatentSector | FaultKind::MisdirectedWrite => false,
            };
            s.event(format!(
                "crash {} at {} by {how} ({trigger:?}) after {} ops: dirty files {dirty}, in fsync pause {in_sync_pause}, lost {lost}, io ops {io_ops} hash {io_hash:016x}, faults {fault_counts:?}",
                if power { "power-loss" } else { "process" },
                ms(t),
                ops
            ));
            s.last_crash = Some((t, power));
            s.crashed_first_fault = first_fault;
            s.phase = Phase::Booting;
            s.opened = false;
        }
        sh.borrow_mut().end_boot();
        if power {
            sim.crash("node");
        }
        sim.bounce("node");
        cycles += 1;
    }
    sh.borrow_mut().end_boot();
    {
        // Every file operation and its outcome, in the trace hash.
        let g = io.lock().unwrap_or_else(|e| e.into_inner());
        let line = format!("end: io ops {} hash {:016x}", g.io_ops, g.io_hash);
        drop(g);
        sh.borrow_mut().event(line);
    }
    let at_rest = io.lock().unwrap_or_else(|e| e.into_inner()).fired;
    let s = sh.borrow();
    match scenario.fault {
        FaultKind::TornWrite => fired = s.torn_tails > 0,
        FaultKind::BitRot => fired = at_rest.rotted_files > 0,
        FaultKind::LatentSector => fired = at_rest.latent_read_errors > 0,
        FaultKind::MisdirectedWrite => fired = at_rest.misdirected_writes > 0,
        _ => {}
    }
    Outcome {
        scenario,
        seed,
        violations: s.violations.clone(),
        fired,
        cycles,
        trace: s.trace.clone(),
        tree: s.tree,
        tree_faulted: s.tree_faulted,
        checkpoints: s.checkpoints_checked,
        installs: s.installs,
        refused: s.refused,
    }
}

/// One boot of the node: recover, check, run the workload.
async fn boot(scenario: Scenario, cfg: RunConfig, sh: Sh, io: Arc<Mutex<SimIo>>, seed: u64) {
    // A boot crashed inside `Db::open` ran no operations, so only an open
    // that finishes starts a new epoch.
    let epoch = sh.borrow().epoch + 1;
    // Under io-error, half the recoveries run with errors injected (reads,
    // writes, fsyncs, metadata). Such a recovery may fail, with an error;
    // the disk is then "repaired" and the open retried once, and that open
    // must recover everything the contract promises: a failed recovery
    // must not have cut, dropped or half-written anything.
    let mut recovery_errors = scenario.fault == FaultKind::IoError
        && StdRng::seed_from_u64(seed ^ (u64::from(epoch) << 48) ^ 0x7ec0).gen_bool(0.5);
    {
        let mut g = io.lock().unwrap_or_else(|e| e.into_inner());
        g.arm(false);
        if recovery_errors {
            g.injectors = Injectors {
                write_error: 0.02,
                sync_error: 0.05,
                read_error: 0.01,
                meta_error: 0.1,
                ..Injectors::default()
            };
            g.arm(true);
        }
    }
    // Damage at rest, found by the recovery that follows the crash.
    let dirs = [Path::new(DB_DIR), &Path::new(DB_DIR).join("wal")];
    if sh.borrow().last_crash.is_some() {
        let damage = match scenario.fault {
            FaultKind::BitRot => Some(("bit rot", crate::fs::rot_at_rest(&io, &dirs))),
            FaultKind::LatentSector => {
                Some(("bad sector", crate::fs::bad_sector_at_rest(&io, &dirs)))
            }
            _ => None,
        };
        if let Some((what, r)) = damage {
            sh.borrow_mut()
                .event(format!("boot {epoch}: {what} at rest: {r:?}"));
        }
    }
    let mut repaired = false;
    let db = loop {
        let opts = options(scenario.preset, io.clone());
        // A failed WAL fsync of an earlier attempt belongs to an engine
        // that is gone; one in this attempt must stop this engine.
        io.lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_wal_sync_error = None;
        let res = Db::open(DB_DIR, opts).await;
        let faults = {
            let mut g = io.lock().unwrap_or_else(|e| e.into_inner());
            let f = g.first_fault.is_some();
            g.arm(false);
            f
        };
        match res {
            Ok(db) => break db,
            Err(e) if recovery_errors && faults => {
                sh.borrow_mut().event(format!(
                    "boot {epoch}: recovery failed under injected errors ({e}); retrying on a repaired disk"
                ));
                recovery_errors = false;
            }
            Err(e) if scenario.fault.at_rest() => {
                match refusal(scenario, &io, &sh, epoch, &e, &mut repaired) {
                    Refusal::Retry => {}
                    Refusal::Accepted | Refusal::Violation => {
                        sh.borrow_mut().phase = Phase::Done;
                        return;
                    }
                }
            }
            Err(e) => {
                let mut s = sh.borrow_mut();
                s.violation(format!("boot {epoch}: recovery failed: {e}"));
                s.phase = Phase::Done;
                return;
            }
        }
    };
    {
        let mut s = sh.borrow_mut();
        s.epoch = epoch;
        s.opened = true;
    }
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
    {
        // Damage to the WAL since the last check (a misdirected write, or
        // rot the recovery cut as a torn tail) may have taken acknowledged
        // records with it: a single copy cannot tell a lost last record
        // from one never written, so that recovery is held to a prefix.
        let r = db.recovery_report();
        let damage = io
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fired
            .wal_damage;
        let mut s = sh.borrow_mut();
        let new_damage = damage > s.wal_damage_checked;
        s.wal_damage_checked = damage;
        s.wal_damaged = new_damage
            && (scenario.fault == FaultKind::MisdirectedWrite || r.truncated_tail.is_some());
        s.wal_cut_after_damage = new_damage && r.truncated_tail.is_some();
        if s.wal_cut_after_damage {
            s.event(format!(
                "boot {epoch}: the WAL was damaged at rest and recovery cut it as a torn tail ({:?}): held to a prefix",
                r.truncated_tail
            ));
        }
    }
    loop {
        match verify(&db, scenario, &sh, epoch) {
            Ok(()) => break,
            Err(e) if scenario.fault.at_rest() => {
                match refusal(scenario, &io, &sh, epoch, &e, &mut repaired) {
                    Refusal::Retry => {}
                    Refusal::Accepted | Refusal::Violation => {
                        let _ = db.close().await;
                        sh.borrow_mut().phase = Phase::Done;
                        return;
                    }
                }
            }
            Err(e) => {
                sh.borrow_mut()
                    .violation(format!("boot {epoch}: reading after recovery failed: {e}"));
                break;
            }
        }
    }
    sh.borrow_mut().note_tree(&db);
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
    let db = Rc::new(db);
    let bulk_rng =
        |preload: u64| StdRng::seed_from_u64(seed ^ (u64::from(epoch) << 36) ^ 0xb01c ^ preload);
    if sh.borrow().last_crash.is_none() {
        let fs = TurmoilFs::new(io.clone());
        if let Err(e) = checkpoint::prepare(&*fs) {
            sh.borrow_mut().violation(format!(
                "boot {epoch}: making {} failed without faults: {e}",
                checkpoint::CP_DIR
            ));
        }
        // The first boot builds the deep tree every run starts from.
        bulk(
            db.clone(),
            sh.clone(),
            epoch,
            bulk_rng(1),
            cfg,
            scenario.fault,
            true,
        )
        .await;
        // Every level down to its target before the faults start: the
        // tree every run starts from is deep whatever the timing.
        let compacted = db.compact().await;
        let mut s = sh.borrow_mut();
        s.note_tree(&db);
        s.event(format!(
            "boot {epoch}: bulk preload done at {}, compacted {:?}",
            ms(now()),
            compacted.as_ref().map_err(|e| e.to_string())
        ));
        if let Err(e) = compacted {
            s.violation(format!(
                "boot {epoch}: compaction without faults failed: {e}"
            ));
        }
    }
    // Now and then a later boot starts from the last good checkpoint:
    // installed (faults disarmed), it must read as the checkpoint's cut,
    // and survive the crashes that follow like any acknowledged write.
    // (Not under the at-rest kinds: damage to the shared tables would
    // make the install refuse, which their own checks cover.)
    let install = StdRng::seed_from_u64(seed ^ (u64::from(epoch) << 20) ^ 0x1457).gen_bool(0.4);
    if install && !scenario.fault.at_rest() && sh.borrow().last_crash.is_some() {
        checkpoint::install_saved(&db, &sh, scenario.fault, epoch).await;
    }
    {
        let mut rng = StdRng::seed_from_u64(seed ^ u64::from(epoch).wrapping_mul(0x9e37_79b9));
        let mut io = io.lock().unwrap_or_else(|e| e.into_inner());
        io.injectors = injectors(scenario.fault, &mut rng);
        io.arm(true);
    }
    {
        let mut s = sh.borrow_mut();
        s.start_counting(&db);
        s.phase = Phase::Running;
        s.started_at = now();
        s.ops_this_boot = 0;
    }
    let mut tasks = Vec::new();
    tasks.push(tokio::task::spawn_local(bulk(
        db.clone(),
        sh.clone(),
        epoch,
        bulk_rng(0),
        cfg,
        scenario.fault,
        false,
    )));
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
        scenario,
        epoch,
    )));
    for t in tasks {
        let _ = t.await;
    }
    {
        let mut s = sh.borrow_mut();
        s.note_tree(&db);
        s.phase = Phase::Idle;
    }
    // Stay up (timers keep syncing) until the driver crashes the node.
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What to do when the engine refused to open or to serve after damage at
/// rest.
enum Refusal {
    /// Latent sector errors were repaired: open or read again, and that
    /// must recover everything the contract promises (a refused recovery
    /// must not have cut, dropped or half-written anything).
    Retry,
    /// A named corruption error: the engine detected the damage and
    /// returned no wrong value, which is all it can do with one copy.
    Accepted,
    /// An error that does not name the damage.
    Violation,
}

/// Judges a refusal `e` under an at-rest fault kind.
fn refusal(
    scenario: Scenario,
    io: &Arc<Mutex<SimIo>>,
    sh: &Sh,
    epoch: u32,
    e: &ballast_storage::Error,
    repaired: &mut bool,
) -> Refusal {
    let mut s = sh.borrow_mut();
    let latent = scenario.fault == FaultKind::LatentSector;
    let named = e.is_corruption() || (latent && matches!(e, ballast_storage::Error::Io { .. }));
    if !named {
        s.violation(format!(
            "boot {epoch}: refused with an error that does not name the damage: {e}"
        ));
        return Refusal::Violation;
    }
    if latent && !*repaired {
        *repaired = true;
        io.lock()
            .unwrap_or_else(|e| e.into_inner())
            .repair_bad_sectors();
        s.event(format!(
            "boot {epoch}: refused ({e}); bad sectors repaired, trying again"
        ));
        return Refusal::Retry;
    }
    if latent {
        s.violation(format!(
            "boot {epoch}: failed again after the bad sectors were repaired: {e}"
        ));
        return Refusal::Violation;
    }
    s.refused = true;
    s.event(format!(
        "boot {epoch}: refused with a named error after damage at rest (accepted): {e}"
    ));
    Refusal::Accepted
}
