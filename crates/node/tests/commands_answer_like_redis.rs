//! Command parsing gives clients Redis's own answers: arity, syntax,
//! integer, cursor and protocol-version errors, word for word.

use ballast_node::command::{CommandQuery, ExpireCondition, SetCondition, TimeUnit};
use ballast_node::{Command, Error};
use bytes::Bytes;
use proptest::prelude::*;

fn args(line: &str) -> Vec<Bytes> {
    line.split(' ')
        .map(|word| Bytes::copy_from_slice(word.as_bytes()))
        .collect()
}

fn parse(line: &str) -> Result<Command, Error> {
    Command::parse(&args(line))
}

fn error(line: &str) -> String {
    match parse(line) {
        Err(error) => {
            assert!(
                !error.closes_connection(),
                "{line}: command errors keep the connection"
            );
            error.to_string()
        }
        Ok(command) => panic!("{line}: expected an error, got {command:?}"),
    }
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[test]
fn every_command_checks_its_arity() {
    // (request with the wrong number of arguments, lowercase name)
    let cases = [
        ("PING a b", "ping"),
        ("ECHO", "echo"),
        ("ECHO a b", "echo"),
        ("GET", "get"),
        ("GET a b", "get"),
        ("SET k", "set"),
        ("DEL", "del"),
        ("EXISTS", "exists"),
        ("MGET", "mget"),
        ("MSET", "mset"),
        ("MSET k", "mset"),
        ("MSET k v k2", "mset"),
        ("INCR", "incr"),
        ("INCR a b", "incr"),
        ("INCRBY k", "incrby"),
        ("INCRBY k 1 2", "incrby"),
        ("DECR", "decr"),
        ("EXPIRE k", "expire"),
        ("PEXPIRE k", "pexpire"),
        ("TTL", "ttl"),
        ("PTTL a b", "pttl"),
        ("PERSIST", "persist"),
        ("SCAN", "scan"),
        ("DBSIZE x", "dbsize"),
        ("AUTH", "auth"),
        ("CAS k v", "cas"),
        ("CAS k v w x", "cas"),
        ("COMMAND COUNT x", "command|count"),
        ("COMMAND LIST x", "command|list"),
    ];
    for (line, name) in cases {
        assert_eq!(
            error(line),
            format!("ERR wrong number of arguments for '{name}' command"),
            "{line}"
        );
    }
}

#[test]
fn names_and_options_are_case_insensitive() {
    assert_eq!(parse("gEt k").unwrap(), Command::Get { key: b("k") });
    assert_eq!(
        parse("set k v ex 10 nx get").unwrap(),
        Command::Set {
            key: b("k"),
            value: b("v"),
            expire_ms: Some(10_000),
            condition: Some(SetCondition::IfAbsent),
            get: true,
        }
    );
    // The wrong-arity message uses the lowercase name, whatever was sent.
    assert_eq!(
        error("GeT"),
        "ERR wrong number of arguments for 'get' command"
    );
}

#[test]
fn unknown_commands_quote_the_name_and_first_arguments() {
    assert_eq!(
        error("foo"),
        "ERR unknown command 'foo', with args beginning with: "
    );
    assert_eq!(
        error("FOO a b"),
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
    );
    // Redis stops quoting once about 128 bytes of arguments are quoted.
    let long = format!("foo {} {} c", "x".repeat(100), "y".repeat(100));
    let message = error(&long);
    assert!(
        message.ends_with(&format!("'{}' '{}' ", "x".repeat(100), "y".repeat(25))),
        "{message}"
    );
    let long_name = "z".repeat(300);
    let message = error(&long_name);
    assert!(
        message.contains(&format!("'{}'", "z".repeat(128))),
        "{message}"
    );
}

#[test]
fn ping_echo_get_and_key_lists() {
    assert_eq!(parse("PING").unwrap(), Command::Ping { message: None });
    assert_eq!(
        parse("PING hi").unwrap(),
        Command::Ping {
            message: Some(b("hi"))
        }
    );
    assert_eq!(
        parse("ECHO hi").unwrap(),
        Command::Echo { message: b("hi") }
    );
    assert_eq!(
        parse("DEL a b").unwrap(),
        Command::Del {
            keys: vec![b("a"), b("b")]
        }
    );
    assert_eq!(
        parse("EXISTS a a").unwrap(),
        Command::Exists {
            keys: vec![b("a"), b("a")]
        }
    );
    assert_eq!(
        parse("MGET a").unwrap(),
        Command::MGet { keys: vec![b("a")] }
    );
    assert_eq!(
        parse("MSET a 1 b 2").unwrap(),
        Command::MSet {
            pairs: vec![(b("a"), b("1")), (b("b"), b("2"))]
        }
    );
    assert_eq!(parse("DBSIZE").unwrap(), Command::DbSize);
    assert_eq!(parse("QUIT").unwrap(), Command::Quit);
    assert_eq!(parse("QUIT now please").unwrap(), Command::Quit);
    assert_eq!(parse("INFO").unwrap(), Command::Info { sections: vec![] });
    assert_eq!(
        parse("INFO server stats").unwrap(),
        Command::Info {
            sections: vec![b("server"), b("stats")]
        }
    );
    assert_eq!(
        parse("CAS k old new").unwrap(),
        Command::Cas {
            key: b("k"),
            expected: b("old"),
            new: b("new")
        }
    );
}

#[test]
fn set_options() {
    let set = |expire_ms, condition, get| Command::Set {
        key: b("k"),
        value: b("v"),
        expire_ms,
        condition,
        get,
    };
    assert_eq!(parse("SET k v").unwrap(), set(None, None, false));
    assert_eq!(parse("SET k v PX 5").unwrap(), set(Some(5), None, false));
    assert_eq!(
        parse("SET k v XX").unwrap(),
        set(None, Some(SetCondition::IfPresent), false)
    );
    assert_eq!(parse("SET k v GET").unwrap(), set(None, None, true));
    // Repeats are allowed, as in Redis; the last value wins.
    assert_eq!(
        parse("SET k v EX 1 EX 2 NX NX").unwrap(),
        set(Some(2000), Some(SetCondition::IfAbsent), false)
    );

    for line in [
        "SET k v NX XX",
        "SET k v XX NX",
        "SET k v EX 1 PX 1",
        "SET k v PX 1 EX 1",
        "SET k v EX",
        "SET k v PX",
        "SET k v FOO",
        "SET k v KEEPTTL",
        "SET k v EX notanumber FOO", // options first, then the integer
    ] {
        assert_eq!(error(line), "ERR syntax error", "{line}");
    }
    assert_eq!(
        error("SET k v EX 1.5"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        error("SET k v PX x"),
        "ERR value is not an integer or out of range"
    );
    for line in [
        "SET k v EX 0",
        "SET k v PX -1",
        "SET k v EX 9223372036854775807",
    ] {
        assert_eq!(
            error(line),
            "ERR invalid expire time in 'set' command",
            "{line}"
        );
    }
}

#[test]
fn counters() {
    assert_eq!(
        parse("INCR k").unwrap(),
        Command::IncrBy {
            key: b("k"),
            delta: 1
        }
    );
    assert_eq!(
        parse("DECR k").unwrap(),
        Command::IncrBy {
            key: b("k"),
            delta: -1
        }
    );
    assert_eq!(
        parse("INCRBY k -5").unwrap(),
        Command::IncrBy {
            key: b("k"),
            delta: -5
        }
    );
    for line in [
        "INCRBY k x",
        "INCRBY k 1.0",
        "INCRBY k 01",
        "INCRBY k 9223372036854775808",
    ] {
        assert_eq!(
            error(line),
            "ERR value is not an integer or out of range",
            "{line}"
        );
    }
    for delta in ["", " 1", "1 "] {
        assert_eq!(
            Command::parse(&[b("INCRBY"), b("k"), b(delta)]),
            Err(Error::NotAnInteger),
            "{delta:?}"
        );
    }
}

#[test]
fn expiry_commands() {
    assert_eq!(
        parse("EXPIRE k 10").unwrap(),
        Command::Expire {
            key: b("k"),
            ttl_ms: 10_000,
            condition: ExpireCondition::default(),
            unit: TimeUnit::Seconds,
        }
    );
    assert_eq!(
        parse("PEXPIRE k 10").unwrap(),
        Command::Expire {
            key: b("k"),
            ttl_ms: 10,
            condition: ExpireCondition::default(),
            unit: TimeUnit::Milliseconds,
        }
    );
    // Not positive is allowed: it deletes the key, as in Redis.
    assert_eq!(
        parse("EXPIRE k -1").unwrap(),
        Command::Expire {
            key: b("k"),
            ttl_ms: -1000,
            condition: ExpireCondition::default(),
            unit: TimeUnit::Seconds,
        }
    );
    assert_eq!(
        error("EXPIRE k x"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        error("EXPIRE k 9223372036854775807"),
        "ERR invalid expire time in 'expire' command"
    );
    assert_eq!(
        parse("EXPIRE k 10 nx").unwrap(),
        Command::Expire {
            key: b("k"),
            ttl_ms: 10_000,
            condition: ExpireCondition {
                nx: true,
                ..ExpireCondition::default()
            },
            unit: TimeUnit::Seconds,
        }
    );
    assert_eq!(error("EXPIRE k 10 FOO"), "ERR Unsupported option FOO");
    assert_eq!(
        parse("TTL k").unwrap(),
        Command::Ttl {
            key: b("k"),
            unit: TimeUnit::Seconds
        }
    );
    assert_eq!(
        parse("PTTL k").unwrap(),
        Command::Ttl {
            key: b("k"),
            unit: TimeUnit::Milliseconds
        }
    );
    assert_eq!(
        parse("PERSIST k").unwrap(),
        Command::Persist { key: b("k") }
    );
}

#[test]
fn scan_options() {
    assert_eq!(
        parse("SCAN 0").unwrap(),
        Command::Scan {
            cursor: 0,
            pattern: None,
            count: None,
            type_name: None
        }
    );
    assert_eq!(
        parse("scan 17 match user:* count 100 type string").unwrap(),
        Command::Scan {
            cursor: 17,
            pattern: Some(b("user:*")),
            count: Some(100),
            type_name: Some(b("string")),
        }
    );
    // A bare `*` is "every key" in Redis, the empty key included.
    assert_eq!(
        parse("SCAN 0 MATCH *").unwrap(),
        Command::Scan {
            cursor: 0,
            pattern: None,
            count: None,
            type_name: None
        }
    );
    assert_eq!(
        parse("SCAN 18446744073709551615").unwrap(),
        Command::Scan {
            cursor: u64::MAX,
            pattern: None,
            count: None,
            type_name: None
        }
    );
    for line in ["SCAN x", "SCAN -1", "SCAN 18446744073709551616", "SCAN +1"] {
        assert_eq!(error(line), "ERR invalid cursor", "{line}");
    }
    for line in [
        "SCAN 0 COUNT 0",
        "SCAN 0 COUNT -1",
        "SCAN 0 MATCH",
        "SCAN 0 FOO bar",
        "SCAN 0 COUNT",
    ] {
        assert_eq!(error(line), "ERR syntax error", "{line}");
    }
    assert_eq!(
        error("SCAN 0 COUNT x"),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn command_subcommands_for_redis_cli() {
    assert_eq!(
        parse("COMMAND").unwrap(),
        Command::Command(CommandQuery::All)
    );
    assert_eq!(
        parse("COMMAND DOCS").unwrap(),
        Command::Command(CommandQuery::Docs(vec![]))
    );
    assert_eq!(
        parse("command docs get set").unwrap(),
        Command::Command(CommandQuery::Docs(vec![b("get"), b("set")]))
    );
    assert_eq!(
        parse("COMMAND INFO get").unwrap(),
        Command::Command(CommandQuery::Info(vec![b("get")]))
    );
    assert_eq!(
        parse("COMMAND COUNT").unwrap(),
        Command::Command(CommandQuery::Count)
    );
    assert_eq!(
        parse("COMMAND LIST").unwrap(),
        Command::Command(CommandQuery::List)
    );
    assert_eq!(
        parse("COMMAND HELP").unwrap(),
        Command::Command(CommandQuery::Help)
    );
    assert_eq!(
        error("COMMAND FOO"),
        "ERR unknown subcommand 'FOO'. Try COMMAND HELP."
    );
}

#[test]
fn auth_forms() {
    assert_eq!(
        parse("AUTH pw").unwrap(),
        Command::Auth {
            username: None,
            password: b("pw")
        }
    );
    assert_eq!(
        parse("AUTH alice pw").unwrap(),
        Command::Auth {
            username: Some(b("alice")),
            password: b("pw")
        }
    );
    assert_eq!(error("AUTH a b c"), "ERR syntax error");
}

#[test]
fn hello_speaks_resp2_and_resp3() {
    use ballast_node::resp::Protocol;
    assert_eq!(
        parse("HELLO").unwrap(),
        Command::Hello {
            protocol: None,
            auth: None,
            client_name: None
        }
    );
    assert_eq!(
        parse("HELLO 2").unwrap(),
        Command::Hello {
            protocol: Some(Protocol::Resp2),
            auth: None,
            client_name: None
        }
    );
    assert_eq!(
        parse("hello 3 auth alice pw setname app").unwrap(),
        Command::Hello {
            protocol: Some(Protocol::Resp3),
            auth: Some((b("alice"), b("pw"))),
            client_name: Some(b("app"))
        }
    );
    for line in ["HELLO 1", "HELLO 4 AUTH a b", "HELLO 0", "HELLO -3"] {
        assert_eq!(
            error(line),
            "NOPROTO unsupported protocol version",
            "{line}"
        );
    }
    assert_eq!(
        error("HELLO x"),
        "ERR Protocol version is not an integer or out of range"
    );
    assert_eq!(
        error("HELLO 3 AUTH a"),
        "ERR Syntax error in HELLO option 'AUTH'"
    );
    assert_eq!(
        error("HELLO 2 SETNAME"),
        "ERR Syntax error in HELLO option 'SETNAME'"
    );
    assert_eq!(
        error("HELLO 2 FOO"),
        "ERR Syntax error in HELLO option 'FOO'"
    );
}

#[test]
fn errors_become_resp_error_replies() {
    let reply = Command::parse(&args("GET")).unwrap_err().to_reply();
    let mut wire = bytes::BytesMut::new();
    ballast_node::resp::encode(&reply, &mut wire);
    assert_eq!(
        &wire[..],
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );
}

proptest! {
    /// Any request parses to a command or an error, never a panic, and
    /// every error is a one-line RESP error that keeps the connection.
    #[test]
    fn any_request_parses_or_errors(
        name in prop_oneof![
            Just("set".to_string()), Just("scan".to_string()), Just("hello".to_string()),
            Just("command".to_string()), Just("expire".to_string()), Just("mset".to_string()),
            Just("auth".to_string()), Just("incrby".to_string()), "[a-zA-Z]{1,8}",
        ],
        rest in proptest::collection::vec(
            prop_oneof![
                Just(b"EX".to_vec()), Just(b"PX".to_vec()), Just(b"NX".to_vec()), Just(b"XX".to_vec()),
                Just(b"GET".to_vec()), Just(b"MATCH".to_vec()), Just(b"COUNT".to_vec()),
                Just(b"AUTH".to_vec()), Just(b"2".to_vec()), Just(b"-1".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8),
            ],
            0..8,
        ),
    ) {
        let mut request = vec![Bytes::from(name)];
        request.extend(rest.into_iter().map(Bytes::from));
        if let Err(error) = Command::parse(&request) {
            prop_assert!(!error.closes_connection());
            let text = error.to_string();
            prop_assert!(text.starts_with("ERR ") || text.starts_with("NOPROTO "), "{}", text);
        }
    }
}
