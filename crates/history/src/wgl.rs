//! The Wing-Gong-Lowe linearizability search, per key.
//!
//! The operations' invocations and completions are laid out in time order
//! as a doubly linked list of entries (an invocation before a completion at
//! the same instant, so touching operations count as concurrent: the
//! permissive reading). The search walks the list: at an invocation it
//! tries to linearize that operation next (its reply must be what the
//! register gives in the current state), removing its two entries; at a
//! completion whose operation is not yet linearized it backtracks. Lowe's
//! memoisation skips a configuration (set of operations linearized,
//! register state) seen before, which is what makes real histories of
//! hundreds of concurrent operations tractable (G. Lowe, "Testing for
//! linearizability", 2017; Wing and Gong 1993).
//!
//! An unknown outcome gets its completion at the end of time, so it never
//! forces a backtrack: it may be linearized anywhere after its invocation,
//! and once only unknown completions remain the history has passed (the
//! rest never took effect). Failed operations are left out; so are unknown
//! reads, which cannot change anything.
//!
//! Bounds: one search step per configuration tried, at most `steps_max` per
//! key; the memo holds at most one entry per step. A key that needs more is
//! `GaveUp`, which callers must treat as "not shown linearizable".

use crate::history::{History, OpId, Operation, Outcome};
use crate::model::{self, Op, Register, Ret};
use std::collections::{BTreeMap, HashSet};

/// The result for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some order respecting real time explains every reply.
    Linearizable,
    /// No order does.
    NotLinearizable {
        /// The longest sequence of operations the search could linearize,
        /// in that order.
        linearized: Vec<OpId>,
        /// The completed operation that could not be placed after it.
        blocked: OpId,
    },
    /// The search ran out of steps before an answer.
    GaveUp {
        /// Steps spent.
        steps: u64,
    },
}

/// One key's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVerdict {
    /// The key.
    pub key: Vec<u8>,
    /// Operations recorded on it (failed ones included).
    pub operations: usize,
    /// The verdict.
    pub verdict: Verdict,
}

/// Every key's verdict, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// One per key.
    pub keys: Vec<KeyVerdict>,
}

impl Report {
    /// True when every key is shown linearizable (none failed, none gave up).
    pub fn is_linearizable(&self) -> bool {
        self.keys.iter().all(|k| k.verdict == Verdict::Linearizable)
    }

    /// The keys shown not linearizable.
    pub fn violations(&self) -> impl Iterator<Item = &KeyVerdict> {
        self.keys
            .iter()
            .filter(|k| matches!(k.verdict, Verdict::NotLinearizable { .. }))
    }

    /// The keys the search gave up on.
    pub fn gave_up(&self) -> impl Iterator<Item = &KeyVerdict> {
        self.keys
            .iter()
            .filter(|k| matches!(k.verdict, Verdict::GaveUp { .. }))
    }
}

// The search is the history's to run; defined here so that `history`
// (recording) does not depend on the search.
impl History {
    /// Checks each key's sub-history for linearizability, spending at most
    /// `steps_max` search steps per key (a key that needs more is reported
    /// as given up, never as passing).
    pub fn check(&self, steps_max: u64) -> Report {
        let mut by_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
        for op in self.operations() {
            by_key.entry(&op.key).or_default().push(op);
        }
        let keys = by_key
            .into_iter()
            .map(|(key, ops)| KeyVerdict {
                key: key.to_vec(),
                operations: ops.len(),
                verdict: check(&ops, steps_max),
            })
            .collect();
        Report { keys }
    }
}

/// An operation as the search sees it.
struct Item<'a> {
    id: OpId,
    op: &'a Op,
    /// `None`: the reply is unknown.
    ret: Option<&'a Ret>,
}

struct Entry {
    item: usize,
    is_call: bool,
    time: u64,
    /// For an invocation, the index of its completion entry.
    matching: usize,
}

const NONE: usize = usize::MAX;
const HEAD: usize = 0;

