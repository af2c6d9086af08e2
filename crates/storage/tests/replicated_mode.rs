//! Replicated mode: the engine keeps no WAL (the Raft log is the WAL) and
//! records the last applied marker with each flush, so that a restart
//! replays the Raft log from exactly there.

use ballast_storage::{Background, Db, Options, Preset, WriteBatch};

fn options() -> Options {
    let mut o = Options::preset(Preset::Durable);
    o.wal = false;
    o.background = Background::Tasks;
    o
}

fn batch(key: &str, marker: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.put(key.as_bytes(), b"v")
        .set_applied_marker(&marker.to_le_bytes());
    b
}

#[tokio::test]
async fn flush_records_the_marker_and_unflushed_state_is_left_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).await.unwrap();
    assert_eq!(db.applied_marker().await, None);
    for i in 1..=10u64 {
        db.write(batch(&format!("k{i}"), i)).await.unwrap();
    }
    // An entry with no writes (a Raft membership or blank entry) still
    // advances the marker.
    let mut empty = WriteBatch::new();
    empty.set_applied_marker(&11u64.to_le_bytes());
    db.write(empty).await.unwrap();
    db.flush().await.unwrap();
    assert_eq!(
        db.applied_marker().await,
        Some(11u64.to_le_bytes().to_vec())
    );
    for i in 12..=15u64 {
        db.write(batch(&format!("k{i}"), i)).await.unwrap();
    }
    db.close().await.unwrap();
    assert!(
        !dir.path().join("wal").exists(),
        "replicated mode keeps no WAL"
    );

    let db = Db::open(dir.path(), options()).await.unwrap();
    assert_eq!(
        db.applied_marker().await,
        Some(11u64.to_le_bytes().to_vec())
    );
    assert_eq!(db.get(b"k10").unwrap().as_deref(), Some(&b"v"[..]));
    // Applied after the last flush and not in any WAL: the Raft log replays it.
    assert_eq!(db.get(b"k12").unwrap(), None);
    db.close().await.unwrap();
}

#[tokio::test]
async fn writes_are_readable_before_any_flush_without_a_wal() {
    // Found by the Raft state machine: without a WAL, readers were handed a
    // different (empty) memtable from the one writes went into.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).await.unwrap();
    db.write(batch("fresh", 1)).await.unwrap();
    assert_eq!(db.get(b"fresh").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(db.scan::<Vec<u8>>(..).unwrap().count(), 1);
    db.close().await.unwrap();
}
