//! Tests of the entry codec: every request kind round-trips, every strict
//! prefix and every newer version is refused, and the codec reads back
//! exactly what the request validator lets through.

use super::request::REQ_MULTI;
use super::*;
use crate::typ::{
    log_id, BatchOp, Deadline, Entry, ExpireCondition, Membership, Node, NodeId, Proposal, Request,
    SetCondition, Watched,
};
use openraft::EntryPayload;
use std::collections::{BTreeMap, BTreeSet};

fn round_trip(payload: EntryPayload<Proposal, NodeId, Node>) {
    let entry = Entry {
        log_id: log_id(3, 2, 17),
        payload,
    };
    let mut buf = Vec::new();
    encode_entry(&mut buf, &entry);
    let back = decode_entry(&buf).expect("decodes");
    assert_eq!(back, entry);
    assert_eq!(decode_log_id_only(&buf), Ok(entry.log_id));
    // Every strict prefix is refused, never misread.
    for cut in 0..buf.len() {
        assert!(decode_entry(&buf[..cut]).is_err(), "prefix {cut} accepted");
    }
}

#[test]
fn every_request_kind_round_trips_and_prefixes_are_refused() {
    let reqs = vec![
        Request::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            expire_at_ms: None,
        },
        Request::Put {
            key: b"k".to_vec(),
            value: vec![],
            expire_at_ms: Some(u64::MAX),
        },
        Request::Delete { key: b"k".to_vec() },
        Request::Batch(vec![
            BatchOp::Put {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
            },
            BatchOp::Delete { key: b"b".to_vec() },
        ]),
        Request::Batch(vec![]),
        Request::incr("n"),
        Request::IncrBy {
            key: b"n".to_vec(),
            delta: i64::MIN,
        },
        Request::Cas {
            key: b"k".to_vec(),
            expected: None,
            new: b"x".to_vec(),
        },
        Request::Cas {
            key: b"k".to_vec(),
            expected: Some(b"old".to_vec()),
            new: b"x".to_vec(),
        },
        Request::Expire {
            key: b"k".to_vec(),
            expire_at_ms: 42,
        },
        Request::Persist { key: b"k".to_vec() },
        Request::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            expire_at_ms: Some(7),
            condition: SetCondition::IfAbsent,
            return_old: true,
        },
        Request::Set {
            key: b"k".to_vec(),
            value: vec![],
            expire_at_ms: None,
            condition: SetCondition::IfPresent,
            return_old: false,
        },
        Request::DeleteMany {
            keys: vec![b"a".to_vec(), vec![], b"a".to_vec()],
        },
        Request::DeleteMany { keys: vec![] },
        Request::SetWithTtl {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ttl_ms: 1_500,
            condition: SetCondition::IfAbsent,
            return_old: true,
        },
        Request::ExpireIn {
            key: b"k".to_vec(),
            ttl_ms: u64::MAX,
        },
        Request::Multi(vec![
            Request::incr("n"),
            Request::Set {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                expire_at_ms: None,
                condition: SetCondition::Always,
                return_old: false,
            },
            Request::Batch(vec![]),
        ]),
    ];
    for r in reqs.into_iter().chain(string_command_requests(b"k")) {
        round_trip(EntryPayload::Normal(Proposal::new(1_700_000_000_000, r)));
    }
    round_trip(EntryPayload::Blank);
}

/// Tags 1 to 12 are what nodes before the string commands wrote and read:
/// their bytes must never change (a rolling upgrade mixes both).
#[test]
fn the_tags_of_older_request_kinds_are_unchanged() {
    let tag = |r: Request| {
        let mut buf = Vec::new();
        encode_request(&mut buf, &r);
        buf[0]
    };
    let key = || b"k".to_vec();
    assert_eq!(tag(Request::Delete { key: key() }), 2);
    assert_eq!(tag(Request::Multi(vec![Request::incr("n")])), REQ_MULTI);
    assert_eq!(REQ_MULTI, 10);
    assert_eq!(
        tag(Request::ExpireIn {
            key: key(),
            ttl_ms: 1
        }),
        12
    );
    let new_tags: Vec<u8> = string_command_requests(b"k").into_iter().map(tag).collect();
    assert!(
        new_tags.iter().all(|t| (13..=23).contains(t)),
        "{new_tags:?}"
    );
}

