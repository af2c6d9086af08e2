//! The request kinds of the Redis string, keyspace and transaction
//! commands, applied by the state machine: what each answers, that each
//! keeps (or drops) the expiry as Redis does, that every decision is made
//! from the log's state as of the entry's time, and that a transaction is
//! all of its requests in one entry, or nothing when a WATCHed key
//! changed. Costs well under a second.

use ballast_raft::planted::{NodeBug, Planted};
use ballast_raft::state_machine::StateMachine;
use ballast_raft::typ::{Deadline, EntryPayload, ExpireCondition, Watched};
use ballast_raft::{Entry, Proposal, Request, Response};
use ballast_storage::{Background, ManualClock, Options, Preset};
use tempfile::TempDir;

const AT_MS: u64 = 1_000_000;

struct Machine {
    sm: StateMachine,
    index: u64,
    _dir: TempDir,
}

impl Machine {
    async fn open(planted: Planted) -> Machine {
        let dir = TempDir::new().expect("tempdir");
        let mut o = Options::preset(Preset::Durable);
        o.background = Background::Tasks;
        o.clock = ManualClock::new(AT_MS);
        let mut sm = StateMachine::open(dir.path(), o).await.expect("open");
        sm.set_planted(planted);
        Machine {
            sm,
            index: 0,
            _dir: dir,
        }
    }

    async fn apply_at(&mut self, at_ms: u64, req: Request) -> Response {
        self.index += 1;
        let entry = Entry {
            log_id: ballast_raft::typ::log_id(1, 1, self.index),
            payload: EntryPayload::Normal(Proposal::new(at_ms, req)),
        };
        self.sm.apply_entry(entry).await.expect("apply")
    }

    async fn apply(&mut self, req: Request) -> Response {
        self.apply_at(AT_MS, req).await
    }

    /// The key's value and expiry as of `AT_MS`.
    async fn get(&mut self, key: &str) -> Option<(Vec<u8>, Option<u64>)> {
        match self
            .apply(Request::Read {
                keys: vec![key.into()],
            })
            .await
        {
            Response::Values(mut values) => values.pop().flatten(),
            other => panic!("read answered {other:?}"),
        }
    }
}

fn set(key: &str, value: &str, expire_at_ms: Option<u64>) -> Request {
    Request::Put {
        key: key.into(),
        value: value.into(),
        expire_at_ms,
    }
}

fn value(v: &str) -> Response {
    Response::Value(Some(v.into()))
}

const LATER: u64 = AT_MS + 60_000;

