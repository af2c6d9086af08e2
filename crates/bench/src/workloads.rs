//! The workloads: writers (tokio tasks) and readers (OS threads) over one
//! engine, the disk's raw fsync rate, and closing and reopening the engine.
//! Each returns what it measured; the runner keeps the engine and the
//! outcomes.

use crate::args::{Args, Bench};
use crate::keys_values::{encode_key, key_buf, KeyOrder, ValueGen};
use crate::report::{
    cache_line, commas, fmt_bytes, group_buckets, group_percentiles, histogram, levels,
    result_head, Outcome,
};
use anyhow::{anyhow, Context, Result};
use ballast_storage::{Db, Error as DbError, Options, WriteBatch};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every workload runs with: the arguments, the engine's options,
/// its directory, the runtime the writers run on, and the values.
pub struct Setup<'a> {
    pub args: &'a Args,
    pub opts: &'a Options,
    pub dir: &'a Path,
    pub rt: &'a tokio::runtime::Runtime,
    pub values: &'a Arc<ValueGen>,
}

impl Setup<'_> {
    /// When each benchmark stops early (`--duration-secs`), from now.
    fn deadline(&self) -> Option<Instant> {
        self.args
            .duration_secs
            .map(|s| Instant::now() + Duration::from_secs_f64(s))
    }

    /// The seed of the benchmark at `index` in the run: each benchmark its
    /// own, all from `--seed`.
    fn seed(&self, index: u64) -> u64 {
        self.args
            .seed
            .wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

/// Thread `t`'s share of `total` items split among `threads`: `[lo, hi)`.
fn share(total: u64, t: u64, threads: u64) -> (u64, u64) {
    (total * t / threads, total * (t + 1) / threads)
}

/// What one writer or reader did.
struct Part {
    hist: Histogram<u64>,
    ops: u64,
    found: u64,
    bytes: u64,
}

impl Part {
    fn new() -> Part {
        Part {
            hist: histogram(),
            ops: 0,
            found: 0,
            bytes: 0,
        }
    }
}

fn merge(parts: Vec<Part>) -> Part {
    let mut all = Part::new();
    for p in parts {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = all.hist.add(&p.hist);
        all.ops += p.ops;
        all.found += p.found;
        all.bytes += p.bytes;
    }
    all
}

async fn writer(
    db: Arc<Db>,
    keys: KeyOrder,
    batch: usize,
    key_bytes: usize,
    values: Arc<ValueGen>,
    mut vpos: usize,
    deadline: Option<Instant>,
) -> Result<Part> {
    let mut part = Part::new();
    let mut key = key_buf(key_bytes);
    let mut keys = keys;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let mut b = WriteBatch::new();
        let mut bytes = 0;
        for i in keys.by_ref().take(batch) {
            encode_key(&mut key, i);
            let v = values.next(&mut vpos);
            bytes += (key.len() + v.len()) as u64;
            b.put(&key, v);
        }
        if b.is_empty() {
            break;
        }
        let n = b.len() as u64;
        let t = Instant::now();
        db.write(b).await?;
        part.hist.saturating_record(t.elapsed().as_nanos() as u64);
        part.ops += n;
        part.bytes += bytes;
    }
    Ok(part)
}

