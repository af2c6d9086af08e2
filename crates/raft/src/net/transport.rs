//! The network seam: how a node listens and connects.
//!
//! The RPC server and client (and the node's RESP server) reach the network
//! only through a [`Transport`]. Production uses [`TokioTransport`] (TCP
//! through tokio); the simulation supplies one over its simulated network,
//! so the same server and client code runs there. The traits are object
//! safe and boxed: one virtual call per read or write is nothing beside
//! the system call behind it.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The read half of a split [`Connection`].
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a split [`Connection`].
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// One byte stream between two hosts.
pub trait Connection: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {
    /// Turns off Nagle's algorithm where the transport has one; small
    /// latency-bound messages should not wait for ACKs.
    fn set_nodelay(&self, on: bool) -> io::Result<()>;

    /// Writes what fits now without waiting (used to tell a refused client
    /// why); `WouldBlock` when nothing fits.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;

    /// Polls for readable bytes without consuming them: `Ready(Ok(0))` is
    /// the end of the stream.
    fn poll_peek(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>)
        -> Poll<io::Result<usize>>;

    /// Splits into halves that a reader and a writer task own apart.
    fn into_split(self: Box<Self>) -> (ReadHalf, WriteHalf);

    /// The peer's address.
    fn peer_addr(&self) -> io::Result<SocketAddr>;

    /// This end's address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A boxed [`Connection`].
pub type BoxConnection = Box<dyn Connection>;

/// A bound listening socket.
pub trait Listener: Send + Sync + 'static {
    /// The next incoming connection and its peer's address. Cancel-safe:
    /// dropping the future loses no connection.
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxConnection, SocketAddr)>>;

    /// The address it is bound to (useful after binding port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A boxed [`Listener`].
pub type BoxListener = Box<dyn Listener>;

/// How a node reaches the network. See the module docs.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Binds `addr` (`host:port`).
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxListener>>;

    /// Connects to `addr` (`host:port`).
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxConnection>>;

    /// Whether `addr` (`host:port`) stays on this machine, so that what
    /// crosses it needs no secret. A host name other than `localhost` is
    /// not (its address could change).
    fn is_loopback(&self, addr: &str) -> bool;
}

/// A shared [`Transport`].
pub type DynTransport = Arc<dyn Transport>;

/// TCP through tokio: the production transport.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTransport;

impl TokioTransport {
    /// The production transport, shared.
    pub fn shared() -> DynTransport {
        Arc::new(TokioTransport)
    }
}

impl Connection for tokio::net::TcpStream {
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        tokio::net::TcpStream::set_nodelay(self, on)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::TcpStream::try_write(self, buf)
    }

    fn poll_peek(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<usize>> {
        tokio::net::TcpStream::poll_peek(self, cx, buf)
    }

    fn into_split(self: Box<Self>) -> (ReadHalf, WriteHalf) {
        let (r, w) = tokio::net::TcpStream::into_split(*self);
        (Box::new(r), Box::new(w))
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpStream::peer_addr(self)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpStream::local_addr(self)
    }
}

impl Listener for tokio::net::TcpListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxConnection, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
            Ok((Box::new(stream) as BoxConnection, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

impl From<tokio::net::TcpListener> for BoxListener {
    fn from(listener: tokio::net::TcpListener) -> BoxListener {
        Box::new(listener)
    }
}

impl Transport for TokioTransport {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxListener>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(listener) as BoxListener)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxConnection>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            Ok(Box::new(stream) as BoxConnection)
        })
    }

    fn is_loopback(&self, addr: &str) -> bool {
        is_loopback_address(addr)
    }
}

/// Whether `addr` (`host:port`) names this machine's loopback interface:
/// an IP address that is loopback, or `localhost`.
pub fn is_loopback_address(addr: &str) -> bool {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return sa.ip().is_loopback();
    }
    match addr.rsplit_once(':') {
        Some((host, _)) => {
            host == "localhost"
                || host
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Whether a connection the pool kept idle can still carry a request: not
/// if the peer closed it, sent something unasked, or it failed. Never
/// waits and consumes nothing.
pub fn is_idle_and_open(conn: &mut dyn Connection) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    matches!(conn.poll_peek(&mut cx, &mut buf), Poll::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn loopback_addresses_are_told_from_others() {
        for a in ["127.0.0.1:1", "[::1]:2", "localhost:3", "127.9.9.9:4"] {
            assert!(is_loopback_address(a), "{a}");
        }
        for a in ["10.0.0.1:1", "example.com:2", "0.0.0.0:3", "nonsense"] {
            assert!(!is_loopback_address(a), "{a}");
        }
    }

    #[tokio::test]
    async fn tokio_transport_connects_splits_and_tells_a_closed_peer() {
        let t = TokioTransport;
        let listener = t.bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut client = t.connect(&addr).await.unwrap();
        client.set_nodelay(true).unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert!(is_idle_and_open(&mut *client), "a quiet peer is open");
        let (r, mut w) = server.into_split();
        w.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        drop(w);
        drop(r);
        // The close reaches the client's socket asynchronously: wait for
        // its readiness rather than sleeping.
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let n = std::future::poll_fn(|cx| client.poll_peek(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(n, 0, "end of stream");
        assert!(!is_idle_and_open(&mut *client), "a closed peer is not open");
    }
}