/// The entries as a doubly linked list with a head sentinel at index 0;
/// removing an operation and putting it back (in stack order) is O(1).
struct List {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl List {
    fn new(len: usize) -> List {
        // Entry i of the history is node i + 1.
        let next = (0..=len)
            .map(|i| if i < len { i + 1 } else { NONE })
            .collect();
        let prev = (0..=len)
            .map(|i| if i == 0 { NONE } else { i - 1 })
            .collect();
        List { next, prev }
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NONE {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NONE {
            self.prev[n] = node;
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Checks one key's operations (all on the same key), the key absent at
/// the start.
pub fn check(ops: &[&Operation], steps_max: u64) -> Verdict {
    check_from(ops, &None, steps_max)
}

/// Checks one key's operations starting from `initial` (for a history cut
/// into epochs, where each epoch starts from a state an earlier one left).
pub fn check_from(ops: &[&Operation], initial: &Register, steps_max: u64) -> Verdict {
    let items: Vec<Item> = ops
        .iter()
        .filter_map(|o| match &o.outcome {
            Outcome::Failed => None,
            Outcome::Unknown if model::is_read_only(&o.op) => None,
            Outcome::Unknown => Some(Item {
                id: o.id,
                op: &o.op,
                ret: None,
            }),
            Outcome::Ok(r) => Some(Item {
                id: o.id,
                op: &o.op,
                ret: Some(r),
            }),
        })
        .collect();
    let times: Vec<(u64, u64)> = ops
        .iter()
        .filter(|o| match &o.outcome {
            Outcome::Failed => false,
            Outcome::Unknown => !model::is_read_only(&o.op),
            Outcome::Ok(_) => true,
        })
        .map(|o| match (&o.outcome, o.completed) {
            (Outcome::Ok(_), Some(done)) => (o.invoked, done),
            _ => (o.invoked, u64::MAX),
        })
        .collect();

    // Invocations before completions at the same instant; ties by item.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(items.len() * 2);
    for (i, &(call, done)) in times.iter().enumerate() {
        order.push((call, false, i));
        order.push((done, true, i));
    }
    order.sort_unstable();
    let mut entries: Vec<Entry> = order
        .iter()
        .map(|&(time, is_return, item)| Entry {
            item,
            is_call: !is_return,
            time,
            matching: NONE,
        })
        .collect();
    let mut completion_of = vec![NONE; items.len()];
    for (node, e) in entries.iter().enumerate() {
        if !e.is_call {
            completion_of[e.item] = node + 1;
        }
    }
    for e in entries.iter_mut() {
        if e.is_call {
            e.matching = completion_of[e.item];
        }
    }

    let mut list = List::new(entries.len());
    let mut linearized = Bits::new(items.len());
    let mut seen: HashSet<(Bits, Register)> = HashSet::new();
    let mut stack: Vec<(usize, Register)> = Vec::new();
    let mut state: Register = initial.clone();
    let mut deepest: (Vec<OpId>, OpId) = (Vec::new(), NONE);
    let mut node = list.next[HEAD];
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps > steps_max {
            return Verdict::GaveUp { steps: steps - 1 };
        }
        if node == NONE {
            return Verdict::Linearizable;
        }
        let e = &entries[node - 1];
        if !e.is_call && e.time == u64::MAX {
            // Only completions of unknown operations are left: those not
            // linearized never took effect.
            return Verdict::Linearizable;
        }
        if e.is_call {
            let item = &items[e.item];
            if let Some(next_state) = model::step(&state, item.op, item.ret) {
                linearized.set(e.item);
                if seen.insert((linearized.clone(), next_state.clone())) {
                    stack.push((node, std::mem::replace(&mut state, next_state)));
                    list.unlink(node);
                    list.unlink(e.matching);
                    node = list.next[HEAD];
                    continue;
                }
                linearized.clear(e.item);
            }
            node = list.next[node];
        } else {
            // A completed operation that nothing so far could place.
            if deepest.1 == NONE || stack.len() > deepest.0.len() {
                deepest = (
                    stack
                        .iter()
                        .map(|&(n, _)| items[entries[n - 1].item].id)
                        .collect(),
                    items[e.item].id,
                );
            }
            let Some((call, before)) = stack.pop() else {
                return Verdict::NotLinearizable {
                    linearized: deepest.0,
                    blocked: deepest.1,
                };
            };
            state = before;
            let undone = &entries[call - 1];
            linearized.clear(undone.item);
            list.relink(undone.matching);
            list.relink(call);
            node = list.next[call];
        }
    }
}
