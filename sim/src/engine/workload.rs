//! The workload of one boot: clients reading and writing their own keys,
//! and an admin task flushing and compacting at random moments.

use super::shared::*;
use crate::model::{self, KeyWrite, OpRec};
use crate::scenario::{FaultKind, RunConfig, Scenario, BULK_BATCH_KEYS};
use ballast_storage::{Db, Snapshot, WriteBatch};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::rc::Rc;
use std::time::Duration;

/// One client: a sequence of reads and write batches on its own keys.
pub(super) async fn client(
    c: usize,
    db: Rc<Db>,
    sh: Sh,
    epoch: u32,
    mut rng: StdRng,
    cfg: RunConfig,
    fault: FaultKind,
) {
    // A read snapshot this client holds across its later operations (and
    // the flushes and compactions they cause): the snapshot, and how many
    // of the client's operations it holds (all of them had returned).
    let mut held: Option<(Snapshot, usize)> = None;
    for _ in 0..cfg.ops_per_boot {
        if rng.gen_bool(0.3) {
            tokio::time::sleep(Duration::from_micros(rng.gen_range(100..3_000))).await;
        }
        let roll = rng.gen_range(0..100);
        if (10..15).contains(&roll) {
            bounded_scan(c, &db, &sh, &mut rng, cfg, fault);
            continue;
        }
        if (15..20).contains(&roll) {
            match held.take() {
                None => held = Some((db.snapshot(), sh.borrow().model.clients[c].len())),
                Some((snap, m)) => {
                    check_snapshot(c, &db, &sh, &mut rng, &snap, m, cfg, fault).await;
                }
            }
            continue;
        }
        if roll < 10 {
            let k = rng.gen_range(0..cfg.keys);
            let res = db.get(&model::key(c, k));
            let mut s = sh.borrow_mut();
            let len = s.model.clients[c].len();
            let expected = s.model.live_after(c, len, clock_ms()).get(&k).cloned();
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
                // A quarter of the values expire within 1-40 ms of the
                // engine's clock: before, during and after the flushes,
                // compactions and crashes that follow.
                let expire_at_ms =
                    (v.is_some() && rng.gen_bool(0.25)).then(|| clock_ms() + rng.gen_range(1..40));
                // Duplicate keys stay: a batch applies its writes in order,
                // so the last write of a key wins (the model does the same).
                writes.push(KeyWrite {
                    k,
                    value: v,
                    expire_at_ms,
                });
            }
            (n, writes)
        };
        if !write_op(c, &db, &sh, epoch, n, writes, fault).await {
            return;
        }
        sh.borrow_mut().note_tree(&db);
    }
}

