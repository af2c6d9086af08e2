//! Checkpoints (a flushed table set linked into a directory) and installs
//! (an engine's whole content replaced by one in a single manifest edit):
//! what they hold, that compaction cannot pull tables out from under a
//! checkpoint, and that a failure at any fsync of an install leaves the old
//! or the new state after reopen, never a mix.

use ballast_storage::fs::{FaultFs, StdFs};
use ballast_storage::{Background, Checkpoint, Db, ManualClock, Options, Preset, WriteBatch};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn options(wal: bool) -> Options {
    let mut o = Options::preset(Preset::Durable);
    o.wal = wal;
    o.background = Background::Tasks;
    o.clock = ManualClock::new(1_000);
    o
}

/// A runtime per "process": dropping it ends the engine's background
/// tasks as a crash would, so the next open can take the directory lock.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Live keys with their values and expiries.
type Contents = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

/// Every live key with its value and expiry.
fn contents(db: &Db) -> Contents {
    let mut out = BTreeMap::new();
    for kv in db.scan::<&[u8]>(..).expect("scan") {
        let (k, _) = kv.expect("scan entry");
        let (v, at) = db.get_entry(&k).expect("get").expect("scanned key is live");
        out.insert(k.to_vec(), (v.to_vec(), at));
    }
    out
}

fn live_tables(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".sst"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn reads_return_the_expiry_and_hide_keys_expired_as_of_the_given_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options(true)).await.expect("open");
    db.put_expiring(b"t", b"ttl", 5_000).await.expect("put");
    db.put(b"p", b"plain").await.expect("put");
    db.put_expiring(b"gone", b"x", 900).await.expect("put");
    for round in ["memtable", "tables"] {
        assert_eq!(
            db.get_entry(b"t").expect("get"),
            Some((bytes::Bytes::from_static(b"ttl"), Some(5_000))),
            "{round}"
        );
        assert_eq!(
            db.get_entry(b"p").expect("get"),
            Some((bytes::Bytes::from_static(b"plain"), None)),
            "{round}"
        );
        assert!(db.get_entry_as_of(b"t", 4_999).expect("get").is_some());
        assert_eq!(
            db.get_entry_as_of(b"t", 5_000).expect("get"),
            None,
            "{round}"
        );
        // Expired by the engine clock (1000) but not as of 800 (until a
        // flush drops it by the engine clock).
        assert_eq!(db.get_entry(b"gone").expect("get"), None, "{round}");
        assert_eq!(
            db.get_entry_as_of(b"gone", 800).expect("get").is_some(),
            round == "memtable"
        );
        assert_eq!(db.get_entry_as_of(b"nope", 0).expect("get"), None);
        db.flush().await.expect("flush");
    }
    db.delete(b"p").await.expect("delete");
    assert_eq!(db.get_entry_as_of(b"p", 0).expect("get"), None);
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_checkpoint_links_the_tables_and_outlives_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_dir = dir.path().join("db");
    let db = Db::open(&db_dir, options(false)).await.expect("open");
    for i in 0..200u32 {
        let mut b = WriteBatch::new();
        b.put(format!("k{i:04}").as_bytes(), &[7u8; 100])
            .set_applied_marker(&u64::from(i).to_le_bytes());
        db.write(b).await.expect("write");
        if i % 50 == 49 {
            db.flush().await.expect("flush");
        }
    }
    // Still in the memtable: the checkpoint must flush it.
    let mut b = WriteBatch::new();
    b.put_expiring(b"ttl", b"v", 9_000)
        .set_applied_marker(&200u64.to_le_bytes());
    db.write(b).await.expect("write");
    let cp = db
        .checkpoint(&dir.path().join("cp"))
        .await
        .expect("checkpoint");
    assert_eq!(cp.applied_marker, Some(200u64.to_le_bytes().to_vec()));
    assert!(cp.tables.len() >= 2, "{} tables", cp.tables.len());
    assert!(cp.max_seq >= 201, "max_seq {}", cp.max_seq);
    for t in &cp.tables {
        let a = std::fs::metadata(cp.table_path(t)).expect("checkpoint table");
        let b = std::fs::metadata(ballast_storage::table_path(&db_dir, t.number))
            .expect("engine table");
        assert_eq!(
            a.ino(),
            b.ino(),
            "table {} is a hard link, not a copy",
            t.number
        );
        assert_eq!(a.len(), t.size);
    }
    // Compaction rewrites (and deletes) every table the checkpoint holds.
    db.delete(b"k0000").await.expect("delete");
    db.compact().await.expect("compact");
    let now = live_tables(&db_dir);
    for t in &cp.tables {
        assert!(
            !now.contains(&ballast_storage::filename::table_file_name(t.number)),
            "table {} still live after compaction",
            t.number
        );
        assert!(cp.table_path(t).exists());
    }
    // A checkpoint needs a fresh directory.
    assert!(db.checkpoint(&cp.dir).await.is_err());

    let other = Db::open(dir.path().join("other"), options(false))
        .await
        .expect("open");
    other.install(&cp).await.expect("install");
    assert_eq!(
        other.get(b"k0000").expect("get").map(|v| v.len()),
        Some(100),
        "the checkpoint predates the delete"
    );
    assert_eq!(
        other.get_entry(b"ttl").expect("get").map(|(_, at)| at),
        Some(Some(9_000))
    );
    assert_eq!(contents(&other).len(), 201);
    db.close().await.expect("close");
    other.close().await.expect("close");
}

