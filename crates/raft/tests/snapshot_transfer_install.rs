//! SSTable-set snapshots end to end: built on one state machine, streamed
//! through `SnapshotTransfer` in small chunks into another one's inbox,
//! installed there (replacing all it had), surviving restarts and crashes
//! in the middle of the install; bad streams are refused without touching
//! the receiver; old snapshot directories go away.

use ballast_raft::snapshot::{clear_inbox, SnapshotData, SnapshotReceiver};
use ballast_raft::state_machine::{Snapshot, SnapshotMeta, StateMachine};
use ballast_raft::transfer::{SnapshotInbox, SnapshotTransfer};
use ballast_raft::typ::EntryPayload;
use ballast_raft::{Entry, LogId, Proposal, Request};
use ballast_storage::fs::{DynFs, FaultFs, StdFs};
use ballast_storage::{Background, ManualClock, Options, Preset};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use tempfile::TempDir;

fn log_id(index: u64) -> LogId {
    ballast_raft::typ::log_id(2, 1, index)
}

fn options(fs: DynFs) -> Options {
    let mut o = Options::preset(Preset::Durable);
    o.background = Background::Tasks;
    o.clock = ManualClock::new(1_000);
    o.fs = fs;
    // Every flush stays its own L0 table, so snapshots hold several files
    // and streams cross file boundaries.
    o.l0_compaction_trigger = 100;
    o.l0_stop_writes_trigger = 200;
    o.block_bytes = 256;
    o
}

async fn open(dir: &Path) -> StateMachine {
    StateMachine::open(dir, options(StdFs::shared()))
        .await
        .expect("open")
}

/// A runtime per "process": dropping it ends the engine's background
/// tasks, as a crash would.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Applies puts `{prefix}{i}` for i in 0..n at indexes from `first`, every
/// third key with a TTL; flushes now and then so there are several tables.
async fn fill(sm: &mut StateMachine, prefix: &str, n: u64, first: u64) {
    for i in 0..n {
        let req = Request::Put {
            key: format!("{prefix}{i:04}").into_bytes(),
            value: format!("value-{prefix}-{i}").into_bytes(),
            expire_at_ms: (i % 3 == 0).then_some(50_000 + i),
        };
        sm.apply_entry(Entry {
            log_id: log_id(first + i),
            payload: EntryPayload::Normal(Proposal::new(1_000, req)),
        })
        .await
        .expect("apply");
        if i % 40 == 39 {
            sm.flush().await.expect("flush");
        }
    }
}

/// Builds a snapshot of `sm` now.
async fn build(sm: &mut StateMachine) -> Snapshot {
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build")
}

type Contents = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

/// Every key with its value and expiry.
fn contents(sm: &StateMachine) -> Contents {
    let db = sm.db();
    let mut out = BTreeMap::new();
    for kv in db.scan::<&[u8]>(..).expect("scan") {
        let (k, _) = kv.expect("scan entry");
        let (v, at) = db.get_entry(&k).expect("get").expect("live");
        out.insert(k.to_vec(), (v.to_vec(), at));
    }
    out
}

fn inbox(dir: &Path, snapshot_bytes_max: u64) -> SnapshotInbox {
    SnapshotInbox {
        fs: StdFs::shared(),
        dir: dir.to_path_buf(),
        snapshot_bytes_max,
        planted: ballast_raft::planted::Planted::NONE,
    }
}

/// Streams `data` through the transfer trait in chunks of `chunk` bytes.
fn send(
    data: &SnapshotData,
    meta: &SnapshotMeta,
    to: &SnapshotInbox,
    chunk: usize,
) -> io::Result<SnapshotData> {
    let len = data.stream_len();
    let mut rx = SnapshotData::begin_receive(to, meta, len)?;
    let mut off = 0;
    while off < len {
        let bytes = data.read_chunk(off, chunk)?;
        assert!(!bytes.is_empty() && bytes.len() <= chunk);
        SnapshotData::receive_chunk(&mut rx, off, &bytes)?;
        off += bytes.len() as u64;
    }
    assert!(data.read_chunk(len, chunk)?.is_empty());
    SnapshotData::finish_receive(rx)
}

