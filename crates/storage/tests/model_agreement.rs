//! Random sequences of put/delete/range delete/batch/get/scan/flush/compact/reopen agree
//! with a BTreeMap model.
//!
//! The default run does 10,240 cases (4 tests x 2,560); set
//! `BALLAST_PROPTEST_CASES` to run more per test.

use ballast_storage::{Background, Db, ManualClock, Options, Preset, WriteBatch};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Vec<u8>),
    PutExpiring(u8, Vec<u8>, u8),
    Delete(u8),
    /// A range delete from one key to another (exclusive) or to the end.
    DeleteRange(u8, Option<u8>),
    Batch(Vec<(u8, Option<Vec<u8>>)>),
    Get(u8),
    Scan(Option<u8>, Option<u8>),
    AdvanceClock(u8),
    Flush,
    Compact,
    Reopen,
}

fn key(k: u8) -> Vec<u8> {
    // Variable-length keys, some prefixes of others, to stress ordering.
    let mut v = format!("k{:02}", k % 40).into_bytes();
    if k >= 40 {
        v.extend_from_slice(b"-long");
    }
    v
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..24),
        1 => proptest::collection::vec(any::<u8>(), 200..3000),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (any::<u8>(), value()).prop_map(|(k, v)| Op::Put(k % 64, v)),
        3 => (any::<u8>(), value(), 1u8..20).prop_map(|(k, v, t)| Op::PutExpiring(k % 64, v, t)),
        6 => any::<u8>().prop_map(|k| Op::Delete(k % 64)),
        1 => (any::<u8>(), proptest::option::of(any::<u8>()))
            .prop_map(|(a, b)| Op::DeleteRange(a % 64, b.map(|x| x % 64))),
        4 => proptest::collection::vec((any::<u8>().prop_map(|k| k % 64), proptest::option::of(value())), 1..8)
            .prop_map(Op::Batch),
        10 => any::<u8>().prop_map(|k| Op::Get(k % 64)),
        3 => (proptest::option::of(any::<u8>()), proptest::option::of(any::<u8>()))
            .prop_map(|(a, b)| Op::Scan(a.map(|x| x % 64), b.map(|x| x % 64))),
        2 => (1u8..10).prop_map(Op::AdvanceClock),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        2 => Just(Op::Reopen),
    ]
}

/// The model: key -> (value, expire_at_ms).
type Model = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

fn live(model: &Model, now: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    model
        .iter()
        .filter(|(_, (_, exp))| exp.is_none_or(|e| e > now))
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect()
}

fn options(preset: Preset, clock: Arc<ManualClock>) -> Options {
    let mut o = Options::preset(preset);
    o.background = Background::Tasks;
    // Tiny sizes so flushes, multi-table levels and compactions happen
    // within a few dozen operations.
    o.memtable_bytes = 64 * 1024;
    o.block_bytes = 256;
    o.table_target_bytes = 64 * 1024;
    o.level_base_bytes = 64 * 1024;
    o.l0_compaction_trigger = 2;
    o.l0_stop_writes_trigger = 8;
    o.wal_segment_bytes = 64 * 1024;
    o.wal_preallocate = false;
    o.block_cache_bytes = 32 * 1024;
    o.clock = clock;
    o
}

