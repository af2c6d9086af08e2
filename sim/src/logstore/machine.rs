//! Replicated mode, as the node runs it: the engine keeps no WAL of its
//! own (the Raft log is the WAL), each applied entry's batch carries its
//! log index as the applied marker, a memtable flush records the marker,
//! and the flush barrier (the log store's `LogSyncer`) makes the Raft log
//! durable before a flush is recorded, so that applied state is never
//! durable ahead of the log. A restart replays the log from the marker.
//!
//! Checked after every recovery: the marker never names an entry beyond
//! the durable log, and the engine holds exactly the state after applying
//! entries 1..=marker.

use crate::engine::options as engine_options;
use crate::fs::SimIo;
use ballast_raft::log_store::LogSyncer;
use ballast_storage::{Db, Preset, WriteBatch};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The engine's directory on the simulated disk.
const DIR: &str = "/raft/sm";
/// Keys the applied entries write (entry `i` writes key `i % KEYS`), so
/// later entries overwrite earlier ones and flushes shadow values.
const KEYS: u64 = 8;

/// Opens the state machine's engine in replicated mode; `barrier` is the
/// log's syncer (`None`: the planted `flush-barrier-skipped`).
pub(super) async fn open(
    io: Arc<Mutex<SimIo>>,
    barrier: Option<LogSyncer>,
) -> ballast_storage::Result<Db> {
    let mut o = engine_options(Preset::Durable, io);
    o.wal = false;
    // The smallest memtable; the workload also flushes before each purge
    // (its barrier syncs the log first).
    o.memtable_bytes = 64 * 1024;
    o.flush_barrier = barrier.map(|b| Arc::new(b) as Arc<dyn ballast_storage::FlushBarrier>);
    Db::open(DIR, o).await
}

fn key(i: u64) -> Vec<u8> {
    format!("k{}", i % KEYS).into_bytes()
}

fn value(i: u64, term: u64) -> Vec<u8> {
    let mut v = format!("{i}:{term}:").into_bytes();
    v.resize(200 + (i as usize * 53) % 400, b'x');
    v
}

/// The applied marker: the last applied log index made durable.
pub(super) async fn marker(db: &Db) -> u64 {
    db.applied_marker()
        .await
        .and_then(|m| m.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Applies entry `i` of term `term`: one batch, its marker `i`.
pub(super) async fn apply(db: &Db, i: u64, term: u64) -> ballast_storage::Result<()> {
    let mut b = WriteBatch::new();
    b.put(&key(i), &value(i, term))
        .set_applied_marker(&i.to_le_bytes());
    db.write(b).await
}

/// Checks the recovered engine: marker `m` and the state after applying
/// `applied` (index -> term) up to `m`; `log_end` is the last index the
/// recovered log holds (or its purged index).
pub(super) fn check(db: &Db, m: u64, log_end: u64, applied: &BTreeMap<u64, u64>) -> Vec<String> {
    let mut v = Vec::new();
    if m > log_end {
        v.push(format!(
            "applied state is durable ahead of the durable log: marker {m}, the log ends at {log_end}"
        ));
    }
    let mut expected: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (&i, &term) in applied.range(..=m) {
        expected.insert(key(i), value(i, term));
    }
    if applied.range(..=m).next_back().map_or(0, |(&i, _)| i) < m {
        v.push(format!(
            "the marker {m} names entries that were never applied"
        ));
    }
    for k in 0..KEYS {
        let key = key(k);
        match db.get(&key) {
            Ok(got) => {
                let want = expected.get(&key);
                if got.as_deref() != want.map(Vec::as_slice) {
                    v.push(format!(
                        "the engine is not the state after applying entries 1..={m}: key {} is {:?} but should be {:?}",
                        String::from_utf8_lossy(&key),
                        got.map(|g| String::from_utf8_lossy(&g[..g.len().min(12)]).into_owned()),
                        want.map(|w| String::from_utf8_lossy(&w[..w.len().min(12)]).into_owned())
                    ));
                    break;
                }
            }
            Err(e) => {
                v.push(format!("reading the recovered engine failed: {e}"));
                break;
            }
        }
    }
    v
}
