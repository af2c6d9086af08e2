//! RESP clients for exact wire checks: a raw client that sends bytes and
//! reads whole replies as wire text, and `SET` through the `redis` crate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `SET key value` through the `redis` crate.
pub fn set(connection: &mut redis::Connection, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query::<()>(connection)
        .unwrap_or_else(|e| panic!("SET {key}: {e}"));
}

/// A raw RESP client: sends bytes, reads whole replies as wire bytes.
pub struct Raw {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            stream,
            buffer: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends one request as an array of bulk strings.
    pub fn send_cmd(&mut self, args: &[&[u8]]) {
        let mut out = bytes::BytesMut::new();
        ballast_node::resp::encode_request(args, &mut out);
        self.send(&out);
    }

    /// Sends one request and returns its reply's wire bytes.
    pub fn cmd(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        self.send_cmd(&args);
        self.reply()
    }

    /// The next whole reply, as (lossy UTF-8) wire text.
    pub fn reply(&mut self) -> String {
        loop {
            if let Some(end) = reply_end(&self.buffer, 0) {
                let reply: Vec<u8> = self.buffer.drain(..end).collect();
                return String::from_utf8_lossy(&reply).into_owned();
            }
            let mut chunk = [0u8; 64 * 1024];
            let read = self.stream.read(&mut chunk).expect("read a reply");
            assert!(
                read > 0,
                "connection closed; buffered {:?}",
                String::from_utf8_lossy(&self.buffer)
            );
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// True when the server closed the connection (after any buffered
    /// replies, which are returned).
    pub fn read_to_close(&mut self) -> String {
        let mut rest = Vec::new();
        self.stream
            .read_to_end(&mut rest)
            .expect("read until the server closes");
        self.buffer.extend_from_slice(&rest);
        String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).into_owned()
    }
}

/// Where the RESP reply starting at `at` ends, if it is complete.
fn reply_end(buffer: &[u8], at: usize) -> Option<usize> {
    let line_end = at
        + buffer
            .get(at..)?
            .windows(2)
            .position(|pair| pair == b"\r\n")?;
    let header = std::str::from_utf8(&buffer[at + 1..line_end]).ok()?;
    let after = line_end + 2;
    match buffer[at] {
        // RESP3's null, double, boolean and big number are one line too.
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after),
        b'$' | b'=' | b'!' => {
            let length: i64 = header.parse().ok()?;
            if length < 0 {
                return Some(after);
            }
            let end = after + length as usize + 2;
            (buffer.len() >= end).then_some(end)
        }
        b'*' | b'%' | b'~' | b'>' => {
            let count: i64 = header.parse().ok()?;
            // A map's count is of pairs.
            let count = if buffer[at] == b'%' { count * 2 } else { count };
            let mut end = after;
            for _ in 0..count.max(0) {
                end = reply_end(buffer, end)?;
            }
            Some(end)
        }
        other => panic!("not a RESP reply type: {:?}", other as char),
    }
}
