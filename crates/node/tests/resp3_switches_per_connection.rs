//! RESP3 is chosen per connection, at a point in its request stream: a
//! HELLO 3 pipelined behind requests still running answers those in
//! RESP2 and everything after it in RESP3; other connections are not
//! affected. The client table behind CLIENT LIST follows connections as
//! they open, rename themselves and close.

mod support;

use std::time::Duration;

use ballast_node::server::ServerConfig;
use support::eventually_blocking;
use support::server::TestNode;

#[test]
fn hello_3_changes_only_the_replies_after_it() {
    let node = TestNode::start(ServerConfig::default());
    let mut raw = node.raw();
    let mut other = node.raw();
    // One write holding three requests: the GET runs against the API (so
    // its reply is encoded after HELLO's is known), HELLO is answered at
    // once, the last GET comes after it.
    let mut pipeline = bytes::BytesMut::new();
    for args in [
        &["GET", "missing"][..],
        &["HELLO", "3"],
        &["GET", "missing"],
    ] {
        ballast_node::resp::encode_request(args, &mut pipeline);
    }
    raw.send(&pipeline);
    assert_eq!(raw.reply(), "$-1\r\n", "before HELLO 3: RESP2's null");
    let hello = raw.reply();
    assert!(
        hello.starts_with("%7\r\n"),
        "HELLO 3 answers a map: {hello}"
    );
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert_eq!(raw.reply(), "_\r\n", "after HELLO 3: RESP3's null");
    assert_eq!(raw.cmd(&["MGET", "missing", "missing"]), "*2\r\n_\r\n_\r\n");
    assert_eq!(
        other.cmd(&["GET", "missing"]),
        "$-1\r\n",
        "others stay RESP2"
    );
    // And back.
    assert!(raw.cmd(&["HELLO", "2"]).starts_with("*14\r\n"));
    assert_eq!(raw.cmd(&["GET", "missing"]), "$-1\r\n");
    // A refused HELLO changes nothing.
    assert_eq!(
        raw.cmd(&["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(raw.cmd(&["GET", "missing"]), "$-1\r\n");
}

#[test]
fn client_list_follows_connections() {
    let node = TestNode::start(ServerConfig::default());
    let mut first = node.raw();
    let list = |raw: &mut support::resp::Raw| raw.cmd(&["CLIENT", "LIST"]);
    let mut second = node.raw();
    assert_eq!(second.cmd(&["CLIENT", "SETNAME", "second"]), "+OK\r\n");
    assert_eq!(
        second.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "mylib"]),
        "+OK\r\n"
    );
    let both = list(&mut first);
    assert_eq!(both.matches("id=").count(), 2, "{both}");
    assert!(
        both.contains("name=second db=0 multi=-1 resp=2 lib-name=mylib"),
        "{both}"
    );
    // HELLO 3 SETNAME shows in the table too, and CLIENT INFO is a
    // verbatim string in RESP3.
    assert!(second
        .cmd(&["HELLO", "3", "SETNAME", "renamed"])
        .starts_with('%'));
    let info = second.cmd(&["CLIENT", "INFO"]);
    assert!(info.starts_with('=') && info.contains("txt:id="), "{info}");
    assert!(
        info.contains("name=renamed") && info.contains("resp=3"),
        "{info}"
    );
    drop(second);
    eventually_blocking(
        "the closed connection to leave CLIENT LIST",
        Duration::from_secs(10),
        || list(&mut first).matches("id=").count() == 1,
    );
}

#[test]
fn hello_3_authenticates_and_names_in_one_step() {
    let node = TestNode::start(ServerConfig {
        password: Some("s3cret".into()),
        ..ServerConfig::default()
    });
    let mut raw = node.raw();
    assert!(raw
        .cmd(&["HELLO", "3"])
        .starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(
        raw.cmd(&["HELLO", "3", "AUTH", "default", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        raw.cmd(&["GET", "k"]),
        "-NOAUTH Authentication required.\r\n"
    );
    let hello = raw.cmd(&["HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "app"]);
    assert!(hello.starts_with("%7\r\n"), "{hello}");
    assert_eq!(raw.cmd(&["GET", "k"]), "_\r\n", "authenticated, in RESP3");
    assert_eq!(raw.cmd(&["CLIENT", "GETNAME"]), "$3\r\napp\r\n");
}

#[test]
fn keys_refuses_a_reply_over_the_limit_and_says_what_to_use() {
    let node = TestNode::start(ServerConfig {
        reply_bytes_max: 1000,
        ..ServerConfig::default()
    });
    let mut raw = node.raw();
    for i in 0..40 {
        assert_eq!(raw.cmd(&["SET", &format!("key:{i:04}"), "v"]), "+OK\r\n");
    }
    // 40 keys of 8 bytes plus 16 bytes of framing each: 960 bytes fit;
    // 42 (1008 bytes) do not.
    assert!(raw.cmd(&["KEYS", "key:*"]).starts_with("*40\r\n"));
    assert_eq!(raw.cmd(&["SET", "key:0040", "v"]), "+OK\r\n");
    assert_eq!(raw.cmd(&["SET", "key:0041", "v"]), "+OK\r\n");
    assert_eq!(
        raw.cmd(&["KEYS", "*"]),
        "-ERR KEYS reply is over the limit of 1000 bytes; use SCAN with MATCH instead\r\n"
    );
    assert_eq!(raw.cmd(&["KEYS", "key:000?"]).lines().next(), Some("*10"));
}
