//! Replies to clients, and the request encoding clients use.
//!
//! One [`Reply`] value serves both protocols: [`encode_as`] writes it in
//! the protocol the connection chose with `HELLO` (RESP2 unless the client
//! asked for 3). The RESP3-only types fall back to what Redis 7 sends a
//! RESP2 client for them: a map becomes a flat array of keys and values, a
//! double a bulk string, a verbatim string a bulk string, a null `$-1`.

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol a connection speaks, chosen with `HELLO 2` / `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2: what every connection starts with.
    #[default]
    Resp2,
    /// RESP3: typed nulls, maps, doubles and verbatim strings.
    Resp3,
}

impl Protocol {
    /// The number HELLO uses for it.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply, in either protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`: short status such as `OK` or `PONG`.
    Simple(String),
    /// `-text`: an error; by convention the first word is a code (`ERR`,
    /// `NOPROTO`, ...).
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$len` then the bytes: binary-safe.
    Bulk(Bytes),
    /// `$-1`: a missing value (GET of a missing key).
    NullBulk,
    /// `*n` then n replies.
    Array(Vec<Reply>),
    /// `*-1`: a missing array.
    NullArray,
    /// RESP3 `%n` then n key-value pairs; RESP2: a flat array of 2n.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `,text`: a floating-point number, already in the text Redis
    /// prints for it (`3.5`, `inf`); RESP2: that text as a bulk string.
    Double(String),
    /// RESP3 `=len` then `txt:` and the text (INFO, CLIENT INFO); RESP2: a
    /// bulk string of the text.
    Verbatim(String),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_string())
    }

    /// A bulk string reply copied from a byte slice.
    pub fn bulk(bytes: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(bytes.as_ref()))
    }
}

/// Appends the wire form of `reply` to `out`.
///
/// Simple strings and errors cannot contain CR or LF on the wire; like
/// Redis, each CR or LF in them is sent as a space, so a message built
/// from client input can never inject a second reply.
///
/// ```
/// use ballast_node::resp::{encode, Reply};
/// let mut out = bytes::BytesMut::new();
/// encode(&Reply::Array(vec![Reply::Integer(1), Reply::NullBulk]), &mut out);
/// assert_eq!(&out[..], b"*2\r\n:1\r\n$-1\r\n");
/// ```
pub fn encode(reply: &Reply, out: &mut BytesMut) {
    encode_as(reply, Protocol::Resp2, out)
}

/// Appends the wire form of `reply` in `protocol` to `out`. In RESP3 both
/// nulls are `_`, as Redis 7 sends them.
///
/// ```
/// use ballast_node::resp::{encode_as, Protocol, Reply};
/// let mut out = bytes::BytesMut::new();
/// let map = Reply::Map(vec![(Reply::bulk("proto"), Reply::Integer(3))]);
/// encode_as(&map, Protocol::Resp3, &mut out);
/// encode_as(&Reply::NullBulk, Protocol::Resp3, &mut out);
/// assert_eq!(&out[..], b"%1\r\n$5\r\nproto\r\n:3\r\n_\r\n");
/// ```
pub fn encode_as(reply: &Reply, protocol: Protocol, out: &mut BytesMut) {
    let resp3 = protocol == Protocol::Resp3;
    match reply {
        Reply::Simple(text) => line(out, b'+', text),
        Reply::Error(text) => line(out, b'-', text),
        Reply::Integer(value) => header(out, b':', *value),
        Reply::Bulk(bytes) => bulk(out, bytes),
        Reply::NullBulk | Reply::NullArray if resp3 => out.put_slice(b"_\r\n"),
        Reply::NullBulk => out.put_slice(b"$-1\r\n"),
        Reply::Array(items) => {
            header(out, b'*', length_i64(items.len()));
            for item in items {
                encode_as(item, protocol, out);
            }
        }
        Reply::NullArray => out.put_slice(b"*-1\r\n"),
        Reply::Map(pairs) => {
            if resp3 {
                header(out, b'%', length_i64(pairs.len()));
            } else {
                header(out, b'*', length_i64(pairs.len()).saturating_mul(2));
            }
            for (key, value) in pairs {
                encode_as(key, protocol, out);
                encode_as(value, protocol, out);
            }
        }
        Reply::Double(text) if resp3 => line(out, b',', text),
        Reply::Double(text) => bulk(out, text.as_bytes()),
        Reply::Verbatim(text) if resp3 => {
            header(out, b'=', length_i64(text.len() + 4));
            out.put_slice(b"txt:");
            out.put_slice(text.as_bytes());
            out.put_slice(b"\r\n");
        }
        Reply::Verbatim(text) => bulk(out, text.as_bytes()),
    }
}

