//! Named bounds hold: frozen memtables never exceed
//! `immutable_memtables_max` (writers stall instead), and waiting writers
//! never exceed `write_queue_max` (more writers stall instead).

use ballast_storage::fs::{DynFile, FileSystem, IoOp, OpenMode, StdFs};
use ballast_storage::{Background, Db, Options, Preset};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// std::fs with a simulated 1 ms fsync latency, so that a group leader
/// awaits before each fsync and other writers queue up meanwhile.
#[derive(Debug)]
struct SlowSyncFs(StdFs);

impl FileSystem for SlowSyncFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<DynFile> {
        self.0.open(path, mode)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.0.list_dir(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.0.exists(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.sync_dir(dir)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.0.remove_dir(path)
    }
    fn io_delay(&self, op: IoOp) -> Option<Duration> {
        (op == IoOp::Sync).then(|| Duration::from_millis(1))
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn frozen_memtables_never_exceed_their_bound_writers_stall_instead() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Options::preset(Preset::Throughput);
        o.background = Background::Tasks;
        o.memtable_bytes = 64 * 1024;
        o.immutable_memtables_max = 1;
        let db = Db::open(dir.path(), o).await.unwrap();
        let value = vec![5u8; 1000];
        let mut most_frozen = 0;
        for i in 0..2000u32 {
            db.put(format!("k{i:05}").as_bytes(), &value).await.unwrap();
            most_frozen = most_frozen.max(db.stats().immutable_memtables);
        }
        let s = db.stats();
        // ~2 MB through 64 KiB memtables: many switches, and on this
        // single-threaded runtime the flush task only runs when the writer
        // waits, so the writer must have stalled.
        assert!(s.flushes >= 10, "{s:?}");
        assert!(s.stalls > 0, "writers never stalled: {s:?}");
        assert!(most_frozen <= 1, "{most_frozen} frozen memtables, bound 1");
        assert_eq!(db.scan::<Vec<u8>>(..).unwrap().count(), 2000);
        db.close().await.unwrap();
    });
}

#[test]
fn waiting_writers_never_exceed_the_queue_bound_and_all_complete() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Options::preset(Preset::Durable);
        o.background = Background::Tasks;
        o.wal_preallocate = false;
        o.write_queue_max = 2;
        o.fs = Arc::new(SlowSyncFs(StdFs));
        let db = Arc::new(Db::open(dir.path(), o).await.unwrap());
        let mut tasks = Vec::new();
        for w in 0..16u32 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20u32 {
                    db.put(format!("w{w:02}-{i:02}").as_bytes(), b"v")
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let s = db.stats();
        assert_eq!(s.writes, 16 * 20);
        // With 16 writers and room for 2 in the queue, writers had to wait
        // for queue space (counted as stalls) ...
        assert!(s.stalls > 0, "{s:?}");
        // ... and no group took more than the leader plus the 2 queued.
        assert!(s.group_batches_p50_p99_max.2 <= 3, "{s:?}");
        assert!(
            s.group_batches_p50_p99_max.2 >= 2,
            "no group ever formed: {s:?}"
        );
        assert_eq!(db.scan::<Vec<u8>>(..).unwrap().count(), 16 * 20);
        match Arc::try_unwrap(db) {
            Ok(db) => db.close().await.unwrap(),
            Err(_) => panic!("writers still hold the engine"),
        }
    });
}

#[test]
fn a_batch_over_batch_bytes_max_is_refused_and_changes_nothing() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Options::preset(Preset::Durable);
        o.background = Background::Tasks;
        o.wal_preallocate = false;
        o.batch_bytes_max = 64 * 1024;
        let db = Db::open(dir.path(), o).await.unwrap();
        let mut b = ballast_storage::WriteBatch::new();
        for i in 0..100u32 {
            b.put(format!("k{i:03}").as_bytes(), &[1u8; 1000]);
        }
        assert!(matches!(
            db.write(b).await,
            Err(ballast_storage::Error::BatchTooLarge { max: 65536, .. })
        ));
        assert_eq!(db.scan::<Vec<u8>>(..).unwrap().count(), 0);
        let mut small = ballast_storage::WriteBatch::new();
        small.put(b"fits", &[1u8; 1000]);
        db.write(small).await.unwrap();
        db.close().await.unwrap();
    });
}

/// `manifest_bytes_max` bounds the manifest: past it the manifest is
/// replaced by a fresh snapshot (counted in `manifest_rotations`), one
/// manifest file is left, and a reopen finds every table it named.
#[test]
fn a_manifest_past_manifest_bytes_max_is_replaced_and_reopens_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    rt().block_on(async {
        let mut o = Options::preset(Preset::Durable);
        o.background = Background::Tasks;
        o.manifest_bytes_max = 1024;
        let db = Db::open(dir.path(), o).await.expect("open");
        for i in 0..40u32 {
            db.put(format!("k{i:03}").as_bytes(), b"v")
                .await
                .expect("put");
            db.flush().await.expect("flush");
        }
        let rotations = db.stats().manifest_rotations;
        assert!(rotations > 0, "no rotation after 40 flushes");
        db.close().await.expect("close");
        let manifests = std::fs::read_dir(dir.path())
            .expect("list")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("MANIFEST-"))
            })
            .count();
        assert_eq!(manifests, 1, "the replaced manifests are removed");
        let db = Db::open(dir.path(), Options::preset(Preset::Durable))
            .await
            .expect("reopen");
        for i in 0..40u32 {
            assert_eq!(
                db.get(format!("k{i:03}").as_bytes())
                    .expect("get")
                    .as_deref(),
                Some(&b"v"[..]),
                "k{i:03}"
            );
        }
        db.close().await.expect("close");
    });
}
