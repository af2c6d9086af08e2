//! Criterion micro-benchmarks of the engine's hot paths: memtable insert and
//! get, WAL append (encode + positional write, no fsync), data block
//! encode/decode/seek, and bloom filter hash/probe/build.
//!
//! `cargo bench -p ballast-storage` runs them all in a few minutes; pass a
//! filter to run one group, e.g. `cargo bench -p ballast-storage -- wal`.

use ballast_storage::fs::StdFs;
use ballast_storage::key::{internal_key, lookup_key, ValueKind, SEQ_MAX};
use ballast_storage::memtable::{MemKey, MemTable};
use ballast_storage::table::{Block, BlockBuilder, BloomBuilder, BloomFilter};
use ballast_storage::wal::{RecoveryReport, Wal, WalOptions};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::{Duration, Instant};

const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;

/// User key `i`: zero padding, then `i` big-endian (as ballast-bench).
fn user_key(i: u64) -> [u8; KEY_BYTES] {
    let mut k = [0u8; KEY_BYTES];
    k[KEY_BYTES - 8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// `len` bytes that compress to about half: random printable bytes, repeated.
fn value(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let half: Vec<u8> = (0..len.div_ceil(2))
        .map(|_| rng.gen_range(b' '..=b'~'))
        .collect();
    half.iter().chain(half.iter()).copied().take(len).collect()
}

/// A memtable entry: internal key then value, in one buffer.
fn mem_entry(i: u64, seq: u64, v: &[u8]) -> MemKey {
    let mut buf = internal_key(&user_key(i), seq, ValueKind::Put);
    let klen = buf.len();
    buf.extend_from_slice(v);
    MemKey::new(Bytes::from(buf), klen)
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

fn memtable(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let v = value(&mut rng, VALUE_BYTES);
    let mut g = c.benchmark_group("memtable");
    g.throughput(Throughput::Elements(1));
    for order in ["sequential", "random"] {
        g.bench_function(BenchmarkId::new("insert", order), |b| {
            b.iter_custom(|iters| {
                // Entries are built before the clock starts; each sample
                // inserts into a fresh memtable (so later entries pay the
                // deeper skiplist of a larger table).
                let mut ids: Vec<u64> = (0..iters).collect();
                if order == "random" {
                    ids.shuffle(&mut rng);
                }
                let entries: Vec<MemKey> = ids
                    .iter()
                    .enumerate()
                    .map(|(seq, &i)| mem_entry(i, seq as u64 + 1, &v))
                    .collect();
                let mem = MemTable::new(0);
                let start = Instant::now();
                for (seq, e) in entries.into_iter().enumerate() {
                    mem.insert(e, seq as u64 + 1);
                }
                let took = start.elapsed();
                black_box(mem.len());
                took
            })
        });
    }

    // Point lookups of present keys in a 100,000-entry memtable.
    let n = 100_000u64;
    let mem = MemTable::new(0);
    for i in 0..n {
        mem.insert(mem_entry(i, i + 1, &v), i + 1);
    }
    let lookups: Vec<Vec<u8>> = (0..4096)
        .map(|_| lookup_key(&user_key(rng.gen_range(0..n)), SEQ_MAX))
        .collect();
    let mut next = 0usize;
    g.bench_function("get_100k", |b| {
        b.iter(|| {
            next = (next + 1) % lookups.len();
            black_box(mem.get(&lookups[next]))
        })
    });
    g.finish();
}

fn wal_append(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let mut rng = StdRng::seed_from_u64(2);
    let mut g = c.benchmark_group("wal_append");
    // add_record + write_pending per record: CRC, framing and one pwrite to
    // the page cache; no fsync (that is the disk, see ballast-bench rawsync).
    for (name, len, compress) in [
        ("128B", 128usize, 0u64),
        ("4KiB", 4096, 0),
        ("64KiB_snappy", 64 << 10, 4096),
    ] {
        let payload = value(&mut rng, len);
        let opts = WalOptions {
            segment_bytes: 1 << 30,
            preallocate: false,
            compression_threshold_bytes: compress,
        };
        let mut wal = Wal::open(
            StdFs::shared(),
            &tmp.path().join(name),
            opts,
            &RecoveryReport::default(),
        )
        .expect("open WAL");
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // Keep the files small, off the clock: start a new segment
                // and delete the old ones once the current one is large.
                if wal.end_offset() > 64 << 20 {
                    let seg = wal.roll().expect("roll");
                    wal.remove_segments_below(seg).expect("remove old segments");
                }
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(wal.add_record(&payload).expect("add_record"));
                    wal.write_pending().expect("write_pending");
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

/// A data block of about 4 KiB (as the table builder cuts them): sorted
/// internal keys of consecutive user keys, 100-byte values.
fn block_entries(rng: &mut StdRng) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut size = 0;
    let mut i = 1_000_000u64;
    while size < 4096 {
        let k = internal_key(&user_key(i), 42, ValueKind::Put);
        let v = value(rng, VALUE_BYTES);
        size += k.len() + v.len() + 3;
        out.push((k, v));
        i += 1;
    }
    out
}

fn block(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    let entries = block_entries(&mut rng);
    let mut bb = BlockBuilder::new(16);
    for (k, v) in &entries {
        bb.add(k, v);
    }
    let raw = bb.finish().to_vec();
    let decoded = Block::decode(&raw).expect("valid block");
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("encode_4KiB", |b| {
        b.iter(|| {
            bb.reset();
            for (k, v) in &entries {
                bb.add(k, v);
            }
            black_box(bb.finish().len())
        })
    });
    g.bench_function("decode_4KiB", |b| {
        b.iter(|| black_box(Block::decode(black_box(&raw)).expect("valid block")))
    });
    g.throughput(Throughput::Elements(1));
    let targets: Vec<Vec<u8>> = (0..1024)
        .map(|_| {
            let i = 1_000_000 + rng.gen_range(0..entries.len() as u64);
            lookup_key(&user_key(i), SEQ_MAX)
        })
        .collect();
    let mut next = 0usize;
    g.bench_function("seek", |b| {
        b.iter(|| {
            next = (next + 1) % targets.len();
            black_box(decoded.seek(&targets[next]))
        })
    });
    g.finish();
}

fn bloom(c: &mut Criterion) {
    let n = 100_000u64;
    let mut builder = BloomBuilder::new(10);
    for i in 0..n {
        builder.add(&user_key(i * 2));
    }
    let filter = BloomFilter::new(Bytes::from(builder.finish())).expect("valid filter");
    let present: Vec<[u8; KEY_BYTES]> = (0..4096u64).map(|i| user_key(i * 48 % (2 * n))).collect();
    let absent: Vec<[u8; KEY_BYTES]> = (0..4096u64).map(|i| user_key(i * 2 + 1 + 2 * n)).collect();
    let false_positives = (0..n)
        .filter(|i| filter.may_contain(&user_key(i * 2 + 1)))
        .count();
    println!(
        "bloom: 10 bits/key over {n} keys, {} bytes, false positive rate {:.2}% on {n} absent keys",
        filter.len_bytes(),
        100.0 * false_positives as f64 / n as f64
    );
    let mut g = c.benchmark_group("bloom");
    g.throughput(Throughput::Elements(1));
    let mut next = 0usize;
    g.bench_function("probe_present", |b| {
        b.iter(|| {
            next = (next + 1) % present.len();
            black_box(filter.may_contain(&present[next]))
        })
    });
    g.bench_function("probe_absent", |b| {
        b.iter(|| {
            next = (next + 1) % absent.len();
            black_box(filter.may_contain(&absent[next]))
        })
    });
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("build_10k_keys", |b| {
        b.iter(|| {
            let mut bb = BloomBuilder::new(10);
            for i in 0..10_000u64 {
                bb.add(&user_key(i));
            }
            black_box(bb.finish().len())
        })
    });
    g.finish();
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = memtable, wal_append, block, bloom
}
criterion_main!(hot_paths);
