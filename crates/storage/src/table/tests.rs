//! Tests of the SSTable module: round trips, versions, the bloom filter,
//! corruption detection, the block cache, and property/robustness tests.

use super::*;
use crate::error::Error;
use crate::fs::{self, DynFile, FileHandle, FileSystem, OpenMode, StdFs};
use crate::iter::InternalIterator;
use crate::key::{internal_key, lookup_key, user_key, ValueKind, SEQ_MAX};
use crate::options::Compression;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

type Entries = Vec<(Vec<u8>, Vec<u8>)>;
/// (user key, seq) -> (kind byte, value).
type Model = BTreeMap<(Vec<u8>, u64), (u8, Vec<u8>)>;
/// An in-place file mutation.
type Mutation<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;

fn opts(compression: Compression, block_bytes: usize, bloom: u32) -> TableOptions {
    TableOptions {
        block_bytes,
        compression,
        bloom_bits_per_key: bloom,
        restart_interval: 16,
    }
}

fn build_file(file: DynFile, path: &Path, entries: &Entries, o: TableOptions) -> TableSummary {
    let mut b = TableBuilder::new(file, path.to_path_buf(), o);
    for (k, v) in entries {
        b.add(k, v).unwrap();
    }
    assert_eq!(b.entries(), entries.len() as u64);
    b.finish().unwrap()
}

fn build(path: &Path, entries: &Entries, o: TableOptions) -> TableSummary {
    let file = StdFs.open(path, OpenMode::CreateNew).unwrap();
    build_file(file, path, entries, o)
}

fn open(path: &Path, number: u64, cache: &Arc<BlockCache>) -> crate::Result<Arc<Table>> {
    let file = StdFs.open(path, OpenMode::Read).unwrap();
    let size = file.len().unwrap();
    Table::open(file, path.to_path_buf(), number, size, Arc::clone(cache))
}

fn read_all(path: &Path) -> Vec<u8> {
    fs::read_file(&StdFs, path).unwrap()
}

fn write_all(path: &Path, bytes: &[u8]) {
    fs::write_file_durably(&StdFs, path, bytes).unwrap();
}

fn footer_of(bytes: &[u8]) -> Footer {
    let at = bytes.len() - FOOTER_LEN;
    Footer::decode(&bytes[at..], Path::new("x"), at as u64).unwrap()
}

/// `n` entries with user keys `key0000000000`, `key0000000002`, ... (even
/// numbers, so odd numbers fall between), sequence number `i + 1`.
fn sample(n: usize) -> Entries {
    (0..n)
        .map(|i| {
            let k = internal_key(
                format!("key{:010}", 2 * i).as_bytes(),
                i as u64 + 1,
                ValueKind::Put,
            );
            let v = format!("value-{i}-").repeat(1 + i % 7).into_bytes();
            (k, v)
        })
        .collect()
}

fn assert_corruption_at(err: &Error, path: &Path, offset: u64) {
    match err {
        Error::Corruption {
            path: p, offset: o, ..
        } => {
            assert_eq!(p, path, "{err}");
            assert_eq!(*o, offset, "{err}");
        }
        other => panic!("expected corruption at {offset}, got {other}"),
    }
}

fn scan(t: &Arc<Table>) -> crate::Result<Entries> {
    let mut it = t.iter();
    let mut out = Vec::new();
    it.seek_to_first()?;
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next()?;
    }
    Ok(out)
}