#[tokio::test]
async fn string_requests_answer_and_keep_expiries_as_redis_does() {
    let mut m = Machine::open(Planted::NONE).await;
    // GETDEL
    m.apply(set("gd", "v", None)).await;
    assert_eq!(
        m.apply(Request::GetDel { key: "gd".into() }).await,
        value("v")
    );
    assert_eq!(
        m.apply(Request::GetDel { key: "gd".into() }).await,
        Response::Value(None)
    );
    // GETEX: set, persist, and a deadline already passed deletes.
    m.apply(set("ge", "v", None)).await;
    let getex = |expiry| Request::GetEx {
        key: "ge".into(),
        expiry,
    };
    assert_eq!(m.apply(getex(Some(Deadline::In(500)))).await, value("v"));
    assert_eq!(m.get("ge").await, Some((b"v".to_vec(), Some(AT_MS + 500))));
    assert_eq!(m.apply(getex(None)).await, value("v"));
    assert_eq!(m.get("ge").await, Some((b"v".to_vec(), None)));
    assert_eq!(m.apply(getex(Some(Deadline::At(AT_MS)))).await, value("v"));
    assert_eq!(m.get("ge").await, None);
    // APPEND keeps the expiry; the result may not pass the carried limit.
    m.apply(set("ap", "ab", Some(LATER))).await;
    let append = |tail: &str, max| Request::Append {
        key: "ap".into(),
        value: tail.into(),
        value_bytes_max: max,
    };
    assert_eq!(m.apply(append("cd", 4)).await, Response::Integer(4));
    assert_eq!(m.get("ap").await, Some((b"abcd".to_vec(), Some(LATER))));
    assert!(
        matches!(m.apply(append("e", 4)).await, Response::Rejected(why) if why.contains("maximum allowed size"))
    );
    assert_eq!(m.get("ap").await, Some((b"abcd".to_vec(), Some(LATER))));
    // SETRANGE pads with zeros, keeps the expiry; empty writes nothing.
    let setrange = |key: &str, offset, v: &str| Request::SetRange {
        key: key.into(),
        offset,
        value: v.into(),
    };
    assert_eq!(m.apply(setrange("ap", 6, "x")).await, Response::Integer(7));
    assert_eq!(
        m.get("ap").await,
        Some((b"abcd\0\0x".to_vec(), Some(LATER)))
    );
    assert_eq!(m.apply(setrange("none", 3, "")).await, Response::Integer(0));
    assert_eq!(m.get("none").await, None);
    // INCRBYFLOAT: Redis's text, keeps the expiry, refuses infinity.
    m.apply(set("f", "10.50", Some(LATER))).await;
    let incr = |key: &str, by: &str| Request::IncrByFloat {
        key: key.into(),
        increment: by.into(),
    };
    assert_eq!(m.apply(incr("f", "0.1")).await, value("10.6"));
    assert_eq!(m.get("f").await, Some((b"10.6".to_vec(), Some(LATER))));
    assert_eq!(
        m.apply(incr("f", "inf")).await,
        Response::Rejected("increment would produce NaN or Infinity".into())
    );
    assert_eq!(m.apply(incr("missing", "1.5")).await, value("1.5"));
    // RENAME moves value and expiry, atomically; RENAMENX refuses a target.
    let rename = |from: &str, to: &str, nx| Request::Rename {
        from: from.into(),
        to: to.into(),
        only_if_absent: nx,
    };
    assert_eq!(m.apply(rename("f", "g", false)).await, Response::Done);
    assert_eq!(m.get("f").await, None);
    assert_eq!(m.get("g").await, Some((b"10.6".to_vec(), Some(LATER))));
    assert_eq!(
        m.apply(rename("g", "ap", true)).await,
        Response::Existed(false)
    );
    assert_eq!(
        m.apply(rename("f", "x", false)).await,
        Response::Rejected("no such key".into())
    );
    // MSETNX: all or nothing.
    let msetnx = |pairs: &[(&str, &str)]| Request::MSetNx {
        pairs: pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
    };
    assert_eq!(
        m.apply(msetnx(&[("n1", "1"), ("n2", "2")])).await,
        Response::Existed(true)
    );
    assert_eq!(
        m.apply(msetnx(&[("n2", "x"), ("n3", "3")])).await,
        Response::Existed(false)
    );
    assert_eq!(m.get("n3").await, None);
    assert_eq!(m.get("n2").await, Some((b"2".to_vec(), None)));
    // EXPIRE ... GT on a key without expiry: no (forever is not less).
    let expire = |deadline, condition| Request::ExpireWhen {
        key: "n1".into(),
        deadline,
        condition,
    };
    let gt = ExpireCondition {
        gt: true,
        ..ExpireCondition::default()
    };
    let lt = ExpireCondition {
        lt: true,
        ..ExpireCondition::default()
    };
    assert_eq!(
        m.apply(expire(Deadline::At(LATER), gt)).await,
        Response::Existed(false)
    );
    assert_eq!(
        m.apply(expire(Deadline::At(LATER), lt)).await,
        Response::Existed(true)
    );
    assert_eq!(m.get("n1").await, Some((b"1".to_vec(), Some(LATER))));
    assert_eq!(
        m.apply(expire(Deadline::At(LATER + 1), lt)).await,
        Response::Existed(false)
    );
    assert_eq!(
        m.apply(expire(Deadline::In(0), lt)).await,
        Response::Existed(true)
    );
    assert_eq!(m.get("n1").await, None, "a deadline already passed deletes");
}

/// Expiry decisions read the entry's time, never the engine's clock:
/// GETDEL one millisecond before the deadline finds the key, at the
/// deadline it does not (the engine's clock stays at `AT_MS` throughout).
#[tokio::test]
async fn expiry_decisions_follow_the_entry_time() {
    let mut m = Machine::open(Planted::NONE).await;
    let getdel = || Request::GetDel { key: "k".into() };
    m.apply(set("k", "v", Some(AT_MS + 10))).await;
    assert_eq!(m.apply_at(AT_MS + 9, getdel()).await, value("v"));
    m.apply_at(AT_MS + 9, set("k", "v", Some(AT_MS + 10))).await;
    assert_eq!(
        m.apply_at(AT_MS + 10, getdel()).await,
        Response::Value(None)
    );
}

fn incr(key: &str) -> Request {
    Request::incr(key)
}

