//! The same command script against a real Redis 7 and against ballast, wire
//! reply by wire reply: arity, argument types, overflow, error texts and
//! reply types, in RESP2 and in RESP3.
//!
//! With `redis-server` on the PATH (Debian: `apt-get install redis-server`)
//! the test starts one on 127.0.0.1 and a free port, checks that Redis
//! still answers what `fixtures/redis7_replies.txt` recorded, and compares
//! ballast with it. Without it the test says so and compares ballast with
//! the recording. `BALLAST_RECORD_REDIS=1` rewrites the recording from the
//! live Redis instead of checking it. Costs about a second.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ballast_node::server::ServerConfig;
use support::eventually_blocking;
use support::resp::Raw;
use support::server::TestNode;

/// The script: every command the issue lists that ballast serves, with the
/// right arguments, then wrong arity, wrong argument types and overflow.
/// Keys are fresh per line group so that order inside a group is all that
/// matters. Replies that differ by design (ids, versions, timestamps, key
/// order of KEYS on several keys, SELECT of 1..15) are left out.
const SCRIPT: &[&[&str]] = &[
    &["KEYS", "*"],
    &["SET", "s", "This is a string"],
    // SETNX
    &["SETNX", "nx", "1"],
    &["SETNX", "nx", "2"],
    &["GET", "nx"],
    &["SETNX", "nx"],
    &["SETNX", "nx", "1", "2"],
    // GETSET
    &["GETSET", "gs", "a"],
    &["GETSET", "gs", "b"],
    &["GETSET", "gs"],
    // SETEX / PSETEX
    &["SETEX", "ex", "100", "v"],
    &["SETEX", "ex", "0", "v"],
    &["SETEX", "ex", "-1", "v"],
    &["SETEX", "ex", "abc", "v"],
    &["SETEX", "ex", "9223372036854775807", "v"],
    &["SETEX", "ex", "100"],
    &["PSETEX", "pex", "100000", "v"],
    &["PSETEX", "pex", "0", "v"],
    &["PSETEX", "pex", "1.5", "v"],
    &["PSETEX", "pex"],
    // DECRBY, INCRBY past i64
    &["DECRBY", "n", "5"],
    &["DECRBY", "n", "-7"],
    &["DECRBY", "n", "x"],
    &["DECRBY", "n", "-9223372036854775808"],
    &["DECRBY", "n", "99999999999999999999"],
    &["DECRBY", "n"],
    &["SET", "max", "9223372036854775807"],
    &["INCRBY", "max", "1"],
    &["INCR", "max"],
    &["SET", "min", "-9223372036854775808"],
    &["DECRBY", "min", "1"],
    &["DECR", "min"],
    &["INCRBY", "s", "1"],
    &["INCRBY", "max", "1.5"],
    // Only the canonical decimal form is an integer (Redis's string2ll).
    &["SET", "t", "+5"],
    &["INCR", "t"],
    &["SET", "t", "007"],
    &["INCRBY", "t", "1"],
    &["SET", "t", "-0"],
    &["DECR", "t"],
    &["SET", "t", " 5"],
    &["DECRBY", "t", "1"],
    &["SET", "t", "-5"],
    &["INCR", "t"],
    // STRLEN
    &["STRLEN", "s"],
    &["STRLEN", "missing"],
    &["STRLEN"],
    &["STRLEN", "s", "x"],
    // GETRANGE
    &["GETRANGE", "s", "0", "3"],
    &["GETRANGE", "s", "-3", "-1"],
    &["GETRANGE", "s", "0", "-1"],
    &["GETRANGE", "s", "10", "100"],
    &["GETRANGE", "s", "5", "3"],
    &["GETRANGE", "s", "-1", "-5"],
    &["GETRANGE", "s", "-100", "2"],
    &["GETRANGE", "missing", "0", "-1"],
    &["GETRANGE", "s", "a", "1"],
    &["GETRANGE", "s", "0"],
    // UNLINK, TOUCH
    &["SET", "u1", "1"],
    &["SET", "u2", "2"],
    &["TOUCH", "u1", "u1", "u2", "missing"],
    &["TOUCH"],
    &["UNLINK", "u1", "u1", "missing"],
    &["UNLINK"],
    &["EXISTS", "u1", "u2"],
    // EXPIREAT / PEXPIREAT / EXPIRETIME / PEXPIRETIME
    &["SET", "e", "v"],
    &["EXPIRETIME", "e"],
    &["EXPIRETIME", "missing"],
    &["EXPIREAT", "e", "4102444800"],
    &["EXPIRETIME", "e"],
    &["PEXPIRETIME", "e"],
    &["PEXPIREAT", "e", "4102444800123"],
    &["EXPIRETIME", "e"],
    &["PEXPIRETIME", "e"],
    &["EXPIREAT", "missing", "4102444800"],
    &["EXPIREAT", "e", "abc"],
    &["EXPIREAT", "e", "9223372036854775807"],
    &["EXPIREAT", "e", "100", "FOO"],
    &["EXPIREAT", "e"],
    &["PEXPIREAT", "e", "9223372036854775807"],
    &["PEXPIRETIME", "e"],
    &["PEXPIREAT", "e", "1"],
    &["EXISTS", "e"],
    &["EXPIRETIME"],
    &["PEXPIRETIME", "a", "b"],
    // KEYS
    &["KEYS", "no*"],
    &["KEYS", "n?"],
    &["KEYS", "[m]ax"],
    &["KEYS"],
    &["KEYS", "a", "b"],
    // TYPE
    &["TYPE", "s"],
    &["TYPE", "missing"],
    &["TYPE"],
    // SELECT
    &["SELECT", "0"],
    &["SELECT", "16"],
    &["SELECT", "-1"],
    &["SELECT", "abc"],
    &["SELECT", "99999999999"],
    &["SELECT"],
    // TIME (its value is the clock's)
    &["TIME", "x"],
    // CLIENT
    &["CLIENT", "GETNAME"],
    &["CLIENT", "SETNAME", "app"],
    &["CLIENT", "GETNAME"],
    &["CLIENT", "SETNAME", "a b"],
    &["CLIENT", "SETNAME", ""],
    &["CLIENT", "GETNAME"],
    &["CLIENT", "SETNAME"],
    &["CLIENT", "GETNAME", "x"],
    &["CLIENT", "ID", "x"],
    &["CLIENT", "NOPE"],
    &["CLIENT"],
    // HELLO's errors (its reply names versions and ids)
    &["HELLO", "4"],
    &["HELLO", "x"],
    &["HELLO", "3", "AUTH", "a"],
    &["HELLO", "3", "FOO"],
    // Unknown commands keep Redis's text.
    &["NOSUCHCOMMAND", "a", "b"],
    // GETDEL
    &["SET", "gd", "v"],
    &["GETDEL", "gd"],
    &["GETDEL", "gd"],
    &["EXISTS", "gd"],
    &["GETDEL"],
    &["GETDEL", "a", "b"],
    // GETEX
    &["SET", "ge", "v"],
    &["GETEX", "ge"],
    &["GETEX", "ge", "PXAT", "4102444800123"],
    &["PEXPIRETIME", "ge"],
    &["GETEX", "ge", "EXAT", "4102444801"],
    &["PEXPIRETIME", "ge"],
    &["GETEX", "ge", "PERSIST"],
    &["PEXPIRETIME", "ge"],
    &["GETEX", "ge", "EX", "0"],
    &["GETEX", "ge", "PX", "-1"],
    &["GETEX", "ge", "EX", "abc"],
    &["GETEX", "ge", "EX", "1", "PX", "1"],
    &["GETEX", "ge", "PERSIST", "EX", "1"],
    &["GETEX", "ge", "EX", "1", "EX", "1"],
    &["GETEX", "ge", "FOO"],
    &["GETEX", "ge", "EX"],
    &["GETEX", "ge", "EX", "9223372036854775807"],
    &["GETEX", "missing", "EX", "10"],
    &["GETEX", "ge", "PXAT", "1"],
    &["EXISTS", "ge"],
    &["GETEX"],
    // APPEND keeps the expiry
    &["APPEND", "ap", "Hello"],
    &["APPEND", "ap", " World"],
    &["GET", "ap"],
    &["APPEND", "ap"],
    &["SET", "apt", "v"],
    &["PEXPIREAT", "apt", "4102444800123"],
    &["APPEND", "apt", "x"],
    &["PEXPIRETIME", "apt"],
    // SETRANGE
    &["SET", "sr", "Hello World"],
    &["SETRANGE", "sr", "6", "Redis"],
    &["GET", "sr"],
    &["SETRANGE", "sr2", "5", "x"],
    &["GET", "sr2"],
    &["SETRANGE", "sr3", "0", ""],
    &["EXISTS", "sr3"],
    &["SETRANGE", "sr", "0", ""],
    &["SETRANGE", "sr", "-1", "x"],
    &["SETRANGE", "sr", "abc", "x"],
    &["SETRANGE", "sr", "536870912", "x"],
    &["SETRANGE", "sr", "1"],
    // INCRBYFLOAT, to infinity included
    &["SET", "f", "10.50"],
    &["INCRBYFLOAT", "f", "0.1"],
    &["INCRBYFLOAT", "f", "-5"],
    &["SET", "f", "5.0e3"],
    &["INCRBYFLOAT", "f", "2.0e2"],
    &["INCRBYFLOAT", "nf", "1.5"],
    &["INCRBYFLOAT", "f", "abc"],
    &["INCRBYFLOAT", "f", "inf"],
    &["INCRBYFLOAT", "f", " 1"],
    &["SET", "f", "1.1e4932"],
    &["INCRBYFLOAT", "f", "1.1e4932"],
    &["SET", "f", "1000.1"],
    &["INCRBYFLOAT", "f", "0"],
    &["SET", "f", "abc"],
    &["INCRBYFLOAT", "f", "1"],
    &["INCRBYFLOAT", "f"],
    &["SET", "fi", "3"],
    &["PEXPIREAT", "fi", "4102444800123"],
    &["INCRBYFLOAT", "fi", "1.25"],
    &["PEXPIRETIME", "fi"],
    // RENAME / RENAMENX keep the expiry
    &["SET", "rn", "v"],
    &["PEXPIREAT", "rn", "4102444800123"],
    &["RENAME", "rn", "rn2"],
    &["GET", "rn2"],
    &["PEXPIRETIME", "rn2"],
    &["EXISTS", "rn"],
    &["RENAME", "rn", "rn3"],
    &["RENAME", "rn2", "rn2"],
    &["SET", "rx", "x"],
    &["RENAMENX", "rn2", "rx"],
    &["RENAMENX", "rn2", "rn4"],
    &["RENAMENX", "rn4", "rn4"],
    &["RENAMENX", "missing", "a"],
    &["RENAME", "rx", "rn4"],
    &["GET", "rn4"],
    &["PEXPIRETIME", "rn4"],
    &["RENAME", "a"],
    &["RENAMENX", "a"],
    // MSETNX
    &["MSETNX", "m1", "a", "m2", "b"],
    &["MSETNX", "m2", "c", "m3", "d"],
    &["EXISTS", "m3"],
    &["MGET", "m1", "m2"],
    &["MSETNX", "m1"],
    &["MSETNX", "m1", "a", "m2"],
    &["MSETNX", "m4", "a", "m4", "b"],
    &["GET", "m4"],
    // EXPIRE and friends with NX / XX / GT / LT
    &["SET", "ec", "v"],
    &["EXPIRE", "ec", "100", "XX"],
    &["EXPIRE", "ec", "100", "GT"],
    &["PEXPIREAT", "ec", "4102444800123", "NX"],
    &["PEXPIRETIME", "ec"],
    &["PEXPIREAT", "ec", "4102444800000", "NX"],
    &["PEXPIREAT", "ec", "4102444800000", "GT"],
    &["PEXPIREAT", "ec", "4102444900000", "gt"],
    &["PEXPIRETIME", "ec"],
    &["PEXPIREAT", "ec", "4102444950000", "LT"],
    &["PEXPIREAT", "ec", "4102444000000", "XX", "LT"],
    &["PEXPIRETIME", "ec"],
    &["EXPIREAT", "ec", "4102444000", "LT", "LT"],
    &["EXPIRE", "ec", "100", "NX", "XX"],
    &["EXPIRE", "ec", "100", "GT", "LT"],
    &["EXPIRE", "ec", "100", "FOO"],
    &["EXPIRE", "ec", "abc", "NX"],
    &["EXPIRE", "ec", "abc", "FOO"],
    &["PEXPIRE", "ec", "9223372036854775807", "XX"],
    &["EXPIRE", "ec", "9223372036854775807", "XX"],
    &["EXPIRE", "missing", "100", "NX"],
    &["SET", "lt", "v"],
    &["EXPIREAT", "lt", "4102444800", "GT"],
    &["EXPIREAT", "lt", "4102444800", "LT"],
    &["EXPIRETIME", "lt"],
    &["EXPIRE", "lt", "-1", "NX"],
    &["EXPIRE", "lt", "-1", "XX"],
    &["EXISTS", "lt"],
    // MULTI / EXEC / DISCARD / WATCH / UNWATCH
    &["MULTI"],
    &["SET", "t1", "1"],
    &["INCR", "t1"],
    &["GET", "t1"],
    &["INCRBYFLOAT", "t1", "0.5"],
    &["PING"],
    &["EXEC"],
    &["MULTI"],
    &["SET", "t2", "a"],
    &["INCR", "t2"],
    &["SET", "t3", "b"],
    &["EXEC"],
    &["MULTI"],
    &["SET", "t4", "1"],
    &["NOSUCH"],
    &["EXEC"],
    &["EXISTS", "t4"],
    &["MULTI"],
    &["SET", "t5"],
    &["EXEC"],
    &["MULTI"],
    &["SET", "t6", "v", "FOO"],
    &["SET", "t6", "w"],
    &["INCRBY", "t6", "x"],
    &["EXEC"],
    &["MULTI"],
    &["MULTI"],
    &["PING"],
    &["EXEC"],
    &["EXEC"],
    &["DISCARD"],
    &["MULTI"],
    &["SET", "t7", "x"],
    &["DISCARD"],
    &["EXISTS", "t7"],
    &["MULTI", "x"],
    &["EXEC", "x"],
    &["WATCH"],
    &["WATCH", "w1"],
    &["MULTI"],
    &["WATCH", "w1"],
    &["EXEC"],
    &["SET", "w2", "a"],
    &["WATCH", "w2", "w9"],
    &["SET", "w2", "b"],
    &["MULTI"],
    &["SET", "w3", "c"],
    &["EXEC"],
    &["EXISTS", "w3"],
    &["WATCH", "w2"],
    &["MULTI"],
    &["SET", "w3", "c"],
    &["EXEC"],
    &["WATCH", "w2"],
    &["UNWATCH"],
    &["SET", "w2", "z"],
    &["MULTI"],
    &["GET", "w2"],
    &["UNWATCH"],
    &["EXEC"],
    &["WATCH", "w2"],
    &["SET", "w2", "y"],
    &["MULTI"],
    &["EXEC"],
    &["MULTI"],
    &["EXEC"],
    &["MULTI"],
    &["GETDEL", "t1"],
    &["RENAME", "t3", "t9"],
    &["MSETNX", "a1", "1", "a2", "2"],
    &["MGET", "t9", "a1", "t1"],
    &["EXPIREAT", "t9", "4102444800", "NX"],
    &["EXPIRETIME", "t9"],
    &["EXISTS", "t9", "t1"],
    &["STRLEN", "t9"],
    &["EXEC"],
    // FLUSHALL / FLUSHDB, last: they empty the keyspace. SYNC and ASYNC
    // in any case; any other argument, or two, is a syntax error.
    &["SET", "f1", "a"],
    &["SET", "f2", "b"],
    &["FLUSHALL"],
    &["DBSIZE"],
    &["GET", "f1"],
    &["SET", "f1", "c"],
    &["FLUSHALL", "SYNC"],
    &["EXISTS", "f1"],
    &["SET", "f1", "d"],
    &["flushall", "async"],
    &["GET", "f1"],
    &["FLUSHALL", "LAZY"],
    &["FLUSHALL", "SYNC", "ASYNC"],
    &["FLUSHALL", "1"],
    &["SET", "f1", "e"],
    &["FLUSHDB"],
    &["KEYS", "*"],
    &["FLUSHDB", "sync"],
    &["FLUSHDB", "ASYNC"],
    &["FLUSHDB", "now"],
    &["FLUSHDB", "ASYNC", "SYNC"],
    // Inside a transaction: the reads after it see an empty keyspace,
    // the writes after it survive it.
    &["SET", "f2", "x"],
    &["MULTI"],
    &["SET", "f1", "y"],
    &["FLUSHALL"],
    &["GET", "f1"],
    &["GET", "f2"],
    &["SET", "f3", "z"],
    &["EXEC"],
    &["GET", "f3"],
    &["DBSIZE"],
    &["MULTI"],
    &["FLUSHDB", "bad"],
    &["EXEC"],
];

