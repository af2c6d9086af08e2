//! Criterion benchmarks of the read side: WAL replay at recovery (sequential
//! and with segments read ahead on threads) and cached point reads of an
//! SSTable (`Table::get`, and the bloom probe alone). They replace the two
//! ignored "tests" that only printed timings (`wal::tests::throughput` and
//! `table::tests::get_latency_with_a_warm_cache`).
//!
//! `cargo bench -p ballast-storage --bench read_paths`; pass a filter to run
//! one group, e.g. `-- wal_replay`.

use ballast_storage::fs::{FileSystem, OpenMode, StdFs};
use ballast_storage::key::{internal_key, lookup_key, user_key, ValueKind, SEQ_MAX};
use ballast_storage::table::{BlockCache, Table, TableBuilder, TableOptions};
use ballast_storage::wal::format::RECORD_HEADER_LEN;
use ballast_storage::wal::{self, RecoveryReport, Wal, WalOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

/// Records in the replayed WAL (130 bytes each, as the old timing test).
const WAL_RECORDS: usize = 200_000;
/// Entries in the table read from (16-byte keys, 100-byte values).
const TABLE_ENTRIES: u64 = 1_000_000;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// A record of `len` bytes that compresses (it is not compressed here).
fn record(len: usize) -> Vec<u8> {
    b"ballast wal record "
        .iter()
        .cycle()
        .take(len)
        .copied()
        .collect()
}

fn wal_replay(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = tmp.path().join("wal");
    let fs = StdFs::shared();
    let options = WalOptions {
        segment_bytes: 4 << 20,
        preallocate: false,
        compression_threshold_bytes: 0,
    };
    let rec = record(130);
    let mut w = Wal::open(fs.clone(), &dir, options, &RecoveryReport::default()).expect("open");
    for i in 0..WAL_RECORDS {
        w.add_record(&rec).expect("append");
        if i % 1000 == 999 {
            w.write_pending().expect("write");
        }
    }
    w.sync().expect("sync");
    drop(w);
    let bytes = (WAL_RECORDS * (rec.len() + RECORD_HEADER_LEN)) as u64;
    let mut g = c.benchmark_group("wal_replay");
    g.throughput(Throughput::Bytes(bytes));
    for parallel in [false, true] {
        let name = if parallel { "parallel" } else { "sequential" };
        g.bench_function(BenchmarkId::new("200k_records_130B", name), |b| {
            b.iter(|| {
                let r = wal::replay(&*fs, &dir, 0, parallel, |_, p| {
                    black_box(p);
                    Ok(())
                })
                .expect("replay");
                assert_eq!(r.records, WAL_RECORDS as u64);
            })
        });
    }
    g.finish();
}

fn table_get(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let path = tmp.path().join("000001.sst");
    let n = TABLE_ENTRIES;
    let mut keys: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            internal_key(
                format!("{:016}", i * 7919 % n).as_bytes(),
                i + 1,
                ValueKind::Put,
            )
        })
        .collect();
    keys.sort_by(|a, b| ballast_storage::key::compare_internal(a, b));
    let file = StdFs.open(&path, OpenMode::CreateNew).expect("create");
    let mut builder = TableBuilder::new(file, path.clone(), TableOptions::default());
    for k in &keys {
        builder.add(k, &[b'v'; 100]).expect("add");
    }
    let summary = builder.finish().expect("finish");
    let cache = BlockCache::new(512 << 20);
    let file = StdFs.open(&path, OpenMode::Read).expect("open");
    let table = Table::open(file, path.clone(), 1, summary.file_size, cache).expect("table");
    let lookups: Vec<Vec<u8>> = (0..n)
        .map(|i| lookup_key(format!("{:016}", i * 104_729 % n).as_bytes(), SEQ_MAX))
        .collect();
    // Warm the cache: every data block is read once before timing.
    for l in &lookups {
        table.get(l).expect("get").expect("present");
    }
    let mut g = c.benchmark_group("table_get");
    g.throughput(Throughput::Elements(1));
    let mut next = 0usize;
    g.bench_function("cached_1M_keys", |b| {
        b.iter(|| {
            next = (next + 1) % lookups.len();
            black_box(table.get(&lookups[next]).expect("get"))
        })
    });
    g.bench_function("bloom_probe", |b| {
        b.iter(|| {
            next = (next + 1) % lookups.len();
            black_box(table.may_contain(user_key(&lookups[next])))
        })
    });
    g.finish();
}

criterion_group! {
    name = read_paths;
    config = config();
    targets = wal_replay, table_get
}
criterion_main!(read_paths);
