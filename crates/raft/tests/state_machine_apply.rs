//! The state machine: what each request answers, that TTLs follow Redis
//! and every read is as of the entry's time (never the engine's clock),
//! that a refused request still advances the applied marker, that a
//! restart comes back at the last flushed marker, and that installing a
//! snapshot replaces the whole state.

use ballast_raft::state_machine::StateMachine;
use ballast_raft::typ::EntryPayload;
use ballast_raft::{BatchOp, Entry, LogId, Proposal, Request, Response, SetCondition};
use ballast_storage::{Background, ManualClock, Options, Preset};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use std::path::Path;
use std::sync::Arc;
use tempfile::TempDir;

fn log_id(index: u64) -> LogId {
    ballast_raft::typ::log_id(1, 1, index)
}

fn normal(index: u64, req: Request) -> Entry {
    normal_at(index, 1_000, req)
}

fn normal_at(index: u64, at_ms: u64, req: Request) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Proposal::new(at_ms, req)),
    }
}

async fn open(dir: &Path) -> StateMachine {
    open_with_clock(dir, ManualClock::new(1_000)).await
}

async fn open_with_clock(dir: &Path, clock: Arc<ManualClock>) -> StateMachine {
    let mut o = Options::preset(Preset::Durable);
    o.background = Background::Tasks;
    o.clock = clock;
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
    for (i, (req, want)) in documented_cases().into_iter().enumerate() {
        let got = sm
            .apply_entry(normal(i as u64, req.clone()))
            .await
            .expect("apply");
        assert_eq!(got, want, "request {i}: {req:?}");
    }
    check_documented_state(&sm);
}

/// Every request kind, with what it answers when applied in this order.
fn documented_cases() -> Vec<(Request, Response)> {
    vec![
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
    ]
}

fn check_documented_state(sm: &StateMachine) {
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
async fn a_multi_answers_each_request_as_if_applied_one_entry_each() {
    let dir = TempDir::new().expect("tempdir");
    let mut sm = open(dir.path()).await;
    let (reqs, wants): (Vec<Request>, Vec<Response>) = documented_cases().into_iter().unzip();
    let got = sm
        .apply_entry(normal(7, Request::Multi(reqs)))
        .await
        .expect("apply");
    assert_eq!(got, Response::Multi(wants));
    assert_eq!(sm.applied(), Some(log_id(7)));
    check_documented_state(&sm);
}

#[tokio::test]
async fn a_multi_refuses_only_its_bad_requests_and_reads_its_own_earlier_writes() {
    let dir = TempDir::new().expect("tempdir");
    let mut sm = open(dir.path()).await;
    let huge = "x".repeat(16 * 1024 * 1024 + 1);
    let reqs = vec![
        put("k", "v"),
        put("", "empty key"),
        put("big", &huge),
        Request::incr("n"),
        Request::incr("n"),
        // Written by this entry already, then expired as of its time.
        put_ttl("t", "5", 900),
        Request::incr("t"),
        set("k", "w", SetCondition::IfAbsent, true),
        Request::Delete { key: "k".into() },
        set("k", "again", SetCondition::IfAbsent, false),
    ];
    let got = sm
        .apply_entry(normal_at(3, 1_000, Request::Multi(reqs)))
        .await
        .expect("apply");
    let Response::Multi(answers) = got else {
        panic!("a multi answers a multi: {got:?}");
    };
    assert_eq!(answers.len(), 10);
    assert_eq!(answers[0], Response::Done);
    assert!(
        matches!(&answers[1], Response::Rejected(why) if why.contains("empty")),
        "{:?}",
        answers[1]
    );
    // Over this engine's own value limit, but in the log: applied (sizes
    // are checked where a request enters, never at apply).
    assert_eq!(answers[2], Response::Done);
    assert_eq!(answers[3..5], [Response::Integer(1), Response::Integer(2)]);
    assert_eq!(answers[5], Response::Done);
    assert_eq!(
        answers[6],
        Response::Integer(1),
        "the expired value counts as absent"
    );
    assert_eq!(
        answers[7],
        Response::Set {
            written: false,
            old: Some("v".into())
        }
    );
    assert_eq!(answers[8], Response::Existed(true));
    assert_eq!(
        answers[9],
        Response::Set {
            written: true,
            old: None
        }
    );
    let db = sm.db();
    assert_eq!(db.get(b"k").expect("get").as_deref(), Some(&b"again"[..]));
    assert_eq!(db.get(b"n").expect("get").as_deref(), Some(&b"2"[..]));
    assert_eq!(db.get(b"t").expect("get").as_deref(), Some(&b"1"[..]));
    assert_eq!(
        db.get(b"big").expect("get").map(|v| v.len()),
        Some(huge.len())
    );
    assert_eq!(sm.applied(), Some(log_id(3)));
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
        // Applied after the builder was made but before it ran: the
        // snapshot is the state when it is built, and says so.
        a.apply_entry(normal(2, put("late", "x")))
            .await
            .expect("apply");
        let snap = builder.build_snapshot().await.expect("build");
        assert_eq!(snap.meta.last_log_id, Some(log_id(2)));
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
        assert_eq!(db.get(b"late").expect("get").as_deref(), Some(&b"x"[..]));
        assert_eq!(b.applied_state().await.expect("state").0, Some(log_id(2)));
    });
    // The install is durable: a restart comes back at the snapshot.
    runtime().block_on(async {
        let b = open(dir_b.path()).await;
        assert_eq!(b.applied(), Some(log_id(2)));
        assert_eq!(b.db().get(b"only-b").expect("get"), None);
        assert_eq!(
            b.db().get(b"shared").expect("get").as_deref(),
            Some(&b"from-a"[..])
        );
    });
}

