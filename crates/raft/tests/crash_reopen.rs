//! Crash-and-reopen tests of the Raft log store: the store is dropped
//! without any close (every acknowledged step must already be durable),
//! reopened from the same directory, and the log state, vote and entries
//! checked. Torn tails are made by hand on the last segment file.

use ballast_raft::log_store::{AppliedIndex, FsyncPolicy, COMMIT_RECORD_LEN, LOG_DIR};
use ballast_raft::meta::META_TMP_FILE;
use ballast_raft::planted::{NodeBug, Planted};
use ballast_raft::typ::EntryPayload;
use ballast_raft::Error;
use ballast_raft::{
    Entry, LeaderId, LogId, LogStore, Membership, Node, OpenReport, Proposal, Request, Vote,
};
use ballast_storage::fs::{DynFs, FaultFs, StdFs, VolatileFs};
use ballast_storage::wal::{self, WalOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tempfile::TempDir;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(LeaderId { term, node_id: 1 }, index)
}

fn entry(term: u64, index: u64) -> Entry {
    let payload = match index % 3 {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Normal(Proposal::new(
            index,
            Request::Put {
                key: format!("key{index}").into_bytes(),
                value: vec![index as u8; 40],
                expire_at_ms: Some(1_000 + index),
            },
        )),
        _ => {
            let mut nodes = BTreeMap::new();
            nodes.insert(1, Node::new("127.0.0.1:7001", "127.0.0.1:6001"));
            nodes.insert(2, Node::new("127.0.0.1:7002", "127.0.0.1:6002"));
            let m = Membership::new(vec![BTreeSet::from([1, 2])], nodes).expect("valid");
            EntryPayload::Membership(m)
        }
    };
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

fn tiny() -> WalOptions {
    WalOptions {
        segment_bytes: 200,
        ..WalOptions::default()
    }
}

/// Appends `entries(term, range)` durably (acknowledged once it returns).
async fn append(store: &LogStore, term: u64, range: std::ops::RangeInclusive<u64>) {
    store
        .append_durably(entries(term, range))
        .await
        .expect("append");
}

async fn open(dir: &Path, opts: WalOptions) -> (LogStore, OpenReport) {
    open_on(Arc::new(StdFs), dir, opts).await
}

async fn open_on(fs: DynFs, dir: &Path, opts: WalOptions) -> (LogStore, OpenReport) {
    LogStore::open(fs, dir, opts).await.expect("open")
}

fn vote(term: u64, node: u64, committed: bool) -> Vote {
    Vote {
        leader_id: LeaderId {
            term,
            node_id: node,
        },
        committed,
    }
}

/// The highest-numbered segment file holding more than its header and
/// link record (WAL format 2).
fn last_data_segment(dir: &Path) -> std::path::PathBuf {
    let log = dir.join(LOG_DIR);
    let mut segs = wal::list_segments(&StdFs, &log).expect("list");
    segs.reverse();
    let empty = (wal::format::FILE_HEADER_LEN + wal::format::LINK_RECORD_LEN) as u64;
    for s in segs {
        let p = wal::segment_path(&log, s);
        if std::fs::metadata(&p).expect("stat").len() > empty {
            return p;
        }
    }
    panic!("no segment holds data");
}

#[tokio::test]
async fn acknowledged_entries_vote_and_purge_survive_drop_without_close() {
    for opts in [WalOptions::default(), tiny()] {
        let dir = TempDir::new().expect("tempdir");
        {
            let (store, _) = open(dir.path(), opts).await;
            store
                .save_vote_durably(&vote(3, 2, true))
                .await
                .expect("vote");
            append(&store, 1, 0..=4).await;
            append(&store, 2, 5..=10).await;
            store.purge_durably(log_id(1, 3)).await.expect("purge");
            // Dropped here: no close, no final sync.
        }
        let (store, report) = open(dir.path(), opts).await;
        assert_eq!(report.entries, 7);
        assert_eq!(report.wal.truncated, None);
        let state = store.log_state().expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(2, 10)));
        assert_eq!(store.vote().expect("vote"), Some(vote(3, 2, true)));
        let mut want = entries(1, 4..=4);
        want.extend(entries(2, 5..=10));
        assert_eq!(store.entries(..).expect("read"), want);
        assert_eq!(store.entries(0..4).expect("read"), vec![]);
    }
}

