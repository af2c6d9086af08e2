//! The node's network seam on turmoil's simulated network: the Raft RPC
//! server and client and the RESP server run their production code over
//! `turmoil::net`, whose links the driver partitions, holds and slows.

use ballast_raft::net::transport::{
    is_loopback_address, BoxConnection, BoxFuture, BoxListener, Connection, Listener, ReadHalf,
    Transport, WriteHalf,
};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A turmoil TCP stream as a node [`Connection`].
#[derive(Debug)]
struct SimStream(turmoil::net::TcpStream);

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connection for SimStream {
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.0.set_nodelay(on)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn poll_peek(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<usize>> {
        self.0.poll_peek(cx, buf)
    }

    fn into_split(self: Box<Self>) -> (ReadHalf, WriteHalf) {
        let (r, w) = self.0.into_split();
        (Box::new(r), Box::new(w))
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A turmoil TCP listener.
struct SimListener(turmoil::net::TcpListener);

impl Listener for SimListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxConnection, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((Box::new(SimStream(stream)) as BoxConnection, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// The simulated network, as the [`Transport`] of the node on simulated
/// host `host`. Addresses are `host:port` with the simulation's host names.
#[derive(Debug, Clone)]
pub struct TurmoilTransport {
    host: String,
}

impl TurmoilTransport {
    /// The transport of the node on host `host`, shared.
    pub fn shared(host: &str) -> Arc<TurmoilTransport> {
        Arc::new(TurmoilTransport {
            host: host.to_string(),
        })
    }
}

impl Transport for TurmoilTransport {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxListener>> {
        Box::pin(async move {
            // turmoil binds the host's own address only as the unspecified
            // one; a node binds by its host name.
            let port = match addr.rsplit_once(':') {
                Some((host, port)) if host == self.host => port,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrNotAvailable,
                        format!("{addr} is not an address of host {}", self.host),
                    ))
                }
            };
            let port: u16 = port.parse().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad port in {addr}"))
            })?;
            let listener =
                turmoil::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).await?;
            Ok(Box::new(SimListener(listener)) as BoxListener)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxConnection>> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(SimStream(stream)) as BoxConnection)
        })
    }

    /// Loopback addresses, and the simulated host this code runs on: the
    /// simulation's hosts are machines of their own, so another host's
    /// name is not loopback.
    fn is_loopback(&self, addr: &str) -> bool {
        if is_loopback_address(addr) {
            return true;
        }
        addr.rsplit_once(':')
            .is_some_and(|(host, _)| host == self.host)
    }
}
