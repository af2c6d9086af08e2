//! What the memtable's skiplist costs on this machine, apart from the rest
//! of the write path: inserts of 1,000,000 16-byte keys (random order,
//! and random keys sorted in chunks of 1,000 as a batched group inserts
//! them), into crossbeam-skiplist directly and into ballast's `MemTable`
//! (100-byte values). This bounds the single-writer and batched write
//! rates: a writer cannot go faster than its memtable inserts.
//!
//! `cargo run --release -p ballast-storage --example skiplist_probe`

use ballast_storage::key::{internal_key, ValueKind};
use ballast_storage::memtable::{MemKey, MemTable};
use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::time::Instant;

const N: u64 = 1_000_000;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[8..].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k
}

fn report(what: &str, started: Instant) {
    let ns = started.elapsed().as_nanos() as f64 / N as f64;
    println!(
        "{what:<58} {ns:>6.0} ns/insert  {:>6.0}k inserts/s",
        1e6 / ns
    );
}

fn main() {
    let mut ids: Vec<u64> = (0..N).collect();
    ids.shuffle(&mut StdRng::seed_from_u64(1));
    let random: Vec<[u8; 16]> = ids.iter().map(|&i| key(i)).collect();
    let mut chunked = random.clone();
    for c in chunked.chunks_mut(1000) {
        c.sort_unstable();
    }

    for (what, keys) in [
        ("crossbeam SkipMap<[u8;16],()>, random order", &random),
        (
            "crossbeam SkipMap<[u8;16],()>, sorted chunks of 1,000",
            &chunked,
        ),
    ] {
        let map = SkipMap::new();
        let started = Instant::now();
        for k in keys {
            map.insert(*k, ());
        }
        report(what, started);
    }

    let value = [7u8; 100];
    for (what, keys) in [
        ("ballast MemTable, 100 B values, random order", &random),
        (
            "ballast MemTable, 100 B values, sorted chunks of 1,000",
            &chunked,
        ),
    ] {
        // Entries are built before the clock starts.
        let entries: Vec<MemKey> = keys
            .iter()
            .enumerate()
            .map(|(seq, k)| {
                let mut buf = internal_key(k, seq as u64 + 1, ValueKind::Put);
                let klen = buf.len();
                buf.extend_from_slice(&value);
                MemKey::new(Bytes::from(buf), klen)
            })
            .collect();
        let mem = MemTable::new(0);
        let started = Instant::now();
        for (seq, e) in entries.into_iter().enumerate() {
            mem.insert(e, seq as u64 + 1);
        }
        report(what, started);
    }
}