/// Applies `req` at `at_ms` and checks the answer.
async fn check(sm: &mut StateMachine, index: &mut u64, at_ms: u64, req: Request, want: Response) {
    *index += 1;
    let got = sm
        .apply_entry(normal_at(*index, at_ms, req.clone()))
        .await
        .expect("apply");
    assert_eq!(got, want, "entry {index} at {at_ms}: {req:?}");
}

fn put_ttl(key: &str, value: &str, expire_at_ms: u64) -> Request {
    Request::Put {
        key: key.into(),
        value: value.into(),
        expire_at_ms: Some(expire_at_ms),
    }
}

/// The value and expiry of `key` as the engine holds it (as of time 0, so
/// nothing is hidden by expiry).
fn entry(sm: &StateMachine, key: &str) -> Option<(Vec<u8>, Option<u64>)> {
    sm.db()
        .get_entry_as_of(key.as_bytes(), 0)
        .expect("get")
        .map(|(v, at)| (v.to_vec(), at))
}

#[tokio::test]
async fn ttls_follow_redis_and_reads_are_as_of_the_entry_time_not_the_engine_clock() {
    let dir = TempDir::new().expect("tempdir");
    // The engine's clock says every key expired long ago: apply must not
    // care, it reads as of each entry's at_ms.
    let clock = ManualClock::new(u64::MAX / 2);
    let mut sm = open_with_clock(dir.path(), clock.clone()).await;
    let i = &mut 0;
    let v = |s: &str| Some(s.as_bytes().to_vec());

    // INCR keeps the TTL.
    check(&mut sm, i, 1_000, put_ttl("n", "5", 2_000), Response::Done).await;
    check(&mut sm, i, 1_500, Request::incr("n"), Response::Integer(6)).await;
    assert_eq!(entry(&sm, "n"), Some((b"6".to_vec(), Some(2_000))));
    // ...until it expires: at 2000 the key is gone, INCR starts from 0
    // and the new key has no TTL.
    check(&mut sm, i, 2_000, Request::incr("n"), Response::Integer(1)).await;
    assert_eq!(entry(&sm, "n"), Some((b"1".to_vec(), None)));

    // SET without an expiry drops the TTL; SET with one sets it.
    check(&mut sm, i, 1_000, put_ttl("s", "a", 9_000), Response::Done).await;
    check(&mut sm, i, 1_000, put("s", "b"), Response::Done).await;
    assert_eq!(entry(&sm, "s"), Some((b"b".to_vec(), None)));
    check(&mut sm, i, 1_000, put_ttl("s2", "a", 9_000), Response::Done).await;
    check(
        &mut sm,
        i,
        1_000,
        set("s2", "c", SetCondition::Always, true),
        Response::Set {
            written: true,
            old: v("a"),
        },
    )
    .await;
    assert_eq!(entry(&sm, "s2"), Some((b"c".to_vec(), None)));

    // EXPIRE keeps the value; an expiry at or before at_ms deletes the key.
    check(&mut sm, i, 1_000, put("e", "val"), Response::Done).await;
    let expire = |at: u64| Request::Expire {
        key: "e".into(),
        expire_at_ms: at,
    };
    check(&mut sm, i, 1_000, expire(5_000), Response::Existed(true)).await;
    assert_eq!(entry(&sm, "e"), Some((b"val".to_vec(), Some(5_000))));
    check(&mut sm, i, 6_000, expire(7_000), Response::Existed(false)).await;
    check(&mut sm, i, 1_000, put("e", "val"), Response::Done).await;
    check(&mut sm, i, 3_000, expire(3_000), Response::Existed(true)).await;
    assert_eq!(entry(&sm, "e"), None, "deleted, as Redis does for TTL <= 0");

    // PERSIST answers true only if it removed a TTL.
    let persist = |k: &str| Request::Persist { key: k.into() };
    check(&mut sm, i, 1_000, put("p", "x"), Response::Done).await;
    check(&mut sm, i, 1_000, persist("p"), Response::Existed(false)).await;
    check(&mut sm, i, 1_000, put_ttl("p", "y", 4_000), Response::Done).await;
    check(&mut sm, i, 1_000, persist("p"), Response::Existed(true)).await;
    assert_eq!(entry(&sm, "p"), Some((b"y".to_vec(), None)));
    check(
        &mut sm,
        i,
        1_000,
        persist("absent"),
        Response::Existed(false),
    )
    .await;
    check(&mut sm, i, 1_000, put_ttl("p2", "z", 4_000), Response::Done).await;
    check(&mut sm, i, 4_000, persist("p2"), Response::Existed(false)).await;

    // CAS writes its new value without a TTL.
    check(
        &mut sm,
        i,
        1_000,
        put_ttl("c", "old", 8_000),
        Response::Done,
    )
    .await;
    check(
        &mut sm,
        i,
        1_000,
        Request::Cas {
            key: "c".into(),
            expected: v("old"),
            new: "new".into(),
        },
        Response::Cas {
            swapped: true,
            current: v("old"),
        },
    )
    .await;
    assert_eq!(entry(&sm, "c"), Some((b"new".to_vec(), None)));
    // On an expired key, CAS sees it absent.
    check(
        &mut sm,
        i,
        1_000,
        put_ttl("c2", "old", 2_000),
        Response::Done,
    )
    .await;
    check(
        &mut sm,
        i,
        2_000,
        Request::Cas {
            key: "c2".into(),
            expected: None,
            new: "fresh".into(),
        },
        Response::Cas {
            swapped: true,
            current: None,
        },
    )
    .await;

    // SET NX / XX / GET, DEL and multi-key DEL, one millisecond either side
    // of an expiry at 2000.
    for k in ["x1", "x2", "x3", "x4", "x5"] {
        check(&mut sm, i, 1_000, put_ttl(k, "live", 2_000), Response::Done).await;
    }
    check(
        &mut sm,
        i,
        1_999,
        set("x1", "nx", SetCondition::IfAbsent, true),
        Response::Set {
            written: false,
            old: v("live"),
        },
    )
    .await;
    check(
        &mut sm,
        i,
        2_000,
        set("x1", "nx", SetCondition::IfAbsent, true),
        Response::Set {
            written: true,
            old: None,
        },
    )
    .await;
    check(
        &mut sm,
        i,
        2_000,
        set("x2", "xx", SetCondition::IfPresent, true),
        Response::Set {
            written: false,
            old: None,
        },
    )
    .await;
    check(
        &mut sm,
        i,
        1_999,
        Request::Delete { key: "x3".into() },
        Response::Existed(true),
    )
    .await;
    check(
        &mut sm,
        i,
        2_000,
        Request::Delete { key: "x4".into() },
        Response::Existed(false),
    )
    .await;
    check(&mut sm, i, 1_000, put("y", "plain"), Response::Done).await;
    check(
        &mut sm,
        i,
        2_000,
        Request::DeleteMany {
            keys: vec!["x5".into(), "y".into(), "x1".into()],
        },
        Response::Integer(2),
    )
    .await;

    // And with the engine's clock at zero (nothing expired by it), an
    // expired-as-of-at_ms key is still absent for apply.
    clock.set(0);
    check(&mut sm, i, 1_000, put_ttl("z", "1", 1_500), Response::Done).await;
    check(&mut sm, i, 1_500, Request::incr("z"), Response::Integer(1)).await;
    assert_eq!(sm.applied(), Some(log_id(*i)));
}