#[test]
fn round_trip_100k_entries_gets_iteration_and_seeks() {
    let dir = tempfile::tempdir().unwrap();
    let entries = sample(100_000);
    let configs = [
        (Compression::None, 4096, 16),
        (Compression::Snappy, 4096, 16),
        (Compression::Snappy, 1024, 4),
        (Compression::None, 32 * 1024, 16),
    ];
    for (n, &(compression, block_bytes, restart)) in configs.iter().enumerate() {
        let path = dir.path().join(format!("{n}.sst"));
        let mut o = opts(compression, block_bytes, 10);
        o.restart_interval = restart;
        let summary = build(&path, &entries, o);
        assert_eq!(summary.entries, 100_000);
        assert_eq!(summary.smallest, entries[0].0);
        assert_eq!(summary.largest, entries[99_999].0);
        assert_eq!((summary.smallest_seq, summary.largest_seq), (1, 100_000));
        let cache = BlockCache::new(8 << 20);
        let t = open(&path, n as u64, &cache).unwrap();
        assert_eq!(summary.file_size, t.file_size());
        let p = t.properties();
        assert_eq!(p.format_version, FORMAT_VERSION);
        assert_eq!(p.entries, 100_000);
        assert_eq!(
            (&p.smallest, &p.largest),
            (&summary.smallest, &summary.largest)
        );
        assert_eq!(p.data_blocks, t.data_blocks() as u64);
        assert!(p.data_blocks > 1);
        let raw: u64 = entries
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        assert_eq!(p.raw_key_bytes + p.raw_value_bytes, raw);
        if compression == Compression::Snappy {
            assert!(p.data_bytes < raw, "snappy should shrink repetitive values");
        }

        for (k, v) in &entries {
            let (gk, gv) = t.get(&lookup_key(user_key(k), SEQ_MAX)).unwrap().unwrap();
            assert_eq!((&gk[..], &gv[..]), (&k[..], &v[..]));
        }
        assert_eq!(scan(&t).unwrap(), entries);

        let mut rng = StdRng::seed_from_u64(n as u64);
        let mut it = t.iter();
        for _ in 0..2000 {
            let i = rng.gen_range(0..200_001usize);
            it.seek(&lookup_key(format!("key{i:010}").as_bytes(), SEQ_MAX))
                .unwrap();
            let expect = i.div_ceil(2);
            if expect < entries.len() {
                assert!(it.valid());
                assert_eq!(it.key(), &entries[expect].0[..]);
                assert_eq!(it.value(), &entries[expect].1[..]);
                if expect + 1 < entries.len() {
                    it.next().unwrap();
                    assert_eq!(it.key(), &entries[expect + 1].0[..]);
                }
            } else {
                assert!(!it.valid());
            }
        }
    }
}

#[test]
fn missing_keys_below_between_and_above_return_none() {
    let dir = tempfile::tempdir().unwrap();
    let entries = sample(5000);
    for bloom in [0, 10] {
        let path = dir.path().join(format!("{bloom}.sst"));
        build(&path, &entries, opts(Compression::Snappy, 512, bloom));
        let t = open(&path, 1, &BlockCache::new(1 << 20)).unwrap();
        assert!(t.get(&lookup_key(b"a", SEQ_MAX)).unwrap().is_none());
        assert!(t.get(&lookup_key(b"key", SEQ_MAX)).unwrap().is_none());
        for i in (1..10_000).step_by(2) {
            let k = format!("key{i:010}");
            assert!(t.get(&lookup_key(k.as_bytes(), SEQ_MAX)).unwrap().is_none());
        }
        assert!(t
            .get(&lookup_key(b"key9999999999", SEQ_MAX))
            .unwrap()
            .is_none());
        assert!(t.get(&lookup_key(b"zzz", SEQ_MAX)).unwrap().is_none());
        // An existing key read at a snapshot older than its only version.
        assert!(t.get(&lookup_key(b"key0000000100", 10)).unwrap().is_none());
    }
}

#[test]
fn get_returns_the_version_visible_at_the_lookup_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = vec![(internal_key(b"j", 500, ValueKind::Put), b"j".to_vec())];
    for (seq, kind) in [
        (100, ValueKind::Put),
        (80, ValueKind::Delete),
        (50, ValueKind::PutExpiring),
        (20, ValueKind::Put),
    ] {
        entries.push((
            internal_key(b"k", seq, kind),
            format!("v{seq}").into_bytes(),
        ));
    }
    entries.push((internal_key(b"l", 1, ValueKind::Put), b"l".to_vec()));
    // Tiny blocks so that the versions of "k" span several blocks.
    for block_bytes in [1, 64, 4096] {
        let path = dir.path().join(format!("{block_bytes}.sst"));
        build(&path, &entries, opts(Compression::None, block_bytes, 10));
        let t = open(&path, 1, &BlockCache::new(1 << 20)).unwrap();
        for (snapshot, want) in [
            (SEQ_MAX, Some(100)),
            (101, Some(100)),
            (100, Some(100)),
            (99, Some(80)),
            (80, Some(80)),
            (79, Some(50)),
            (50, Some(50)),
            (49, Some(20)),
            (20, Some(20)),
            (19, None),
            (0, None),
        ] {
            let got = t.get(&lookup_key(b"k", snapshot)).unwrap();
            let got_seq = got.as_ref().map(|(k, v)| {
                let p = crate::key::parse_internal_key(k).unwrap();
                assert_eq!(p.user_key, b"k");
                assert_eq!(v, format!("v{}", p.seq).as_bytes());
                p.seq
            });
            assert_eq!(
                got_seq, want,
                "snapshot {snapshot}, blocks of {block_bytes}"
            );
        }
    }
}

