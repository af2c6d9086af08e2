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

mod connection;
mod cursors;
mod execute;
pub mod metrics;
pub mod table;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{Consistency, KvApi};
use crate::error::Error;
use crate::resp::Limits;

pub use execute::api_error_reply;
pub use metrics::Metrics;

use cursors::Cursors;

/// What refused connections are told, Redis's text.
const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// How long the accept loop pauses after an accept error (for example
/// out of file descriptors), so that it does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 50;

/// Configuration of the RESP server. Names carry units.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Frame limits of the decoder.
    pub limits: Limits,
    /// When set, clients must AUTH (or HELLO 2 AUTH) with this password as
    /// the `default` user before any other command.
    pub password: Option<String>,
    /// Most open client connections (Redis's `maxclients` default).
    pub connections_max: usize,
    /// Most requests of one connection read but not yet answered on the
    /// wire.
    pub pending_replies_max: usize,
    /// Unwritten reply bytes of one connection above which it stops
    /// reading requests.
    pub reply_buffer_bytes_max: usize,
    /// Largest MGET reply, in value bytes; a larger one is refused with an
    /// error instead of being buffered.
    pub reply_bytes_max: usize,
    /// Close a connection with nothing pending after this long (0: never).
    pub idle_timeout_ms: u64,
    /// Close a connection whose replies or whose half-received request
    /// make no progress for this long.
    pub stall_timeout_ms: u64,
    /// Longest key accepted for writes (the engine's limit).
    pub key_bytes_max: usize,
    /// Longest value accepted for writes (the engine's limit).
    pub value_bytes_max: usize,
    /// Largest SCAN COUNT honoured; larger counts are cut to it.
    pub scan_count_max: usize,
    /// Most SCAN cursors kept, server-wide.
    pub scan_cursors_max: usize,
    /// Most bytes of resume keys kept for SCAN cursors, server-wide.
    pub scan_cursor_bytes_max: usize,
    /// Consistency of GET, MGET, EXISTS, TTL, SCAN and DBSIZE.
    pub read_consistency: Consistency,
    /// How long shutdown waits for connections to finish.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            password: None,
            connections_max: 10_000,
            pending_replies_max: 1024,
            reply_buffer_bytes_max: 4 * 1024 * 1024,
            reply_bytes_max: 64 * 1024 * 1024,
            idle_timeout_ms: 0,
            stall_timeout_ms: 30_000,
            key_bytes_max: 64 * 1024,
            value_bytes_max: 16 * 1024 * 1024,
            scan_count_max: 1000,
            scan_cursors_max: 10_000,
            scan_cursor_bytes_max: 16 * 1024 * 1024,
            read_consistency: Consistency::Linearizable,
            shutdown_grace_ms: 5_000,
        }
    }
}

impl ServerConfig {
    /// Checks that the configuration can work; the error names the field.
    pub fn validate(&self) -> Result<(), Error> {
        self.limits.validate()?;
        let at_least_one = [
            ("connections_max", self.connections_max as u64),
            ("pending_replies_max", self.pending_replies_max as u64),
            ("reply_buffer_bytes_max", self.reply_buffer_bytes_max as u64),
            ("reply_bytes_max", self.reply_bytes_max as u64),
            ("stall_timeout_ms", self.stall_timeout_ms),
            ("key_bytes_max", self.key_bytes_max as u64),
            ("value_bytes_max", self.value_bytes_max as u64),
            ("scan_count_max", self.scan_count_max as u64),
            ("scan_cursors_max", self.scan_cursors_max as u64),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return Err(Error::InvalidLimits(format!("{name} must be at least 1")));
            }
        }
        if self.scan_cursor_bytes_max < self.key_bytes_max {
            return Err(Error::InvalidLimits(
                "scan_cursor_bytes_max must be at least key_bytes_max".to_string(),
            ));
        }
        Ok(())
    }
}

/// What every connection shares.
pub(crate) struct Shared<A> {
    api: Arc<A>,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    cursors: Mutex<Cursors>,
    started: tokio::time::Instant,
}

impl<A> Shared<A> {
    fn cursors(&self) -> MutexGuard<'_, Cursors> {
        // The table is consistent after every statement; a panic elsewhere
        // while it was held cannot leave it half-updated.
        self.cursors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A RESP server over an API; see the module docs.
pub struct RespServer<A> {
    shared: Arc<Shared<A>>,
}

impl<A: KvApi> RespServer<A> {
    /// A server for `api`, or the configuration's mistake.
    pub fn new(api: Arc<A>, config: ServerConfig) -> Result<RespServer<A>, Error> {
        config.validate()?;
        Ok(RespServer {
            shared: Arc::new(Shared {
                api,
                cursors: Mutex::new(Cursors::new(
                    config.scan_cursors_max,
                    config.scan_cursor_bytes_max,
                )),
                config,
                metrics: Arc::new(Metrics::default()),
                started: tokio::time::Instant::now(),
            }),
        })
    }

    /// The server's counters (for the admin port).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Accepts and serves connections on `listener` until `shutdown`
    /// completes, then winds down as the module docs describe. Returns
    /// when every connection is closed.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
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
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(MAX_CLIENTS_REPLY);
}