/// fillseq, fillrandom, overwrite: `--threads` writers of `--batch`-entry
/// batches.
pub fn write(ctx: &Setup<'_>, db: &Arc<Db>, b: Bench, index: u64) -> Result<Outcome> {
    let a = ctx.args;
    let threads = a.threads as u64;
    let seed = ctx.seed(index);
    let perm = (b == Bench::FillRandom).then(|| {
        let mut v: Vec<u64> = (0..a.num).collect();
        v.shuffle(&mut StdRng::seed_from_u64(seed));
        Arc::new(v)
    });
    let db = db.clone();
    let before = db.stats();
    let deadline = ctx.deadline();
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let (lo, hi) = share(a.num, t, threads);
        let keys = match (&perm, b) {
            (Some(p), _) => KeyOrder::Slice(p.clone(), lo as usize, hi as usize),
            (None, Bench::FillSeq) => KeyOrder::Range(lo, hi),
            _ => KeyOrder::Random {
                rng: Box::new(StdRng::seed_from_u64(seed ^ (t + 1))),
                n: a.num,
                left: hi - lo,
            },
        };
        let vpos = (t as usize * 7919 * a.value_bytes.max(1)) % (1 << 20);
        handles.push(ctx.rt.spawn(writer(
            db.clone(),
            keys,
            a.batch,
            a.key_bytes,
            ctx.values.clone(),
            vpos,
            deadline,
        )));
    }
    let mut parts = Vec::new();
    let mut first_err = None;
    for h in handles {
        match ctx.rt.block_on(h) {
            Ok(Ok(p)) => parts.push(p),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(anyhow!("a writer task failed: {e}"));
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(e) = first_err {
        return Err(e);
    }
    let after = db.stats();
    let all = merge(parts);
    let ops_per_sec = all.ops as f64 / elapsed;
    let writes = after.writes.saturating_sub(before.writes);
    let fsyncs = after.wal_fsyncs.saturating_sub(before.wal_fsyncs);
    let fpw = if writes == 0 {
        0.0
    } else {
        fsyncs as f64 / writes as f64
    };
    let per = if a.batch > 1 { "batch" } else { "write" };
    println!(
        "{}   fsyncs/{per} {:.4}   ({} ops in {:.2} s, preset {}, {} threads, batch {}{})",
        result_head(b.name(), ops_per_sec, all.bytes as f64 / elapsed, &all.hist),
        fpw,
        commas(all.ops),
        elapsed,
        ctx.opts.preset,
        a.threads,
        a.batch,
        if a.batch > 1 {
            ", latency per batch"
        } else {
            ""
        }
    );
    let groups = after.groups.saturating_sub(before.groups);
    let stalls = after.stalls.saturating_sub(before.stalls);
    let stall_us = after.stall_us.saturating_sub(before.stall_us);
    let (lp50, lp99, lp999) = after.write_latency_us_p50_p99_p999;
    println!(
        "               group commit: {} groups, {:.2} writes/group, {}; {} fsyncs; stalls {} ({:.3} s); flushes {}, compactions {}; {}; engine write latency p50/p99/p999 {}/{}/{} us (since open)",
        commas(groups),
        if groups == 0 { 0.0 } else { writes as f64 / groups as f64 },
        group_percentiles(&before, &after),
        commas(fsyncs),
        commas(stalls),
        stall_us as f64 / 1e6,
        after.flushes.saturating_sub(before.flushes),
        after.compactions.saturating_sub(before.compactions),
        levels(&after),
        lp50,
        lp99,
        lp999
    );
    if a.group_histogram {
        println!(
            "               groups by batches/group: {}",
            group_buckets(&before, &after)
        );
    }
    Ok(Outcome {
        bench: b,
        ops_per_sec,
        fsyncs_per_write: Some(fpw),
    })
}

/// readrandom, seekrandom, readseq: `--threads` reader threads.
pub fn read(ctx: &Setup<'_>, db: &Arc<Db>, b: Bench, index: u64) -> Result<Outcome> {
    let a = ctx.args;
    let db = db.clone();
    let threads = a.threads as u64;
    let reads = a.reads.unwrap_or(a.num);
    let num = a.num;
    let key_bytes = a.key_bytes;
    let nexts = a.seek_nexts;
    let seed = ctx.seed(index);
    let deadline = ctx.deadline();
    let before = db.stats();
    let started = Instant::now();
    let results: Vec<Result<Part>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let db = &db;
                s.spawn(move || -> Result<Part> {
                    let mut part = Part::new();
                    let mut key = key_buf(key_bytes);
                    let mut rng = StdRng::seed_from_u64(seed ^ (t + 1));
                    match b {
                        Bench::ReadRandom | Bench::SeekRandom => {
                            let (lo, hi) = share(reads, t, threads);
                            random_keys(
                                &mut part,
                                &mut key,
                                &mut rng,
                                hi - lo,
                                num,
                                deadline,
                                |key| read_key(db, b, key, nexts),
                            )?;
                        }
                        _ => {
                            // readseq: thread t scans its share of the key space.
                            let (lo, hi) = share(num, t, threads);
                            encode_key(&mut key, lo);
                            let mut end = key_buf(key_bytes);
                            encode_key(&mut end, hi);
                            let start: &[u8] = if t == 0 { &[] } else { &key };
                            let iter = if t + 1 == threads {
                                db.scan(start..)?
                            } else {
                                db.scan(start..end.as_slice())?
                            };
                            let mut t0 = Instant::now();
                            for (i, e) in iter.enumerate() {
                                let (k, v) = e?;
                                let t1 = Instant::now();
                                part.hist.saturating_record((t1 - t0).as_nanos() as u64);
                                t0 = t1;
                                part.ops += 1;
                                part.found += 1;
                                part.bytes += (k.len() + v.len()) as u64;
                                if i.is_multiple_of(64) && deadline.is_some_and(|d| t1 >= d) {
                                    break;
                                }
                            }
                        }
                    }
                    Ok(part)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a reader thread panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let parts = results.into_iter().collect::<Result<Vec<_>>>()?;
    let after = db.stats();
    let all = merge(parts);
    let ops_per_sec = all.ops as f64 / elapsed;
    let what = match b {
        Bench::ReadRandom => format!("found {} of {}", commas(all.found), commas(all.ops)),
        Bench::SeekRandom => format!(
            "{} seeks reading up to {nexts} entries, {} found a key",
            commas(all.ops),
            commas(all.found)
        ),
        _ => format!("{} entries scanned", commas(all.ops)),
    };
    println!(
        "{}   ({what}, in {:.2} s, {} threads{})",
        result_head(b.name(), ops_per_sec, all.bytes as f64 / elapsed, &all.hist),
        elapsed,
        a.threads,
        if b == Bench::ReadSeq {
            ", latency per entry"
        } else if b == Bench::SeekRandom {
            ", latency per seek + nexts"
        } else {
            ""
        }
    );
    println!(
        "               {}; {}; memtables waiting for flush {}",
        cache_line(&before, &after),
        levels(&after),
        after.immutable_memtables
    );
    Ok(Outcome {
        bench: b,
        ops_per_sec,
        fsyncs_per_write: None,
    })
}

/// One read of readrandom (a point read) or seekrandom (a seek, then up
/// to `nexts` entries): the bytes it read, if it found a key.
fn read_key(db: &Db, b: Bench, key: &[u8], nexts: usize) -> Result<Option<u64>> {
    if b == Bench::SeekRandom {
        let mut got = 0;
        let mut bytes = 0;
        for e in db.scan(key..)?.take(nexts) {
            let (k, v) = e?;
            bytes += (k.len() + v.len()) as u64;
            got += 1;
        }
        Ok((got > 0).then_some(bytes))
    } else {
        let v = db.get(key)?;
        Ok(v.map(|v| (key.len() + v.len()) as u64))
    }
}

/// The loop of readrandom and seekrandom: `n` reads of random keys below
/// `num`, each timed; `read` returns the bytes it read if it found the
/// key. Checks the deadline every 64 reads.
fn random_keys(
    part: &mut Part,
    key: &mut [u8],
    rng: &mut StdRng,
    n: u64,
    num: u64,
    deadline: Option<Instant>,
    mut read: impl FnMut(&[u8]) -> Result<Option<u64>>,
) -> Result<()> {
    for i in 0..n {
        if i.is_multiple_of(64) && deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        encode_key(key, rng.gen_range(0..num));
        let t0 = Instant::now();
        let found = read(key)?;
        part.hist.saturating_record(t0.elapsed().as_nanos() as u64);
        part.ops += 1;
        if let Some(bytes) = found {
            part.found += 1;
            part.bytes += bytes;
        }
    }
    Ok(())
}

/// The disk's own limit for one durable writer: overwrite 4 KiB blocks of
/// a preallocated file, fdatasync after each.
pub fn rawsync(ctx: &Setup<'_>) -> Result<Outcome> {
    let a = ctx.args;
    let ops = a.rawsync_ops.unwrap_or(a.num.min(20_000));
    let path = ctx.dir.join("rawsync.dat");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let chunk = vec![0u8; 1 << 20];
    let mib = a.rawsync_file_mib.max(1);
    for i in 0..mib {
        f.write_all_at(&chunk, i << 20)?;
    }
    f.sync_all()?;
    let slots = mib * 256;
    let mut block = vec![0xa5u8; 4096];
    let mut hist = histogram();
    let deadline = ctx.deadline();
    let started = Instant::now();
    let mut done = 0;
    for i in 0..ops {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        block[..8].copy_from_slice(&i.to_le_bytes());
        let t0 = Instant::now();
        f.write_all_at(&block, (i % slots) * 4096)?;
        f.sync_data()?;
        hist.saturating_record(t0.elapsed().as_nanos() as u64);
        done += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    let ops_per_sec = done as f64 / elapsed;
    println!(
        "{}   fsyncs/write 1.0000   ({} x (4 KiB pwrite + fdatasync) in {:.2} s, {} MiB preallocated file, 1 thread)",
        result_head("rawsync", ops_per_sec, done as f64 * 4096.0 / elapsed, &hist),
        commas(done),
        elapsed,
        mib
    );
    Ok(Outcome {
        bench: Bench::RawSync,
        ops_per_sec,
        fsyncs_per_write: Some(1.0),
    })
}

/// Closes (or, with --crash-before-reopen, drops) the engine and opens it
/// again, reporting what recovery did. Returns the reopened engine.
pub fn reopen(ctx: &Setup<'_>, db: Arc<Db>) -> Result<Arc<Db>> {
    let db = Arc::try_unwrap(db).map_err(|_| anyhow!("the engine is still shared"))?;
    let crash = ctx.args.crash_before_reopen;
    let t0 = Instant::now();
    if crash {
        drop(db);
    } else {
        ctx.rt.block_on(db.close()).context("closing the engine")?;
    }
    let shut = t0.elapsed();
    // After a drop the background workers may still hold the engine (and
    // its directory lock) for a moment: retry while the lock is held.
    let t1 = Instant::now();
    let mut lock_waits = 0u64;
    let db = loop {
        match ctx.rt.block_on(Db::open(ctx.dir, ctx.opts.clone())) {
            Ok(db) => break db,
            Err(DbError::Locked { .. }) if t1.elapsed() < Duration::from_secs(60) => {
                lock_waits += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e).context("reopening the engine"),
        }
    };
    let open = t1.elapsed();
    let r = db.recovery_report().clone();
    println!(
        "{:<12} :  open {:.3} s (WAL replay {:.3} s, new segment {:.3} s), replayed {} records, {} entries, {} from {} WAL segments   ({} took {:.3} s{}; torn tail {}; orphans removed {})",
        "reopen",
        open.as_secs_f64(),
        r.replay_us as f64 / 1e6,
        r.new_segment_us as f64 / 1e6,
        commas(r.wal_records),
        commas(r.entries),
        fmt_bytes(r.wal_bytes),
        r.wal_segments,
        if crash { "drop without close" } else { "close" },
        shut.as_secs_f64(),
        if lock_waits > 0 {
            format!(", directory lock still held: {lock_waits} retries")
        } else {
            String::new()
        },
        match r.truncated_tail {
            Some(t) => format!(
                "segment {} at {}, {} bytes dropped",
                t.segment, t.offset, t.bytes_dropped
            ),
            None => "none".to_string(),
        },
        r.orphans_removed
    );
    let s = db.stats();
    println!(
        "               after open: {}; memtables waiting for flush {}",
        levels(&s),
        s.immutable_memtables
    );
    Ok(Arc::new(db))
}
