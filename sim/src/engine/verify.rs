//! After each boot's recovery: the recovered engine against the model and
//! the preset's contract.

use super::shared::*;
use crate::model::{self, Bound};
use crate::scenario::Scenario;
use ballast_storage::{Db, Error, Preset};
use std::collections::BTreeMap;
use std::time::Duration;

/// Checks the recovered engine against the model and the contract, then
/// continues the model from the recovered cut. A read that fails returns
/// its error (the caller judges it: under the at-rest kinds a named
/// corruption error is a refusal, not a violation); a wrong answer is a
/// violation.
pub(super) fn verify(db: &Db, scenario: Scenario, sh: &Sh, epoch: u32) -> Result<(), Error> {
    let mut s = sh.borrow_mut();
    let Some((cut, keys)) = check_content(db, &mut s, &format!("boot {epoch}"))? else {
        return Ok(());
    };
    // The window each crash leaves open: what the preset may lose of the
    // writes acknowledged just before it (None: no lower bound).
    let window = |power: bool| match (scenario.preset, power) {
        (Preset::Durable, _) | (Preset::Balanced, false) => Some(Duration::ZERO),
        // One interval, one fsync, and a tick of timer slack.
        (Preset::Balanced, true) => Some(
            Duration::from_millis(5)
                + latency(scenario.fault).max_sync()
                + Duration::from_millis(2),
        ),
        // A process crash keeps what reached the OS: the write-back timer
        // hands the buffer over every interval (plus a tick of timer
        // slack). A power loss keeps some prefix only.
        (Preset::Throughput, false) => Some(WRITE_BACK_INTERVAL + Duration::from_millis(2)),
        (Preset::Throughput, true) => None,
    };
    let bound = match s.last_crash {
        None => Bound {
            acked_by: None,
            earlier_boots: true,
        },
        Some((crash, power)) => {
            // After a failed fsync or write the engine stops; the relaxed
            // presets promise nothing for writes after the first fault.
            let end = match (scenario.preset, s.crashed_first_fault) {
                (Preset::Durable, _) | (_, None) => crash,
                (_, Some(f)) => f.min(crash),
            };
            // Crashes inside the recoveries since then each promise the
            // same of their own moment; the weakest promise holds.
            let mut acked_by = window(power).and_then(|w| end.checked_sub(w));
            if s.wal_damaged {
                acked_by = None;
            }
            for &(t, power) in &s.recovery_crashes {
                acked_by = match (acked_by, window(power).and_then(|w| t.checked_sub(w))) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    _ => None,
                };
            }
            Bound {
                acked_by,
                earlier_boots: !s.wal_cut_after_damage,
            }
        }
    };
    s.recovery_crashes.clear();
    let (found, violations) = s.model.check_cut(&cut, epoch.saturating_sub(1), bound);
    let lost: usize = found.iter().map(|r| r.lost_acked).sum();
    s.event(format!(
        "boot {epoch}: verified cut {cut:?} ({keys} keys), acknowledged-but-lost {lost}, bound {:?}",
        bound.acked_by.map(ms)
    ));
    for v in violations {
        s.violation(format!("boot {epoch}: {v}"));
    }
    s.model.truncate(&cut);
    Ok(())
}

/// Reads every client's marker in `db` (the cut it holds) and checks its
/// whole content, by a full scan and by point reads, against the model
/// after that cut (expired values absent). Returns the cut and the number
/// of keys, or `None` after a violation; a read that fails returns its
/// error.
pub(super) fn check_content(
    db: &Db,
    s: &mut Shared,
    what: &str,
) -> Result<Option<(Vec<usize>, usize)>, Error> {
    let clients = s.model.clients.len();
    let mut cut = vec![0usize; clients];
    for (c, m) in cut.iter_mut().enumerate() {
        let v = db.get(&model::marker_key(c))?;
        match s.model.cut_of_marker(c, v.as_deref()) {
            Ok(n) => *m = n,
            Err(v) => {
                s.violation(format!("{what}: {v}"));
                return Ok(None);
            }
        }
    }
    let expected = s.model.expected_db(&cut, clock_ms());
    let mut actual = BTreeMap::new();
    for kv in db.scan::<&[u8]>(..)? {
        let (k, v) = kv?;
        actual.insert(k.to_vec(), v);
    }
    if actual != expected {
        let keys: std::collections::BTreeSet<&Vec<u8>> =
            actual.keys().chain(expected.keys()).collect();
        if let Some(k) = keys
            .into_iter()
            .find(|k| actual.get(*k) != expected.get(*k))
        {
            let (got, want) = (actual.get(k), expected.get(k));
            // Where the two values part (a flipped byte may sit past any
            // fixed prefix): 24 bytes from a little before it.
            let at = match (got, want) {
                (Some(a), Some(b)) => a
                    .iter()
                    .zip(b.iter())
                    .position(|(x, y)| x != y)
                    .unwrap_or(a.len().min(b.len())),
                _ => 0,
            };
            let from = at.saturating_sub(8);
            let show = |v: Option<&bytes::Bytes>| {
                v.map_or("<absent>".to_string(), |v| {
                    let part = &v[from.min(v.len())..v.len().min(from + 24)];
                    format!(
                        "{}{:?} ({} bytes)",
                        if from > 0 { "..." } else { "" },
                        String::from_utf8_lossy(part),
                        v.len()
                    )
                })
            };
            let differ = if got.is_some() && want.is_some() {
                format!(", first difference at byte {at}")
            } else {
                String::new()
            };
            s.violation(format!(
                "{what}: recovered state is not the model's state after cut {cut:?}: key {} is {} but should be {}{differ}",
                String::from_utf8_lossy(k),
                show(got),
                show(want)
            ));
        }
        return Ok(None);
    }
    for (k, v) in &expected {
        match db.get(k)? {
            Some(got) if got == v => {}
            other => {
                s.violation(format!(
                    "{what}: get({}) disagrees with scan: {:?}",
                    String::from_utf8_lossy(k),
                    other.map(|o| o.len())
                ));
                return Ok(None);
            }
        }
    }
    Ok(Some((cut, expected.len())))
}