#[tokio::test]
async fn one_append_call_costs_one_fsync_and_a_vote_costs_file_and_directory_fsyncs() {
    let dir = TempDir::new().expect("tempdir");
    let (fs, switches) = FaultFs::new(Arc::new(StdFs));
    let (store, _) = open_on(fs, dir.path(), WalOptions::default()).await;
    let syncs = switches.syncs.load(Ordering::SeqCst);
    append(&store, 1, 0..=49).await;
    assert_eq!(switches.syncs.load(Ordering::SeqCst), syncs + 1);

    let (syncs, dir_syncs) = (
        switches.syncs.load(Ordering::SeqCst),
        switches.dir_syncs.load(Ordering::SeqCst),
    );
    store
        .save_vote_durably(&vote(1, 1, false))
        .await
        .expect("vote");
    assert_eq!(switches.syncs.load(Ordering::SeqCst), syncs + 1);
    assert_eq!(switches.dir_syncs.load(Ordering::SeqCst), dir_syncs + 1);
}

#[tokio::test]
async fn truncated_entries_stay_gone_after_reopen_and_appends_continue() {
    for opts in [WalOptions::default(), tiny()] {
        let dir = TempDir::new().expect("tempdir");
        {
            let (store, _) = open(dir.path(), opts).await;
            append(&store, 1, 0..=9).await;
            store
                .truncate_after_durably(Some(log_id(1, 5)))
                .await
                .expect("truncate");
            append(&store, 2, 6..=8).await;
        }
        let (store, _) = open(dir.path(), opts).await;
        let mut want = entries(1, 0..=5);
        want.extend(entries(2, 6..=8));
        assert_eq!(store.entries(..).expect("read"), want);
        assert_eq!(
            store.log_state().expect("state").last_log_id,
            Some(log_id(2, 8))
        );
    }
}

#[tokio::test]
async fn truncating_every_live_entry_after_a_purge_survives_reopen() {
    for opts in [WalOptions::default(), tiny()] {
        let dir = TempDir::new().expect("tempdir");
        {
            let (store, _) = open(dir.path(), opts).await;
            append(&store, 1, 0..=9).await;
            store.purge_durably(log_id(1, 4)).await.expect("purge");
            // Nothing after the purge point is kept: there is no live record
            // to cut after, so the store cuts before entry 5.
            store
                .truncate_after_durably(Some(log_id(1, 4)))
                .await
                .expect("truncate");
            assert_eq!(
                store.log_state().expect("state").last_log_id,
                Some(log_id(1, 4))
            );
            append(&store, 3, 5..=6).await;
        }
        let (store, report) = open(dir.path(), opts).await;
        assert_eq!(report.entries, 2);
        assert_eq!(store.entries(..).expect("read"), entries(3, 5..=6));
        let state = store.log_state().expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 4)));
        assert_eq!(state.last_log_id, Some(log_id(3, 6)));
    }
}

#[tokio::test]
async fn truncate_after_none_empties_an_unpurged_log_for_good() {
    let dir = TempDir::new().expect("tempdir");
    {
        let (store, _) = open(dir.path(), tiny()).await;
        append(&store, 1, 0..=6).await;
        store.truncate_after_durably(None).await.expect("truncate");
        assert_eq!(store.log_state().expect("state").last_log_id, None);
    }
    let (store, report) = open(dir.path(), tiny()).await;
    assert_eq!(report.entries, 0);
    assert_eq!(store.log_state().expect("state").last_log_id, None);
    append(&store, 2, 0..=1).await;
    assert_eq!(store.entries(..).expect("read"), entries(2, 0..=1));
}