#[test]
fn bloom_false_positive_rate_below_2_percent_at_10_bits_per_key() {
    let n = 100_000u32;
    let mut b = BloomBuilder::new(10);
    for i in 0..n {
        b.add(format!("user-key-{i}").as_bytes());
    }
    let f = BloomFilter::new(bytes::Bytes::from(b.finish())).unwrap();
    for i in 0..n {
        assert!(
            f.may_contain(format!("user-key-{i}").as_bytes()),
            "false negative {i}"
        );
    }
    let probes = 200_000u32;
    let fp = (0..probes)
        .filter(|i| f.may_contain(format!("other-key-{i}").as_bytes()))
        .count();
    let rate = fp as f64 / f64::from(probes);
    eprintln!("bloom false positive rate at 10 bits/key: {rate}");
    assert!(rate < 0.02, "false positive rate {rate}");
    assert_eq!(probes_for(10), 7);
    assert_eq!(probes_for(0), 1);
    assert_eq!(probes_for(64), 30);
}

#[test]
fn table_bloom_has_no_false_negatives_and_filters_absent_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let entries = sample(20_000);
    build(&path, &entries, opts(Compression::Snappy, 4096, 10));
    let cache = BlockCache::new(1 << 20);
    let t = open(&path, 1, &cache).unwrap();
    for (k, _) in &entries {
        assert!(t.may_contain(user_key(k)));
    }
    let absent = (1..40_000)
        .step_by(2)
        .filter(|i| t.may_contain(format!("key{i:010}").as_bytes()))
        .count();
    assert!(absent < 400, "{absent} false positives of 20000");
    // A filtered-out get reads no block.
    let before = cache.misses() + cache.hits();
    let mut reads = 0;
    for i in (1..2000).step_by(2) {
        let k = format!("key{i:010}");
        if !t.may_contain(k.as_bytes()) {
            assert!(t.get(&lookup_key(k.as_bytes(), SEQ_MAX)).unwrap().is_none());
        } else {
            reads += 1;
            t.get(&lookup_key(k.as_bytes(), SEQ_MAX)).unwrap();
        }
    }
    assert_eq!(cache.misses() + cache.hits() - before, reads);
}

#[test]
fn bloom_hash_is_stable() {
    // The hash is part of the on-disk format: these values must never change.
    assert_eq!(bloom_hash(b""), super::bloom::fmix64(0xcbf2_9ce4_8422_2325));
    let golden = [
        bloom_hash(b"a"),
        bloom_hash(b"hello"),
        bloom_hash(b"key0000000042"),
    ];
    assert_eq!(
        golden,
        [
            0x82a2_a958_a9be_ce5b,
            0xe9c5_62c0_fdb2_3244,
            0x8522_6347_2c06_f48f
        ]
    );
}

