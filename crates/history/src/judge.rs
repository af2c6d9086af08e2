//! Judging a recorded history: the per-key linearizability check with
//! readable reports (the operations involved and the smallest failing
//! window), and the two ways a relaxed preset's contract relaxes it after
//! a power cut: loss windows (balanced: recent acknowledged writes may be
//! lost) and epochs (throughput: a cut may roll back to any earlier state).
//! Shared by the cluster simulation and chaos, so both judge alike.

use crate::{check_from, History, Op, Outcome, Ret, Verdict};
use serde::Serialize;

/// The client id of the reads made after the faults stopped (the final
/// read of every key); reports call them "final read".
pub const FINAL_READER: u64 = u64::MAX;

/// A span of the history just before a cluster-wide power cut in which the
/// preset's contract lets acknowledged writes be lost (balanced: one sync
/// interval plus one fsync).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LossWindow {
    /// Start, nanoseconds since the workload started.
    pub from_ns: u64,
    /// The restart after the power cut (operations that completed before
    /// it came before the cut).
    pub to_ns: u64,
}

/// The history as the contract judges it: a write acknowledged inside a
/// loss window may have been rolled back, so its outcome becomes unknown;
/// a read completed inside one may have seen such a write, so it is left
/// out. Everything else is checked as it happened. Returns the new history
/// and how many operations were relaxed.
pub fn allow_losses(history: &History, windows: &[LossWindow]) -> (History, usize) {
    let mut out = History::new();
    let mut relaxed = 0;
    for o in history.operations() {
        let id = out.invoke(o.client, o.key.clone(), o.op.clone(), o.invoked);
        let inside = o
            .completed
            .is_some_and(|c| windows.iter().any(|w| (w.from_ns..=w.to_ns).contains(&c)));
        let outcome = match (&o.outcome, inside) {
            (Outcome::Ok(_), true) if o.op == Op::Read => {
                relaxed += 1;
                Outcome::Failed
            }
            (Outcome::Ok(_), true) => {
                relaxed += 1;
                Outcome::Unknown
            }
            (other, _) => other.clone(),
        };
        if let Some(c) = o.completed {
            out.complete(id, outcome, c);
        }
    }
    (out, relaxed)
}

/// Search steps per key before the checker gives up (a give-up fails the
/// run: it is not a proof).
pub const STEPS_MAX: u64 = 2_000_000;

/// Runs the linearizability check: violations (with the operations
/// involved) and keys the search gave up on.
pub fn linearizability(history: &History) -> (Vec<String>, Vec<String>) {
    let report = history.check(STEPS_MAX);
    let ops = history.operations();
    let show = |id: usize| {
        let o = &ops[id];
        let client = if o.client == FINAL_READER {
            "final read".to_string()
        } else {
            format!("client {}", o.client)
        };
        format!(
            "#{id} {client} {} at {:.3}s..{} -> {}",
            op_text(&o.op),
            o.invoked as f64 / 1e9,
            o.completed
                .map_or("?".to_string(), |c| format!("{:.3}s", c as f64 / 1e9)),
            outcome_text(&o.outcome)
        )
    };
    let mut violations = Vec::new();
    let mut gave_up = Vec::new();
    for k in &report.keys {
        let key = String::from_utf8_lossy(&k.key).into_owned();
        match &k.verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable {
                linearized,
                blocked,
            } => {
                let tail: Vec<String> = linearized
                    .iter()
                    .rev()
                    .take(4)
                    .rev()
                    .map(|&i| show(i))
                    .collect();
                let window: Vec<String> = failing_window(history, &k.key)
                    .into_iter()
                    .map(show)
                    .collect();
                violations.push(format!(
                    "key {key}: {} cannot follow [{}] (longest order found: {} ops); \
                     smallest failing window: [{}]",
                    show(*blocked),
                    tail.join(", "),
                    linearized.len(),
                    window.join(", ")
                ));
            }
            Verdict::GaveUp { steps } => gave_up.push(format!("{key} after {steps} steps")),
        }
    }
    (violations, gave_up)
}

/// Candidate start states tried per epoch, at most (the most recent first).
pub const EPOCH_STARTS_MAX: usize = 64;