/// Run after `HELLO 3`: the reply types RESP3 changes.
const SCRIPT_RESP3: &[&[&str]] = &[
    &["GET", "missing"],
    &["SET", "k", "v"],
    &["MGET", "k", "missing"],
    &["SET", "k", "w", "NX"],
    &["GETSET", "missing", "v"],
    &["CLIENT", "GETNAME"],
    &["GETRANGE", "k", "0", "-1"],
    &["KEYS", "k"],
    // A COUNT past the keyspace finishes the walk in one call on both.
    &["SCAN", "0", "MATCH", "nothing", "COUNT", "1000"],
    &["SETNX", "k", "x"],
    &["PEXPIRETIME", "missing"],
    &["TYPE", "k"],
    &["INCRBYFLOAT", "fl", "2.5"],
    &["GETDEL", "missing"],
    &["MULTI"],
    &["SET", "k", "v"],
    &["GET", "k"],
    &["GET", "missing"],
    &["EXEC"],
    &["WATCH", "k"],
    &["SET", "k", "changed"],
    &["MULTI"],
    &["GET", "k"],
    &["EXEC"],
];

/// Each command and its wire reply, one line each, as the recording holds
/// them: `"SET k v" "+OK\r\n"` (Rust debug quoting).
fn transcript(addr: std::net::SocketAddr) -> Vec<String> {
    let mut raw = Raw::connect(addr);
    let run = |raw: &mut Raw, script: &[&[&str]]| -> Vec<String> {
        script
            .iter()
            .map(|args| format!("{:?} {:?}", args.join(" "), raw.cmd(args)))
            .collect()
    };
    let mut lines = run(&mut raw, SCRIPT);
    let hello = raw.cmd(&["HELLO", "3"]);
    assert!(hello.starts_with('%'), "HELLO 3 answers a map: {hello}");
    lines.push("\"HELLO 3\" (a map)".to_string());
    lines.extend(run(&mut raw, SCRIPT_RESP3));
    lines
}

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redis7_replies.txt")
}

