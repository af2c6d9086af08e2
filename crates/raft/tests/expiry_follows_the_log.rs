//! Expiry is a pure function of the replicated log, at the state machine:
//! replicas that apply the same entries end with the same state hash
//! (`state_machine::state_hash`) whatever their clocks say and whenever
//! they flush and compact, including one that restarts and replays from
//! its last flush and one that installs a snapshot midway. Relative TTLs
//! (SET EX, EXPIRE) become deadlines from each entry's time. With the
//! planted switch that expires by the engine's clock, a follower whose
//! clock runs ahead drops keys in its flushes that the leader still holds,
//! and the hashes differ.

use ballast_raft::planted::{NodeBug, Planted};
use ballast_raft::state_machine::{state_hash, StateMachine};
use ballast_raft::typ::{log_id, EntryPayload};
use ballast_raft::{Entry, Proposal, Request, SetCondition};
use ballast_storage::{Background, ManualClock, Options, Preset};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use std::path::Path;
use std::sync::Arc;
use tempfile::TempDir;

/// The leader's clock at the first entry; entries are 50 ms apart.
const START_MS: u64 = 1_700_000_000_000;
const STEP_MS: u64 = 50;
const ENTRIES: u64 = 80;
/// How far ahead the skewed follower's clock runs.
const SKEW_MS: u64 = 3_600_000;

fn at(index: u64) -> u64 {
    START_MS + index * STEP_MS
}

/// Entry `index`: TTLs (relative and absolute) that run out a few entries
/// later, counters that are incremented and given TTLs, plain puts.
fn entry(index: u64) -> Entry {
    let ttl_ms = (index % 4 + 1) * 120;
    let req = match index % 6 {
        0 => Request::SetWithTtl {
            key: format!("ttl-{index}").into_bytes(),
            value: b"v".to_vec(),
            ttl_ms,
            condition: SetCondition::Always,
            return_old: false,
        },
        1 => Request::Put {
            key: format!("abs-{index}").into_bytes(),
            value: b"a".to_vec(),
            expire_at_ms: Some(at(index) + ttl_ms),
        },
        2 | 4 => Request::incr(format!("counter-{}", index % 3)),
        3 => Request::ExpireIn {
            key: format!("counter-{}", index % 3).into_bytes(),
            ttl_ms,
        },
        _ => Request::Put {
            key: format!("plain-{index}").into_bytes(),
            value: b"p".to_vec(),
            expire_at_ms: None,
        },
    };
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(Proposal::new(at(index), req)),
    }
}

async fn open(dir: &Path, clock_ms: u64, planted: Planted) -> (StateMachine, Arc<ManualClock>) {
    let clock = ManualClock::new(clock_ms);
    let mut o = Options::preset(Preset::Durable);
    o.background = Background::Tasks;
    o.clock = clock.clone();
    let mut sm = StateMachine::open(dir, o).await.expect("open");
    sm.set_planted(planted);
    (sm, clock)
}

async fn apply(sm: &mut StateMachine, range: std::ops::Range<u64>) {
    for i in range {
        sm.apply_entry(entry(i)).await.expect("apply");
    }
}

async fn flush_and_compact(sm: &StateMachine) {
    sm.flush().await.expect("flush");
    sm.db().compact().await.expect("compact");
}

/// A runtime per "process": dropping it ends the engine's background
/// tasks, as a crash would.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The hashes of: the leader (its clock follows the entries, never
/// flushes), a follower whose clock runs an hour ahead and that flushes
/// and compacts every ten entries, one that restarts midway and replays
/// from its last flush, and one that installs the leader's snapshot
/// midway. `planted` is switched on in the followers.
fn hashes(planted: Planted) -> [(&'static str, String); 4] {
    let dirs: Vec<TempDir> = (0..4).map(|_| TempDir::new().expect("tempdir")).collect();
    let half = ENTRIES / 2;
    // The replayer's first life: applies half, flushes part of it, and
    // dies with the rest only in its (here: our) log.
    runtime().block_on(async {
        let (mut r, _) = open(dirs[2].path(), at(0), planted).await;
        apply(&mut r, 0..half - 7).await;
        flush_and_compact(&r).await;
        apply(&mut r, half - 7..half).await;
    });
    runtime().block_on(async {
        let (mut leader, leader_clock) = open(dirs[0].path(), at(0), Planted::NONE).await;
        let (mut skewed, _) = open(dirs[1].path(), at(0) + SKEW_MS, planted).await;
        let (mut replayer, _) = open(dirs[2].path(), at(half), planted).await;
        let (mut snapshotter, _) = open(dirs[3].path(), at(half), planted).await;
        let from = replayer.applied().map_or(0, |a| a.index + 1);
        assert!(from < half, "the replayer replays part of its log");

        for i in 0..ENTRIES {
            leader_clock.set(at(i));
            apply(&mut leader, i..i + 1).await;
            apply(&mut skewed, i..i + 1).await;
            if i % 10 == 9 {
                flush_and_compact(&skewed).await;
            }
            if i == half {
                let snap = leader
                    .get_snapshot_builder()
                    .await
                    .build_snapshot()
                    .await
                    .expect("snapshot");
                snapshotter
                    .install_snapshot(&snap.meta, snap.snapshot.clone())
                    .await
                    .expect("install");
                flush_and_compact(&snapshotter).await;
            }
            if i > half {
                apply(&mut snapshotter, i..i + 1).await;
            }
        }
        apply(&mut replayer, from..ENTRIES).await;
        flush_and_compact(&replayer).await;
        flush_and_compact(&skewed).await;
        for sm in [&leader, &skewed, &replayer, &snapshotter] {
            assert_eq!(sm.applied().map(|a| a.index), Some(ENTRIES - 1));
        }
        let hash = |sm: &StateMachine| state_hash(sm.db()).expect("hash");
        [
            ("leader", hash(&leader)),
            ("skewed", hash(&skewed)),
            ("replayer", hash(&replayer)),
            ("snapshotter", hash(&snapshotter)),
        ]
    })
}

#[test]
fn replicas_hash_alike_whatever_their_clocks_flushes_restarts_and_snapshots() {
    let hashes = hashes(Planted::NONE);
    for (who, h) in &hashes {
        assert_eq!(h, &hashes[0].1, "{who} differs from the leader: {hashes:?}");
    }
}

#[test]
fn with_expiry_by_the_local_clock_the_skewed_follower_hashes_differently() {
    let hashes = hashes(Planted::NONE.with(NodeBug::ExpireByLocalClock));
    assert_ne!(
        hashes[1].1, hashes[0].1,
        "the skewed follower's flushes went unnoticed: {hashes:?}"
    );
}

/// The horizon is the time of the last applied entry and survives a
/// restart (it travels in the applied marker).
#[test]
fn the_expiry_horizon_follows_applied_entries_across_a_restart() {
    let dir = TempDir::new().expect("tempdir");
    runtime().block_on(async {
        let (mut sm, _) = open(dir.path(), 0, Planted::NONE).await;
        apply(&mut sm, 0..5).await;
        assert_eq!(sm.db().expiry_horizon_ms(), at(4));
        assert_eq!(sm.applied_at_ms(), at(4));
        sm.flush().await.expect("flush");
    });
    runtime().block_on(async {
        let (sm, _) = open(dir.path(), 0, Planted::NONE).await;
        assert_eq!(sm.db().expiry_horizon_ms(), at(4));
        assert_eq!(sm.applied_at_ms(), at(4));
    });
}
