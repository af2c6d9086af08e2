//! The oracle: a model of every operation each simulated client issued, with
//! its invocation and acknowledgement time, and the checks of a recovered
//! state against a preset's durability contract.
//!
//! Each client owns its keys (`c{c}/k{k}`) and issues one operation at a
//! time. Every operation is one atomic write batch that also sets the
//! client's marker key `c{c}/m` to `e{epoch}:n{n}`, so the marker read after
//! recovery names exactly how many of the client's operations survived
//! (`m_c`), and the rest of the client's keys must then equal the state after
//! its first `m_c` operations: that checks batch atomicity, per-client
//! prefixes and the values themselves (every value names its writer, epoch,
//! counter and key, so a corrupt or invented value cannot pass).
//!
//! Clients interleave in the engine's commit order. The recovered cut must be
//! a prefix of that order, so across clients it must respect real time: if
//! client A's first lost operation was acknowledged before client B's last
//! surviving operation was invoked, A's operation committed first and a
//! prefix cannot hold B's without A's.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::Duration;

/// One operation of one client.
#[derive(Debug, Clone)]
pub struct OpRec {
    /// Per-client counter (1-based position in the client's history).
    pub n: u64,
    /// Boot the operation was issued in.
    pub epoch: u32,
    /// The keys written, in batch order (a key may repeat; its last
    /// write wins).
    pub writes: Vec<KeyWrite>,
    /// Simulated time of invocation.
    pub invoked: Duration,
    /// Simulated time of acknowledgement, if acknowledged.
    pub acked: Option<Duration>,
    /// The engine returned an error: the outcome is unknown.
    pub failed: bool,
}

/// One key's write in an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWrite {
    /// The client's key index.
    pub k: u32,
    /// The new value (`None` deletes).
    pub value: Option<Bytes>,
    /// When the value expires (ms on the engine's clock; `None`: never).
    /// A value reads as absent once the clock is at or past it.
    pub expire_at_ms: Option<u64>,
}

impl KeyWrite {
    /// A write of `value` (or a delete) that never expires.
    pub fn plain(k: u32, value: Option<Bytes>) -> KeyWrite {
        KeyWrite {
            k,
            value,
            expire_at_ms: None,
        }
    }
}

/// A value and its expiry (`None`: never).
pub type Versioned = (Bytes, Option<u64>);

/// The user key of client `c`'s key `k`.
pub fn key(c: usize, k: u32) -> Vec<u8> {
    format!("c{c}/k{k:02}").into_bytes()
}

/// The marker key of client `c`.
pub fn marker_key(c: usize) -> Vec<u8> {
    format!("c{c}/m").into_bytes()
}

/// The marker value of operation `n` issued in `epoch`.
pub fn marker_value(epoch: u32, n: u64) -> Bytes {
    Bytes::from(format!("e{epoch}:n{n}"))
}

/// The value client `c` writes to key `k` in operation `n` of `epoch`,
/// padded to `len` bytes with letters drawn from a generator seeded by the
/// header. The letters do not repeat in a short period, so tables do not
/// compress to nothing and the tree grows as deep as the data says.
pub fn value(c: usize, epoch: u32, n: u64, k: u32, len: usize) -> Bytes {
    let mut v = format!("c{c}:e{epoch}:n{n}:k{k}:").into_bytes();
    let mut x = ((c as u64) * 1_000_003 + n * 7919 + u64::from(epoch) * 31 + u64::from(k))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        | 1;
    while v.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b'a' + (x % 26) as u8);
    }
    Bytes::from(v)
}

/// The contract bound for one recovery.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Every operation acknowledged at or before this time must survive
    /// (`None`: only "some prefix" is promised).
    pub acked_by: Option<Duration>,
    /// Everything verified after an earlier boot must survive (`false`
    /// only where the engine reported a cut into data it may have made
    /// durable: a WAL damaged at rest, cut as a torn tail).
    pub earlier_boots: bool,
}

/// Every client's history.
#[derive(Debug, Clone)]
pub struct Model {
    /// Per client, its surviving lineage of operations, in order.
    pub clients: Vec<Vec<OpRec>>,
    /// Keys per client.
    pub keys: u32,
}

/// What a recovery check found for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Operations of the client that survived.
    pub m: usize,
    /// Acknowledged operations that were lost.
    pub lost_acked: usize,
}

impl Model {
    /// An empty model.
    pub fn new(clients: usize, keys: u32) -> Model {
        Model {
            clients: vec![Vec::new(); clients],
            keys,
        }
    }

    /// Client `c`'s state after its first `m` operations, with expiries.
    pub fn state_after(&self, c: usize, m: usize) -> BTreeMap<u32, Versioned> {
        let mut s = BTreeMap::new();
        for op in &self.clients[c][..m] {
            for w in &op.writes {
                match &w.value {
                    Some(v) => {
                        s.insert(w.k, (v.clone(), w.expire_at_ms));
                    }
                    None => {
                        s.remove(&w.k);
                    }
                }
            }
        }
        s
    }

    /// What client `c`'s keys read after its first `m` operations when
    /// the engine's clock says `now_ms`: expired values are absent.
    pub fn live_after(&self, c: usize, m: usize, now_ms: u64) -> BTreeMap<u32, Bytes> {
        self.state_after(c, m)
            .into_iter()
            .filter(|(_, (_, at))| at.is_none_or(|at| at > now_ms))
            .map(|(k, (v, _))| (k, v))
            .collect()
    }

