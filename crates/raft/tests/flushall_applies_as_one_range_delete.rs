//! FLUSHALL in the state machine: one entry applied as one range delete.
//! A Raft snapshot built after it holds no flushed key (the install
//! carries no floor, so what it shows is in the tables); a restart before
//! the flush comes back before the entry, whole, and the replay applies it
//! again; inside a transaction the later reads see an empty keyspace; and
//! the planted `range-delete-ignored-by-compaction` reaches the engine.
//! Costs about a second.

use ballast_raft::planted::{NodeBug, Planted};
use ballast_raft::state_machine::StateMachine;
use ballast_raft::typ::{EntryPayload, Watched};
use ballast_raft::{Entry, LogId, Proposal, Request, Response};
use ballast_storage::{Background, ManualClock, Options, Preset};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use std::path::Path;
use tempfile::TempDir;

fn log_id(index: u64) -> LogId {
    ballast_raft::typ::log_id(1, 1, index)
}

fn normal(index: u64, req: Request) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Proposal::new(1_000, req)),
    }
}

async fn open(dir: &Path) -> StateMachine {
    let mut o = Options::preset(Preset::Durable);
    o.background = Background::Tasks;
    o.clock = ManualClock::new(1_000);
    StateMachine::open(dir, o).await.expect("open")
}

fn put(key: &str, value: &[u8]) -> Request {
    Request::Put {
        key: key.into(),
        value: value.to_vec(),
        expire_at_ms: None,
    }
}

fn keys(sm: &StateMachine) -> Vec<String> {
    sm.db()
        .scan::<Vec<u8>>(..)
        .expect("scan")
        .map(|kv| String::from_utf8(kv.expect("kv").0.to_vec()).expect("utf8"))
        .collect()
}

/// Entries 0..20 put `k0..k19` (flushed), 20 is FLUSHALL, 21 puts `after`.
async fn fill_flush_and_flushall(sm: &mut StateMachine) {
    for i in 0..20 {
        sm.apply_entry(normal(i, put(&format!("k{i}"), b"v")))
            .await
            .expect("apply");
    }
    sm.flush().await.expect("flush");
    let answer = sm
        .apply_entry(normal(20, Request::FlushAll))
        .await
        .expect("apply");
    assert_eq!(answer, Response::Done);
    sm.apply_entry(normal(21, put("after", b"v")))
        .await
        .expect("apply");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_snapshot_built_after_flushall_holds_no_flushed_key() {
    let (dir_a, dir_b) = (TempDir::new().expect("a"), TempDir::new().expect("b"));
    runtime().block_on(async {
        let mut a = open(dir_a.path()).await;
        // A reader from before the FLUSHALL keeps compaction from dropping
        // the flushed keys, so the snapshot must leave them out itself.
        let _reader = a.db().snapshot();
        fill_flush_and_flushall(&mut a).await;
        assert_eq!(keys(&a), ["after"]);
        let snap = a
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        let mut b = open(dir_b.path()).await;
        b.apply_entry(normal(0, put("only-b", b"v")))
            .await
            .expect("apply");
        b.install_snapshot(&snap.meta, snap.snapshot.clone())
            .await
            .expect("install");
        // No range delete came with it: the tables hold `after` alone.
        assert_eq!(b.db().range_floors(), []);
        assert_eq!(keys(&b), ["after"]);
    });
    runtime().block_on(async {
        let b = open(dir_b.path()).await;
        assert_eq!(b.applied(), Some(log_id(21)));
        assert_eq!(keys(&b), ["after"]);
    });
}

#[test]
fn a_restart_before_the_flush_replays_flushall_in_place() {
    let dir = TempDir::new().expect("tempdir");
    runtime().block_on(async {
        let mut sm = open(dir.path()).await;
        fill_flush_and_flushall(&mut sm).await;
        // Dropped without close or flush: 20 and 21 are only in the log.
    });
    runtime().block_on(async {
        let mut sm = open(dir.path()).await;
        assert_eq!(sm.applied(), Some(log_id(19)));
        assert_eq!(keys(&sm).len(), 20, "whole, as of entry 19");
        sm.apply_entry(normal(20, Request::FlushAll))
            .await
            .expect("apply");
        sm.apply_entry(normal(21, put("after", b"v")))
            .await
            .expect("apply");
        assert_eq!(keys(&sm), ["after"]);
    });
}

#[test]
fn inside_a_transaction_later_reads_see_an_empty_keyspace() {
    let dir = TempDir::new().expect("tempdir");
    runtime().block_on(async {
        let mut sm = open(dir.path()).await;
        sm.apply_entry(normal(0, put("old", b"v")))
            .await
            .expect("apply");
        let tx = Request::Transaction {
            watched: vec![Watched {
                key: b"old".to_vec(),
                seen: Some((b"v".to_vec(), None)),
            }],
            requests: vec![
                put("mine", b"1"),
                Request::FlushAll,
                Request::Read {
                    keys: vec![b"old".to_vec(), b"mine".to_vec()],
                },
                put("kept", b"2"),
                Request::Read {
                    keys: vec![b"kept".to_vec()],
                },
            ],
        };
        let answer = sm.apply_entry(normal(1, tx)).await.expect("apply");
        assert_eq!(
            answer,
            Response::Multi(vec![
                Response::Done,
                Response::Done,
                Response::Values(vec![None, None]),
                Response::Done,
                Response::Values(vec![Some((b"2".to_vec(), None))]),
            ])
        );
        assert_eq!(keys(&sm), ["kept"]);
    });
}

/// Table bytes after 2,000 keys of 200 incompressible bytes, a FLUSHALL
/// and a compaction, with `planted`.
async fn table_bytes_after_flushall(dir: &Path, planted: Planted) -> u64 {
    let mut sm = open(dir).await;
    sm.set_planted(planted);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..2000 {
        let value: Vec<u8> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        sm.apply_entry(normal(i, put(&format!("k{i}"), &value)))
            .await
            .expect("apply");
    }
    sm.db().compact().await.expect("compact");
    sm.apply_entry(normal(2000, Request::FlushAll))
        .await
        .expect("apply");
    sm.db().compact().await.expect("compact");
    assert_eq!(keys(&sm), Vec::<String>::new());
    sm.db().stats().levels.iter().map(|l| l.bytes).sum()
}

#[test]
fn compaction_drops_what_flushall_covers_unless_the_planted_switch_is_on() {
    let (dir_a, dir_b) = (TempDir::new().expect("a"), TempDir::new().expect("b"));
    runtime().block_on(async {
        let fixed = table_bytes_after_flushall(dir_a.path(), Planted::NONE).await;
        let planted = table_bytes_after_flushall(
            dir_b.path(),
            Planted::NONE.with(NodeBug::RangeDeleteIgnoredByCompaction),
        )
        .await;
        println!("table bytes after FLUSHALL and compaction: {fixed}, planted {planted}");
        assert!(fixed < 10_000, "{fixed}");
        assert!(planted > 400_000, "the planted switch is seen: {planted}");
    });
}