/// Issues operation `n` of client `c`: `writes` and the client's marker as
/// one batch, recorded in the model with its invocation and
/// acknowledgement. False if the client must stop for this boot (the
/// write failed: its outcome is unknown).
pub(super) async fn write_op(
    c: usize,
    db: &Db,
    sh: &Sh,
    epoch: u32,
    n: u64,
    writes: Vec<KeyWrite>,
    fault: FaultKind,
) -> bool {
    let io = sh.borrow().io.clone();
    let first_wal_sync_error = || {
        io.lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_wal_sync_error
    };
    let mut batch = WriteBatch::new();
    for w in &writes {
        let key = model::key(c, w.k);
        match (&w.value, w.expire_at_ms) {
            (Some(v), None) => batch.put(&key, v),
            (Some(v), Some(at)) => batch.put_expiring(&key, v, at),
            (None, _) => batch.delete(&key),
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
        return false;
    };
    match res {
        Ok(()) => {
            op.acked = Some(t);
            let invoked = op.invoked;
            // Linux may have dropped the failed fsync's pages and will
            // report the next fsync clean, so after a failed WAL fsync
            // the engine must refuse every write until it is reopened.
            if let Some(f) = first_wal_sync_error().filter(|&f| invoked > f) {
                s.violation(format!(
                    "c{c} op n{n} invoked at {} was acknowledged after a failed WAL fsync at {}",
                    ms(invoked),
                    ms(f)
                ));
            }
            s.event(format!(
                "c{c} op n{n} ({} keys) acked at {}",
                writes.len(),
                ms(t)
            ));
            true
        }
        Err(e) => {
            op.failed = true;
            s.event(format!("c{c} op n{n} failed at {}: {e}", ms(t)));
            if !fault.errors_expected() {
                s.violation(format!("c{c} write failed without an injected fault: {e}"));
            }
            false
        }
    }
}

/// The bulk client (the last client): batches of [`BULK_BATCH_KEYS`]
/// consecutive keys of its own range, with values of 600-1200 bytes. With
/// `preload` it writes its whole range twice, in order (the first boot,
/// before the faults are armed, so that every run has a deep tree);
/// otherwise, after the other clients have started, `bulk_batches`
/// batches at random places, a tenth of the keys deleted.
pub(super) async fn bulk(
    db: Rc<Db>,
    sh: Sh,
    epoch: u32,
    mut rng: StdRng,
    cfg: RunConfig,
    fault: FaultKind,
    preload: bool,
) {
    let c = cfg.clients;
    let pass: Vec<u32> = (0..cfg.bulk_keys)
        .step_by(BULK_BATCH_KEYS as usize)
        .collect();
    let starts: Vec<u32> = if preload {
        // Twice over the range: the first pass flushed batch by batch, the
        // second in one burst.
        pass.iter().chain(&pass).copied().collect()
    } else {
        (0..cfg.bulk_batches)
            .map(|_| {
                // Half the batches add keys past the range written so far
                // (bounded at three times the preload): the levels grow
                // under the faults, and new key ranges move down whole.
                let mut s = sh.borrow_mut();
                if rng.gen_bool(0.5) && s.bulk_next + BULK_BATCH_KEYS <= 3 * cfg.bulk_keys {
                    s.bulk_next += BULK_BATCH_KEYS;
                    s.bulk_next - BULK_BATCH_KEYS
                } else {
                    rng.gen_range(0..s.bulk_next.max(1))
                }
            })
            .collect()
    };
    if !preload {
        // The other clients go first: the crash triggers count flushes and
        // fsyncs, and the bulk's bursts would otherwise bring every crash
        // forward to the first few milliseconds of a boot.
        tokio::time::sleep(Duration::from_micros(rng.gen_range(1_000..10_000))).await;
    }
    for (i, start) in starts.into_iter().enumerate() {
        if !preload {
            tokio::time::sleep(Duration::from_micros(rng.gen_range(200..3_000))).await;
        }
        let n = sh.borrow().model.clients[c].len() as u64 + 1;
        let end = if preload {
            (start + BULK_BATCH_KEYS).min(cfg.bulk_keys)
        } else {
            start + BULK_BATCH_KEYS
        };
        let writes = (start..end)
            .map(|k| {
                let delete = !preload && rng.gen_bool(0.1);
                let v = (!delete).then(|| model::value(c, epoch, n, k, rng.gen_range(600..1_200)));
                KeyWrite::plain(k, v)
            })
            .collect();
        if !write_op(c, &db, &sh, epoch, n, writes, fault).await {
            return;
        }
        if preload && i < pass.len() {
            // Small flushes in the first pass: many manifest edits, so the
            // manifest passes its size limit and is replaced in every run.
            // The second pass goes in one burst: writers stall behind the
            // flush of the full memtable and behind L0.
            if let Err(e) = db.flush().await {
                sh.borrow_mut()
                    .violation(format!("bulk preload: flush without faults failed: {e}"));
                return;
            }
        }
        sh.borrow_mut().note_tree(&db);
    }
}

/// Flushes, compactions and checkpoints at random moments under the
/// clients.
pub(super) async fn admin(db: Rc<Db>, sh: Sh, mut rng: StdRng, scenario: Scenario, epoch: u32) {
    let fault = scenario.fault;
    for i in 0..3 {
        tokio::time::sleep(Duration::from_micros(rng.gen_range(2_000..15_000))).await;
        if rng.gen_bool(0.5) {
            let name = format!("{epoch}-{i}");
            super::checkpoint::take_and_check(db.clone(), sh.clone(), scenario, name).await;
            continue;
        }
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

/// Shows at most 24 bytes of a value.
fn show(v: Option<&Bytes>) -> String {
    v.map_or("<absent>".to_string(), |v| {
        String::from_utf8_lossy(&v[..v.len().min(24)]).into_owned()
    })
}

/// Judges a read of client `c`'s keys: `got` must equal `want` (expired
/// values absent); an error is allowed only under the error kinds.
fn judge_read(
    s: &mut Shared,
    what: &str,
    got: Result<BTreeMap<u32, Bytes>, ballast_storage::Error>,
    want: &BTreeMap<u32, Bytes>,
    fault: FaultKind,
) {
    match got {
        Ok(got) if &got == want => s.event(format!("{what}: {} keys", got.len())),
        Ok(got) => {
            let keys: std::collections::BTreeSet<&u32> = got.keys().chain(want.keys()).collect();
            if let Some(k) = keys.into_iter().find(|k| got.get(k) != want.get(k)) {
                s.violation(format!(
                    "{what}: key k{k} is {} but the model holds {}",
                    show(got.get(k)),
                    show(want.get(k))
                ));
            }
        }
        Err(e) => {
            s.event(format!("{what}: error {e}"));
            if !fault.errors_expected() {
                s.violation(format!("{what} failed without an injected fault: {e}"));
            }
        }
    }
}

/// Collects a scan of client `c`'s keys into key index -> value.
fn collect_scan(
    c: usize,
    it: Result<ballast_storage::ScanIter, ballast_storage::Error>,
) -> Result<BTreeMap<u32, Bytes>, ballast_storage::Error> {
    let prefix = format!("c{c}/k");
    let mut out = BTreeMap::new();
    for kv in it? {
        let (k, v) = kv?;
        // Only the client's own keys are in the ranges asked for; a key
        // that does not parse shows up as index u32::MAX, never as data.
        let idx = std::str::from_utf8(&k)
            .ok()
            .and_then(|k| k.strip_prefix(&prefix))
            .and_then(|k| k.parse().ok())
            .unwrap_or(u32::MAX);
        out.insert(idx, v);
    }
    Ok(out)
}

/// A scan of a random range of client `c`'s keys (each end inclusive,
/// exclusive or open), against the model as of now.
fn bounded_scan(c: usize, db: &Db, sh: &Sh, rng: &mut StdRng, cfg: RunConfig, fault: FaultKind) {
    let lo = rng.gen_range(0..cfg.keys);
    let hi = rng.gen_range(lo..=cfg.keys);
    let start = match rng.gen_range(0..3) {
        0 => Bound::Included(lo),
        1 => Bound::Excluded(lo),
        _ => Bound::Unbounded,
    };
    let end = match rng.gen_range(0..3) {
        0 => Bound::Included(hi),
        1 => Bound::Excluded(hi),
        // Open at the end would run into the marker and other clients:
        // the end of the client's key range instead.
        _ => Bound::Excluded(cfg.keys),
    };
    let as_key = |b: Bound<u32>| match b {
        Bound::Included(k) => Bound::Included(model::key(c, k)),
        Bound::Excluded(k) => Bound::Excluded(model::key(c, k)),
        // From the first key the client could have.
        Bound::Unbounded => Bound::Included(format!("c{c}/k").into_bytes()),
    };
    let got = collect_scan(c, db.scan((as_key(start), as_key(end))));
    let mut s = sh.borrow_mut();
    let len = s.model.clients[c].len();
    let want: BTreeMap<u32, Bytes> = s
        .model
        .live_after(c, len, clock_ms())
        .into_iter()
        .filter(|(k, _)| (start, end).contains(k))
        .collect();
    judge_read(
        &mut s,
        &format!("c{c} scan {start:?}..{end:?}"),
        got,
        &want,
        fault,
    );
}

/// Reads client `c`'s keys and marker through `snap`, taken when the
/// client had issued `m` operations (all returned), after a flush or a
/// compaction of everything: the snapshot must still show exactly the
/// state after those `m` operations (expiry judged by the clock now).
#[allow(clippy::too_many_arguments)]
async fn check_snapshot(
    c: usize,
    db: &Db,
    sh: &Sh,
    rng: &mut StdRng,
    snap: &Snapshot,
    m: usize,
    cfg: RunConfig,
    fault: FaultKind,
) {
    let compact = rng.gen_bool(0.5);
    let done = if compact {
        db.compact().await
    } else {
        db.flush().await
    };
    if let Err(e) = done {
        let mut s = sh.borrow_mut();
        s.event(format!(
            "c{c} snapshot check: flush or compaction failed: {e}"
        ));
        if !fault.errors_expected() {
            s.violation(format!(
                "c{c} flush or compaction failed without an injected fault: {e}"
            ));
        }
        return;
    }
    let range = (
        Bound::Included(model::key(c, 0)),
        Bound::Excluded(model::key(c, cfg.keys)),
    );
    let got = collect_scan(c, db.scan_at(snap, range));
    let marker = db.get_at(snap, &model::marker_key(c));
    let mut s = sh.borrow_mut();
    let want = s.model.live_after(c, m, clock_ms());
    let want_marker = m.checked_sub(1).map(|i| {
        let op = &s.model.clients[c][i];
        model::marker_value(op.epoch, op.n)
    });
    match marker {
        Ok(got) if got == want_marker => {}
        Ok(got) => s.violation(format!(
            "c{c} snapshot of {m} operations reads marker {} but the model holds {}",
            show(got.as_ref()),
            show(want_marker.as_ref())
        )),
        Err(e) if fault.errors_expected() => s.event(format!("c{c} snapshot marker: error {e}")),
        Err(e) => s.violation(format!(
            "c{c} snapshot read failed without an injected fault: {e}"
        )),
    }
    let what = format!(
        "c{c} snapshot of {m} operations after a {}",
        if compact { "compaction" } else { "flush" }
    );
    judge_read(&mut s, &what, got, &want, fault);
}
