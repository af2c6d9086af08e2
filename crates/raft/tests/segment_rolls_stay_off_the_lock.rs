//! Hole 9 of issue 9: blocking disk work on the Raft path. A segment roll
//! used to fsync the full segment and create (zero-fill, fsync) the next
//! one inside `append`, under the store's lock, so replication reads,
//! heartbeats' log reads and the next append all waited for the disk.
//!
//! Now the next segment is prepared ahead by a task, off the lock, and a
//! roll only switches files; the old segment's seal fsync runs on the
//! unlocked sync path. `GatedFs` holds one fsync inside the file seam for
//! as long as the test wants, so "the lock is not held during it" becomes
//! a yes/no question: with the disk work under the lock, the reads and
//! appends below could not finish until the test released the fsync
//! (deadlines only bound the wait: they measure no speed).

mod support;

use ballast_raft::{Entry, LogStore, TypeConfig};
use ballast_storage::wal::{segment_path, WalOptions, PREPARED_SUFFIX};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::RaftLogReader;
use std::path::Path;
use std::time::Duration;
use support::gated_fs::GatedFs;
use support::{append_acked, put_entries, until};

/// Bounds every wait on something the test expects to finish while a
/// fsync is held; far above any honest duration.
const BOUND: Duration = Duration::from_secs(20);

/// Term-1 puts of 1000 bytes each.
fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    put_entries(1, range, 1000)
}

/// Reads the whole log on another task and waits for it up to [`BOUND`].
async fn read_all_while_held(store: &mut LogStore, what: &str) -> Vec<Entry> {
    let mut reader = store.get_log_reader().await;
    let read = tokio::spawn(async move { reader.try_get_log_entries(0..u64::MAX).await });
    tokio::time::timeout(BOUND, read)
        .await
        .unwrap_or_else(|_| panic!("{what}: a reader was blocked while an fsync was held"))
        .expect("task")
        .expect("read")
}

/// Segments of 16 KiB, zero-filled: a roll every 15 entries.
fn opts() -> WalOptions {
    WalOptions {
        segment_bytes: 16 << 10,
        preallocate: true,
        ..WalOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_does_not_fsync_under_the_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = GatedFs::new();
    let (mut store, _) = LogStore::open(fs.clone(), dir.path(), opts())
        .await
        .expect("open");
    let log = dir.path().join("log");
    append_acked(&mut store, entries(0..=9), BOUND).await;
    until("segment 2 prepared", BOUND, || {
        store.prepared_segment().expect("state") == Some(2)
    })
    .await;

    // Hold the fsync that seals segment 1, then append across the roll:
    // the first of 10..=19 still fit segment 1 (unsynced), the rest go to
    // segment 2.
    let seg1 = segment_path(&log, 1);
    let hold = fs.hold_next_sync(move |p: &Path| p == seg1);
    let (tx, rx_roll) = TypeConfig::oneshot();
    let append = tokio::spawn(async move {
        store
            .append(entries(10..=19), IOFlushed::signal(tx))
            .await
            .expect("written");
        store
    });
    let mut store = tokio::time::timeout(BOUND, append)
        .await
        .expect("the append that rolled blocked while segment 1's seal fsync was held: the roll fsyncs under the store's lock")
        .expect("task");
    assert_eq!(hold.held().await, segment_path(&log, 1));
    assert_eq!(store.segments().expect("state"), vec![1, 2], "rolled");

    // While the seal is held: replication reads go on, and so do appends
    // (acknowledged only after the seal and their own fsync).
    let got = read_all_while_held(&mut store, "after the roll").await;
    assert_eq!(got, entries(0..=19));
    let (tx, rx_next) = TypeConfig::oneshot();
    tokio::time::timeout(BOUND, store.append(entries(20..=22), IOFlushed::signal(tx)))
        .await
        .expect("an append blocked while the seal fsync was held")
        .expect("written");
    assert!(hold.is_holding(), "the seal fsync was still held meanwhile");
    // Segment 1 must be durable before any record of segment 2 can reach
    // the disk (else a power loss could leave a torn record before data):
    // segment 2 is still its header and zeros.
    let seg2 = std::fs::read(segment_path(&log, 2)).expect("read segment 2");
    assert!(
        seg2[24..].iter().all(|&b| b == 0),
        "segment 2 got records before segment 1 was sealed"
    );

    hold.release();
    for rx in [rx_roll, rx_next] {
        tokio::time::timeout(BOUND, rx)
            .await
            .expect("acknowledged")
            .expect("callback")
            .expect("durable");
    }
    // Acknowledged means fsynced, in both segments.
    for n in [1, 2] {
        let m = fs.marks(&segment_path(&log, n)).expect("segment");
        assert!(m.durable >= m.written, "segment {n}: {m:?}");
    }
    drop(store);
    let (store, report) = LogStore::open(GatedFs::new(), dir.path(), opts())
        .await
        .expect("reopen");
    assert_eq!(report.entries, 23);
    assert_eq!(store.entries(..).expect("read"), entries(0..=22));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preparing_the_next_segment_holds_no_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = GatedFs::new();
    let (mut store, _) = LogStore::open(fs.clone(), dir.path(), opts())
        .await
        .expect("open");
    // Segment 2 is prepared once segment 1 is half full: hold that
    // preparation's fsync (after its zero fill).
    let hold =
        fs.hold_next_sync(|p: &Path| p.to_str().is_some_and(|s| s.ends_with(PREPARED_SUFFIX)));
    append_acked(&mut store, entries(0..=9), BOUND).await;
    let held = hold.held().await;
    assert!(
        held.to_str()
            .is_some_and(|s| s.contains("00000000000000000002.")),
        "{held:?}"
    );

    // While the zero-filled segment 2 waits for its fsync: appends are
    // written and acknowledged, and readers read.
    let (tx, rx) = TypeConfig::oneshot();
    tokio::time::timeout(BOUND, store.append(entries(10..=12), IOFlushed::signal(tx)))
        .await
        .expect("an append blocked while a preparation was held")
        .expect("written");
    tokio::time::timeout(BOUND, rx)
        .await
        .expect("an append's fsync waited for a preparation")
        .expect("callback")
        .expect("durable");
    let got = read_all_while_held(&mut store, "during a preparation").await;
    assert_eq!(got, entries(0..=12));
    assert!(hold.is_holding());
    assert_eq!(store.prepared_segment().expect("state"), None);

    hold.release();
    until("segment 2 prepared", BOUND, || {
        store.prepared_segment().expect("state") == Some(2)
    })
    .await;
}