/// A `redis-server` on a free loopback port, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// `None` (with the reason) when redis-server is not installed.
    fn start() -> Result<RedisServer, String> {
        let port = support::free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("redis-server could not be started: {error}"))?;
        let server = RedisServer { child, port };
        eventually_blocking(
            "redis-server to answer PING",
            Duration::from_secs(10),
            || {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .is_ok_and(|_| Raw::connect(server.addr()).cmd(&["PING"]) == "+PONG\r\n")
            },
        );
        Ok(server)
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_scripted_reply_matches_redis_7() {
    let recorded = std::fs::read_to_string(fixture_path()).unwrap_or_default();
    let expected: Vec<String> = match RedisServer::start() {
        Ok(redis) => {
            let live = transcript(redis.addr());
            if std::env::var_os("BALLAST_RECORD_REDIS").is_some() {
                std::fs::write(fixture_path(), live.join("\n") + "\n").expect("write fixture");
                println!("recorded {} replies of the live Redis", live.len());
            } else {
                let recorded: Vec<&str> = recorded.lines().collect();
                assert_eq!(
                    live, recorded,
                    "the live Redis no longer answers what the fixture recorded; \
                     rerun with BALLAST_RECORD_REDIS=1 and review the diff"
                );
            }
            live
        }
        Err(why) => {
            println!("SKIPPED the live Redis comparison ({why}); comparing with the recording");
            recorded.lines().map(str::to_string).collect()
        }
    };
    assert!(!expected.is_empty(), "no recording at {:?}", fixture_path());
    let node = TestNode::start(ServerConfig::default());
    let ours = transcript(node.resp_addr);
    let differences: Vec<String> = expected
        .iter()
        .zip(&ours)
        .filter(|(redis, ours)| redis != ours)
        .map(|(redis, ours)| format!("redis:   {redis}\nballast: {ours}"))
        .collect();
    assert!(
        differences.is_empty() && expected.len() == ours.len(),
        "{} of {} replies differ from Redis 7:\n{}",
        differences.len(),
        expected.len(),
        differences.join("\n")
    );
    println!("{} replies match Redis 7", ours.len());
}