#[tokio::test]
async fn purge_beyond_the_last_entry_then_append_survives_reopen() {
    // A follower that installs a snapshot past its log purges everything.
    let dir = TempDir::new().expect("tempdir");
    {
        let (store, _) = open(dir.path(), WalOptions::default()).await;
        append(&store, 1, 0..=3).await;
        store.purge_durably(log_id(2, 10)).await.expect("purge");
        let state = store.log_state().expect("state");
        assert_eq!(state.last_log_id, Some(log_id(2, 10)));
        append(&store, 2, 11..=13).await;
    }
    let (store, report) = open(dir.path(), WalOptions::default()).await;
    assert_eq!(report.purged_records_skipped, 4);
    let state = store.log_state().expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 10)));
    assert_eq!(state.last_log_id, Some(log_id(2, 13)));
    assert_eq!(store.entries(..).expect("read"), entries(2, 11..=13));
}

#[tokio::test]
async fn purge_removes_whole_segments_of_purged_entries_only() {
    let dir = TempDir::new().expect("tempdir");
    let (store, _) = open(dir.path(), tiny()).await;
    for i in 0..=19 {
        store.append_durably([entry(1, i)]).await.expect("append");
    }
    let before = store.segments().expect("segments");
    store.purge_durably(log_id(1, 14)).await.expect("purge");
    let after = store.segments().expect("segments");
    assert!(after.len() < before.len(), "{before:?} -> {after:?}");
    assert_eq!(store.entries(..).expect("read"), entries(1, 15..=19));
    drop(store);
    let (store, _) = open(dir.path(), tiny()).await;
    assert_eq!(store.entries(..).expect("read"), entries(1, 15..=19));
}

/// openraft's append (durable policy): when it returns the entries are
/// readable but not yet acknowledged; the callback fires after their
/// fsync, appends that queue behind it share one fsync, and a failed fsync
/// fails the callback of every append it covered and stops the store.
#[tokio::test]
async fn openraft_appends_are_acknowledged_after_one_shared_fsync() {
    use ballast_raft::TypeConfig;
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::type_config::TypeConfigExt;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;
    let dir = TempDir::new().expect("tempdir");
    let (fs, switches) = FaultFs::new(Arc::new(StdFs));
    {
        let (mut store, _) = open_on(fs, dir.path(), WalOptions::default()).await;
        let syncs = switches.syncs.load(Ordering::SeqCst);
        let (tx1, mut rx1) = TypeConfig::oneshot();
        store
            .append(entries(1, 0..=4), IOFlushed::signal(tx1))
            .await
            .expect("written");
        let (tx2, rx2) = TypeConfig::oneshot();
        store
            .append(entries(1, 5..=9), IOFlushed::signal(tx2))
            .await
            .expect("written");
        // The test runtime has one thread: the flusher has not run yet.
        assert_eq!(store.entries(..).expect("read"), entries(1, 0..=9));
        let answered =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut rx1).poll(cx).is_ready())).await;
        assert!(!answered, "acknowledged before any fsync");
        assert_eq!(switches.syncs.load(Ordering::SeqCst), syncs);
        rx1.await.expect("callback").expect("durable");
        rx2.await.expect("callback").expect("durable");
        assert_eq!(
            switches.syncs.load(Ordering::SeqCst),
            syncs + 1,
            "two queued appends share one fsync"
        );

        switches.fail_sync.store(true, Ordering::SeqCst);
        let (tx3, rx3) = TypeConfig::oneshot();
        store
            .append(entries(1, 10..=12), IOFlushed::signal(tx3))
            .await
            .expect("written");
        assert!(
            rx3.await.expect("callback").is_err(),
            "a failed fsync acknowledged"
        );
        switches.fail_sync.store(false, Ordering::SeqCst);
        let (tx4, rx4) = TypeConfig::oneshot();
        assert!(store
            .append(entries(1, 13..=13), IOFlushed::signal(tx4))
            .await
            .is_err());
        assert!(
            rx4.await.expect("callback").is_err(),
            "a stopped store acknowledged"
        );
    }
    let (store, _) = open(dir.path(), WalOptions::default()).await;
    let got = store.entries(..).expect("read");
    assert_eq!(got[..10], entries(1, 0..=9)[..]);
    assert_eq!(got, entries(1, 0..=(got.len() as u64 - 1)));
    assert!(got.len() <= 13);
}