fn subdirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_snapshot_streamed_in_small_chunks_installs_with_its_keys_values_and_ttls() {
    let tmp = TempDir::new().expect("tempdir");
    let (a_dir, b_dir, inbox_dir) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("inbox"),
    );
    let want = runtime().block_on(async {
        let mut a = open(&a_dir).await;
        fill(&mut a, "k", 150, 1).await;
        let mut b = open(&b_dir).await;
        fill(&mut b, "only-b", 30, 1).await;
        let snap = build(&mut a).await;
        assert_eq!(snap.meta.last_log_id, Some(log_id(150)));
        let files = snap.snapshot.descriptor().files.len();
        assert!(files >= 4, "{files} tables");
        let ib = inbox(&inbox_dir, 64 << 20);
        let started = std::time::Instant::now();
        let received = send(&snap.snapshot, &snap.meta, &ib, 1000).expect("transfer");
        println!(
            "streamed {} bytes ({files} tables) in 1000-byte chunks in {:?}",
            snap.snapshot.stream_len(),
            started.elapsed()
        );
        assert!(received.dir().starts_with(&inbox_dir));
        b.install_snapshot(&snap.meta, received)
            .await
            .expect("install");
        let want = contents(&a);
        assert_eq!(want.len(), 150);
        assert_eq!(want.values().filter(|(_, at)| at.is_some()).count(), 50);
        assert_eq!(
            contents(&b),
            want,
            "b holds exactly a's keys, values and TTLs"
        );
        assert_eq!(b.applied_state().await.expect("state").0, Some(log_id(150)));
        // The inbox copy went with its last handle; b keeps its own copy.
        assert!(subdirs(&inbox_dir).is_empty(), "{:?}", subdirs(&inbox_dir));
        let cur = b
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some");
        assert_eq!(cur.meta, snap.meta);
        assert!(cur.snapshot.dir().starts_with(b.snapshots_dir()));
        // b can stream its installed snapshot on, byte for byte the same.
        assert_eq!(cur.snapshot.stream_len(), snap.snapshot.stream_len());
        assert_eq!(
            cur.snapshot.read_chunk(0, 1 << 20).expect("read"),
            snap.snapshot.read_chunk(0, 1 << 20).expect("read")
        );
        want
    });
    // A restart comes back at the snapshot's applied id with its data and
    // still serves the snapshot.
    runtime().block_on(async {
        let mut b = open(&b_dir).await;
        assert_eq!(b.applied(), Some(log_id(150)));
        assert_eq!(contents(&b), want);
        let cur = b
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some");
        assert_eq!(cur.meta.last_log_id, Some(log_id(150)));
    });
}

/// Stream bytes of a real snapshot, for the refusal tests.
fn stream_of(data: &SnapshotData) -> Vec<u8> {
    data.read_chunk(0, data.stream_len() as usize)
        .expect("read")
}

fn receive_all(
    ib: &SnapshotInbox,
    meta: &SnapshotMeta,
    bytes: &[u8],
    len: u64,
) -> io::Result<SnapshotData> {
    let mut rx: SnapshotReceiver = SnapshotData::begin_receive(ib, meta, len)?;
    for (i, c) in bytes.chunks(97).enumerate() {
        SnapshotData::receive_chunk(&mut rx, (i * 97) as u64, c)?;
    }
    SnapshotData::finish_receive(rx)
}