#[test]
fn flipped_byte_in_data_block_is_corruption_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let entries = sample(3000);
    for compression in [Compression::None, Compression::Snappy] {
        let path = dir.path().join(format!("{compression:?}.sst"));
        build(&path, &entries, opts(compression, 1024, 10));
        let clean = open(&path, 1, &BlockCache::new(0)).unwrap();
        let victim = clean.data_block_handle(3).unwrap();
        let mut bytes = read_all(&path);
        for flip_at in [
            0,
            victim.size / 2,
            victim.size - 1,
            victim.size,
            victim.size + 4,
        ] {
            let mut bad = bytes.clone();
            bad[(victim.offset + flip_at) as usize] ^= 0x40;
            write_all(&path, &bad);
            let t = open(&path, 1, &BlockCache::new(1 << 20)).unwrap();
            let mut errors = 0;
            for (k, v) in &entries {
                match t.get(&lookup_key(user_key(k), SEQ_MAX)) {
                    Ok(Some((gk, gv))) => assert_eq!((&gk[..], &gv[..]), (&k[..], &v[..])),
                    Ok(None) => panic!("key lost without an error"),
                    Err(e) => {
                        assert_corruption_at(&e, &path, victim.offset);
                        errors += 1;
                    }
                }
            }
            assert!(errors > 0);
            // Iteration yields correct entries up to the bad block, then the error.
            let mut it = t.iter();
            let mut seen = 0;
            let mut res = it.seek_to_first();
            while res.is_ok() && it.valid() {
                assert_eq!(it.key(), &entries[seen].0[..]);
                assert_eq!(it.value(), &entries[seen].1[..]);
                seen += 1;
                res = it.next();
            }
            assert_corruption_at(&res.unwrap_err(), &path, victim.offset);
            assert!(!it.valid());
            // Seeking into the bad block fails too.
            let mut it = t.iter();
            let inside = t.get(&lookup_key(user_key(&entries[seen - 1].0), SEQ_MAX));
            assert!(inside.is_ok());
            let err = (seen..entries.len())
                .find_map(|i| it.seek(&entries[i].0).err())
                .unwrap();
            assert_corruption_at(&err, &path, victim.offset);
        }
        bytes.clear();
    }
}

#[test]
fn malformed_block_contents_with_a_valid_checksum_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let entries = sample(2000);
    build(&path, &entries, opts(Compression::None, 1024, 0));
    let victim = open(&path, 1, &BlockCache::new(0))
        .unwrap()
        .data_block_handle(2)
        .unwrap();
    let (start, size) = (victim.offset as usize, victim.size as usize);
    let clean = read_all(&path);
    let reseal = |bytes: &mut Vec<u8>| {
        let crc = crc32fast::hash(&bytes[start..start + size + 1]);
        bytes[start + size + 1..start + size + 5].copy_from_slice(&crc.to_le_bytes());
    };
    let mutations: Vec<Mutation<'_>> = vec![
        // Restart count far beyond the block.
        Box::new(|b| b[start + size - 4..start + size].copy_from_slice(&u32::MAX.to_le_bytes())),
        // Restart count zero.
        Box::new(|b| b[start + size - 4..start + size].copy_from_slice(&0u32.to_le_bytes())),
        // First restart offset pointing past the entries.
        Box::new(|b| {
            let n = u32::from_le_bytes(b[start + size - 4..start + size].try_into().unwrap());
            let first = start + size - 4 - 4 * n as usize;
            b[first..first + 4].copy_from_slice(&(size as u32).to_le_bytes());
        }),
        // An unknown compression type.
        Box::new(|b| b[start + size] = 7),
        // A "snappy" block that is not snappy.
        Box::new(|b| b[start + size] = BLOCK_TYPE_SNAPPY),
        // First entry's unshared length huge.
        Box::new(|b| b[start + 1] = 0x7f),
    ];
    for (n, mutate) in mutations.iter().enumerate() {
        let mut bad = clean.clone();
        mutate(&mut bad);
        reseal(&mut bad);
        write_all(&path, &bad);
        let t = open(&path, 1, &BlockCache::new(1 << 20)).unwrap();
        let err = scan(&t).unwrap_err();
        assert_corruption_at(&err, &path, victim.offset);
        assert!(!format!("{err}").is_empty(), "mutation {n}");
    }
}

#[test]
fn flipped_byte_in_index_block_is_corruption_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    build(&path, &sample(5000), opts(Compression::Snappy, 1024, 10));
    let clean = read_all(&path);
    let footer = footer_of(&clean);
    for h in [footer.index, footer.filter, footer.properties] {
        for at in [0, h.size / 2, h.size + 2] {
            let mut bad = clean.clone();
            bad[(h.offset + at) as usize] ^= 0x01;
            write_all(&path, &bad);
            let err = open(&path, 1, &BlockCache::new(0)).unwrap_err();
            assert_corruption_at(&err, &path, h.offset);
        }
    }
}