#[tokio::test]
async fn torn_tail_of_the_last_segment_loses_only_unacknowledged_entries() {
    let dir = TempDir::new().expect("tempdir");
    let (fs, switches) = FaultFs::new(Arc::new(StdFs));
    {
        let (store, _) = open_on(fs, dir.path(), WalOptions::default()).await;
        append(&store, 1, 0..=4).await;
        // The next append is written but its fsync fails: never acknowledged.
        switches.fail_sync.store(true, Ordering::SeqCst);
        assert!(store.append_durably(entries(1, 5..=7)).await.is_err());
        // A failed fsync stops the store until it is reopened.
        switches.fail_sync.store(false, Ordering::SeqCst);
        assert!(store.append_durably(entries(1, 8..=8)).await.is_err());
    }
    // Power loss tore the unacknowledged write in the middle of entry 6.
    let seg = last_data_segment(dir.path());
    let len = std::fs::metadata(&seg).expect("stat").len();
    let file = OpenOptions::new().write(true).open(&seg).expect("open");
    file.set_len(len - 60).expect("cut");
    drop(file);

    let (store, report) = open(dir.path(), WalOptions::default()).await;
    assert!(report.wal.truncated.is_some(), "{report:?}");
    let got = store.entries(..).expect("read");
    // Every acknowledged entry survives; of the unacknowledged, a prefix.
    assert_eq!(got[..5], entries(1, 0..=4)[..]);
    assert!(got.len() < 8, "the torn entry 7 came back");
    assert_eq!(got, entries(1, 0..=(got.len() as u64 - 1)));
    // The store appends after the cut and reopens cleanly.
    let next = got.len() as u64;
    append(&store, 2, next..=next + 2).await;
    drop(store);
    let (store, report) = open(dir.path(), WalOptions::default()).await;
    assert_eq!(report.wal.truncated, None);
    assert_eq!(
        store.log_state().expect("state").last_log_id,
        Some(log_id(2, next + 2))
    );
}

#[tokio::test]
async fn garbage_after_the_last_acknowledged_entry_is_cut_not_returned() {
    let dir = TempDir::new().expect("tempdir");
    {
        let (store, _) = open(dir.path(), WalOptions::default()).await;
        append(&store, 1, 0..=3).await;
    }
    // A record header that claims more bytes than the file holds.
    let seg = last_data_segment(dir.path());
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes.extend_from_slice(&[0xAB, 0xCD, 0xEF, 0x01, 200, 0, 0, 0, 1, 9, 9, 9]);
    std::fs::write(&seg, &bytes).expect("write");
    let (store, report) = open(dir.path(), WalOptions::default()).await;
    assert_eq!(report.wal.truncated.map(|t| t.bytes_dropped), Some(12));
    assert_eq!(store.entries(..).expect("read"), entries(1, 0..=3));
}

#[tokio::test]
async fn a_vote_replacement_cut_short_by_a_crash_leaves_the_old_vote() {
    let dir = TempDir::new().expect("tempdir");
    {
        let (store, _) = open(dir.path(), WalOptions::default()).await;
        store
            .save_vote_durably(&vote(4, 1, false))
            .await
            .expect("vote");
        store
            .save_vote_durably(&vote(5, 3, true))
            .await
            .expect("vote");
    }
    // A crash after the temporary file was written, before its rename.
    std::fs::write(dir.path().join(META_TMP_FILE), b"half written").expect("write");
    let (store, _) = open(dir.path(), WalOptions::default()).await;
    assert_eq!(store.vote().expect("vote"), Some(vote(5, 3, true)));
    // And the next save replaces the leftover.
    store
        .save_vote_durably(&vote(6, 2, false))
        .await
        .expect("vote");
    drop(store);
    let (store, _) = open(dir.path(), WalOptions::default()).await;
    assert_eq!(store.vote().expect("vote"), Some(vote(6, 2, false)));
}