#[test]
fn corrupt_short_oversized_and_out_of_order_streams_are_refused_and_change_nothing() {
    let tmp = TempDir::new().expect("tempdir");
    let inbox_dir = tmp.path().join("inbox");
    runtime().block_on(async {
        let mut a = open(&tmp.path().join("a")).await;
        fill(&mut a, "k", 60, 1).await;
        let snap = build(&mut a).await;
        let mut b = open(&tmp.path().join("b")).await;
        fill(&mut b, "b", 10, 1).await;
        let before = contents(&b);
        let ib = inbox(&inbox_dir, 1 << 30);
        let good = stream_of(&snap.snapshot);
        let len = good.len() as u64;
        let meta = &snap.meta;
        let header = 17;
        let descriptor_len = u32::from_le_bytes(good[9..13].try_into().expect("4")) as usize;
        let first_table = header + descriptor_len;

        let mut errors: Vec<(String, io::Error)> = Vec::new();
        // Too large for the inbox: refused before anything is written.
        let small = inbox(&inbox_dir, len - 1);
        let e = SnapshotData::begin_receive(&small, meta, len).expect_err("oversized");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        errors.push(("oversized".into(), e));
        // A flipped bit anywhere: header, descriptor, a table's first and
        // last byte.
        for at in [3, 8, 12, 15, header + 20, first_table, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            let e = receive_all(&ib, meta, &bad, len).expect_err("corrupt");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "flip at {at}: {e}");
            errors.push((format!("flip at {at}"), e));
        }
        // An unknown stream version.
        let mut newer = good.clone();
        newer[8] = 2;
        let e = receive_all(&ib, meta, &newer, len).expect_err("version");
        assert!(e.to_string().contains("version 2"), "{e}");
        errors.push(("version 2".into(), e));
        // Short: the stream ends early.
        let e = receive_all(&ib, meta, &good[..good.len() - 5], len).expect_err("short");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        errors.push(("short".into(), e));
        // Announced shorter than the descriptor says.
        let e = receive_all(&ib, meta, &good[..good.len() - 5], len - 5).expect_err("length");
        errors.push(("announced length".into(), e));
        // Not the snapshot the sender announced.
        let mut other = meta.clone();
        other.last_log_id = Some(log_id(999));
        let e = receive_all(&ib, &other, &good, len).expect_err("meta");
        errors.push(("meta".into(), e));
        // Out of order and overrunning chunks.
        let mut rx = SnapshotData::begin_receive(&ib, meta, len).expect("begin");
        let e = SnapshotData::receive_chunk(&mut rx, 10, &good[10..20]).expect_err("gap");
        errors.push(("gap".into(), e));
        drop(rx);
        let mut rx = SnapshotData::begin_receive(&ib, meta, 40).expect("begin");
        let e = SnapshotData::receive_chunk(&mut rx, 0, &good[..41]).expect_err("overrun");
        errors.push(("overrun".into(), e));
        // A refused receiver stays refused.
        let e = SnapshotData::receive_chunk(&mut rx, 0, &good[..10]).expect_err("poisoned");
        assert!(e.to_string().contains("already refused"), "{e}");
        drop(rx);

        for (what, e) in &errors {
            println!("{what}: {e}");
            assert!(!e.to_string().is_empty());
        }
        // Every refused receive cleaned up after itself, and the receiver's
        // state is as it was.
        assert!(subdirs(&inbox_dir).is_empty(), "{:?}", subdirs(&inbox_dir));
        assert_eq!(contents(&b), before);
        assert_eq!(b.applied(), Some(log_id(10)));
        // The good stream still goes through afterwards.
        let ok = receive_all(&ib, meta, &good, len).expect("good stream");
        b.install_snapshot(meta, ok).await.expect("install");
        assert_eq!(contents(&b), contents(&a));
        // A crashed receive's leftovers are cleared at start.
        std::fs::create_dir_all(inbox_dir.join("recv-000042")).expect("mkdir");
        std::fs::write(inbox_dir.join("recv-000042").join("000001.sst"), b"x").expect("write");
        assert_eq!(clear_inbox(&ib).expect("clear"), 1);
        assert!(subdirs(&inbox_dir).is_empty());
    });
}