#[test]
fn a_nested_or_empty_multi_is_corruption() {
    let encode = |body: &[u8]| {
        let mut buf = Vec::new();
        encode_entry(
            &mut buf,
            &Entry {
                log_id: log_id(1, 1, 1),
                payload: EntryPayload::Normal(Proposal::new(5, Request::Batch(vec![]))),
            },
        );
        // Replace the request (tag and count of the empty batch) by `body`.
        buf.truncate(buf.len() - 5);
        buf.extend_from_slice(body);
        buf
    };
    let mut nested = vec![REQ_MULTI, 1, 0, 0, 0, REQ_MULTI, 1, 0, 0, 0];
    encode_request(&mut nested, &Request::Delete { key: b"k".to_vec() });
    assert!(matches!(
        decode_entry(&encode(&nested)),
        Err(DecodeError::Malformed(m)) if m.contains("multi inside a multi")
    ));
    assert!(matches!(
        decode_entry(&encode(&[REQ_MULTI, 0, 0, 0, 0])),
        Err(DecodeError::Malformed(m)) if m.contains("empty multi")
    ));
    // The same bytes with one level of Multi decode.
    let mut single = vec![REQ_MULTI, 1, 0, 0, 0];
    encode_request(&mut single, &Request::Delete { key: b"k".to_vec() });
    assert!(decode_entry(&encode(&single)).is_ok());
}

/// One of each request kind that came with the Redis string commands.
fn string_command_requests(key: &[u8]) -> Vec<Request> {
    let key = key.to_vec();
    vec![
        Request::GetDel { key: key.clone() },
        Request::GetEx {
            key: key.clone(),
            expiry: None,
        },
        Request::GetEx {
            key: key.clone(),
            expiry: Some(Deadline::At(u64::MAX)),
        },
        Request::Append {
            key: key.clone(),
            value: b"tail".to_vec(),
            value_bytes_max: 512 << 20,
        },
        Request::SetRange {
            key: key.clone(),
            offset: 7,
            value: vec![],
        },
        Request::IncrByFloat {
            key: key.clone(),
            increment: b"-1.5e3".to_vec(),
        },
        Request::Rename {
            from: key.clone(),
            to: b"to".to_vec(),
            only_if_absent: true,
        },
        Request::MSetNx {
            pairs: vec![(key.clone(), b"1".to_vec()), (b"b".to_vec(), vec![])],
        },
        Request::MSetNx { pairs: vec![] },
        Request::ExpireWhen {
            key: key.clone(),
            deadline: Deadline::In(0),
            condition: ExpireCondition {
                xx: true,
                gt: true,
                ..ExpireCondition::default()
            },
        },
        Request::Read {
            keys: vec![key.clone(), key.clone()],
        },
        Request::Transaction {
            watched: vec![
                Watched {
                    key: key.clone(),
                    seen: None,
                },
                Watched {
                    key: b"w".to_vec(),
                    seen: Some((b"v".to_vec(), Some(3))),
                },
            ],
            requests: vec![
                Request::incr(key.clone()),
                Request::FlushAll,
                Request::Read { keys: vec![key] },
            ],
        },
        Request::FlushAll,
    ]
}

/// Requests of every kind, with empty and non-empty keys, and `Multi`s
/// of them: empty, one level, nested.
fn requests_to_depth(depth: usize) -> Vec<Request> {
    let mut leaves = Vec::new();
    for key in [vec![], b"k".to_vec()] {
        leaves.extend([
            Request::Put {
                key: key.clone(),
                value: b"v".to_vec(),
                expire_at_ms: Some(9),
            },
            Request::Delete { key: key.clone() },
            Request::Batch(vec![BatchOp::Delete { key: key.clone() }]),
            Request::IncrBy {
                key: key.clone(),
                delta: -3,
            },
            Request::Cas {
                key: key.clone(),
                expected: Some(vec![]),
                new: b"n".to_vec(),
            },
            Request::Expire {
                key: key.clone(),
                expire_at_ms: 1,
            },
            Request::Persist { key: key.clone() },
            Request::Set {
                key: key.clone(),
                value: vec![],
                expire_at_ms: None,
                condition: SetCondition::IfPresent,
                return_old: true,
            },
            Request::DeleteMany {
                keys: vec![key.clone(), b"x".to_vec()],
            },
            Request::SetWithTtl {
                key: key.clone(),
                value: b"v".to_vec(),
                ttl_ms: 10,
                condition: SetCondition::Always,
                return_old: false,
            },
            Request::ExpireIn {
                key: key.clone(),
                ttl_ms: 0,
            },
        ]);
        leaves.extend(string_command_requests(&key));
    }
    leaves.extend([Request::Batch(vec![]), Request::DeleteMany { keys: vec![] }]);
    let mut all = leaves.clone();
    if depth > 0 {
        let inner = requests_to_depth(depth - 1);
        all.push(Request::Multi(vec![]));
        all.push(Request::Transaction {
            watched: vec![],
            requests: vec![],
        });
        for r in &inner {
            all.push(Request::Multi(vec![r.clone()]));
            all.push(Request::Multi(vec![leaves[0].clone(), r.clone()]));
            all.push(Request::Transaction {
                watched: vec![],
                requests: vec![r.clone()],
            });
        }
    }
    all
}