fn run_case(preset: Preset, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_000);
        let mut db = Db::open(dir.path(), options(preset, clock.clone()))
            .await
            .expect("open");
        let mut model: Model = BTreeMap::new();
        for op in ops {
            let now = {
                use ballast_storage::Clock;
                clock.now_ms()
            };
            match op {
                Op::Put(k, v) => {
                    db.put(&key(k), &v).await.expect("put");
                    model.insert(key(k), (v, None));
                }
                Op::PutExpiring(k, v, t) => {
                    let at = now + u64::from(t);
                    db.put_expiring(&key(k), &v, at)
                        .await
                        .expect("put_expiring");
                    model.insert(key(k), (v, Some(at)));
                }
                Op::Delete(k) => {
                    db.delete(&key(k)).await.expect("delete");
                    model.remove(&key(k));
                }
                Op::DeleteRange(a, b) => {
                    let (start, end) = (key(a), b.map(key));
                    db.delete_range(&start, end.as_deref())
                        .await
                        .expect("delete_range");
                    model.retain(|k, _| *k < start || end.as_ref().is_some_and(|e| k >= e));
                }
                Op::Batch(entries) => {
                    let mut b = WriteBatch::new();
                    for (k, v) in &entries {
                        match v {
                            Some(v) => b.put(&key(*k), v),
                            None => b.delete(&key(*k)),
                        };
                    }
                    db.write(b).await.expect("batch");
                    for (k, v) in entries {
                        match v {
                            Some(v) => model.insert(key(k), (v, None)),
                            None => model.remove(&key(k)),
                        };
                    }
                }
                Op::Get(k) => {
                    let got = db.get(&key(k)).expect("get").map(|b| b.to_vec());
                    let want = live(&model, now).get(&key(k)).cloned();
                    prop_assert_eq!(got, want, "get {:?}", String::from_utf8_lossy(&key(k)));
                }
                Op::Scan(a, b) => {
                    let lo = a.map(key);
                    let hi = b.map(key);
                    let range = (
                        lo.clone().map_or(Bound::Unbounded, Bound::Included),
                        hi.clone().map_or(Bound::Unbounded, Bound::Excluded),
                    );
                    if let (Some(lo), Some(hi)) = (&lo, &hi) {
                        if lo > hi {
                            continue;
                        }
                    }
                    let got = collect_scan(db.scan::<Vec<u8>>(range.clone()));
                    let want: Vec<(Vec<u8>, Vec<u8>)> = live(&model, now)
                        .range::<Vec<u8>, _>(range)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    prop_assert_eq!(got, want);
                }
                Op::AdvanceClock(ms) => clock.advance(u64::from(ms)),
                Op::Flush => db.flush().await.expect("flush"),
                Op::Compact => db.compact().await.expect("compact"),
                Op::Reopen => {
                    db.close().await.expect("close");
                    db = Db::open(dir.path(), options(preset, clock.clone()))
                        .await
                        .expect("reopen");
                }
            }
        }
        // Full comparison at the end, and once more after a reopen.
        let now = {
            use ballast_storage::Clock;
            clock.now_ms()
        };
        let all: Vec<(Vec<u8>, Vec<u8>)> = scan_all(&db);
        let want: Vec<(Vec<u8>, Vec<u8>)> = live(&model, now).into_iter().collect();
        prop_assert_eq!(&all, &want);
        db.close().await.expect("close");
        let db = Db::open(dir.path(), options(preset, clock.clone()))
            .await
            .expect("reopen");
        let again: Vec<(Vec<u8>, Vec<u8>)> = scan_all(&db);
        prop_assert_eq!(&again, &want);
        db.close().await.expect("close");
        Ok(())
    })
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn collect_scan(scan: ballast_storage::Result<ballast_storage::ScanIter>) -> Pairs {
    scan.expect("scan")
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .expect("scan item")
}

fn scan_all(db: &Db) -> Pairs {
    collect_scan(db.scan::<Vec<u8>>(..))
}

fn cases() -> u32 {
    std::env::var("BALLAST_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2560)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn durable_engine_agrees_with_a_btreemap(ops in proptest::collection::vec(op(), 1..60)) {
        run_case(Preset::Durable, ops)?;
    }

    #[test]
    fn balanced_engine_agrees_with_a_btreemap(ops in proptest::collection::vec(op(), 1..60)) {
        run_case(Preset::Balanced, ops)?;
    }

    #[test]
    fn throughput_engine_agrees_with_a_btreemap(ops in proptest::collection::vec(op(), 1..60)) {
        run_case(Preset::Throughput, ops)?;
    }

    #[test]
    fn long_histories_agree_with_a_btreemap(ops in proptest::collection::vec(op(), 100..300)) {
        run_case(Preset::Durable, ops)?;
    }
}