#[test]
fn old_snapshot_directories_go_once_a_newer_one_is_durable_and_nobody_streams_them() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().join("sm");
    runtime().block_on(async {
        let mut sm = open(&dir).await;
        let snaps = sm.snapshots_dir();
        let mut next = 1;
        let mut next_snapshot = async |sm: &mut StateMachine| {
            fill(sm, &format!("r{next}-"), 20, next * 100).await;
            next += 1;
            build(sm).await
        };
        let first = next_snapshot(&mut sm).await;
        assert_eq!(subdirs(&snaps).len(), 1);
        // `first` is being streamed to a follower while a newer one is built.
        let streaming = first.snapshot.clone();
        drop(first);
        let second = next_snapshot(&mut sm).await;
        assert_eq!(subdirs(&snaps).len(), 2, "the streamed one stays");
        let part = streaming.read_chunk(0, 4096).expect("still readable");
        assert_eq!(part.len() as u64, streaming.stream_len().min(4096));
        let streamed_dir = streaming.dir().to_path_buf();
        drop(streaming);
        assert!(!streamed_dir.exists(), "gone when the stream is done");
        drop(second);
        for _ in 0..5 {
            next_snapshot(&mut sm).await;
        }
        let left = subdirs(&snaps);
        assert_eq!(left.len(), 1, "{left:?}");
        let cur = sm.get_current_snapshot().await.expect("cur").expect("some");
        assert_eq!(cur.snapshot.dir(), snaps.join(&left[0]));
    });
    // After a restart: one snapshot, and a leftover incomplete directory
    // (a build that died before its descriptor) is removed.
    let snaps = dir.join("snapshots");
    std::fs::create_dir_all(snaps.join("snap-00000000000000000099")).expect("mkdir");
    runtime().block_on(async {
        let mut sm = open(&dir).await;
        assert_eq!(subdirs(&snaps).len(), 1, "{:?}", subdirs(&snaps));
        assert!(sm.get_current_snapshot().await.expect("cur").is_some());
    });
}

/// Copies a directory tree of plain files.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let p: PathBuf = e.path();
        if e.file_type().expect("type").is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn a_crash_anywhere_in_an_install_leaves_the_old_or_the_new_state() {
    let tmp = TempDir::new().expect("tempdir");
    let base = tmp.path().join("base");
    let inbox_dir = tmp.path().join("inbox");
    let (new_state, old_state) = runtime().block_on(async {
        let mut a = open(&tmp.path().join("a")).await;
        fill(&mut a, "new", 90, 1).await;
        let mut b = open(&base).await;
        fill(&mut b, "old", 50, 1).await;
        b.flush().await.expect("flush");
        let snap = build(&mut a).await;
        // Leave the snapshot in a's directory for every run to install from.
        std::mem::forget(snap);
        (contents(&a), contents(&b))
    });
    let src = tmp.path().join("a").join("snapshots");
    let src_snap = src.join(&subdirs(&src)[0]);

    let (mut saw_old, mut saw_new) = (0, 0);
    for budget in 0u64.. {
        let work = tmp.path().join(format!("run{budget}"));
        copy_tree(&base, &work);
        let (fs, switches) = FaultFs::new(StdFs::shared());
        let installed = runtime().block_on(async {
            let mut sm = StateMachine::open(&work, options(fs.clone()))
                .await
                .expect("open");
            let data = SnapshotData::open(fs, &src_snap).expect("snapshot");
            let meta = data.meta().clone();
            let ib = inbox(&inbox_dir, 1 << 30);
            let received = send(&data, &meta, &ib, 4096).expect("transfer");
            switches
                .syncs_before_failure
                .store(budget, Ordering::SeqCst);
            // The process dies right after, whatever the outcome.
            sm.install_snapshot(&meta, received).await.is_ok()
        });
        let (state, applied) = runtime().block_on(async {
            let sm = open(&work).await;
            (contents(&sm), sm.applied())
        });
        if applied == Some(log_id(90)) {
            assert_eq!(state, new_state, "budget {budget}");
            saw_new += 1;
        } else {
            assert_eq!(applied, Some(log_id(50)), "budget {budget}");
            assert_eq!(state, old_state, "budget {budget}");
            saw_old += 1;
        }
        assert!(subdirs(&work.join("snapshots")).len() <= 1);
        if installed {
            assert_eq!(applied, Some(log_id(90)));
            println!("install took {budget} fsyncs; runs that failed before: {saw_old} came back old, {saw_new} new");
            break;
        }
        assert!(budget < 200, "install never succeeded");
    }
    assert!(saw_old > 0 && saw_new > 0, "old {saw_old}, new {saw_new}");
}