/// The encoder and decoder accept exactly the same set, and it is the
/// set `Request::check_structure` accepts; `Request::validate` (what
/// the node checks where a request enters) accepts a subset of it. So
/// nothing validated can become an entry the log cannot read back.
#[test]
fn the_codec_reads_back_exactly_what_the_validator_lets_through() {
    let limits = crate::typ::RequestLimits {
        key_bytes_max: 16,
        value_bytes_max: 16,
        request_bytes_max: 1 << 20,
    };
    let (mut accepted, mut refused) = (0, 0);
    for req in requests_to_depth(2) {
        let entry = Entry {
            log_id: log_id(2, 1, 9),
            payload: EntryPayload::Normal(Proposal::new(77, req.clone())),
        };
        let mut buf = Vec::new();
        encode_entry(&mut buf, &entry);
        let decoded = decode_entry(&buf);
        match req.check_structure() {
            Ok(()) => {
                accepted += 1;
                assert_eq!(decoded.as_ref(), Ok(&entry), "{req:?}");
            }
            Err(e) => {
                refused += 1;
                assert!(decoded.is_err(), "{req:?} refused ({e}) but decodes");
            }
        }
        if req.validate(&limits).is_ok() {
            assert!(req.check_structure().is_ok(), "{req:?}");
            assert!(!matches!(req, Request::Multi(_)), "{req:?}");
        }
    }
    // Both sides of the equivalence were exercised.
    assert!(accepted > 50 && refused > 50, "{accepted} / {refused}");
}

/// Version 1 entries (written before the relative-TTL requests) still
/// decode: their bytes are those of version 2 but for the version.
#[test]
fn version_1_entries_still_decode() {
    let entry = Entry {
        log_id: log_id(4, 1, 3),
        payload: EntryPayload::Normal(Proposal::new(
            1_000,
            Request::Set {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                expire_at_ms: Some(2_000),
                condition: SetCondition::Always,
                return_old: false,
            },
        )),
    };
    let mut buf = Vec::new();
    encode_entry(&mut buf, &entry);
    buf[0] = 1;
    assert_eq!(decode_entry(&buf), Ok(entry));
}

#[test]
fn membership_entries_round_trip_with_node_addresses() {
    let mut nodes = BTreeMap::new();
    nodes.insert(1, Node::new("127.0.0.1:7001", "127.0.0.1:6001"));
    nodes.insert(2, Node::new("127.0.0.1:7002", "127.0.0.1:6002"));
    nodes.insert(3, Node::new("127.0.0.1:7003", "127.0.0.1:6003"));
    let configs = vec![BTreeSet::from([1, 2]), BTreeSet::from([1, 2, 3])];
    let m = Membership::new(configs, nodes).expect("valid");
    round_trip(EntryPayload::Membership(m));
}

#[test]
fn newer_versions_and_trailing_bytes_are_refused() {
    let entry = Entry {
        log_id: log_id(1, 1, 1),
        payload: EntryPayload::Blank,
    };
    let mut buf = Vec::new();
    encode_entry(&mut buf, &entry);
    let mut newer = buf.clone();
    newer[0] = ENTRY_FORMAT_VERSION + 1;
    assert_eq!(
        decode_entry(&newer),
        Err(DecodeError::Version(ENTRY_FORMAT_VERSION + 1))
    );
    buf.push(0);
    assert!(matches!(decode_entry(&buf), Err(DecodeError::Malformed(_))));
}
