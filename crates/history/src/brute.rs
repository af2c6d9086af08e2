//! Linearizability by trying every order: exponential, for small histories
//! only (the tests use it to cross-check [`crate::wgl`]).
//!
//! Every subset of the unknown operations takes effect (the rest never do),
//! and every order of the chosen operations that respects real time (an
//! operation completed before another was invoked goes first; touching
//! counts as concurrent, as in the search) must explain every reply.

use crate::history::{Operation, Outcome};
use crate::model::{self, Register};

/// Operations above which [`check`] refuses (it would take too long).
pub const OPERATIONS_MAX: usize = 9;

/// Whether one key's operations are linearizable; `None` if there are more
/// than [`OPERATIONS_MAX`] of them that count.
pub fn check(ops: &[&Operation]) -> Option<bool> {
    let ops: Vec<&Operation> = ops
        .iter()
        .copied()
        .filter(|o| o.outcome != Outcome::Failed)
        .collect();
    if ops.len() > OPERATIONS_MAX {
        return None;
    }
    let done = |o: &Operation| match o.outcome {
        Outcome::Ok(_) => o.completed.unwrap_or(u64::MAX),
        _ => u64::MAX,
    };
    let unknown: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].outcome == Outcome::Unknown)
        .collect();
    for mask in 0u32..(1 << unknown.len()) {
        let chosen: Vec<usize> = (0..ops.len())
            .filter(|i| match unknown.iter().position(|u| u == i) {
                Some(k) => mask & (1 << k) != 0,
                None => true,
            })
            .collect();
        let mut used = vec![false; ops.len()];
        if search(&ops, &chosen, &mut used, &None, &done, 0) {
            return Some(true);
        }
    }
    Some(false)
}

fn search(
    ops: &[&Operation],
    chosen: &[usize],
    used: &mut [bool],
    state: &Register,
    done: &dyn Fn(&Operation) -> u64,
    placed: usize,
) -> bool {
    if placed == chosen.len() {
        return true;
    }
    for &i in chosen {
        if used[i] {
            continue;
        }
        // `i` may go next only if no unplaced chosen operation completed
        // strictly before `i` was invoked.
        let blocked = chosen
            .iter()
            .any(|&j| j != i && !used[j] && done(ops[j]) < ops[i].invoked);
        if blocked {
            continue;
        }
        let ret = match &ops[i].outcome {
            Outcome::Ok(r) => Some(r),
            _ => None,
        };
        if let Some(next) = model::step(state, &ops[i].op, ret) {
            used[i] = true;
            if search(ops, chosen, used, &next, done, placed + 1) {
                return true;
            }
            used[i] = false;
        }
    }
    false
}