fn bulk(out: &mut BytesMut, bytes: &[u8]) {
    header(out, b'$', length_i64(bytes.len()));
    out.put_slice(bytes);
    out.put_slice(b"\r\n");
}

/// Appends a request as clients send it: an array of bulk strings.
pub fn encode_request<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    header(out, b'*', length_i64(args.len()));
    for arg in args {
        let arg = arg.as_ref();
        header(out, b'$', length_i64(arg.len()));
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

/// A length as RESP prints it. Lengths of things held in memory fit in
/// i64 on every platform Rust supports (isize::MAX <= i64::MAX).
fn length_i64(length: usize) -> i64 {
    i64::try_from(length).unwrap_or(i64::MAX)
}

fn header(out: &mut BytesMut, kind: u8, value: i64) {
    out.put_u8(kind);
    out.put_slice(value.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

fn line(out: &mut BytesMut, kind: u8, text: &str) {
    out.put_u8(kind);
    out.extend(text.bytes().map(|byte| {
        if byte == b'\r' || byte == b'\n' {
            b' '
        } else {
            byte
        }
    }));
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(reply: &Reply) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(reply, &mut out);
        out.to_vec()
    }

    #[test]
    fn every_reply_type_has_the_redis_wire_form() {
        assert_eq!(wire(&Reply::ok()), b"+OK\r\n");
        assert_eq!(wire(&Reply::Error("ERR x".into())), b"-ERR x\r\n");
        assert_eq!(wire(&Reply::Integer(-7)), b":-7\r\n");
        assert_eq!(
            wire(&Reply::Integer(i64::MIN)),
            b":-9223372036854775808\r\n"
        );
        assert_eq!(wire(&Reply::bulk("hi")), b"$2\r\nhi\r\n");
        assert_eq!(wire(&Reply::bulk("")), b"$0\r\n\r\n");
        assert_eq!(wire(&Reply::bulk(b"a\r\nb")), b"$4\r\na\r\nb\r\n");
        assert_eq!(wire(&Reply::NullBulk), b"$-1\r\n");
        assert_eq!(wire(&Reply::Array(vec![])), b"*0\r\n");
        assert_eq!(wire(&Reply::NullArray), b"*-1\r\n");
        assert_eq!(
            wire(&Reply::Array(vec![
                Reply::bulk("0"),
                Reply::Array(vec![Reply::bulk("k")])
            ])),
            b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"
        );
    }

    #[test]
    fn resp3_types_have_the_redis_7_wire_form_and_fall_back_in_resp2() {
        let both = |reply: &Reply| {
            let mut two = BytesMut::new();
            let mut three = BytesMut::new();
            encode_as(reply, Protocol::Resp2, &mut two);
            encode_as(reply, Protocol::Resp3, &mut three);
            (two.to_vec(), three.to_vec())
        };
        assert_eq!(
            both(&Reply::NullBulk),
            (b"$-1\r\n".to_vec(), b"_\r\n".to_vec())
        );
        assert_eq!(
            both(&Reply::NullArray),
            (b"*-1\r\n".to_vec(), b"_\r\n".to_vec())
        );
        assert_eq!(
            both(&Reply::Map(vec![(Reply::bulk("a"), Reply::NullBulk)])),
            (
                b"*2\r\n$1\r\na\r\n$-1\r\n".to_vec(),
                b"%1\r\n$1\r\na\r\n_\r\n".to_vec()
            )
        );
        assert_eq!(
            both(&Reply::Double("1.5".into())),
            (b"$3\r\n1.5\r\n".to_vec(), b",1.5\r\n".to_vec())
        );
        assert_eq!(
            both(&Reply::Verbatim("a:1".into())),
            (b"$3\r\na:1\r\n".to_vec(), b"=7\r\ntxt:a:1\r\n".to_vec())
        );
        // Nested replies follow the connection's protocol.
        assert_eq!(
            both(&Reply::Array(vec![Reply::NullBulk])).1,
            b"*1\r\n_\r\n".to_vec()
        );
    }

    #[test]
    fn line_breaks_in_errors_cannot_inject_a_reply() {
        assert_eq!(
            wire(&Reply::Error("ERR a\r\n+OK".into())),
            b"-ERR a  +OK\r\n"
        );
        assert_eq!(wire(&Reply::Simple("a\nb".into())), b"+a b\r\n");
    }

    #[test]
    fn requests_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_request(&["SET", "k", ""], &mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }
}
