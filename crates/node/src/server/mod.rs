//! The RESP server: TCP connections from Redis clients, served by a
//! [`KvApi`].
//!
//! ```no_run
//! # async fn example<A: ballast_node::KvApi>(api: std::sync::Arc<A>) -> std::io::Result<()> {
//! use ballast_node::server::{RespServer, ServerConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:6379").await?;
//! let server = RespServer::new(api, ServerConfig::default()).expect("valid config");
//! let metrics = server.metrics(); // for the admin port's /metrics
//! // Serves until the shutdown future completes (here: never).
//! server.serve(listener, std::future::pending()).await
//! # }
//! ```
//!
//! # One connection
//!
//! A connection reads into a bounded buffer, decodes requests with
//! [`crate::resp::Decoder`], answers each, and writes the replies in the
//! order the requests arrived, whatever order they complete in.
//!
//! Pipelined requests run concurrently: each request that needs the API
//! runs as its own task as soon as it is decoded, so the writes of one
//! connection are proposed without waiting for each other. One rule keeps
//! a pipeline meaning what it meant on Redis: a request waits for the
//! earlier requests *of its connection* that it conflicts with (two
//! requests conflict when one writes and their keys overlap; SCAN, DBSIZE
//! and INFO read every key). So `SET k 1`, `GET k` in one pipeline reads
//! `1`, and `SET k 1`, `SET k 2` leaves `2`. While a request waits, the
//! connection reads no further requests.
//!
//! A write that needs no read first (SET, INCR, DEL, MSET, EXPIRE, CAS; not
//! PERSIST) waits less: only until the earlier conflicting writes are
//! *ordered*, which the API says through [`KvApi::write_ordered`]. On the
//! leader, [`crate::Node`] orders a write as soon as openraft's core has
//! it, so pipelined writes to one key are in flight together and the log
//! still applies them in request order. A follower forwards writes over
//! connections that keep no order, so there a write is ordered only once
//! answered (the default). Reads always wait for conflicting earlier
//! writes to be answered.
//!
//! Commands that need no API (PING, ECHO, COMMAND, AUTH, HELLO, QUIT) are
//! answered at once, still in order.
//!
//! # Limits (see [`ServerConfig`])
//!
//! - Frames: the decoder's [`Limits`]. A malformed or oversized frame gets
//!   its RESP error, the replies to earlier requests are still written, and
//!   then the connection is closed (Redis does the same: the stream cannot
//!   be resynchronised). Other connections are unaffected.
//! - Keys and values are checked against `key_bytes_max` and
//!   `value_bytes_max` before anything is proposed.
//! - Backpressure: at most `pending_replies_max` requests are in flight or
//!   unwritten per connection, and at most about `reply_buffer_bytes_max`
//!   reply bytes wait to be written; beyond either the connection stops
//!   reading until the client takes its replies.
//! - Connections: beyond `connections_max` a new connection is told
//!   `-ERR max number of clients reached` (Redis's text) and closed.
//! - Slow clients: a connection whose replies make no write progress, or
//!   whose half-received request makes no read progress, for
//!   `stall_timeout_ms` is closed. `idle_timeout_ms` (0: never, Redis's
//!   default) closes connections with nothing to do.
//! - SCAN cursors: a bounded server-wide table; see the `cursors` module
//!   docs. An unknown cursor is an error telling the client to restart.
//!
//! # Shutdown
//!
//! [`RespServer::serve`] stops accepting when its `shutdown` future
//! completes, tells every connection to read no more requests, lets them
//! finish and write the requests already read, and gives up on those still
//! running after `shutdown_grace_ms`.

mod access;
mod config;
mod connection;
mod cursors;
mod execute;
mod keyspace;
pub mod metrics;
mod plan;
mod replies;
mod shared;
pub mod table;
mod transaction;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ballast_raft::net::transport::{BoxConnection, BoxListener};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::KvApi;
use crate::error::Error;

pub use config::ServerConfig;
pub use metrics::Metrics;
pub use replies::api_error_reply;

use shared::Shared;

/// What refused connections are told, Redis's text.
const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// How long the accept loop pauses after an accept error (for example
/// out of file descriptors), so that it does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 50;

/// A RESP server over an API; see the module docs.
pub struct RespServer<A> {
    shared: Arc<Shared<A>>,
}

impl<A: KvApi> RespServer<A> {
    /// A server for `api`, or the configuration's mistake.
    pub fn new(api: Arc<A>, config: ServerConfig) -> Result<RespServer<A>, Error> {
        config.validate()?;
        Ok(RespServer {
            shared: Arc::new(Shared::new(api, config)),
        })
    }

    /// The server's counters (for the admin port).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Accepts and serves connections on `listener` (a
    /// `tokio::net::TcpListener`, or any transport's listener) until
    /// `shutdown` completes, then winds down as the module docs describe.
    /// Returns when every connection is closed.
    pub async fn serve(
        &self,
        listener: impl Into<BoxListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let listener: BoxListener = listener.into();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut next_id: u64 = 1;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(finished) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(error) = finished {
                        tracing::error!(%error, "a RESP connection task failed");
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        while connections.try_join_next().is_some() {}
                        if connections.len() >= self.shared.config.connections_max {
                            self.shared.metrics.connection_rejected();
                            refuse(stream);
                            continue;
                        }
                        let id = next_id;
                        next_id += 1;
                        // Replies are small and pipelined; Nagle would
                        // hold them back waiting for ACKs.
                        let _ = stream.set_nodelay(true);
                        let span = tracing::debug_span!("resp", id, %peer);
                        let shared = self.shared.clone();
                        let stop = stop_rx.clone();
                        connections.spawn(tracing::Instrument::instrument(
                            connection::run(shared, stream, id, stop),
                            span,
                        ));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "accepting a RESP connection failed");
                        tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                    }
                },
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let grace = tokio::time::sleep(Duration::from_millis(self.shared.config.shutdown_grace_ms));
        tokio::pin!(grace);
        loop {
            tokio::select! {
                () = &mut grace => {
                    tracing::warn!(
                        open = connections.len(),
                        "RESP connections still busy after the shutdown grace period; closing them"
                    );
                    connections.shutdown().await;
                    break;
                }
                finished = connections.join_next() => if finished.is_none() { break },
            }
        }
        Ok(())
    }
}

/// Tells a connection over the limit why, without waiting on it: a fresh
/// socket's send buffer always has room for one short line, and a client
/// that cannot take it loses nothing it asked for.
fn refuse(stream: BoxConnection) {
    let _ = stream.try_write(MAX_CLIENTS_REPLY);
}
