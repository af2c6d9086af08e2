//! Fault injection through the file seam: a failed fsync, a failed write and
//! a full disk. After each, nothing unsynced is acknowledged, further writes
//! are refused with a reason, nothing acknowledged is lost, and the engine
//! reopens cleanly.

use ballast_storage::fs::{FaultFs, StdFs};
use ballast_storage::{Background, Db, Error, Options, Preset};
use std::sync::atomic::Ordering;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn options(fs: ballast_storage::fs::DynFs) -> Options {
    let mut o = Options::preset(Preset::Durable);
    o.background = Background::Tasks;
    o.wal_preallocate = false;
    o.wal_segment_bytes = 1 << 20;
    o.memtable_bytes = 256 * 1024;
    o.fs = fs;
    o
}

#[test]
fn failed_fsync_acknowledges_nothing_and_stops_writes_until_reopen() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (fs, sw) = FaultFs::new(StdFs::shared());
        let db = Db::open(dir.path(), options(fs.clone())).await.unwrap();
        for i in 0..100u32 {
            db.put(format!("k{i}").as_bytes(), b"v").await.unwrap();
        }
        sw.fail_sync.store(true, Ordering::SeqCst);
        let err = db.put(b"unsynced", b"v").await.unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        // Not acknowledged, so not visible either.
        assert_eq!(db.get(b"unsynced").unwrap(), None);
        sw.fail_sync.store(false, Ordering::SeqCst);
        // Even with the disk healthy again, writes stay refused: the OS may
        // have dropped the dirty pages the failed fsync covered.
        let err = db.put(b"later", b"v").await.unwrap_err();
        match &err {
            Error::WritesStopped { op, .. } => assert_eq!(*op, "fsync"),
            other => panic!("expected WritesStopped, got {other}"),
        }
        assert!(err.to_string().contains("reopen"));
        // Reads still work.
        assert_eq!(db.get(b"k5").unwrap().as_deref(), Some(&b"v"[..]));
        let _ = db.close().await; // reports the stop; releases the directory
        let db = Db::open(dir.path(), options(fs.clone())).await.unwrap();
        for i in 0..100u32 {
            assert_eq!(
                db.get(format!("k{i}").as_bytes()).unwrap().as_deref(),
                Some(&b"v"[..])
            );
        }
        db.put(b"after-reopen", b"v").await.unwrap();
        db.close().await.unwrap();
    });
}

#[test]
fn failed_write_stops_writes_and_reopens_cleanly() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (fs, sw) = FaultFs::new(StdFs::shared());
        let db = Db::open(dir.path(), options(fs.clone())).await.unwrap();
        db.put(b"before", b"1").await.unwrap();
        sw.fail_write.store(true, Ordering::SeqCst);
        assert!(db.put(b"failed", b"2").await.is_err());
        sw.fail_write.store(false, Ordering::SeqCst);
        assert!(matches!(
            db.put(b"refused", b"3").await,
            Err(Error::WritesStopped { op: "write", .. })
        ));
        let _ = db.close().await; // reports the stop; releases the directory
        let db = Db::open(dir.path(), options(fs.clone())).await.unwrap();
        assert_eq!(db.get(b"before").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(db.get(b"refused").unwrap(), None);
        db.put(b"again", b"4").await.unwrap();
        db.close().await.unwrap();
    });
}

#[test]
fn disk_full_fails_the_write_loses_nothing_acknowledged_and_recovers_after_space_is_freed() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (fs, sw) = FaultFs::new(StdFs::shared());
        let db = Db::open(dir.path(), options(fs.clone())).await.unwrap();
        sw.space_left_bytes.store(200 * 1024, Ordering::SeqCst);
        let value = vec![7u8; 1000];
        let mut acked = 0u32;
        let err = loop {
            match db.put(format!("k{acked:06}").as_bytes(), &value).await {
                Ok(()) => acked += 1,
                Err(e) => break e,
            }
            assert!(acked < 10_000, "the disk never filled");
        };
        assert!(matches!(err, Error::DiskFull { .. }), "{err}");
        assert!(err.to_string().contains("disk full"));
        assert!(acked > 50, "only {acked} writes fit");
        assert!(db.put(b"more", &value).await.is_err());
        let _ = db.close().await; // reports the stop; releases the directory
        sw.space_left_bytes.store(u64::MAX, Ordering::SeqCst);
        let db = Db::open(dir.path(), options(fs.clone())).await.unwrap();
        for i in 0..acked {
            assert_eq!(
                db.get(format!("k{i:06}").as_bytes()).unwrap().as_deref(),
                Some(value.as_slice()),
                "acknowledged key {i} lost"
            );
        }
        db.put(b"after", b"ok").await.unwrap();
        db.flush().await.unwrap();
        db.close().await.unwrap();
    });
}

#[test]
fn oversized_keys_and_values_are_refused_and_change_nothing() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut o = options(StdFs::shared());
        o.key_bytes_max = 16;
        o.value_bytes_max = 64;
        let db = Db::open(dir.path(), o).await.unwrap();
        assert!(matches!(
            db.put(&[1u8; 17], b"v").await,
            Err(Error::KeyTooLarge { len: 17, max: 16 })
        ));
        assert!(matches!(
            db.put(b"k", &[1u8; 65]).await,
            Err(Error::ValueTooLarge { len: 65, max: 64 })
        ));
        assert!(matches!(db.put(b"", b"v").await, Err(Error::EmptyKey)));
        db.put(&[1u8; 16], &[2u8; 64]).await.unwrap();
        assert_eq!(db.scan::<Vec<u8>>(..).unwrap().count(), 1);
        db.close().await.unwrap();
    });
}
