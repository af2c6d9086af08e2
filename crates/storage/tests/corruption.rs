//! A flipped byte in a WAL record, an SSTable block or the manifest, and a
//! torn WAL tail, each give the documented outcome: the torn tail is cut,
//! everything else is an error naming the file, and a wrong value is never
//! returned.

use ballast_storage::{wal_dir, Background, Db, Error, Options, Preset};
use std::path::{Path, PathBuf};

fn options() -> Options {
    let mut o = Options::preset(Preset::Durable);
    o.background = Background::Tasks;
    o.wal_preallocate = false;
    o.wal_segment_bytes = 1 << 20;
    o.block_bytes = 512;
    o
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn k(i: u32) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}
fn v(i: u32) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

async fn fill(dir: &Path, n: u32) {
    let db = Db::open(dir, options()).await.unwrap();
    for i in 0..n {
        db.put(&k(i), &v(i)).await.unwrap();
    }
    db.close().await.unwrap();
}

fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, offset: u64) {
    let mut data = std::fs::read(path).unwrap();
    data[offset as usize] ^= 0x5a;
    std::fs::write(path, data).unwrap();
}

/// The WAL segment holding data (the largest one).
fn data_segment(dir: &Path) -> PathBuf {
    files_with(&wal_dir(dir), ".wal")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

#[test]
fn flipped_byte_in_a_wal_record_mid_log_is_an_error_naming_file_and_offset() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 500).await;
        let seg = data_segment(dir.path());
        let len = std::fs::metadata(&seg).unwrap().len();
        flip(&seg, len / 2);
        let err = Db::open(dir.path(), options()).await.unwrap_err();
        match &err {
            Error::Corruption { path, offset, .. } => {
                assert_eq!(path, &seg, "{err}");
                assert!(*offset <= len / 2 && *offset + 200 > len / 2, "{err}");
            }
            other => panic!("expected corruption, got {other}"),
        }
        assert!(err.to_string().contains(&seg.display().to_string()));
    });
}

#[test]
fn torn_wal_tail_is_cut_and_everything_before_it_recovers() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 500).await;
        let seg = data_segment(dir.path());
        let len = std::fs::metadata(&seg).unwrap().len();
        // Cut into the last record.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let db = Db::open(dir.path(), options()).await.unwrap();
        let report = db.recovery_report().clone();
        assert!(report.truncated_tail.is_some(), "{report:?}");
        for i in 0..499 {
            assert_eq!(db.get(&k(i)).unwrap().as_deref(), Some(v(i).as_slice()));
        }
        assert_eq!(db.get(&k(499)).unwrap(), None);
        db.close().await.unwrap();
        // Idempotent: a second recovery sees no tear and the same data.
        let db = Db::open(dir.path(), options()).await.unwrap();
        assert!(db.recovery_report().truncated_tail.is_none());
        assert_eq!(db.scan::<Vec<u8>>(..).unwrap().count(), 499);
        db.close().await.unwrap();
    });
}

#[test]
fn flipped_byte_in_an_sstable_block_is_an_error_naming_the_table_never_a_wrong_value() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path(), options()).await.unwrap();
            for i in 0..2000 {
                db.put(&k(i), &v(i)).await.unwrap();
            }
            db.flush().await.unwrap();
            db.close().await.unwrap();
        }
        let tables = files_with(dir.path(), ".sst");
        assert_eq!(tables.len(), 1, "{tables:?}");
        let len = std::fs::metadata(&tables[0]).unwrap().len();
        flip(&tables[0], len / 3);
        let db = Db::open(dir.path(), options()).await.unwrap();
        let mut errors = 0;
        for i in 0..2000 {
            match db.get(&k(i)) {
                Ok(Some(got)) => assert_eq!(got.as_ref(), v(i).as_slice(), "wrong value for {i}"),
                Ok(None) => panic!("key {i} vanished instead of reporting corruption"),
                Err(Error::Corruption { path, .. }) => {
                    assert_eq!(path, tables[0]);
                    errors += 1;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(errors > 0, "the flipped block was never reported");
        let scan_err = db.scan::<Vec<u8>>(..).unwrap().find_map(|r| r.err());
        assert!(
            matches!(scan_err, Some(Error::Corruption { .. })),
            "{scan_err:?}"
        );
        db.close().await.unwrap();
    });
}

#[test]
fn flipped_byte_in_the_manifest_is_an_error_naming_it() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path(), options()).await.unwrap();
            for round in 0..3 {
                for i in 0..100 {
                    db.put(&k(round * 100 + i), &v(i)).await.unwrap();
                }
                db.flush().await.unwrap();
            }
            db.close().await.unwrap();
        }
        let manifests = files_with(dir.path(), "");
        let manifest = manifests
            .iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("MANIFEST-")
            })
            .unwrap()
            .clone();
        // Inside the first record (the snapshot edit), which is followed by
        // the three flush edits.
        flip(&manifest, 40);
        let err = Db::open(dir.path(), options()).await.unwrap_err();
        match &err {
            Error::Corruption { path, .. } => assert_eq!(path, &manifest, "{err}"),
            other => panic!("expected corruption, got {other}"),
        }
    });
}

#[test]
fn missing_current_target_is_an_error_not_an_empty_engine() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 10).await;
        std::fs::write(dir.path().join("CURRENT"), b"garbage").unwrap();
        let err = Db::open(dir.path(), options()).await.unwrap_err();
        assert!(err.is_corruption(), "{err}");
    });
}

/// A flipped digit in CURRENT names a manifest that does not exist: that
/// is corruption of CURRENT, not an I/O error (the simulation's bit-rot
/// scenario found "file not found" here).
#[test]
fn current_naming_a_missing_manifest_is_corruption_of_current() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 10).await;
        let current = dir.path().join("CURRENT");
        let name = std::fs::read_to_string(&current).unwrap();
        std::fs::write(&current, name.replacen("MANIFEST-0", "MANIFEST-4", 1)).unwrap();
        let err = Db::open(dir.path(), options()).await.unwrap_err();
        match &err {
            Error::Corruption { path, .. } => assert_eq!(path, &current, "{err}"),
            other => panic!("expected corruption of CURRENT, got {other}"),
        }
    });
}

/// A table the manifest names but the directory lacks (the manifest lost
/// the edit that removed it, or it was deleted by hand) is corruption
/// naming the manifest, not an I/O error.
#[test]
fn a_missing_live_table_is_corruption_naming_the_manifest() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path(), options()).await.unwrap();
            for i in 0..100 {
                db.put(&k(i), &v(i)).await.unwrap();
            }
            db.flush().await.unwrap();
            db.close().await.unwrap();
        }
        let tables = files_with(dir.path(), ".sst");
        assert_eq!(tables.len(), 1, "{tables:?}");
        std::fs::remove_file(&tables[0]).unwrap();
        let err = Db::open(dir.path(), options()).await.unwrap_err();
        match &err {
            Error::Corruption { path, reason, .. } => {
                let name = path.file_name().unwrap().to_string_lossy();
                assert!(name.starts_with("MANIFEST-"), "{err}");
                assert!(reason.contains("is missing"), "{err}");
            }
            other => panic!("expected corruption, got {other}"),
        }
    });
}
