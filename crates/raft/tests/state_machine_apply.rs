//! The interim state machine: what each request answers, that a refused
//! request still advances the applied marker, that a restart comes back at
//! the last flushed marker, and that installing a snapshot replaces the
//! whole state.

use ballast_raft::state_machine::StateMachine;
use ballast_raft::typ::EntryPayload;
use ballast_raft::{BatchOp, Entry, LeaderId, LogId, Proposal, Request, Response, SetCondition};
use ballast_storage::{Background, ManualClock, Options, Preset};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use std::path::Path;
use tempfile::TempDir;

fn log_id(index: u64) -> LogId {
    LogId::new(
        LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    )
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

fn put(key: &str, value: &str) -> Request {
    Request::Put {
        key: key.into(),
        value: value.into(),
        expire_at_ms: None,
    }
}

fn set(key: &str, value: &str, condition: SetCondition, return_old: bool) -> Request {
    Request::Set {
        key: key.into(),
        value: value.into(),
        expire_at_ms: None,
        condition,
        return_old,
    }
}

#[tokio::test]
async fn each_request_kind_answers_and_changes_state_as_documented() {
    let dir = TempDir::new().expect("tempdir");
    let mut sm = open(dir.path()).await;
    let cases: Vec<(Request, Response)> = vec![
        (put("a", "1"), Response::Done),
        (Request::incr("a"), Response::Integer(2)),
        (
            Request::IncrBy {
                key: "a".into(),
                delta: -5,
            },
            Response::Integer(-3),
        ),
        (
            Request::IncrBy {
                key: "a".into(),
                delta: i64::MIN,
            },
            Response::Rejected("increment or decrement would overflow".into()),
        ),
        (put("s", "text"), Response::Done),
        (
            Request::incr("s"),
            Response::Rejected("value is not an integer or out of range".into()),
        ),
        (
            Request::Cas {
                key: "c".into(),
                expected: None,
                new: "x".into(),
            },
            Response::Cas {
                swapped: true,
                current: None,
            },
        ),
        (
            Request::Cas {
                key: "c".into(),
                expected: Some("y".into()),
                new: "z".into(),
            },
            Response::Cas {
                swapped: false,
                current: Some("x".into()),
            },
        ),
        (Request::Delete { key: "s".into() }, Response::Existed(true)),
        (
            Request::Delete { key: "s".into() },
            Response::Existed(false),
        ),
        (
            Request::Batch(vec![
                BatchOp::Put {
                    key: "b1".into(),
                    value: "v".into(),
                },
                BatchOp::Delete { key: "b1".into() },
                BatchOp::Put {
                    key: "b2".into(),
                    value: "w".into(),
                },
            ]),
            Response::Done,
        ),
        (
            Request::Expire {
                key: "nope".into(),
                expire_at_ms: 5_000,
            },
            Response::Existed(false),
        ),
        (
            Request::Expire {
                key: "b2".into(),
                expire_at_ms: 5_000,
            },
            Response::Existed(true),
        ),
        (
            Request::Persist { key: "b2".into() },
            Response::Existed(true),
        ),
        (
            set("n", "1", SetCondition::IfPresent, true),
            Response::Set {
                written: false,
                old: None,
            },
        ),
        (
            set("n", "1", SetCondition::IfAbsent, false),
            Response::Set {
                written: true,
                old: None,
            },
        ),
        (
            set("n", "2", SetCondition::IfAbsent, true),
            Response::Set {
                written: false,
                old: Some("1".into()),
            },
        ),
        (
            set("n", "3", SetCondition::IfPresent, true),
            Response::Set {
                written: true,
                old: Some("1".into()),
            },
        ),
        (
            set("m", "x", SetCondition::Always, false),
            Response::Set {
                written: true,
                old: None,
            },
        ),
        (
            Request::DeleteMany {
                keys: vec!["m".into(), "m".into(), "absent".into(), "c".into()],
            },
            Response::Integer(2),
        ),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let got = sm
            .apply_entry(normal(i as u64, req.clone()))
            .await
            .expect("apply");
        assert_eq!(got, want, "request {i}: {req:?}");
    }
    let db = sm.db();
    assert_eq!(db.get(b"a").expect("get").as_deref(), Some(&b"-3"[..]));
    assert_eq!(db.get(b"c").expect("get"), None, "deleted by DeleteMany");
    assert_eq!(db.get(b"m").expect("get"), None, "deleted by DeleteMany");
    assert_eq!(db.get(b"n").expect("get").as_deref(), Some(&b"3"[..]));
    assert_eq!(db.get(b"s").expect("get"), None);
    assert_eq!(db.get(b"b1").expect("get"), None);
    assert_eq!(db.get(b"b2").expect("get").as_deref(), Some(&b"w"[..]));
}

#[tokio::test]
async fn a_request_the_engine_refuses_is_rejected_and_still_advances_applied() {
    let dir = TempDir::new().expect("tempdir");
    let mut sm = open(dir.path()).await;
    let got = sm
        .apply_entry(normal(0, put("", "v")))
        .await
        .expect("apply");
    assert!(matches!(got, Response::Rejected(_)), "{got:?}");
    assert_eq!(sm.applied(), Some(log_id(0)));
    let got = sm
        .apply_entry(normal(1, put("k", "v")))
        .await
        .expect("apply");
    assert_eq!(got, Response::Done);
}

/// A runtime per "process": dropping it ends the engine's background
/// tasks, as a crash would, so the next open can take the directory lock.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_restart_resumes_at_the_last_flushed_applied_marker() {
    let dir = TempDir::new().expect("tempdir");
    runtime().block_on(async {
        let mut sm = open(dir.path()).await;
        for i in 0..5 {
            sm.apply_entry(normal(i, put(&format!("k{i}"), "v")))
                .await
                .expect("apply");
        }
        sm.flush().await.expect("flush");
        for i in 5..8 {
            sm.apply_entry(normal(i, put(&format!("k{i}"), "v")))
                .await
                .expect("apply");
        }
        // Dropped without close: entries 5..8 are only in the Raft log.
    });
    runtime().block_on(async {
        let mut sm = open(dir.path()).await;
        let (applied, _) = sm.applied_state().await.expect("state");
        assert_eq!(applied, Some(log_id(4)));
        assert!(sm.db().get(b"k4").expect("get").is_some());
        assert_eq!(sm.db().get(b"k5").expect("get"), None);
        // A second restart right away comes back at the same point.
    });
    runtime().block_on(async {
        let sm = open(dir.path()).await;
        assert_eq!(sm.applied(), Some(log_id(4)));
    });
}