/// Installs a snapshot of 90 keys on a node holding 50 others, on a file
/// system without hard links (the received tables are copied) whose first
/// read during the install flips a byte; then restarts the node on a
/// healthy disk. Returns whether the install succeeded and what the
/// restart gave: the applied id and contents, or the error that stopped it.
fn install_through_a_corrupting_copy(
    root: &Path,
    planted: ballast_raft::planted::Planted,
) -> (bool, Result<(Option<LogId>, Contents), String>) {
    let b_dir = root.join("b");
    let installed = runtime().block_on(async {
        let mut a = open(&root.join("a")).await;
        fill(&mut a, "new", 90, 1).await;
        let snap = build(&mut a).await;
        let (fs, switches) = FaultFs::new(StdFs::shared());
        switches.links_as_copies.store(true, Ordering::SeqCst);
        let mut b = StateMachine::open(&b_dir, options(fs)).await.expect("open");
        b.set_planted(planted);
        fill(&mut b, "old", 50, 1).await;
        b.flush().await.expect("flush");
        let received = send(
            &snap.snapshot,
            &snap.meta,
            &inbox(&root.join("inbox"), 1 << 30),
            4096,
        )
        .expect("transfer");
        switches.corrupt_reads_left.store(1, Ordering::SeqCst);
        let installed = b.install_snapshot(&snap.meta, received).await.is_ok();
        assert_eq!(
            switches.corrupt_reads_left.load(Ordering::SeqCst),
            0,
            "the install read through the corrupting read"
        );
        installed
    });
    let restarted = runtime().block_on(async {
        match StateMachine::open(&b_dir, options(StdFs::shared())).await {
            Ok(b) => Ok((b.applied(), contents(&b))),
            Err(e) => Err(e.to_string()),
        }
    });
    (installed, restarted)
}

#[test]
fn a_snapshot_copied_through_a_corrupting_read_is_refused_and_the_node_restarts() {
    let tmp = TempDir::new().expect("tempdir");
    let (installed, restarted) =
        install_through_a_corrupting_copy(tmp.path(), ballast_raft::planted::Planted::NONE);
    assert!(!installed, "the damaged copy is refused");
    let (applied, state) = restarted.expect("the node restarts");
    assert_eq!(applied, Some(log_id(50)), "still at its own state");
    assert_eq!(state.len(), 50);
    assert!(state.keys().all(|k| k.starts_with(b"old")));
}

/// With `snapshot-link-unverified` the damaged copy becomes the node's own
/// durable snapshot, and every restart fails to finish installing it
/// (`cluster-throughput-mixed` seed 404 of the cluster simulation, where
/// the node then never came back).
#[test]
fn an_unverified_damaged_snapshot_copy_stops_every_restart() {
    let tmp = TempDir::new().expect("tempdir");
    let planted = ballast_raft::planted::Planted::NONE
        .with(ballast_raft::planted::NodeBug::SnapshotLinkUnverified);
    let (installed, restarted) = install_through_a_corrupting_copy(tmp.path(), planted);
    assert!(!installed, "the engine still refuses the damaged table");
    let err = restarted.expect_err("the restart finishes the install from the damaged copy");
    assert!(err.contains("corrupt"), "{err}");
}