#[tokio::test]
async fn appending_a_gap_is_refused_and_leaves_the_log_usable() {
    let dir = TempDir::new().expect("tempdir");
    let (store, _) = open(dir.path(), WalOptions::default()).await;
    append(&store, 1, 0..=2).await;
    let err = store.append_durably([entry(1, 5)]).await.expect_err("gap");
    assert!(matches!(err, ballast_raft::Error::Misuse(_)), "{err}");
    append(&store, 1, 3..=3).await;
    assert_eq!(store.entries(..).expect("read"), entries(1, 0..=3));
}

#[tokio::test]
async fn a_gap_in_the_middle_of_one_append_stops_the_store_until_reopen() {
    let dir = TempDir::new().expect("tempdir");
    {
        let (store, _) = open(dir.path(), WalOptions::default()).await;
        append(&store, 1, 0..=2).await;
        let err = store
            .append_durably([entry(1, 3), entry(1, 7)])
            .await
            .expect_err("gap");
        assert!(matches!(err, ballast_raft::Error::Misuse(_)), "{err}");
        let err = store
            .append_durably([entry(1, 4)])
            .await
            .expect_err("stopped");
        assert!(matches!(err, ballast_raft::Error::Stopped(_)), "{err}");
    }
    // Entry 3 was never written to the OS, let alone acknowledged.
    let (store, _) = open(dir.path(), WalOptions::default()).await;
    assert_eq!(store.entries(..).expect("read"), entries(1, 0..=2));
}

#[tokio::test]
async fn a_purge_that_would_leave_a_hole_before_the_log_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let (store, _) = open(dir.path(), WalOptions::default()).await;
    // Nothing purged, and the first entry is 5: purging up to 2 would
    // claim entries 3 and 4, which the log never had.
    append(&store, 1, 5..=9).await;
    let err = store.purge_durably(log_id(1, 2)).await.expect_err("hole");
    assert!(matches!(err, ballast_raft::Error::Misuse(_)), "{err}");
    // Purging right before the first entry is fine, and survives reopen.
    store.purge_durably(log_id(1, 4)).await.expect("purge");
    assert_eq!(store.entries(..).expect("read"), entries(1, 5..=9));
    drop(store);
    let (store, _) = open(dir.path(), WalOptions::default()).await;
    assert_eq!(store.entries(..).expect("read"), entries(1, 5..=9));
}

#[tokio::test]
async fn a_failed_vote_fsync_stops_the_store_and_the_old_vote_survives() {
    let dir = TempDir::new().expect("tempdir");
    let (fs, switches) = FaultFs::new(Arc::new(StdFs));
    {
        let (store, _) = open_on(fs, dir.path(), WalOptions::default()).await;
        store
            .save_vote_durably(&vote(1, 1, false))
            .await
            .expect("vote");
        switches.fail_sync.store(true, Ordering::SeqCst);
        assert!(store.save_vote_durably(&vote(2, 2, false)).await.is_err());
        switches.fail_sync.store(false, Ordering::SeqCst);
        // The in-memory vote never moved past the durable one.
        assert_eq!(store.vote().expect("vote"), Some(vote(1, 1, false)));
        let err = store
            .append_durably(entries(2, 0..=0))
            .await
            .expect_err("stopped");
        assert!(matches!(err, ballast_raft::Error::Stopped(_)), "{err}");
    }
    let (store, _) = open(dir.path(), WalOptions::default()).await;
    assert_eq!(store.vote().expect("vote"), Some(vote(1, 1, false)));
}