/// Throughput's contract across cluster-wide power cuts, per key: the
/// history is cut into epochs at the cuts (`cuts_ns`: the restarts; an
/// operation answered before one, or unknown and invoked before one,
/// belongs to the epoch before it); each
/// epoch must be
/// linearizable as it happened, starting from a state that operations of
/// earlier epochs could have left (the key absent, or a value some earlier
/// write, CAS or INCR may have stored). That is "the cut rolls back to an
/// earlier state, then all is normal", without a time bound; it does not
/// check that the rollback is one prefix across keys. Returns violations
/// and give-ups as [`linearizability`] does.
pub fn linearizability_across_cuts(
    history: &History,
    cuts_ns: &[u64],
) -> (Vec<String>, Vec<String>) {
    use std::collections::BTreeMap;
    let mut by_key: BTreeMap<&[u8], Vec<&crate::Operation>> = BTreeMap::new();
    for o in history.operations() {
        by_key.entry(&o.key).or_default().push(o);
    }
    // An operation belongs to the epoch it took effect in. One answered
    // after a restart was answered by a process that started after it (a
    // connection does not outlive a power loss), so it took effect then,
    // whenever it was sent; an unknown one is judged where it was sent.
    let epoch_of = |at: u64| cuts_ns.iter().filter(|&&c| c <= at).count();
    let epoch_of_op = |o: &crate::Operation| match (&o.outcome, o.completed) {
        (Outcome::Unknown, _) | (_, None) => epoch_of(o.invoked),
        (_, Some(done)) => epoch_of(done),
    };
    let mut violations = Vec::new();
    let mut gave_up = Vec::new();
    for (key, ops) in by_key {
        let name = String::from_utf8_lossy(key).into_owned();
        // States earlier epochs may have left, most recent last.
        let mut left: Vec<Option<Vec<u8>>> = vec![None];
        for epoch in 0..=cuts_ns.len() {
            let these: Vec<&crate::Operation> = ops
                .iter()
                .copied()
                .filter(|o| epoch_of_op(o) == epoch)
                .collect();
            if these.is_empty() {
                continue;
            }
            let mut tried = 0;
            let mut passed = false;
            let mut out_of_steps = false;
            let mut seen = std::collections::BTreeSet::new();
            for start in left.iter().rev() {
                if !seen.insert(start.clone()) {
                    continue;
                }
                if tried == EPOCH_STARTS_MAX {
                    break;
                }
                tried += 1;
                match check_from(&these, start, STEPS_MAX / 8) {
                    Verdict::Linearizable => {
                        passed = true;
                        break;
                    }
                    Verdict::GaveUp { .. } => out_of_steps = true,
                    Verdict::NotLinearizable { .. } => {}
                }
            }
            if !passed {
                let what = format!("key {name} epoch {epoch}: no state left by earlier operations explains its {} operations ({tried} starts tried)", these.len());
                if out_of_steps {
                    gave_up.push(what);
                } else {
                    violations.push(what);
                }
            }
            for o in &these {
                match (&o.op, &o.outcome) {
                    (_, Outcome::Failed) => {}
                    (Op::Write(v), _) => left.push(Some(v.clone())),
                    (Op::Cas { new, .. }, _) => left.push(Some(new.clone())),
                    (Op::Delete, _) => left.push(None),
                    (Op::Incr(_), Outcome::Ok(Ret::Incr(Some(n)))) => {
                        left.push(Some(n.to_string().into_bytes()))
                    }
                    (Op::Incr(d), Outcome::Unknown) => {
                        // It may have added to whatever integer was there.
                        let more: Vec<Option<Vec<u8>>> = left
                            .iter()
                            .filter_map(|s| {
                                let n: i64 = match s {
                                    None => 0,
                                    Some(v) => std::str::from_utf8(v).ok()?.parse().ok()?,
                                };
                                Some(Some(n.checked_add(*d)?.to_string().into_bytes()))
                            })
                            .collect();
                        left.extend(more);
                    }
                    _ => {}
                }
            }
        }
    }
    (violations, gave_up)
}

/// Operations shown from the end of the shortest failing prefix.
pub const WINDOW_OPS: usize = 8;

