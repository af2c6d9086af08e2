//! The workload of one boot: clients reading and writing their own keys,
//! and an admin task flushing and compacting at random moments.

use super::shared::*;
use crate::model::{self, OpRec};
use crate::scenario::{FaultKind, RunConfig};
use ballast_storage::{Db, WriteBatch};
use rand::rngs::StdRng;
use rand::Rng;
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
    let io = sh.borrow().io.clone();
    let first_wal_sync_error = || {
        io.lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_wal_sync_error
    };
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
                // Duplicate keys stay: a batch applies its writes in order,
                // so the last write of a key wins (the model does the same).
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
pub(super) async fn admin(db: Rc<Db>, sh: Sh, mut rng: StdRng, fault: FaultKind) {
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