#[tokio::test]
async fn install_replaces_tables_memtables_and_marker_and_later_writes_win() {
    for wal in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Db::open(dir.path().join("src"), options(wal))
            .await
            .expect("open");
        let mut b = WriteBatch::new();
        b.put(b"a", b"from-src")
            .put_expiring(b"t", b"ttl", 7_000)
            .set_applied_marker(b"src-marker");
        src.write(b).await.expect("write");
        let cp = src
            .checkpoint(&dir.path().join("cp"))
            .await
            .expect("checkpoint");

        let dst_dir = dir.path().join("dst");
        let dst = Db::open(&dst_dir, options(wal)).await.expect("open");
        for i in 0..20u32 {
            let mut b = WriteBatch::new();
            b.put(format!("old{i}").as_bytes(), b"x")
                .put(b"a", b"from-dst")
                .set_applied_marker(b"dst-marker");
            dst.write(b).await.expect("write");
        }
        dst.flush().await.expect("flush");
        dst.put(b"in-memtable", b"x").await.expect("put");
        dst.install(&cp).await.expect("install");
        let want = contents(&src);
        assert_eq!(contents(&dst), want, "wal={wal}");
        assert_eq!(dst.applied_marker().await, Some(b"src-marker".to_vec()));
        // Writes after the install shadow the installed entries.
        dst.put(b"a", b"after").await.expect("put");
        assert_eq!(dst.get(b"a").expect("get").as_deref(), Some(&b"after"[..]));
        dst.close().await.expect("close");

        let dst = Db::open(&dst_dir, options(wal)).await.expect("reopen");
        let mut want_after = want.clone();
        // Without a WAL the write after the install was only in the
        // memtable (the Raft log would replay it).
        if wal {
            // The WAL keeps the write after the install, and none before.
            want_after.insert(b"a".to_vec(), (b"after".to_vec(), None));
        }
        assert_eq!(contents(&dst), want_after, "wal={wal} after reopen");
        assert_eq!(dst.applied_marker().await, Some(b"src-marker".to_vec()));
        // The old tables are deleted (a WAL replay may flush one more).
        let tables = live_tables(&dst_dir).len();
        assert!(
            (cp.tables.len()..=cp.tables.len() + 1).contains(&tables),
            "{tables} tables, checkpoint has {}",
            cp.tables.len()
        );
        dst.close().await.expect("close");
        src.close().await.expect("close");
    }
}