/// Under a relaxed preset the log is acknowledged from memory, so the
/// engine (whose flush records the applied log id) must make the log
/// durable before it flushes: otherwise a power loss could leave the
/// state ahead of the log.
#[tokio::test]
async fn an_engine_flush_makes_the_raft_log_durable_first() {
    use ballast_raft::log_store::FsyncPolicy;
    use ballast_raft::state_machine::StateMachine;
    use ballast_storage::{Background, Options, Preset};
    let dir = TempDir::new().expect("tempdir");
    let (store, _) = LogStore::open_with_policy(
        Arc::new(StdFs),
        &dir.path().join("log"),
        WalOptions::default(),
        FsyncPolicy::WriteBack {
            buffer_bytes: 1 << 20,
            flush_interval_ms: 3_600_000,
        },
    )
    .await
    .expect("open log");
    store
        .append_by_policy(entries(1, 0..=9))
        .await
        .expect("append");
    let mut o = Options::preset(Preset::Throughput);
    o.background = Background::Tasks;
    o.flush_barrier = Some(Arc::new(store.syncer()));
    let mut sm = StateMachine::open(&dir.path().join("sm"), o)
        .await
        .expect("open state machine");
    for e in entries(1, 0..=9) {
        sm.apply_entry(e).await.expect("apply");
    }
    assert!(
        !store.is_synced().expect("state"),
        "applying synced the log"
    );
    sm.flush().await.expect("flush");
    assert!(
        store.is_synced().expect("state"),
        "the engine flushed applied state before the log it covers was durable"
    );
}

/// Hole 1 of issue 9, the log store's piece: openraft's committed log id
/// is persisted as a commit record in the log's own WAL stream. Saving it
/// costs no fsync (the next append's fsync makes it durable; under the
/// durable and balanced policies it is written to the OS at once, so a
/// process crash keeps it), and what a reopen reads back never names an
/// entry beyond the durable log: a record cut off with a torn tail takes
/// its commit records with it.
#[tokio::test]
async fn the_committed_log_id_survives_reopen_and_never_exceeds_the_durable_log() {
    use openraft::storage::RaftLogStorage;
    let dir = TempDir::new().expect("tempdir");
    let (fs, switches) = FaultFs::new(Arc::new(StdFs));
    {
        let (mut store, report) = open_on(fs, dir.path(), WalOptions::default()).await;
        assert_eq!(report.committed, None);
        append(&store, 1, 0..=9).await;
        let syncs = switches.syncs.load(Ordering::SeqCst);
        store
            .save_committed(Some(log_id(1, 7)))
            .await
            .expect("save committed");
        assert_eq!(
            switches.syncs.load(Ordering::SeqCst),
            syncs,
            "saving the committed log id cost an fsync"
        );
        assert_eq!(
            store.read_committed().await.expect("read"),
            Some(log_id(1, 7))
        );
        // The next append's one fsync makes the commit record durable.
        append(&store, 1, 10..=12).await;
        assert_eq!(switches.syncs.load(Ordering::SeqCst), syncs + 1);
        store
            .save_committed(Some(log_id(1, 12)))
            .await
            .expect("save committed");
        // Dropped without a sync: a process crash.
    }
    let (mut store, report) = open(dir.path(), WalOptions::default()).await;
    assert_eq!(report.committed, Some(log_id(1, 12)), "{report:?}");
    assert_eq!(
        store.read_committed().await.expect("read"),
        Some(log_id(1, 12))
    );
    drop(store);

    // A power loss that keeps entries 0..=11 and loses the rest (the last
    // append's tail and the commit record after it, never fsynced): cut
    // the file inside entry 12's record.
    let seg = last_data_segment(dir.path());
    let f = OpenOptions::new().write(true).open(&seg).expect("open");
    let len = f.metadata().expect("len").len();
    f.set_len(len - (9 + COMMIT_RECORD_LEN as u64) - 5)
        .expect("cut");
    drop(f);
    let (mut store, report) = open(dir.path(), WalOptions::default()).await;
    assert_eq!(report.entries, 12, "{report:?}");
    let last = store.log_state().expect("state").last_log_id;
    assert_eq!(last, Some(log_id(1, 11)));
    let committed = store.read_committed().await.expect("read");
    // Never beyond the durable log; never below what was saved before the
    // last fsync.
    assert_eq!(committed, Some(log_id(1, 7)));
    assert!(committed <= last);
}

