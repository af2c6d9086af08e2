//! Replies to clients, and the request encoding clients use.

use bytes::{BufMut, Bytes, BytesMut};

/// One RESP2 reply.
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
    match reply {
        Reply::Simple(text) => line(out, b'+', text),
        Reply::Error(text) => line(out, b'-', text),
        Reply::Integer(value) => header(out, b':', *value),
        Reply::Bulk(bytes) => {
            header(out, b'$', length_i64(bytes.len()));
            out.put_slice(bytes);
            out.put_slice(b"\r\n");
        }
        Reply::NullBulk => out.put_slice(b"$-1\r\n"),
        Reply::Array(items) => {
            header(out, b'*', length_i64(items.len()));
            for item in items {
                encode(item, out);
            }
        }
        Reply::NullArray => out.put_slice(b"*-1\r\n"),
    }
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
