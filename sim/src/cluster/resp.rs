//! A small RESP2 client for the simulated client hosts: commands as arrays
//! of bulk strings, replies parsed into [`Reply`]. The node's side is its
//! production RESP server.

use std::io;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use turmoil::net::TcpStream;

/// The largest bulk reply accepted; the workload's values are tiny, so
/// anything bigger is a broken stream.
const BULK_BYTES_MAX: usize = 1 << 20;
/// The longest array reply accepted.
const ARRAY_LEN_MAX: usize = 1 << 16;

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and the like.
    Status(String),
    /// `-ERR ...`: the whole line after the dash.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$3 abc`, or nil.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`, or nil.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The error's code (its first word), if this is an error.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => e.split_whitespace().next(),
            _ => None,
        }
    }
}

/// One client connection.
#[derive(Debug)]
pub struct RespClient {
    io: BufReader<TcpStream>,
}

fn broken(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl RespClient {
    /// Connects to `addr` (`host:port`).
    pub async fn connect(addr: &str) -> io::Result<RespClient> {
        let stream = TcpStream::connect(addr).await?;
        Ok(RespClient {
            io: BufReader::new(stream),
        })
    }

    /// Sends one command and reads its reply. An `Err` means the
    /// connection is broken (the command may or may not have run).
    pub async fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.io.get_mut().write_all(&out).await?;
        self.read_reply(0).await
    }

    async fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let n = (&mut self.io)
            .take(BULK_BYTES_MAX as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if !line.ends_with(b"\r\n") {
            return Err(broken("a reply line without CRLF"));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| broken("a reply line that is not UTF-8"))
    }

    fn read_reply(
        &mut self,
        depth: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Reply>> + '_>> {
        Box::pin(async move {
            if depth > 4 {
                return Err(broken("replies nested too deep"));
            }
            let line = self.line().await?;
            let (kind, rest) = line.split_at(line.len().min(1));
            let number = || -> io::Result<i64> {
                rest.parse()
                    .map_err(|_| broken(format!("not a number: {rest:?}")))
            };
            Ok(match kind {
                "+" => Reply::Status(rest.to_string()),
                "-" => Reply::Error(rest.to_string()),
                ":" => Reply::Int(number()?),
                "$" => match number()? {
                    -1 => Reply::Bulk(None),
                    n if n < 0 || n as usize > BULK_BYTES_MAX => {
                        return Err(broken(format!("bulk length {n}")))
                    }
                    n => {
                        let mut v = vec![0u8; n as usize + 2];
                        self.io.read_exact(&mut v).await?;
                        if !v.ends_with(b"\r\n") {
                            return Err(broken("a bulk reply without CRLF"));
                        }
                        v.truncate(n as usize);
                        Reply::Bulk(Some(v))
                    }
                },
                "*" => match number()? {
                    -1 => Reply::Array(None),
                    n if n < 0 || n as usize > ARRAY_LEN_MAX => {
                        return Err(broken(format!("array length {n}")))
                    }
                    n => {
                        let mut items = Vec::with_capacity(n as usize);
                        for _ in 0..n {
                            items.push(self.read_reply(depth + 1).await?);
                        }
                        Reply::Array(Some(items))
                    }
                },
                _ => return Err(broken(format!("unknown reply type in {line:?}"))),
            })
        })
    }
}
