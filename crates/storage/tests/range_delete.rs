//! Range deletes (sequence floors): one record hides every older entry of
//! a key range from point reads, scans and later snapshots; it survives a
//! crash (through the WAL standalone, through the Raft log's replay in
//! replicated mode, where it becomes durable only with the flush that
//! covers it); compaction drops what it covers; a checkpoint carries its
//! effect. Costs about a second in all.

use ballast_storage::{Background, Db, Options, Preset, WriteBatch};

fn standalone() -> Options {
    let mut o = Options::preset(Preset::Durable);
    o.background = Background::Tasks;
    o
}

fn replicated() -> Options {
    let mut o = standalone();
    o.wal = false;
    o
}

/// The live keys, in order.
fn keys(db: &Db) -> Vec<String> {
    db.scan::<Vec<u8>>(..)
        .unwrap()
        .map(|kv| String::from_utf8(kv.unwrap().0.to_vec()).unwrap())
        .collect()
}

fn present(db: &Db, key: &str) -> bool {
    db.get(key.as_bytes()).unwrap().is_some()
}

/// A crash: background work stops, nothing is flushed or synced.
async fn crash(db: Db) {
    db.halt().await;
    drop(db);
}

#[tokio::test]
async fn a_range_delete_hides_older_keys_in_its_range_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), standalone()).await.unwrap();
    for k in ["a1", "a2", "b1"] {
        db.put(k.as_bytes(), b"old").await.unwrap();
    }
    db.flush().await.unwrap();
    db.put(b"a3", b"old, in the memtable").await.unwrap();
    let before = db.snapshot();
    db.delete_range(b"a", Some(b"b")).await.unwrap();
    db.put(b"a4", b"after").await.unwrap();
    let after = db.snapshot();

    for view in ["memtable", "flushed"] {
        assert!(!present(&db, "a1") && !present(&db, "a3"), "{view}");
        assert!(present(&db, "b1"), "{view}: outside the range");
        assert!(present(&db, "a4"), "{view}: written after the delete");
        assert_eq!(keys(&db), ["a4", "b1"], "{view}");
        // A snapshot taken before the delete still sees what it covers;
        // one taken after does not.
        let old: Vec<_> = db
            .scan_at::<Vec<u8>>(&before, ..)
            .unwrap()
            .map(|kv| kv.unwrap().0)
            .collect();
        assert_eq!(old.len(), 4, "{view}: {old:?}");
        assert!(db.get_at(&before, b"a1").unwrap().is_some(), "{view}");
        assert!(db.get_at(&after, b"a1").unwrap().is_none(), "{view}");
        db.flush().await.unwrap();
    }
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_range_delete_and_a_key_written_after_it_survive_a_crash_standalone() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), standalone()).await.unwrap();
    for i in 0..50 {
        db.put(format!("k{i:02}").as_bytes(), b"v").await.unwrap();
    }
    db.flush().await.unwrap();
    db.put(b"k50", b"in the memtable").await.unwrap();
    let mut b = WriteBatch::new();
    b.delete_range(b"\0", None).put(b"same-batch", b"v");
    db.write(b).await.unwrap();
    db.put(b"after", b"v").await.unwrap();
    // No flush: only the WAL holds the range delete.
    crash(db).await;

    let db = Db::open(dir.path(), standalone()).await.unwrap();
    assert_eq!(keys(&db), ["after", "same-batch"]);
    assert!(!present(&db, "k00") && !present(&db, "k50"));
    // Flushed into the manifest, it survives the next crash too.
    db.flush().await.unwrap();
    crash(db).await;
    let db = Db::open(dir.path(), standalone()).await.unwrap();
    assert_eq!(keys(&db), ["after", "same-batch"]);
    db.close().await.unwrap();
}

fn applied(b: &mut WriteBatch, marker: u64) -> WriteBatch {
    b.set_applied_marker(&marker.to_le_bytes());
    std::mem::take(b)
}

/// Replicated mode: the state machine's entries, as it would apply them
/// (the Raft log holds them; a restart replays from the flushed marker).
fn entry(i: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    match i {
        1..=5 => b.put(format!("k{i}").as_bytes(), b"v"),
        6 => b.delete_range(b"\0", None),
        _ => b.put(format!("after{i}").as_bytes(), b"v"),
    };
    applied(&mut b, i)
}

#[tokio::test]
async fn replicated_a_range_delete_is_durable_only_with_the_flush_that_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), replicated()).await.unwrap();
    for i in 1..=5 {
        db.write_from_log(entry(i)).await.unwrap();
    }
    db.flush().await.unwrap();
    for i in 6..=7 {
        db.write_from_log(entry(i)).await.unwrap();
    }
    assert_eq!(keys(&db), ["after7"]);
    crash(db).await;

    // The engine is back at entry 5, with entries 1..=5 whole: if a power
    // loss took entries 6 and 7 from the Raft log too, this state is the
    // one the log describes, so the range delete must not be in it.
    let db = Db::open(dir.path(), replicated()).await.unwrap();
    assert_eq!(db.applied_marker().await, Some(5u64.to_le_bytes().to_vec()));
    assert_eq!(keys(&db), ["k1", "k2", "k3", "k4", "k5"]);
    // Replaying the log from there applies the FLUSHALL again, alike.
    for i in 6..=8 {
        db.write_from_log(entry(i)).await.unwrap();
    }
    assert_eq!(keys(&db), ["after7", "after8"]);
    db.flush().await.unwrap();
    crash(db).await;

    let db = Db::open(dir.path(), replicated()).await.unwrap();
    assert_eq!(db.applied_marker().await, Some(8u64.to_le_bytes().to_vec()));
    assert_eq!(keys(&db), ["after7", "after8"]);
    db.close().await.unwrap();
}