#[tokio::test]
async fn a_transaction_applies_in_order_and_answers_each_request() {
    let mut m = Machine::open(Planted::NONE).await;
    m.apply(set("text", "abc", None)).await;
    let tx = Request::Transaction {
        watched: vec![],
        requests: vec![
            set("a", "1", None),
            incr("a"),
            // Refused in place; the others still apply (no rollback).
            incr("text"),
            Request::Read {
                keys: vec!["a".into(), "text".into()],
            },
            Request::Rename {
                from: "a".into(),
                to: "b".into(),
                only_if_absent: false,
            },
        ],
    };
    let Response::Multi(answers) = m.apply(tx).await else {
        panic!("a transaction answers one reply per request");
    };
    assert_eq!(answers.len(), 5);
    assert_eq!(answers[1], Response::Integer(2));
    assert!(
        matches!(&answers[2], Response::Rejected(_)),
        "{:?}",
        answers[2]
    );
    assert_eq!(
        answers[3],
        Response::Values(vec![
            Some((b"2".to_vec(), None)),
            Some((b"abc".to_vec(), None))
        ])
    );
    assert_eq!(answers[4], Response::Done);
    assert_eq!(m.get("b").await, Some((b"2".to_vec(), None)));
    assert_eq!(m.get("a").await, None);
}

/// WATCH: the transaction carries what the client saw; apply compares
/// it with the key at the entry's place in the log. The planted
/// `WatchIgnored` runs the transaction anyway, and this test then fails.
async fn watch_aborts_exec_when_a_watched_key_changed(planted: Planted) -> Result<(), String> {
    let mut m = Machine::open(planted).await;
    m.apply(set("w", "seen", None)).await;
    let watched = vec![Watched {
        key: "w".into(),
        seen: Some((b"seen".to_vec(), None)),
    }];
    let tx = || Request::Transaction {
        watched: watched.clone(),
        requests: vec![set("out", "written", None)],
    };
    // Unchanged: it runs.
    if m.apply(tx()).await != Response::Multi(vec![Response::Done]) {
        return Err("an unchanged watched key aborted the transaction".into());
    }
    m.apply(Request::Delete { key: "out".into() }).await;
    // Changed by another client (or only its expiry): nothing applies.
    for change in [set("w", "other", None), set("w", "seen", Some(LATER))] {
        m.apply(change).await;
        let answer = m.apply(tx()).await;
        if answer != Response::Aborted {
            return Err(format!("a changed watched key answered {answer:?}"));
        }
        if m.get("out").await.is_some() {
            return Err("an aborted transaction wrote".into());
        }
    }
    // A key watched while absent and created since: aborts too.
    let absent = Request::Transaction {
        watched: vec![Watched {
            key: "new".into(),
            seen: None,
        }],
        requests: vec![set("out", "written", None)],
    };
    m.apply(set("new", "x", None)).await;
    if m.apply(absent).await != Response::Aborted {
        return Err("a watched key created since did not abort".into());
    }
    Ok(())
}

#[tokio::test]
async fn watch_aborts_exec_when_a_watched_key_changed_test() {
    watch_aborts_exec_when_a_watched_key_changed(Planted::NONE)
        .await
        .expect("WATCH holds");
}

#[cfg(feature = "planted-bugs")]
#[tokio::test]
async fn the_planted_watch_ignored_switch_is_caught() {
    let broken =
        watch_aborts_exec_when_a_watched_key_changed(Planted::NONE.with(NodeBug::WatchIgnored))
            .await;
    assert!(broken.is_err(), "the WATCH check has no teeth");
    println!("caught: {}", broken.unwrap_err());
}

/// The proposer may put a transaction into a Multi with other clients'
/// writes: it sees the writes before it, and the ones after see its own.
#[tokio::test]
async fn a_transaction_inside_a_multi_sees_and_is_seen() {
    let mut m = Machine::open(Planted::NONE).await;
    let multi = Request::Multi(vec![
        set("c", "5", None),
        Request::Transaction {
            watched: vec![Watched {
                key: "c".into(),
                seen: Some((b"5".to_vec(), None)),
            }],
            requests: vec![incr("c"), incr("c")],
        },
        incr("c"),
    ]);
    assert_eq!(
        m.apply(multi).await,
        Response::Multi(vec![
            Response::Done,
            Response::Multi(vec![Response::Integer(6), Response::Integer(7)]),
            Response::Integer(8),
        ])
    );
}