/// Redis 7's command names and arities (`name arity` per line), from the
/// live server's `COMMAND INFO` when there is one, else the recording.
fn redis_commands(redis: Option<&RedisServer>) -> Vec<(String, i64)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redis7_commands.txt");
    let text = match redis {
        Some(redis) => {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", redis.port))
                .and_then(|client| client.get_connection())
                .expect("connect to redis-server");
            let infos: Vec<redis::Value> = redis::cmd("COMMAND").query(&mut c).expect("COMMAND");
            let mut lines: Vec<String> = infos
                .iter()
                .map(|info| {
                    let redis::Value::Array(fields) = info else {
                        panic!("COMMAND entry {info:?}")
                    };
                    let name: String = redis::from_redis_value(&fields[0]).expect("name");
                    let arity: i64 = redis::from_redis_value(&fields[1]).expect("arity");
                    format!("{name} {arity}")
                })
                .collect();
            lines.sort();
            let live = lines.join("\n") + "\n";
            if std::env::var_os("BALLAST_RECORD_REDIS").is_some() {
                std::fs::write(&path, &live).expect("write fixture");
            } else {
                let recorded = std::fs::read_to_string(&path).unwrap_or_default();
                assert_eq!(live, recorded, "rerun with BALLAST_RECORD_REDIS=1");
            }
            live
        }
        None => std::fs::read_to_string(&path).expect("the recording of Redis's commands"),
    };
    text.lines()
        .map(|line| {
            let (name, arity) = line.split_once(' ').expect("name arity");
            (name.to_string(), arity.parse().expect("arity"))
        })
        .collect()
}

