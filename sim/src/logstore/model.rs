//! What the Raft log store promised, and the check of a recovered store
//! against it: an acknowledged append survives (until a truncation that
//! returned removes it), a truncation that returned is durable before the
//! entries appended after it, the vote survives, the log has no hole, and
//! the persisted committed index never names an entry beyond the log.

use std::collections::BTreeMap;

/// One entry the store was given, at its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The term of its log id (every entry is from node 1).
    pub term: u64,
    /// Its append's `IOFlushed` callback reported success.
    pub acked: bool,
}

/// The log as the workload has shaped it, and what is in flight.
#[derive(Debug, Clone, Default)]
pub struct LogModel {
    /// The entries the store holds, after every truncation that returned.
    pub log: BTreeMap<u64, Slot>,
    /// A truncation in progress at the crash: entries after this index
    /// may or may not be gone, and the entries it was removing may come
    /// back.
    pub truncating: Option<(u64, BTreeMap<u64, u64>)>,
    /// The last purged index a purge that returned made durable.
    pub purged: Option<u64>,
    /// A purge in progress at the crash.
    pub purging: Option<u64>,
    /// The last vote (term) a save that returned made durable.
    pub vote: Option<u64>,
    /// A vote save in progress at the crash.
    pub voting: Option<u64>,
}

/// What recovery found.
#[derive(Debug, Clone, Default)]
pub struct RecoveredLog {
    /// (index, term) of every live entry, in order.
    pub entries: Vec<(u64, u64)>,
    /// The last purged index.
    pub purged: Option<u64>,
    /// The vote's term.
    pub vote: Option<u64>,
    /// The persisted committed index.
    pub committed: Option<u64>,
}

impl LogModel {
    /// Checks `r` against the promises; returns the violations.
    pub fn check(&self, r: &RecoveredLog) -> Vec<String> {
        let mut v = Vec::new();
        // No hole: consecutive indexes, right after the purged prefix.
        for w in r.entries.windows(2) {
            if w[1].0 != w[0].0 + 1 {
                v.push(format!(
                    "a hole in the log: entry {} follows entry {}",
                    w[1].0, w[0].0
                ));
            }
        }
        if let (Some(&(first, _)), Some(p)) = (r.entries.first(), r.purged) {
            if first != p + 1 {
                v.push(format!(
                    "a hole in the log: the first entry is {first} but {p} is the last purged"
                ));
            }
        }
        if let Some(p) = self.purged {
            if r.purged.is_none_or(|rp| rp < p) {
                v.push(format!(
                    "the purge went back: last purged {:?}, acknowledged {p}",
                    r.purged
                ));
            }
        }
        let got: BTreeMap<u64, u64> = r.entries.iter().copied().collect();
        let purged = r.purged.unwrap_or(0);
        let cut = self.truncating.as_ref().map(|(k, _)| *k);
        for (&i, slot) in &self.log {
            if !slot.acked || i <= purged || cut.is_some_and(|k| i > k) {
                continue;
            }
            match got.get(&i) {
                None => v.push(format!(
                    "acknowledged append lost: entry {i} (term {}) is gone",
                    slot.term
                )),
                Some(&t) if t != slot.term => v.push(format!(
                    "a truncated entry came back: entry {i} has term {t}, but the acknowledged entry there has term {}",
                    slot.term
                )),
                Some(_) => {}
            }
        }
        for (&i, &t) in &got {
            let expected = self.log.get(&i).is_some_and(|s| s.term == t);
            let removing = self
                .truncating
                .as_ref()
                .is_some_and(|(_, old)| old.get(&i) == Some(&t));
            if !expected && !removing {
                v.push(format!(
                    "a truncated entry came back: entry {i} (term {t}) was removed by a truncation that returned, or never appended"
                ));
                break;
            }
        }
        let allowed_votes = [self.vote, self.voting.or(self.vote)];
        if !allowed_votes.contains(&r.vote) {
            v.push(format!(
                "the vote went back: recovered term {:?}, saved {:?}",
                r.vote, self.vote
            ));
        }
        if let Some(c) = r.committed {
            let last = r.entries.last().map_or(purged, |e| e.0);
            if c > last {
                v.push(format!(
                    "the committed index {c} names an entry beyond the durable log (last {last})"
                ));
            }
        }
        v
    }

    /// Continues from what recovery found (recovery made it durable).
    pub fn reset_to(&mut self, r: &RecoveredLog) {
        self.log = r
            .entries
            .iter()
            .map(|&(i, term)| (i, Slot { term, acked: true }))
            .collect();
        self.truncating = None;
        self.purged = r.purged;
        self.purging = None;
        self.vote = r.vote;
        self.voting = None;
    }

    /// The next index to append at.
    pub fn next_index(&self) -> u64 {
        self.log
            .keys()
            .next_back()
            .map_or(self.purged.map_or(1, |p| p + 1), |i| i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(entries: &[(u64, u64, bool)]) -> LogModel {
        LogModel {
            log: entries
                .iter()
                .map(|&(i, term, acked)| (i, Slot { term, acked }))
                .collect(),
            ..LogModel::default()
        }
    }

    fn recovered(entries: &[(u64, u64)]) -> RecoveredLog {
        RecoveredLog {
            entries: entries.to_vec(),
            ..RecoveredLog::default()
        }
    }

    #[test]
    fn a_lost_acknowledged_entry_and_a_resurrected_one_are_violations() {
        let m = model(&[(1, 1, true), (2, 2, true), (3, 2, false)]);
        assert!(m.check(&recovered(&[(1, 1), (2, 2), (3, 2)])).is_empty());
        assert!(m.check(&recovered(&[(1, 1), (2, 2)])).is_empty());
        let lost = m.check(&recovered(&[(1, 1)]));
        assert!(lost[0].contains("acknowledged append lost"), "{lost:?}");
        let back = m.check(&recovered(&[(1, 1), (2, 1)]));
        assert!(back[0].contains("a truncated entry came back"), "{back:?}");
        let hole = m.check(&recovered(&[(1, 1), (3, 2)]));
        assert!(hole[0].contains("a hole"), "{hole:?}");
    }

    #[test]
    fn a_vote_that_goes_back_is_a_violation() {
        let m = LogModel {
            vote: Some(3),
            voting: Some(4),
            ..LogModel::default()
        };
        let mut r = RecoveredLog {
            vote: Some(4),
            ..RecoveredLog::default()
        };
        assert!(m.check(&r).is_empty());
        r.vote = Some(2);
        assert!(m.check(&r)[0].contains("the vote went back"));
    }
}