#[tokio::test]
async fn a_checkpoint_taken_under_concurrent_writes_matches_its_marker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = options(false);
    o.memtable_bytes = 64 * 1024;
    let db = Arc::new(Db::open(dir.path().join("db"), o).await.expect("open"));
    let writer = {
        let db = db.clone();
        tokio::spawn(async move {
            for i in 0..3_000u64 {
                let mut b = WriteBatch::new();
                b.put(format!("k{i:05}").as_bytes(), &[1u8; 64])
                    .set_applied_marker(&i.to_le_bytes());
                db.write(b).await.expect("write");
            }
        })
    };
    // Poll until the writer is part-way, then checkpoint while it runs.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while db.get(b"k00500").expect("get").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writer made no progress"
        );
        tokio::task::yield_now().await;
    }
    let cp = db
        .checkpoint(&dir.path().join("cp"))
        .await
        .expect("checkpoint");
    writer.await.expect("writer");
    let marker = cp.applied_marker.clone().expect("marker");
    let n = u64::from_le_bytes(marker.try_into().expect("8 bytes"));
    assert!(n >= 500, "marker {n}");
    let fresh = Db::open(dir.path().join("fresh"), options(false))
        .await
        .expect("open");
    fresh.install(&cp).await.expect("install");
    let keys = contents(&fresh);
    assert_eq!(
        keys.len() as u64,
        n + 1,
        "exactly the writes up to the marker"
    );
    assert!(keys.contains_key(format!("k{n:05}").as_bytes()));
    fresh.close().await.expect("close");
}