#[test]
fn flipped_byte_in_footer_is_corruption_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    build(&path, &sample(100), opts(Compression::None, 4096, 10));
    let clean = read_all(&path);
    let footer_at = (clean.len() - FOOTER_LEN) as u64;
    for i in 0..FOOTER_LEN {
        for bit in [0x01, 0x80] {
            let mut bad = clean.clone();
            bad[footer_at as usize + i] ^= bit;
            write_all(&path, &bad);
            let err = open(&path, 1, &BlockCache::new(0)).unwrap_err();
            assert_corruption_at(&err, &path, footer_at);
        }
    }
}

#[test]
fn truncated_file_is_corruption_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    build(&path, &sample(1000), opts(Compression::None, 1024, 10));
    let clean = read_all(&path);
    for len in [
        0,
        1,
        FOOTER_LEN - 1,
        FOOTER_LEN,
        clean.len() / 2,
        clean.len() - 1,
    ] {
        write_all(&path, &clean[..len]);
        let err = open(&path, 1, &BlockCache::new(0)).unwrap_err();
        assert!(err.is_corruption(), "length {len}: {err}");
        assert!(format!("{err}").contains("t.sst"), "{err}");
        // The manifest's (longer) size on a truncated file: also corruption.
        let file = StdFs.open(&path, OpenMode::Read).unwrap();
        let err = Table::open(
            file,
            path.clone(),
            1,
            clean.len() as u64,
            BlockCache::new(0),
        )
        .unwrap_err();
        assert!(err.is_corruption(), "length {len}: {err}");
    }
}

#[test]
fn newer_format_version_is_unsupported_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    build(&path, &sample(100), opts(Compression::None, 4096, 10));
    let mut bytes = read_all(&path);
    let at = bytes.len() - FOOTER_LEN;
    let mut footer = footer_of(&bytes);
    footer.version = FORMAT_VERSION + 1;
    bytes[at..].copy_from_slice(&footer.encode());
    write_all(&path, &bytes);
    match open(&path, 1, &BlockCache::new(0)).unwrap_err() {
        Error::UnsupportedFormat {
            path: p,
            found,
            supported,
        } => {
            assert_eq!(p, path);
            assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION));
        }
        other => panic!("{other}"),
    }
    footer.version = 0;
    bytes[at..].copy_from_slice(&footer.encode());
    write_all(&path, &bytes);
    assert!(open(&path, 1, &BlockCache::new(0))
        .unwrap_err()
        .is_corruption());
}

#[test]
fn block_cache_counts_hits_and_misses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let entries = sample(1000);
    build(&path, &entries, opts(Compression::Snappy, 1024, 10));
    let cache = BlockCache::new(1 << 20);
    let t = open(&path, 7, &cache).unwrap();
    let get = |i: usize| {
        t.get(&lookup_key(user_key(&entries[i].0), SEQ_MAX))
            .unwrap()
    };
    assert_eq!((cache.hits(), cache.misses()), (0, 0));
    get(0).unwrap();
    assert_eq!((cache.hits(), cache.misses()), (0, 1));
    get(0).unwrap();
    get(1).unwrap(); // same block
    assert_eq!((cache.hits(), cache.misses()), (2, 1));
    get(999).unwrap(); // another block
    assert_eq!((cache.hits(), cache.misses()), (2, 2));
    assert!(cache.usage_bytes() > 0);
    // A full scan misses on every block but the two cached, then hits on all.
    let blocks = t.data_blocks() as u64;
    scan(&t).unwrap();
    assert_eq!(cache.misses(), 2 + blocks - 2);
    scan(&t).unwrap();
    assert_eq!(cache.misses(), blocks);
    assert_eq!(cache.hits(), 2 + 2 + blocks);
    // A scan that does not fill the cache leaves no trace in it.
    cache.erase_file(7);
    assert_eq!(cache.usage_bytes(), 0);
    let mut it = t.iter();
    it.set_fill_cache(false);
    it.seek_to_first().unwrap();
    while it.valid() {
        it.next().unwrap();
    }
    assert_eq!(cache.usage_bytes(), 0);

    // A disabled cache misses every time and holds nothing.
    let off = BlockCache::new(0);
    let t = open(&path, 7, &off).unwrap();
    t.get(&lookup_key(user_key(&entries[0].0), SEQ_MAX))
        .unwrap()
        .unwrap();
    t.get(&lookup_key(user_key(&entries[0].0), SEQ_MAX))
        .unwrap()
        .unwrap();
    assert_eq!((off.hits(), off.misses(), off.usage_bytes()), (0, 2, 0));
}