    /// The whole database the model expects after `cut[c]` operations of
    /// each client, read when the engine's clock says `now_ms`.
    pub fn expected_db(&self, cut: &[usize], now_ms: u64) -> BTreeMap<Vec<u8>, Bytes> {
        let mut db = BTreeMap::new();
        for (c, &m) in cut.iter().enumerate() {
            if m > 0 {
                let op = &self.clients[c][m - 1];
                db.insert(marker_key(c), marker_value(op.epoch, op.n));
            }
            for (k, v) in self.live_after(c, m, now_ms) {
                db.insert(key(c, k), v);
            }
        }
        db
    }

    /// Which operation of client `c` a recovered marker names: the count of
    /// its operations that survived.
    pub fn cut_of_marker(&self, c: usize, marker: Option<&[u8]>) -> Result<usize, String> {
        let Some(m) = marker else { return Ok(0) };
        self.clients[c]
            .iter()
            .position(|op| marker_value(op.epoch, op.n).as_ref() == m)
            .map(|i| i + 1)
            .ok_or_else(|| {
                format!(
                    "client {c}: recovered marker {:?} names no operation it issued",
                    String::from_utf8_lossy(m)
                )
            })
    }

    /// Checks the recovered cut against `bound` and real-time order; returns
    /// per-client findings and the violations.
    pub fn check_cut(
        &self,
        cut: &[usize],
        epoch: u32,
        bound: Bound,
    ) -> (Vec<Recovered>, Vec<String>) {
        let mut out = Vec::new();
        let mut violations = Vec::new();
        for (c, &m) in cut.iter().enumerate() {
            let ops = &self.clients[c];
            // Everything from earlier boots was verified then; of this boot,
            // everything acknowledged by the bound must be there.
            let earlier = |op: &OpRec| bound.earlier_boots && op.epoch < epoch;
            let required = match bound.acked_by {
                Some(t) => ops
                    .iter()
                    .rposition(|op| earlier(op) || op.acked.is_some_and(|a| a <= t))
                    .map_or(0, |i| i + 1),
                None => ops.iter().rposition(earlier).map_or(0, |i| i + 1),
            };
            let lost_acked = ops[m..].iter().filter(|op| op.acked.is_some()).count();
            if m < required {
                let op = &ops[required - 1];
                violations.push(format!(
                    "client {c}: lost acknowledged writes: recovered {m} operations but {required} are promised \
                     (op n={} e{} acknowledged at {:?}, bound {:?})",
                    op.n, op.epoch, op.acked, bound.acked_by
                ));
            }
            out.push(Recovered { m, lost_acked });
        }
        // Real-time order across clients.
        for (b, &mb) in cut.iter().enumerate() {
            if mb == 0 {
                continue;
            }
            let kept = &self.clients[b][mb - 1];
            for (a, &ma) in cut.iter().enumerate() {
                if a == b {
                    continue;
                }
                if let Some(lost) = self.clients[a].get(ma) {
                    if lost.acked.is_some_and(|t| t < kept.invoked) {
                        violations.push(format!(
                            "not a prefix: client {b}'s op n={} e{} (invoked {:?}) survived but client {a}'s \
                             op n={} e{} acknowledged earlier ({:?}) was lost",
                            kept.n, kept.epoch, kept.invoked, lost.n, lost.epoch, lost.acked
                        ));
                    }
                }
            }
        }
        (out, violations)
    }

    /// Forgets operations that did not survive: the lineage continues from
    /// the recovered cut.
    pub fn truncate(&mut self, cut: &[usize]) {
        for (c, &m) in cut.iter().enumerate() {
            self.clients[c].truncate(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(n: u64, invoked: u64, acked: Option<u64>) -> OpRec {
        OpRec {
            n,
            epoch: 1,
            writes: vec![KeyWrite::plain(0, Some(value(0, 1, n, 0, 30)))],
            invoked: Duration::from_millis(invoked),
            acked: acked.map(Duration::from_millis),
            failed: false,
        }
    }

    #[test]
    fn lost_acknowledged_write_is_a_violation_under_a_bound() {
        let mut m = Model::new(1, 1);
        m.clients[0] = vec![op(1, 1, Some(2)), op(2, 3, Some(4))];
        let (_, v) = m.check_cut(
            &[1],
            1,
            Bound {
                acked_by: Some(Duration::from_millis(10)),
                earlier_boots: true,
            },
        );
        assert_eq!(v.len(), 1, "{v:?}");
        let (_, v) = m.check_cut(
            &[1],
            1,
            Bound {
                acked_by: None,
                earlier_boots: true,
            },
        );
        assert!(v.is_empty());
    }

    #[test]
    fn a_hole_across_clients_is_not_a_prefix() {
        let mut m = Model::new(2, 1);
        m.clients[0] = vec![op(1, 1, Some(2))];
        m.clients[1] = vec![op(1, 5, Some(6))];
        let (_, v) = m.check_cut(
            &[0, 1],
            1,
            Bound {
                acked_by: None,
                earlier_boots: true,
            },
        );
        assert_eq!(v.len(), 1, "{v:?}");
        // Concurrent operations may commit in either order.
        m.clients[1][0].invoked = Duration::from_millis(1);
        let (_, v) = m.check_cut(
            &[0, 1],
            1,
            Bound {
                acked_by: None,
                earlier_boots: true,
            },
        );
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn values_name_their_writer() {
        let v = value(3, 2, 17, 5, 64);
        assert_eq!(v.len(), 64);
        assert!(v.starts_with(b"c3:e2:n17:k5:"));
        assert_ne!(value(3, 2, 17, 5, 64), value(3, 2, 18, 5, 64));
    }
}