/// The state of an engine directory as seen by a fresh open.
fn reopened(dir: &Path) -> (Contents, Option<Vec<u8>>) {
    runtime().block_on(async {
        let db = Db::open(dir, options(false)).await.expect("reopen");
        let out = (contents(&db), db.applied_marker().await);
        db.close().await.expect("close");
        out
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn a_failed_fsync_anywhere_in_an_install_leaves_the_old_or_the_new_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base");
    // 30 keys named `{marker}{i}` in three tables, marker `marker`.
    async fn fill(db: &Db, marker: &str) {
        for i in 0..30u32 {
            let mut b = WriteBatch::new();
            b.put(format!("{marker}{i}").as_bytes(), b"v")
                .set_applied_marker(marker.as_bytes());
            db.write(b).await.expect("write");
            if i % 10 == 9 {
                db.flush().await.expect("flush");
            }
        }
    }
    let cp: Checkpoint = runtime().block_on(async {
        let src = Db::open(dir.path().join("src"), options(false))
            .await
            .expect("open");
        fill(&src, "new").await;
        let cp = src.checkpoint(&dir.path().join("cp")).await.expect("cp");
        src.close().await.expect("close");
        let db = Db::open(&base, options(false)).await.expect("open");
        fill(&db, "old").await;
        db.close().await.expect("close");
        cp
    });
    let old = reopened(&base);
    let old_tables = live_tables(&base).len();
    assert_eq!(old.0.len(), 30);
    assert_eq!(old.1.as_deref(), Some(&b"old"[..]));

    let mut saw_old = 0;
    let mut saw_new = 0;
    for budget in 0u64.. {
        let work = dir.path().join(format!("run{budget}"));
        copy_dir(&base, &work);
        let (fs, switches) = FaultFs::new(StdFs::shared());
        let result = runtime().block_on(async {
            let mut o = options(false);
            o.fs = fs;
            let db = Db::open(&work, o).await.expect("open");
            switches
                .syncs_before_failure
                .store(budget, Ordering::SeqCst);
            let r = db.install(&cp).await;
            if r.is_err() {
                // A failed install either changed nothing or stopped writes.
                let w = db.put(b"probe", b"x").await;
                let state_now = contents(&db);
                assert!(
                    (w.is_ok() && state_now.contains_key(&b"old0"[..])) || w.is_err(),
                    "budget {budget}: writes go on only in the old state"
                );
            }
            // Dropped without close: the process dies here.
            r.is_ok()
        });
        let (state, marker) = reopened(&work);
        let without_probe: BTreeMap<_, _> = state
            .into_iter()
            .filter(|(k, _)| k.as_slice() != b"probe")
            .collect();
        if marker.as_deref() == Some(&b"new"[..]) {
            assert_eq!(without_probe.len(), 30, "budget {budget}");
            assert!(
                without_probe.keys().all(|k| k.starts_with(b"new")),
                "budget {budget}"
            );
            saw_new += 1;
        } else {
            assert_eq!(
                (without_probe, marker.clone()),
                old.clone(),
                "budget {budget}"
            );
            saw_old += 1;
        }
        // The losing side's tables are orphans, gone after the reopen.
        let tables = live_tables(&work).len();
        let want = if marker.as_deref() == Some(&b"new"[..]) {
            cp.tables.len()
        } else {
            old_tables
        };
        assert_eq!(tables, want, "budget {budget}");
        if result {
            assert_eq!(marker.as_deref(), Some(&b"new"[..]), "budget {budget}");
            println!("install needed {budget} fsyncs: {saw_old} runs left the old state, {saw_new} the new");
            break;
        }
        assert!(budget < 50, "install never succeeded");
    }
    assert!(saw_old > 0 && saw_new > 0, "old {saw_old}, new {saw_new}");
}

/// Installs a checkpoint on a file system without hard links (tables are
/// copied) while the copy's first read flips a byte; returns the install's
/// result, whether the flip happened, and what a full read of the engine
/// then gives (its contents, or the error that stopped the read).
async fn install_through_a_corrupting_copy(
    root: &Path,
) -> (ballast_storage::Result<()>, bool, Result<Contents, String>) {
    let src = Db::open(root.join("src"), options(false))
        .await
        .expect("open");
    for i in 0..20u32 {
        src.put(format!("new{i}").as_bytes(), b"v")
            .await
            .expect("put");
    }
    let cp = src.checkpoint(&root.join("cp")).await.expect("cp");
    src.close().await.expect("close");

    let (fs, switches) = FaultFs::new(StdFs::shared());
    switches.links_as_copies.store(true, Ordering::SeqCst);
    let mut o = options(false);
    o.fs = fs;
    let db = Db::open(root.join("db"), o).await.expect("open");
    db.put(b"old", b"v").await.expect("put");
    db.flush().await.expect("flush");
    switches.corrupt_reads_left.store(1, Ordering::SeqCst);
    let installed = db.install(&cp).await;
    let flipped = switches.corrupt_reads_left.load(Ordering::SeqCst) == 0;
    switches.corrupt_reads_left.store(0, Ordering::SeqCst);
    let mut read = BTreeMap::new();
    let mut failed = None;
    for kv in db.scan::<&[u8]>(..).expect("scan") {
        match kv {
            Ok((k, v)) => {
                read.insert(k.to_vec(), (v.to_vec(), None));
            }
            Err(e) => {
                failed = Some(e.to_string());
                break;
            }
        }
    }
    (installed, flipped, failed.map_or(Ok(read), Err))
}

#[tokio::test]
async fn an_install_refuses_a_table_copied_through_a_corrupting_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (installed, flipped, read) = install_through_a_corrupting_copy(dir.path()).await;
    assert!(flipped, "the copy's read was corrupted");
    let err = installed.expect_err("a damaged copy is refused");
    assert!(err.is_corruption(), "a named corruption error: {err}");
    let read = read.expect("the old content still reads");
    let keys: Vec<&[u8]> = read.keys().map(|k| k.as_slice()).collect();
    assert_eq!(keys, vec![&b"old"[..]], "nothing of the install is visible");
}

/// The planted switch `install-without-verify` takes the damaged copy as
/// the engine's content: the test above would fail with it on.
#[cfg(feature = "planted-bugs")]
#[tokio::test]
async fn without_verification_a_damaged_copy_becomes_the_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    ballast_storage::planted::set(Some(
        ballast_storage::planted::PlantedBug::InstallWithoutVerify,
    ));
    let (installed, flipped, read) = install_through_a_corrupting_copy(dir.path()).await;
    ballast_storage::planted::set(None);
    assert!(flipped, "the copy's read was corrupted");
    installed.expect("the unverified install goes through");
    let err = read.expect_err("the damaged table is now the engine's");
    assert!(err.contains("corrupt"), "{err}");
}