#[test]
fn block_cache_respects_its_capacity() {
    let mut bb = BlockBuilder::new(16);
    for (k, v) in sample(40) {
        bb.add(&k, &v);
    }
    let block = Arc::new(Block::decode(bb.finish()).unwrap());
    let charge = block.charge();
    for capacity in [10 * charge, 64 * 1024, 20 << 20] {
        let cache = BlockCache::new(capacity);
        let n = 2 * capacity / charge + 10;
        for i in 0..n {
            cache.insert(i % 5, i * 4096, Arc::clone(&block));
            assert!(cache.usage_bytes() <= capacity);
        }
        assert!(cache.usage_bytes() > 0);
        assert!(
            cache.usage_bytes() <= capacity,
            "{} > {capacity}",
            cache.usage_bytes()
        );
    }
}

#[test]
fn empty_table_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let s = build(&path, &Vec::new(), TableOptions::default());
    assert_eq!(s.entries, 0);
    let t = open(&path, 1, &BlockCache::new(1 << 20)).unwrap();
    assert!(t.get(&lookup_key(b"a", SEQ_MAX)).unwrap().is_none());
    assert!(scan(&t).unwrap().is_empty());
    let mut it = t.iter();
    it.seek(&lookup_key(b"a", SEQ_MAX)).unwrap();
    assert!(!it.valid());
}

/// A file that counts its positional writes.
#[derive(Debug)]
struct CountingFile {
    inner: DynFile,
    writes: Arc<AtomicU64>,
}

impl FileHandle for CountingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

#[test]
fn builder_writes_in_large_positional_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let writes = Arc::new(AtomicU64::new(0));
    let file: DynFile = Arc::new(CountingFile {
        inner: StdFs.open(&path, OpenMode::CreateNew).unwrap(),
        writes: Arc::clone(&writes),
    });
    let s = build_file(
        file,
        &path,
        &sample(50_000),
        opts(Compression::None, 4096, 10),
    );
    let t = open(&path, 1, &BlockCache::new(0)).unwrap();
    let w = writes.load(Ordering::Relaxed);
    assert!(
        w <= s.file_size / (256 * 1024) + 2,
        "{w} writes for {} bytes",
        s.file_size
    );
    assert!(w * 50 < t.data_blocks() as u64);
}

#[test]
fn random_bytes_fed_to_block_decoders_error_not_panic() {
    let mut rng = StdRng::seed_from_u64(42);
    let mut bb = BlockBuilder::new(4);
    for (k, v) in sample(50) {
        bb.add(&k, &v);
    }
    let valid = bb.finish().to_vec();
    assert_eq!(Block::decode(&valid).unwrap().len(), 50);
    let mut ok = 0;
    for round in 0..20_000 {
        let input: Vec<u8> = if round % 2 == 0 {
            let len = rng.gen_range(0..300);
            (0..len).map(|_| rng.gen()).collect()
        } else {
            let mut v = valid.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            if rng.gen_bool(0.2) {
                v.truncate(rng.gen_range(0..v.len()));
            }
            v
        };
        if let Ok(b) = Block::decode(&input) {
            ok += 1;
            // Whatever decodes must be safe to search and read.
            for i in 0..b.len() {
                let _ = (b.key(i), b.value(i), b.key_bytes(i), b.value_bytes(i));
            }
            let _ = b.seek(&lookup_key(b"key0000000010", SEQ_MAX));
        }
        let _ = TableProperties::decode(&input);
        let _ = BloomFilter::new(bytes::Bytes::from(input.clone()));
        let _ = BlockHandle::decode_exact(&input);
    }
    assert!(ok < 20_000);
}

