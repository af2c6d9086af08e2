//! Real-process crash tests: a child process writes and reports each
//! acknowledged write on stdout; the parent SIGKILLs it at a random moment,
//! reopens the directory and checks the preset's contract.
//!
//! The child is this same test binary, re-run with `BALLAST_CRASH_CHILD` set
//! so that only `crash_child_writer` does anything.
//!
//! What a process crash (not a power loss: the OS keeps what was written)
//! must leave behind:
//! - durable and balanced: every acknowledged write (both hand each group to
//!   the OS before acknowledging it);
//! - throughput: a prefix of the acknowledged order (the write-back buffer
//!   may be lost, but never with holes or reordering).
//!
//! In every preset, each writer's surviving keys are a prefix of its
//! sequence, batches are all-or-nothing, and no value is corrupt.

use ballast_storage::{Background, Db, Options, Preset, WriteBatch};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const WRITERS: usize = 4;
const RUNS_PER_PRESET: usize = 20;

fn options(preset: Preset) -> Options {
    let mut o = Options::preset(preset);
    // Small sizes so that kills land during flushes, compactions and
    // manifest switches too.
    o.memtable_bytes = 128 * 1024;
    o.wal_segment_bytes = 256 * 1024;
    o.table_target_bytes = 128 * 1024;
    o.level_base_bytes = 512 * 1024;
    o.l0_compaction_trigger = 2;
    o.wal_preallocate = preset == Preset::Durable;
    if let ballast_storage::FsyncPolicy::WriteBack {
        flush_interval_ms, ..
    } = &mut o.fsync
    {
        *flush_interval_ms = 20;
    }
    o
}

fn key(writer: usize, i: u64) -> Vec<u8> {
    format!("w{writer}-{i:08}").into_bytes()
}

/// Values vary in length and are derived from the key, so a wrong or
/// corrupt value is detectable.
fn value(writer: usize, i: u64) -> Vec<u8> {
    let len = 10 + ((i * 7919 + writer as u64) % 300) as usize;
    let seed = format!("{writer}:{i}:");
    seed.bytes().cycle().take(len).collect()
}

/// Every 5th write of a writer is a batch of 3 keys (i, i+1, i+2).
fn is_batch_start(i: u64) -> bool {
    i % 15 == 5
}

#[test]
fn crash_child_writer() {
    let Ok(spec) = std::env::var("BALLAST_CRASH_CHILD") else {
        return; // Only the parent test runs this binary in child mode.
    };
    let (dir, preset) = spec.split_once('|').expect("dir|preset");
    let preset = Preset::parse(preset).expect("preset");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut o = options(preset);
        o.background = Background::Thread;
        let db = std::sync::Arc::new(Db::open(dir, o).await.expect("child open"));
        let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let db = db.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                loop {
                    if is_batch_start(i) {
                        let mut b = WriteBatch::new();
                        for j in i..i + 3 {
                            b.put(&key(w, j), &value(w, j));
                        }
                        db.write(b).await.expect("batch");
                        i += 3;
                    } else {
                        db.put(&key(w, i), &value(w, i)).await.expect("put");
                        i += 1;
                    }
                    use std::io::Write;
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {w} {i}").unwrap();
                    o.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn crash_and_check(preset: Preset, runs: usize) {
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("BALLAST_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random),
    );
    for run in 0..runs {
        let dir = tempfile::tempdir().expect("tempdir");
        // Earlier runs leave data behind in some runs, so recovery also
        // starts from a non-empty engine.
        let rounds = rng.gen_range(1..=2);
        let mut acked = [0u64; WRITERS];
        for round in 0..rounds {
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "crash_child_writer",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(
                    "BALLAST_CRASH_CHILD",
                    format!("{}|{}", dir.path().display(), preset.name()),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn child");
            let stdout = child.stdout.take().expect("stdout");
            let target = rng.gen_range(1..4000u64);
            let mut seen = 0u64;
            let mut lines = BufReader::new(stdout).lines();
            let mut round_acked = [0u64; WRITERS];
            while let Some(Ok(line)) = lines.next() {
                let mut parts = line.split_whitespace();
                if parts.next() != Some("ACK") {
                    continue;
                }
                let w: usize = parts.next().unwrap().parse().unwrap();
                let n: u64 = parts.next().unwrap().parse().unwrap();
                round_acked[w] = n;
                seen += 1;
                if seen >= target {
                    break;
                }
            }
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            // Later rounds restart each writer's sequence at 0: the keys are
            // the same, so a later round only overwrites with equal values.
            for w in 0..WRITERS {
                acked[w] = acked[w].max(round_acked[w]);
            }
            assert!(
                seen > 0,
                "run {run} round {round}: child acknowledged nothing"
            );
        }
        check(preset, dir.path(), &acked, run);
    }
}

fn check(preset: Preset, dir: &std::path::Path, acked: &[u64; WRITERS], run: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = Db::open(dir, options(preset))
            .await
            .unwrap_or_else(|e| panic!("{preset} run {run}: reopen failed: {e}"));
        let mut present: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for item in db.scan::<Vec<u8>>(..).expect("scan") {
            let (k, v) = item.unwrap_or_else(|e| panic!("{preset} run {run}: scan error {e}"));
            let k = std::str::from_utf8(&k).unwrap();
            let (w, i) = k[1..].split_once('-').unwrap();
            let (w, i): (usize, u64) = (w.parse().unwrap(), i.parse().unwrap());
            assert_eq!(v.as_ref(), value(w, i).as_slice(), "{preset} run {run}: wrong value for {k}");
            present.entry(w).or_default().push(i);
        }
        for (w, &acked) in acked.iter().enumerate() {
            let keys = present.remove(&w).unwrap_or_default();
            // A prefix of the writer's sequence: 0, 1, 2, ... with no holes.
            for (expected, got) in keys.iter().enumerate() {
                assert_eq!(
                    *got, expected as u64,
                    "{preset} run {run}: writer {w} has a hole before key {got}"
                );
            }
            let n = keys.len() as u64;
            // Batches are atomic: a prefix never ends inside a batch.
            let mut i = 0;
            while i < n {
                if is_batch_start(i) {
                    assert!(i + 3 <= n, "{preset} run {run}: writer {w} kept part of batch at {i}");
                    i += 3;
                } else {
                    i += 1;
                }
            }
            if preset != Preset::Throughput {
                assert!(
                    n >= acked,
                    "{preset} run {run}: writer {w} lost acknowledged writes: {n} present, {acked} acknowledged"
                );
            }
        }
        db.close().await.unwrap();
    });
}

#[test]
fn durable_preset_keeps_every_acknowledged_write_across_sigkill() {
    if std::env::var("BALLAST_CRASH_CHILD").is_ok() {
        return;
    }
    crash_and_check(Preset::Durable, RUNS_PER_PRESET);
}

#[test]
fn balanced_preset_keeps_every_acknowledged_write_across_sigkill() {
    if std::env::var("BALLAST_CRASH_CHILD").is_ok() {
        return;
    }
    crash_and_check(Preset::Balanced, RUNS_PER_PRESET);
}

#[test]
fn throughput_preset_recovers_a_prefix_across_sigkill() {
    if std::env::var("BALLAST_CRASH_CHILD").is_ok() {
        return;
    }
    crash_and_check(Preset::Throughput, RUNS_PER_PRESET);
}
