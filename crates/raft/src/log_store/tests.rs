//! Tests of the presets' durability: when an append is fsynced, written
//! to the OS or only buffered, and what a crash or a reopen then finds.

use super::*;
use crate::typ::{log_id, Entry, EntryPayload, Proposal, Request, Vote};
use ballast_storage::fs::{FaultFs, FaultSwitches, StdFs};
use ballast_storage::wal::WalOptions;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn entries(range: std::ops::Range<u64>) -> Vec<Entry> {
    range
        .map(|i| Entry {
            log_id: log_id(1, 1, i),
            payload: EntryPayload::Normal(Proposal::new(
                i,
                Request::Delete {
                    key: format!("k{i}").into_bytes(),
                },
            )),
        })
        .collect()
}

async fn open(dir: &Path, policy: FsyncPolicy) -> (LogStore, Arc<FaultSwitches>) {
    let (fs, switches) = FaultFs::new(Arc::new(StdFs));
    let (store, _) = LogStore::open_with_policy(fs, dir, WalOptions::default(), policy)
        .await
        .expect("open");
    (store, switches)
}

fn syncs(s: &FaultSwitches) -> u64 {
    s.syncs.load(Ordering::SeqCst)
}

#[path = "../../tests/support/poll.rs"]
mod poll;

/// Polls `cond` every 5 ms for up to 10 s.
async fn within_10s(what: &str, cond: impl Fn() -> bool) {
    poll::until(what, Duration::from_secs(10), cond).await
}

async fn reopened_len(dir: &Path) -> u64 {
    let (s, report) = LogStore::open(Arc::new(StdFs), dir, WalOptions::default())
        .await
        .expect("reopen");
    drop(s);
    report.entries
}

#[tokio::test]
async fn durable_fsyncs_every_append_before_acknowledging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, sw) = open(dir.path(), FsyncPolicy::Group).await;
    for batch in 0..3u64 {
        let before = syncs(&sw);
        store
            .append_by_policy(entries(batch * 4 + 1..batch * 4 + 5))
            .await
            .expect("append");
        assert!(syncs(&sw) > before, "append {batch} returned unsynced");
        assert!(store.is_synced().expect("state"));
    }
}

#[tokio::test]
async fn balanced_writes_to_the_os_and_fsyncs_on_its_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, sw) = open(
        dir.path(),
        FsyncPolicy::Interval {
            sync_interval_ms: 20,
        },
    )
    .await;
    let before = syncs(&sw);
    store
        .append_by_policy(entries(1..11))
        .await
        .expect("append");
    // Acknowledged without an fsync on the write path...
    assert_eq!(syncs(&sw), before);
    assert!(!store.is_synced().expect("state"));
    // ...and fsynced by the timer within its interval.
    within_10s("the interval fsync", || syncs(&sw) > before).await;
    within_10s("synced", || store.is_synced().expect("state")).await;
    // A process crash (drop without any sync) after a later append
    // loses nothing: it was already written to the OS.
    store
        .append_by_policy(entries(11..16))
        .await
        .expect("append");
    drop(store);
    assert_eq!(reopened_len(dir.path()).await, 15);
}

#[tokio::test]
async fn throughput_acknowledges_from_memory_and_syncs_on_demand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, sw) = open(
        dir.path(),
        FsyncPolicy::WriteBack {
            buffer_bytes: 1 << 20,
            flush_interval_ms: 3_600_000,
        },
    )
    .await;
    let before = syncs(&sw);
    store
        .append_by_policy(entries(1..21))
        .await
        .expect("append");
    assert_eq!(syncs(&sw), before, "no fsync on the write path");
    // Buffered, yet readable (replication reads from the buffer).
    assert_eq!(store.entries(1..21).expect("read").len(), 20);
    assert!(!store.is_synced().expect("state"));
    // The vote is fsynced (file and directory) in every preset.
    let dir_syncs = sw.dir_syncs.load(Ordering::SeqCst);
    store
        .save_vote_durably(&Vote::new(3, 1))
        .await
        .expect("vote");
    assert!(syncs(&sw) > before);
    assert!(sw.dir_syncs.load(Ordering::SeqCst) > dir_syncs);
    // A clean shutdown syncs the log.
    store.syncer().sync().await.expect("sync");
    assert!(store.is_synced().expect("state"));
    drop(store);
    assert_eq!(reopened_len(dir.path()).await, 20);
}

#[tokio::test]
async fn throughput_writes_a_full_buffer_and_a_timed_one_to_the_os() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = open(
        dir.path(),
        FsyncPolicy::WriteBack {
            buffer_bytes: 64,
            flush_interval_ms: 3_600_000,
        },
    )
    .await;
    store
        .append_by_policy(entries(1..21))
        .await
        .expect("append");
    drop(store);
    assert_eq!(
        reopened_len(dir.path()).await,
        20,
        "a full buffer reaches the OS"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = open(
        dir.path(),
        FsyncPolicy::WriteBack {
            buffer_bytes: 1 << 20,
            flush_interval_ms: 10,
        },
    )
    .await;
    store.append_by_policy(entries(1..6)).await.expect("append");
    within_10s("the timed write", || {
        store.shared.lock().expect("lock").wal.pending_bytes() == 0
    })
    .await;
    drop(store);
    assert_eq!(reopened_len(dir.path()).await, 5);
}