/// Bytes in tables once `n` keys were written and compacted, then again
/// after a range delete over them and a compaction.
async fn table_bytes_before_and_after_a_range_delete(db: &Db, n: usize) -> (u64, u64) {
    let table_bytes = |db: &Db| db.stats().levels.iter().map(|l| l.bytes).sum::<u64>();
    // Values that do not compress, so table bytes follow the data.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut batch = WriteBatch::new();
    for i in 0..n {
        let value: Vec<u8> = (0..100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        batch.put(format!("key{i:05}").as_bytes(), &value);
        if batch.len() == 100 {
            db.write(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    db.write(batch).await.unwrap();
    db.compact().await.unwrap();
    let before = table_bytes(db);
    db.delete_range(b"key", Some(b"kez")).await.unwrap();
    db.put(b"kept", b"v").await.unwrap();
    db.compact().await.unwrap();
    (before, table_bytes(db))
}

#[tokio::test]
async fn compaction_drops_what_a_range_delete_covers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), standalone()).await.unwrap();
    let (before, after) = table_bytes_before_and_after_a_range_delete(&db, 3000).await;
    println!("table bytes: {before} before the range delete, {after} after compaction");
    assert!(before > 300_000, "{before}");
    assert!(
        after * 20 < before,
        "covered data left in tables: {after} of {before} bytes"
    );
    assert_eq!(keys(&db), ["kept"]);
    // Nothing is left to hide: the floor is gone from the manifest too.
    assert_eq!(db.range_floors(), []);
    db.close().await.unwrap();
    let db = Db::open(dir.path(), standalone()).await.unwrap();
    assert_eq!(keys(&db), ["kept"]);
    db.close().await.unwrap();
}

/// The planted `range-delete-ignored-by-compaction` (compaction keeps the
/// covered entries) is seen by the byte count above; reads stay right,
/// because the floor stays while its data does.
#[tokio::test]
async fn planted_range_delete_ignored_by_compaction_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), standalone()).await.unwrap();
    db.set_range_deletes_compacted(false);
    let (before, after) = table_bytes_before_and_after_a_range_delete(&db, 3000).await;
    assert!(
        after * 20 >= before,
        "the check must see the covered data left behind: {after} of {before} bytes"
    );
    assert_eq!(keys(&db), ["kept"]);
    assert_eq!(db.range_floors().len(), 1);
    db.close().await.unwrap();
}

#[tokio::test]
async fn an_older_snapshot_keeps_what_a_later_range_delete_covers_through_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), standalone()).await.unwrap();
    db.put(b"k", b"v").await.unwrap();
    let snap = db.snapshot();
    db.delete_range(b"\0", None).await.unwrap();
    db.compact().await.unwrap();
    assert_eq!(db.get(b"k").unwrap(), None);
    assert!(db.get_at(&snap, b"k").unwrap().is_some());
    drop(snap);
    db.compact().await.unwrap();
    assert_eq!(db.get(b"k").unwrap(), None);
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_checkpoint_taken_after_a_range_delete_holds_no_covered_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = Db::open(dir.path().join("a"), replicated()).await.unwrap();
    for i in 1..=5 {
        a.write_from_log(entry(i)).await.unwrap();
    }
    a.flush().await.unwrap();
    // A reader from before the range delete keeps compaction from
    // dropping what it covers, so the checkpoint must leave it out itself.
    let reader = a.snapshot();
    for i in 6..=7 {
        a.write_from_log(entry(i)).await.unwrap();
    }
    let cp = a.checkpoint(&dir.path().join("cp")).await.unwrap();
    assert_eq!(cp.applied_marker, Some(7u64.to_le_bytes().to_vec()));
    assert!(a.get_at(&reader, b"k1").unwrap().is_some());
    let b = Db::open(dir.path().join("b"), replicated()).await.unwrap();
    b.write_from_log(entry(1)).await.unwrap();
    b.install(&cp).await.unwrap();
    // The install carries no floor: the tables themselves hold no covered key.
    assert_eq!(b.range_floors(), []);
    assert_eq!(keys(&b), ["after7"]);
    b.close().await.unwrap();
    let b = Db::open(dir.path().join("b"), replicated()).await.unwrap();
    assert_eq!(keys(&b), ["after7"]);
    b.close().await.unwrap();
    a.close().await.unwrap();
}