/// A throughput store whose timer never fires within a test: what it
/// acknowledges stays in its buffer until something writes it out.
async fn open_write_back(dir: &Path) -> LogStore {
    let policy = FsyncPolicy::WriteBack {
        buffer_bytes: 1 << 20,
        flush_interval_ms: 3_600_000,
    };
    let (store, _) =
        LogStore::open_with_policy(Arc::new(StdFs), dir, WalOptions::default(), policy)
            .await
            .expect("open");
    store
}

/// Under throughput a commit record waits in the write-back buffer like
/// the entries: a crash before the buffer reaches the OS loses it, never
/// leaving a committed log id the log cannot back.
#[tokio::test]
async fn a_buffered_commit_record_is_lost_with_its_buffer_never_alone() {
    use openraft::storage::RaftLogStorage;
    let dir = TempDir::new().expect("tempdir");
    {
        let mut store = open_write_back(dir.path()).await;
        store
            .append_by_policy(entries(1, 0..=4))
            .await
            .expect("append");
        store
            .save_committed(Some(log_id(1, 2)))
            .await
            .expect("save");
        store.syncer().sync().await.expect("sync");
        store
            .append_by_policy(entries(1, 5..=6))
            .await
            .expect("append");
        store
            .save_committed(Some(log_id(1, 6)))
            .await
            .expect("save");
        // A crash with 5, 6 and the second commit record still buffered.
    }
    let (store, report) = open(dir.path(), WalOptions::default()).await;
    assert_eq!(report.entries, 5);
    assert_eq!(report.committed, Some(log_id(1, 2)));
    drop(store);
}

