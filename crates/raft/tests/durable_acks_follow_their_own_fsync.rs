//! Hole 5 of issue 9: a durable append acknowledged without an fsync.
//!
//! The flusher fsyncs outside the store's lock. If a truncation removes
//! segment `n` and creates a new segment `n` while that fsync runs, the
//! fsync's outcome must not count for the new file: with sync tickets
//! keyed by segment number it did, and a later append whose end offset
//! matched the old ticket's was acknowledged with no fsync at all.
//!
//! Deterministic through the file seam: `GatedFs` holds the flusher inside
//! its fsync of segment 2 while the test truncates and appends, and keeps
//! per-file watermarks of written and fsynced bytes, so "acknowledged"
//! can be checked against "fsynced" byte-exactly.

mod support;

use ballast_raft::codec;
use ballast_raft::planted::{NodeBug, Planted};
use ballast_raft::typ::log_id;
use ballast_raft::{Entry, LogStore, TypeConfig};
use ballast_storage::wal::{self, segment_path, WalOptions};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::gated_fs::{GatedFs, Marks};
use support::{put_entries, put_entry};

fn entry(term: u64, index: u64) -> Entry {
    // Same encoded size for every index and term, so that offsets line up
    // between the truncated entries and their replacements.
    put_entry(term, index, 100)
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    put_entries(term, range, 100)
}

/// Encoded size of one record of `entry(_, _)`: WAL record header plus
/// the entry.
fn record_len() -> u64 {
    let mut buf = Vec::new();
    codec::encode_entry(&mut buf, &entry(1, 0));
    9 + buf.len() as u64
}

/// Appends through openraft's API and waits for the `IOFlushed` callback.
async fn append_acked(store: &mut LogStore, es: Vec<Entry>) {
    support::append_acked(store, es, Duration::from_secs(30)).await
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    support::until(what, Duration::from_secs(30), cond).await
}

/// Where a segment's records start: after its header and (WAL format 2)
/// its link record.
const FIRST_RECORD: u64 = (wal::format::FILE_HEADER_LEN + wal::format::LINK_RECORD_LEN) as u64;

/// Runs the scenario and returns the watermarks of segment 2 right after
/// the last append was acknowledged.
async fn recreated_segment_marks(planted: Planted) -> (Marks, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = GatedFs::new();
    let r = record_len();
    // Three entries fill a segment exactly.
    let opts = WalOptions {
        segment_bytes: FIRST_RECORD + 3 * r,
        ..WalOptions::default()
    };
    let (mut store, _) = LogStore::open(fs.clone(), dir.path(), opts)
        .await
        .expect("open");
    store.set_planted(planted).expect("planted");
    let log = dir.path().join("log");
    let seg2 = segment_path(&log, 2);

    append_acked(&mut store, entries(1, 0..=2)).await;
    let acks = store.durable_acks().expect("state");
    assert_eq!(acks.get(), Some(2), "entries 0..=2 acknowledged durable");
    // Segment 2 comes prepared; wait for it so that the only fsync of the
    // file named segment 2 below is the flusher's.
    until("segment 2 prepared", || {
        store.prepared_segment().expect("state") == Some(2)
    })
    .await;

    // Entries 3..=5 roll into segment 2; hold the flusher in its fsync.
    let hold = fs.hold_next_sync({
        let seg2 = seg2.clone();
        move |p: &Path| p == seg2
    });
    let (tx, rx_old) = TypeConfig::oneshot();
    store
        .append(entries(1, 3..=5), IOFlushed::signal(tx))
        .await
        .expect("written");
    assert_eq!(hold.held().await, seg2);

    // Meanwhile a new leader's log conflicts from index 3: segment 2 is
    // removed and created anew, and entries 3' and 4' go into it.
    store
        .truncate_after(Some(log_id(1, 1, 2)))
        .await
        .expect("truncate");
    assert_eq!(store.entries(..).expect("read"), entries(1, 0..=2));
    assert_eq!(acks.get(), Some(2), "the truncation kept 0..=2");
    let (tx, rx_new) = TypeConfig::oneshot();
    store
        .append(entries(2, 3..=4), IOFlushed::signal(tx))
        .await
        .expect("written");

    // The stale fsync completes; then the flusher syncs 3' and 4'.
    hold.release();
    let _ = tokio::time::timeout(Duration::from_secs(30), rx_old)
        .await
        .expect("old append answered");
    // The truncated append's acknowledgement speaks for entries that are
    // gone: it must not count (3' and 4' may be acknowledged by now).
    assert!(
        acks.get() <= Some(4),
        "a truncated append counted as durable: {:?}",
        acks.get()
    );
    tokio::time::timeout(Duration::from_secs(30), rx_new)
        .await
        .expect("acknowledged")
        .expect("callback")
        .expect("durable");

    // 5' ends segment 2 exactly where the stale fsync's ticket ended.
    append_acked(&mut store, entries(2, 5..=5)).await;
    assert_eq!(acks.get(), Some(5));
    let marks = fs.marks(&seg2).expect("segment 2 exists");
    assert_eq!(
        marks.written,
        FIRST_RECORD + 3 * r,
        "segment 2 holds 3', 4', 5'"
    );
    drop(store);
    (marks, seg2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_into_a_recreated_segment_is_fsynced_before_its_ack() {
    let (marks, seg2) = recreated_segment_marks(Planted::NONE).await;
    assert!(
        marks.durable >= marks.written,
        "{} acknowledged with bytes {}..{} never fsynced ({marks:?})",
        seg2.display(),
        marks.durable,
        marks.written
    );
}

/// The planted bug brings back the keying by segment number: the check
/// above must catch it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keying_sync_tickets_by_segment_number_acknowledges_unsynced_bytes() {
    let planted = Planted::NONE.with(NodeBug::SyncTicketBySegment);
    let (marks, _) = recreated_segment_marks(planted).await;
    assert!(
        marks.durable < marks.written,
        "the planted bug went unnoticed: {marks:?}"
    );
}

#[test]
fn the_fixture_entries_have_one_size() {
    let sizes: Vec<usize> = [entry(1, 0), entry(2, 5), entry(9, 9_999)]
        .iter()
        .map(|e| {
            let mut b = Vec::new();
            codec::encode_entry(&mut b, e);
            b.len()
        })
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
}
