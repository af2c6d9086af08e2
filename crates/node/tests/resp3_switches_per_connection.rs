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