/// The smallest failing window of `key`'s history: the shortest prefix (by
/// invocation) of its operations that is already not linearizable, found
/// by bisection (a prefix only drops constraints, so failing is monotone),
/// and of it the last [`WINDOW_OPS`] operations: the violation happens
/// among them, against the state the earlier ones built. Ids of `history`.
pub fn failing_window(history: &History, key: &[u8]) -> Vec<usize> {
    let ops: Vec<&crate::Operation> = history
        .operations()
        .iter()
        .filter(|o| o.key == key)
        .collect();
    let fails = |n: usize| {
        let mut h = History::new();
        for o in &ops[..n] {
            let id = h.invoke(o.client, o.key.clone(), o.op.clone(), o.invoked);
            if let Some(at) = o.completed {
                h.complete(id, o.outcome.clone(), at);
            }
        }
        h.check(STEPS_MAX).violations().next().is_some()
    };
    if !fails(ops.len()) {
        return Vec::new();
    }
    let (mut lo, mut hi) = (0, ops.len());
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if fails(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    ops[hi.saturating_sub(WINDOW_OPS)..hi]
        .iter()
        .map(|o| o.id)
        .collect()
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// An operation as a person reads it: `SET c3-17`, `CAS c0-5 -> c1-9`.
pub fn op_text(op: &Op) -> String {
    match op {
        Op::Read => "GET".into(),
        Op::Write(v) => format!("SET {}", text(v)),
        Op::Delete => "DEL".into(),
        Op::Cas { expected, new } => format!("CAS {} -> {}", text(expected), text(new)),
        Op::Incr(d) => format!("INCRBY {d}"),
    }
}

/// An outcome as a person reads it.
pub fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Ok(Ret::Read(Some(v))) => text(v),
        Outcome::Ok(Ret::Read(None)) => "(nil)".into(),
        Outcome::Ok(Ret::Written) => "OK".into(),
        Outcome::Ok(Ret::Deleted(b)) => format!("{}", u8::from(*b)),
        Outcome::Ok(Ret::Cas(b)) => format!("{}", u8::from(*b)),
        Outcome::Ok(Ret::Incr(Some(n))) => n.to_string(),
        Outcome::Ok(Ret::Incr(None)) => "ERR not an integer".into(),
        Outcome::Failed => "refused".into(),
        Outcome::Unknown => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write acknowledged at 100, a power cut at 150, and a final read
    /// at 200 that does not see it.
    fn lost_write() -> History {
        let mut h = History::new();
        let w = h.invoke(1, "k", Op::Write(b"v".to_vec()), 90);
        h.complete(w, Outcome::Ok(Ret::Written), 100);
        let r = h.invoke(1, "k", Op::Read, 120);
        h.complete(r, Outcome::Ok(Ret::Read(Some(b"v".to_vec()))), 130);
        let f = h.invoke(2, "k", Op::Read, 200);
        h.complete(f, Outcome::Ok(Ret::Read(None)), 210);
        h
    }

    #[test]
    fn a_lost_write_fails_unless_a_loss_window_covers_it() {
        let (violations, _) = linearizability(&lost_write());
        assert_eq!(violations.len(), 1, "the lost write was not seen");

        let window = LossWindow {
            from_ns: 95,
            to_ns: 150,
        };
        let (judged, relaxed) = allow_losses(&lost_write(), &[window]);
        assert_eq!(relaxed, 2, "the write and the read inside the window");
        let (violations, _) = linearizability(&judged);
        assert!(violations.is_empty(), "{violations:?}");

        // A window that ends before the write was acknowledged allows nothing.
        let early = LossWindow {
            from_ns: 0,
            to_ns: 99,
        };
        let (judged, relaxed) = allow_losses(&lost_write(), &[early]);
        assert_eq!(relaxed, 0);
        assert_eq!(linearizability(&judged).0.len(), 1);
    }
}

#[cfg(test)]
mod epoch_tests {
    use super::*;

    #[test]
    fn a_rollback_to_an_earlier_value_passes_and_an_invented_value_fails() {
        // SET a, SET b, power cut at 100, then a read of a: a rollback.
        let mut h = History::new();
        for (at, v) in [(10, "a"), (20, "b")] {
            let id = h.invoke(1, "k", Op::Write(v.as_bytes().to_vec()), at);
            h.complete(id, Outcome::Ok(Ret::Written), at + 1);
        }
        let r = h.invoke(2, "k", Op::Read, 200);
        h.complete(r, Outcome::Ok(Ret::Read(Some(b"a".to_vec()))), 201);
        assert_eq!(
            linearizability(&h).0.len(),
            1,
            "as one history it is a lost write"
        );
        let (violations, gave_up) = linearizability_across_cuts(&h, &[100]);
        assert!(
            violations.is_empty() && gave_up.is_empty(),
            "{violations:?}"
        );

        let r = h.invoke(2, "k", Op::Read, 300);
        h.complete(r, Outcome::Ok(Ret::Read(Some(b"z".to_vec()))), 301);
        let (violations, _) = linearizability_across_cuts(&h, &[100]);
        assert_eq!(violations.len(), 1, "a value nobody wrote");
    }

    #[test]
    fn an_operation_sent_before_a_restart_and_answered_after_it_sees_the_rollback() {
        // SET a, SET b, power cut; a read sent before the restart at 100 is
        // answered after it, by a restarted node, with the rolled-back a.
        let mut h = History::new();
        for (at, v) in [(10, "a"), (20, "b")] {
            let id = h.invoke(1, "k", Op::Write(v.as_bytes().to_vec()), at);
            h.complete(id, Outcome::Ok(Ret::Written), at + 1);
        }
        let r = h.invoke(2, "k", Op::Read, 90);
        h.complete(r, Outcome::Ok(Ret::Read(Some(b"a".to_vec()))), 110);
        let (violations, gave_up) = linearizability_across_cuts(&h, &[100]);
        assert!(
            violations.is_empty() && gave_up.is_empty(),
            "{violations:?}"
        );
        // Answered before the restart, the same read is a lost write.
        let mut h2 = History::new();
        for (at, v) in [(10, "a"), (20, "b")] {
            let id = h2.invoke(1, "k", Op::Write(v.as_bytes().to_vec()), at);
            h2.complete(id, Outcome::Ok(Ret::Written), at + 1);
        }
        let r = h2.invoke(2, "k", Op::Read, 90);
        h2.complete(r, Outcome::Ok(Ret::Read(Some(b"a".to_vec()))), 95);
        assert_eq!(linearizability_across_cuts(&h2, &[100]).0.len(), 1);
    }
}