/// Hole 7 of issue 9, the log store's piece: a node never truncates its
/// log below its applied index. The truncation is refused with a named
/// error saying how to rebuild the node, and the store stops; the log on
/// disk is untouched.
#[tokio::test]
async fn truncating_below_the_applied_index_is_refused_and_stops_the_store() {
    let dir = TempDir::new().expect("tempdir");
    {
        let (store, _) = open(dir.path(), tiny()).await;
        append(&store, 1, 0..=9).await;
        let applied = AppliedIndex::new();
        store.set_applied_index(applied.clone()).expect("share");
        applied.set(5);
        // Above the applied index, a conflict is an ordinary truncation.
        store
            .truncate_after_durably(Some(log_id(1, 8)))
            .await
            .expect("truncate above the applied index");
        let err = store
            .truncate_after_durably(Some(log_id(1, 3)))
            .await
            .expect_err("truncated applied entries");
        assert!(
            matches!(
                err,
                Error::TruncateBelowApplied {
                    applied: 5,
                    truncate_from: 4
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in ["remove its data directory", "learner", "promote"] {
            assert!(msg.contains(part), "{msg:?} does not say {part:?}");
        }
        // The store refuses to go on.
        assert!(matches!(
            store.append_durably(entries(2, 9..=9)).await,
            Err(Error::Stopped(_))
        ));
        assert!(store.truncate_after_durably(None).await.is_err());
    }
    let (store, _) = open(dir.path(), tiny()).await;
    assert_eq!(store.entries(..).expect("read"), entries(1, 0..=8));
}

/// The planted switch brings the truncation back: the test above would
/// see entries 4..=8 gone.
#[tokio::test]
async fn the_planted_switch_truncates_below_the_applied_index() {
    let dir = TempDir::new().expect("tempdir");
    let (store, _) = open(dir.path(), tiny()).await;
    store
        .set_planted(Planted::NONE.with(NodeBug::TruncateBelowApplied))
        .expect("planted");
    append(&store, 1, 0..=9).await;
    let applied = AppliedIndex::new();
    store.set_applied_index(applied.clone()).expect("share");
    applied.set(5);
    store
        .truncate_after_durably(Some(log_id(1, 3)))
        .await
        .expect("the planted bug truncates");
    assert_eq!(store.entries(..).expect("read"), entries(1, 0..=3));
}

/// A throughput store acknowledges from its write-back buffer, and its
/// timer ends when the store stops. Returns how many entries a process
/// crash after a refused truncation below the applied index leaves, of
/// the ten acknowledged before it.
async fn entries_after_a_refusal_then_a_crash(planted: Planted) -> usize {
    use openraft::storage::RaftLogStorage;
    let dir = TempDir::new().expect("tempdir");
    {
        let mut store = open_write_back(dir.path()).await;
        store.set_planted(planted).expect("planted");
        store
            .append_by_policy(entries(1, 0..=9))
            .await
            .expect("append");
        let applied = AppliedIndex::new();
        store.set_applied_index(applied.clone()).expect("share");
        applied.set(5);
        let err = store
            .truncate_after_durably(Some(log_id(1, 3)))
            .await
            .expect_err("truncated applied entries");
        assert!(matches!(err, Error::TruncateBelowApplied { .. }), "{err:?}");
        assert!(store.save_committed(Some(log_id(1, 9))).await.is_err());
        // The process goes on with the store stopped, however long, then
        // crashes: nothing flushes at the drop.
    }
    let (store, report) = open(dir.path(), WalOptions::default()).await;
    drop(store);
    report.entries as usize
}

/// Stopping on a refused truncation does not strand what the throughput
/// preset acknowledged: the store makes it durable before it stops.
#[tokio::test]
async fn a_refused_truncation_makes_the_acknowledged_buffer_durable_before_stopping() {
    assert_eq!(
        entries_after_a_refusal_then_a_crash(Planted::NONE).await,
        10
    );
}

/// The planted switch stops with the buffer still in memory: the crash
/// takes the acknowledged entries.
#[tokio::test]
async fn the_planted_switch_stops_with_the_buffer_in_memory() {
    let planted = Planted::NONE.with(NodeBug::StopLeavesBuffer);
    assert_eq!(entries_after_a_refusal_then_a_crash(planted).await, 0);
}

/// Client writes only (membership entries are durable even with the
/// planted switch below).
fn writes(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range
        .map(|index| Entry {
            log_id: log_id(1, index),
            payload: EntryPayload::Normal(Proposal::new(
                index,
                Request::Put {
                    key: format!("key{index}").into_bytes(),
                    value: vec![index as u8; 40],
                    expire_at_ms: None,
                },
            )),
        })
        .collect()
}

/// What survives a power cut of the durable log: every append openraft was
/// told is flushed (its callback answered `Ok`), and nothing else needs to.
/// Returns the entries found after the cut and the number acknowledged.
async fn acknowledged_then_power_cut(planted: Planted) -> (Vec<Entry>, usize) {
    use ballast_raft::TypeConfig;
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::type_config::TypeConfigExt;
    let dir = TempDir::new().expect("tempdir");
    let disk = VolatileFs::new(Arc::new(StdFs));
    {
        let (mut store, _) =
            open_on(Arc::new(disk.clone()), dir.path(), WalOptions::default()).await;
        store.set_planted(planted).expect("planted");
        for batch in 0..4u64 {
            let (tx, rx) = TypeConfig::oneshot();
            let first = batch * 5;
            store
                .append(writes(first..=first + 4), IOFlushed::signal(tx))
                .await
                .expect("written");
            rx.await.expect("callback").expect("acknowledged");
        }
        disk.cut_power();
    }
    let (store, _) = open(dir.path(), WalOptions::default()).await;
    (store.entries(..).expect("read"), 20)
}

#[tokio::test]
async fn every_acknowledged_append_survives_a_power_cut() {
    let (got, acknowledged) = acknowledged_then_power_cut(Planted::NONE).await;
    assert_eq!(
        got.len(),
        acknowledged,
        "acknowledged entries lost to a power cut"
    );
    assert_eq!(got, writes(0..=19));
}

#[tokio::test]
async fn the_planted_switch_acknowledges_appends_a_power_cut_loses() {
    let (got, acknowledged) =
        acknowledged_then_power_cut(Planted::NONE.with(NodeBug::AckBeforeLogFsync)).await;
    assert!(
        got.len() < acknowledged,
        "with acknowledgements before the fsync, a power cut still kept all {} entries",
        got.len()
    );
}