#[test]
fn installing_a_snapshot_replaces_the_whole_state() {
    let (dir_a, dir_b) = (TempDir::new().expect("a"), TempDir::new().expect("b"));
    runtime().block_on(async {
        let mut a = open(dir_a.path()).await;
        let mut b = open(dir_b.path()).await;
        a.apply_entry(normal(0, put("shared", "from-a")))
            .await
            .expect("apply");
        a.apply_entry(normal(1, put("only-a", "1")))
            .await
            .expect("apply");
        b.apply_entry(normal(0, put("shared", "from-b")))
            .await
            .expect("apply");
        b.apply_entry(normal(1, put("only-b", "2")))
            .await
            .expect("apply");

        let mut builder = a.get_snapshot_builder().await;
        // Applied after the builder was made: not in the snapshot.
        a.apply_entry(normal(2, put("late", "x")))
            .await
            .expect("apply");
        let snap = builder.build_snapshot().await.expect("build");
        assert_eq!(snap.meta.last_log_id, Some(log_id(1)));
        b.install_snapshot(&snap.meta, snap.snapshot.clone())
            .await
            .expect("install");
        let db = b.db();
        assert_eq!(
            db.get(b"shared").expect("get").as_deref(),
            Some(&b"from-a"[..])
        );
        assert_eq!(db.get(b"only-a").expect("get").as_deref(), Some(&b"1"[..]));
        assert_eq!(db.get(b"only-b").expect("get"), None);
        assert_eq!(db.get(b"late").expect("get"), None);
        assert_eq!(b.applied_state().await.expect("state").0, Some(log_id(1)));
    });
    // The install is durable: a restart comes back at the snapshot.
    runtime().block_on(async {
        let b = open(dir_b.path()).await;
        assert_eq!(b.applied(), Some(log_id(1)));
        assert_eq!(b.db().get(b"only-b").expect("get"), None);
        assert_eq!(
            b.db().get(b"shared").expect("get").as_deref(),
            Some(&b"from-a"[..])
        );
    });
}