/// A random table: user keys from a small alphabet (so that versions of one
/// key and shared prefixes are common), distinct sequence numbers.
fn model_strategy() -> impl Strategy<Value = (Model, usize, usize, bool, u32)> {
    (
        prop::collection::btree_map(
            (prop::collection::vec(b'a'..b'e', 0..6), 0u64..50),
            (0u8..3, prop::collection::vec(any::<u8>(), 0..40)),
            0..300,
        ),
        prop_oneof![Just(1usize), 64usize..512, Just(4096usize)],
        1usize..20,
        any::<bool>(),
        prop_oneof![Just(0u32), 1u32..20],
    )
}

fn model_entries(model: &Model) -> Entries {
    let mut v: Entries = model
        .iter()
        .map(|((u, s), (kind, val))| {
            let kind = ValueKind::from_u8(*kind).unwrap();
            (internal_key(u, *s, kind), val.clone())
        })
        .collect();
    v.sort_by(|a, b| crate::key::compare_internal(&a.0, &b.0));
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn prop_table_matches_a_btreemap_model(
        (model, block_bytes, restart, snappy, bloom) in model_strategy()
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let entries = model_entries(&model);
        let o = TableOptions {
            block_bytes,
            compression: if snappy { Compression::Snappy } else { Compression::None },
            bloom_bits_per_key: bloom,
            restart_interval: restart,
        };
        let s = build(&path, &entries, o);
        prop_assert_eq!(s.entries, entries.len() as u64);
        let t = open(&path, 1, &BlockCache::new(64 * 1024)).unwrap();
        prop_assert_eq!(scan(&t).unwrap(), entries.clone());

        // Every user key of the alphabet at every snapshot.
        let users: std::collections::BTreeSet<Vec<u8>> =
            model.keys().map(|(u, _)| u.clone()).chain([b"".to_vec(), b"zz".to_vec(), b"ab".to_vec()]).collect();
        for u in &users {
            for snap in [0u64, 1, 7, 25, 49, 50, SEQ_MAX] {
                let lk = lookup_key(u, snap);
                // The newest version with a sequence number <= snap.
                let want = model
                    .range((u.clone(), 0)..=(u.clone(), snap))
                    .next_back()
                    .map(|((uu, ss), (kind, val))| {
                        (internal_key(uu, *ss, ValueKind::from_u8(*kind).unwrap()), val.clone())
                    });
                let got = t.get(&lk).unwrap().map(|(k, v)| (k.to_vec(), v.to_vec()));
                prop_assert_eq!(got, want);

                // seek agrees with a linear search of the model.
                let mut it = t.iter();
                it.seek(&lk).unwrap();
                let expect = entries
                    .iter()
                    .find(|(k, _)| crate::key::compare_internal(k, &lk) != std::cmp::Ordering::Less);
                match expect {
                    Some((k, v)) => {
                        prop_assert!(it.valid());
                        prop_assert_eq!(it.key(), &k[..]);
                        prop_assert_eq!(it.value(), &v[..]);
                    }
                    None => prop_assert!(!it.valid()),
                }
            }
        }
    }
}

/// A merge that read damaged input (a checksum mismatch missed) can hand
/// the builder keys out of order: that is a named corruption error, not a
/// panic (the simulation's `ignore-crc-mismatch` runs reached the old
/// debug assertion) and not a table whose index lies.
#[test]
fn out_of_order_keys_are_a_corruption_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("000001.sst");
    let file = StdFs.open(&path, OpenMode::CreateNew).unwrap();
    let mut b = TableBuilder::new(file, path.clone(), opts(Compression::None, 4096, 10));
    b.add(&internal_key(b"b", 2, ValueKind::Put), b"v").unwrap();
    for (key, seq) in [(&b"a"[..], 3), (&b"b"[..], 2), (&b"b"[..], 5)] {
        let err = b
            .add(&internal_key(key, seq, ValueKind::Put), b"v")
            .unwrap_err();
        assert!(err.is_corruption(), "{key:?}@{seq}: {err}");
        assert!(err.to_string().contains("out of order"), "{err}");
    }
    assert_eq!(b.entries(), 1);
}
