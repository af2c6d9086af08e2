//! The RESP server over the real engine: every command's replies, exact
//! error texts on the wire, TTLs against a clock the test moves, a SCAN
//! cursor walk, INFO/COMMAND, and AUTH.

mod support;

use std::collections::BTreeSet;

use ballast_node::server::ServerConfig;
use ballast_node::KvApi;
use support::backend::START_MS;
use support::server::TestNode;

fn node() -> TestNode {
    TestNode::start(ServerConfig::default())
}

#[test]
fn strings_and_keys_answer_like_redis() {
    let node = node();
    let mut c = node.client();
    let q = |c: &mut redis::Connection, args: &[&str]| -> redis::Value {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
    use redis::Value::{BulkString, Int, Nil, Okay, SimpleString};
    let bulk = |s: &str| BulkString(s.as_bytes().to_vec());

    assert_eq!(q(&mut c, &["PING"]), SimpleString("PONG".into()));
    assert_eq!(q(&mut c, &["PING", "hi"]), bulk("hi"));
    assert_eq!(q(&mut c, &["ECHO", "x y"]), bulk("x y"));
    assert_eq!(q(&mut c, &["GET", "k"]), Nil);
    assert_eq!(q(&mut c, &["SET", "k", "v1"]), Okay);
    assert_eq!(q(&mut c, &["GET", "k"]), bulk("v1"));
    // NX / XX / GET in their combinations.
    assert_eq!(q(&mut c, &["SET", "k", "v2", "NX"]), Nil);
    assert_eq!(q(&mut c, &["SET", "fresh", "f", "XX"]), Nil);
    assert_eq!(q(&mut c, &["GET", "fresh"]), Nil);
    assert_eq!(q(&mut c, &["SET", "k", "v2", "XX"]), Okay);
    assert_eq!(q(&mut c, &["SET", "k", "v3", "GET"]), bulk("v2"));
    assert_eq!(q(&mut c, &["SET", "k", "v4", "NX", "GET"]), bulk("v3"));
    assert_eq!(q(&mut c, &["GET", "k"]), bulk("v3"));
    assert_eq!(q(&mut c, &["SET", "new", "n", "GET"]), Nil);
    assert_eq!(q(&mut c, &["GET", "new"]), bulk("n"));
    assert_eq!(q(&mut c, &["SET", "nx", "1", "NX"]), Okay);

    // EXISTS counts repeats; DEL counts each key once.
    assert_eq!(q(&mut c, &["EXISTS", "k", "k", "missing", "new"]), Int(3));
    assert_eq!(q(&mut c, &["DEL", "k", "k", "missing", "new"]), Int(2));
    assert_eq!(q(&mut c, &["EXISTS", "k", "new"]), Int(0));

    assert_eq!(q(&mut c, &["MSET", "a", "1", "b", "2", "a", "3"]), Okay);
    assert_eq!(
        q(&mut c, &["MGET", "a", "missing", "b"]),
        redis::Value::Array(vec![bulk("3"), Nil, bulk("2")])
    );

    assert_eq!(q(&mut c, &["INCR", "n"]), Int(1));
    assert_eq!(q(&mut c, &["INCRBY", "n", "41"]), Int(42));
    assert_eq!(q(&mut c, &["DECR", "n"]), Int(41));
    assert_eq!(q(&mut c, &["INCRBY", "n", "-50"]), Int(-9));
    assert_eq!(q(&mut c, &["GET", "n"]), bulk("-9"));

    assert_eq!(q(&mut c, &["CAS", "a", "wrong", "x"]), Int(0));
    assert_eq!(q(&mut c, &["GET", "a"]), bulk("3"));
    assert_eq!(q(&mut c, &["CAS", "a", "3", "x"]), Int(1));
    assert_eq!(q(&mut c, &["GET", "a"]), bulk("x"));
    assert_eq!(q(&mut c, &["CAS", "absent", "3", "x"]), Int(0));

    // a, b, n, nx.
    assert_eq!(q(&mut c, &["DBSIZE"]), Int(4));
}

#[test]
fn errors_have_redis_texts_on_the_wire() {
    let node = node();
    let mut raw = node.raw();
    assert_eq!(
        raw.cmd(&["NOSUCH", "a", "b"]),
        "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n"
    );
    assert_eq!(
        raw.cmd(&["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        raw.cmd(&["SET", "k", "v", "NX", "XX"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        raw.cmd(&["SET", "k", "v", "EX", "0"]),
        "-ERR invalid expire time in 'set' command\r\n"
    );
    assert_eq!(
        raw.cmd(&["INCRBY", "k", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(raw.cmd(&["SET", "s", "abc"]), "+OK\r\n");
    assert_eq!(
        raw.cmd(&["INCR", "s"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        raw.cmd(&["GET", "s"]),
        "$3\r\nabc\r\n",
        "a failed INCR changes nothing"
    );
    assert_eq!(raw.cmd(&["SET", "max", &i64::MAX.to_string()]), "+OK\r\n");
    assert_eq!(
        raw.cmd(&["INCR", "max"]),
        "-ERR increment or decrement would overflow\r\n"
    );
    assert_eq!(
        raw.cmd(&["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(
        raw.cmd(&["AUTH", "pw"]),
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"
    );
    assert_eq!(raw.cmd(&["SCAN", "x"]), "-ERR invalid cursor\r\n");
    assert_eq!(
        raw.cmd(&["SET", "", "v"]),
        "-ERR empty keys are not supported; nothing was written\r\n"
    );
    // Inline commands, as typed into telnet.
    raw.send(b"PING\r\n");
    assert_eq!(raw.reply(), "+PONG\r\n");
    // The connection survived every error above.
    assert_eq!(raw.cmd(&["GET", "s"]), "$3\r\nabc\r\n");
}

#[test]
fn oversized_keys_and_values_are_refused_before_proposing() {
    let node = TestNode::start(ServerConfig {
        key_bytes_max: 16,
        value_bytes_max: 32,
        ..ServerConfig::default()
    });
    let mut raw = node.raw();
    assert_eq!(raw.cmd(&["SET", "k", "v"]), "+OK\r\n");
    let applied = node.backend.status().applied_index;
    let long_key = "k".repeat(17);
    let long_value = "v".repeat(33);
    assert_eq!(
        raw.cmd(&["SET", &long_key, "v"]),
        "-ERR key of 17 bytes is over the limit of 16 bytes; nothing was written\r\n"
    );
    assert_eq!(
        raw.cmd(&["MSET", "ok", "v", "k2", &long_value]),
        "-ERR value of 33 bytes is over the limit of 32 bytes; nothing was written\r\n"
    );
    assert_eq!(
        raw.cmd(&["CAS", "k", "v", &long_value]),
        "-ERR value of 33 bytes is over the limit of 32 bytes; nothing was written\r\n"
    );
    assert_eq!(
        node.backend.status().applied_index,
        applied,
        "refused requests never reached the log"
    );
    assert_eq!(raw.cmd(&["EXISTS", "ok"]), ":0\r\n");
}

#[test]
fn ttls_follow_the_node_clock() {
    let node = node();
    let mut c = node.client();
    let int = |c: &mut redis::Connection, args: &[&str]| -> i64 {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
    let get = |c: &mut redis::Connection, key: &str| -> Option<String> {
        redis::cmd("GET").arg(key).query(c).unwrap()
    };
    assert_eq!(int(&mut c, &["TTL", "missing"]), -2);
    assert_eq!(int(&mut c, &["PTTL", "missing"]), -2);
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("EX")
        .arg(100)
        .query::<()>(&mut c)
        .unwrap();
    assert_eq!(int(&mut c, &["TTL", "k"]), 100);
    assert_eq!(int(&mut c, &["PTTL", "k"]), 100_000);
    node.clock.advance(40_500);
    assert_eq!(int(&mut c, &["PTTL", "k"]), 59_500);
    assert_eq!(
        int(&mut c, &["TTL", "k"]),
        60,
        "Redis rounds to the nearest second"
    );
    node.clock.advance(100);
    assert_eq!(int(&mut c, &["TTL", "k"]), 59);

    assert_eq!(int(&mut c, &["PERSIST", "k"]), 1);
    assert_eq!(int(&mut c, &["TTL", "k"]), -1);
    assert_eq!(int(&mut c, &["PERSIST", "k"]), 0, "no TTL to remove");
    assert_eq!(int(&mut c, &["PERSIST", "missing"]), 0);

    assert_eq!(int(&mut c, &["EXPIRE", "k", "10"]), 1);
    assert_eq!(int(&mut c, &["PTTL", "k"]), 10_000);
    assert_eq!(int(&mut c, &["PEXPIRE", "k", "2500"]), 1);
    assert_eq!(int(&mut c, &["PTTL", "k"]), 2_500);
    assert_eq!(int(&mut c, &["EXPIRE", "missing", "10"]), 0);
    node.clock.advance(2_499);
    assert_eq!(get(&mut c, "k").as_deref(), Some("v"));
    node.clock.advance(1);
    assert_eq!(get(&mut c, "k"), None, "expired at exactly its time");
    assert_eq!(int(&mut c, &["TTL", "k"]), -2);
    assert_eq!(int(&mut c, &["EXISTS", "k"]), 0);

    // PX, and SET without EX drops an earlier TTL, as in Redis.
    redis::cmd("SET")
        .arg("p")
        .arg("v")
        .arg("PX")
        .arg(1500)
        .query::<()>(&mut c)
        .unwrap();
    assert_eq!(int(&mut c, &["PTTL", "p"]), 1_500);
    support::resp::set(&mut c, "p", "w");
    assert_eq!(int(&mut c, &["TTL", "p"]), -1);

    // A time in the past deletes the key.
    assert_eq!(int(&mut c, &["EXPIRE", "p", "-1"]), 1);
    assert_eq!(get(&mut c, "p"), None);
    assert!(node.backend.now_ms() > START_MS);
}

#[test]
fn scan_walks_a_thousand_keys_exactly_once() {
    let node = node();
    let mut c = node.client();
    let mut expected = BTreeSet::new();
    for chunk in 0..10 {
        let mut mset = redis::cmd("MSET");
        for i in chunk * 100..(chunk + 1) * 100 {
            let key = format!("key:{i}");
            mset.arg(&key).arg(i);
            expected.insert(key);
        }
        mset.query::<()>(&mut c).unwrap();
    }
    support::resp::set(&mut c, "other", "x");
    expected.insert("other".to_string());

    let walk = |c: &mut redis::Connection, extra: &[&str]| -> (Vec<String>, usize) {
        let mut cursor = "0".to_string();
        let mut seen = Vec::new();
        let mut calls = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(&cursor);
            for arg in extra {
                scan.arg(*arg);
            }
            let (next, keys): (String, Vec<String>) = scan.query(c).unwrap();
            calls += 1;
            seen.extend(keys);
            if next == "0" {
                return (seen, calls);
            }
            assert!(calls < 10_000, "SCAN does not end");
            cursor = next;
        }
    };
    let (seen, calls) = walk(&mut c, &["COUNT", "7"]);
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), unique.len(), "a key was returned twice");
    assert_eq!(unique, expected);
    println!("SCAN COUNT 7 walked {} keys in {calls} calls", seen.len());
    assert_eq!(
        calls,
        1001_usize.div_ceil(7),
        "COUNT 7 returns 7 keys per call"
    );

    let (matched, _) = walk(&mut c, &["MATCH", "key:1*", "COUNT", "100"]);
    let matched: BTreeSet<String> = matched.into_iter().collect();
    let want: BTreeSet<String> = expected
        .iter()
        .filter(|key| key.starts_with("key:1"))
        .cloned()
        .collect();
    assert_eq!(want.len(), 111);
    assert_eq!(matched, want);

    let (strings, _) = walk(&mut c, &["TYPE", "string", "COUNT", "1000"]);
    assert_eq!(strings.len(), 1001);
    let (hashes, _) = walk(&mut c, &["TYPE", "hash", "COUNT", "1000"]);
    assert!(hashes.is_empty());

    // A used cursor, or one never issued, is refused clearly.
    let (next, _): (String, Vec<String>) = redis::cmd("SCAN").arg(0).query(&mut c).unwrap();
    redis::cmd("SCAN")
        .arg(&next)
        .query::<redis::Value>(&mut c)
        .unwrap();
    let mut raw = node.raw();
    let again = raw.cmd(&["SCAN", &next]);
    assert!(
        again.starts_with(&format!("-ERR invalid cursor {next}: it was already used")),
        "{again}"
    );
    assert!(raw
        .cmd(&["SCAN", "987654321"])
        .starts_with("-ERR invalid cursor 987654321"));
}

#[test]
fn info_and_command_are_enough_for_redis_cli() {
    let node = node();
    let mut c = node.client();
    support::resp::set(&mut c, "k", "v");
    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    for line in [
        "# Server",
        "# Replication",
        "role:master",
        "raft_role:leader",
        "raft_term:1",
        "raft_leader_id:1",
        "raft_voters:1",
        "# Stats",
        "# Keyspace",
        "db0:keys=1",
        "connected_clients:1",
    ] {
        assert!(
            info.lines().any(|l| l == line),
            "INFO lacks {line:?}:\n{info}"
        );
    }
    let applied = info
        .lines()
        .find_map(|l| l.strip_prefix("raft_applied_index:"))
        .unwrap();
    assert_eq!(applied.parse::<u64>().unwrap(), 1);
    let processed: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(processed >= 1);
    let only: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap();
    assert!(only.contains("role:master") && !only.contains("# Server"));

    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    let served = ballast_node::server::table::COMMANDS.len();
    assert!(
        served >= 42,
        "the table lists every served command: {served}"
    );
    assert_eq!(count, served as i64);
    let list: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut c).unwrap();
    assert_eq!(list.len(), served);
    assert!(list.contains(&"cas".to_string()));
    // redis-cli asks for COMMAND DOCS on start.
    let docs: redis::Value = redis::cmd("COMMAND").arg("DOCS").query(&mut c).unwrap();
    let redis::Value::Array(docs) = docs else {
        panic!("DOCS is an array")
    };
    assert_eq!(docs.len(), 2 * served, "name and doc map per command");
    let info: redis::Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .arg("nosuch")
        .query(&mut c)
        .unwrap();
    let redis::Value::Array(info) = info else {
        panic!()
    };
    assert_eq!(info.len(), 2);
    assert_eq!(info[1], redis::Value::Nil);
    let redis::Value::Array(get) = &info[0] else {
        panic!()
    };
    assert_eq!(get[1], redis::Value::Int(2), "GET's arity");
    let mut raw = node.raw();
    assert_eq!(
        raw.cmd(&["COMMAND", "NOPE"]),
        "-ERR unknown subcommand 'NOPE'. Try COMMAND HELP.\r\n"
    );
    assert!(raw
        .cmd(&["HELLO", "2"])
        .starts_with("*14\r\n$6\r\nserver\r\n"));
    assert_eq!(raw.cmd(&["QUIT"]), "+OK\r\n");
    assert_eq!(raw.read_to_close(), "", "closed right after +OK");
}

#[test]
fn a_password_is_required_when_configured() {
    let node = TestNode::start(ServerConfig {
        password: Some("s3cret".into()),
        ..ServerConfig::default()
    });
    let mut raw = node.raw();
    assert_eq!(
        raw.cmd(&["GET", "k"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        raw.cmd(&["SET", "k", "v", "NX", "XX"]),
        "-NOAUTH Authentication required.\r\n"
    );
    // Name and arity are checked first, as in Redis.
    assert_eq!(
        raw.cmd(&["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert!(raw
        .cmd(&["HELLO", "2"])
        .starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(
        raw.cmd(&["AUTH", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        raw.cmd(&["AUTH", "alice", "s3cret"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        raw.cmd(&["GET", "k"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(raw.cmd(&["PING"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(raw.cmd(&["AUTH", "s3cret"]), "+OK\r\n");
    assert_eq!(raw.cmd(&["SET", "k", "v"]), "+OK\r\n");

    let mut hello = node.raw();
    assert!(hello
        .cmd(&["HELLO", "2", "AUTH", "default", "s3cret"])
        .starts_with("*14\r\n"));
    assert_eq!(hello.cmd(&["GET", "k"]), "$1\r\nv\r\n");
    let mut bad_hello = node.raw();
    assert_eq!(
        bad_hello.cmd(&["HELLO", "2", "AUTH", "default", "nope"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );

    // The redis crate authenticates from the URL.
    let client = redis::Client::open(format!("redis://:s3cret@{}/", node.resp_addr)).unwrap();
    let mut c = client.get_connection().unwrap();
    let value: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(value, "v");
    let wrong = redis::Client::open(format!("redis://:nope@{}/", node.resp_addr)).unwrap();
    assert!(wrong.get_connection().is_err());
}