/// Every Redis command name the parser knows is in the command table (so
/// COMMAND COUNT, INFO, DOCS and /metrics list it) with Redis's arity,
/// and every name it does not know answers Redis's unknown-command error.
#[test]
fn the_command_table_is_in_step_with_the_parser_and_redis() {
    use ballast_node::server::table::{lookup, COMMANDS};
    let redis = RedisServer::start().ok();
    let commands = redis_commands(redis.as_ref());
    assert!(commands.len() > 200, "Redis 7 has over 200 commands");
    let mut served = 0;
    for (name, arity) in &commands {
        let parsed = ballast_node::Command::parse(&[bytes::Bytes::from(name.clone())]);
        let known = !matches!(parsed, Err(ballast_node::Error::UnknownCommand { .. }));
        match lookup(name.as_bytes()) {
            Some(index) => {
                assert!(
                    known,
                    "{name} is in the table but the parser does not know it"
                );
                assert_eq!(COMMANDS[index].arity, *arity, "{name}'s arity");
                served += 1;
            }
            None => assert!(!known, "{name} is parsed but missing from the table"),
        }
    }
    // Only CAS is ballast's own.
    assert_eq!(
        served + 1,
        COMMANDS.len(),
        "every table entry is a Redis command or CAS"
    );
    println!("{served} of Redis 7's {} commands served", commands.len());
}
