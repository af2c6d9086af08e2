//! The Raft network: peers talk over TCP with length-prefixed frames whose
//! payload is bincode 2.x (serde). Byte layout and the conversation are in
//! `FORMAT-rpc.md` beside this crate.
//!
//! * [`frame`]: reading and writing one frame, refusing any frame over the
//!   configured `max_frame_bytes` before allocating for it.
//! * [`message`]: what the frames carry.
//! * [`auth`]: the handshake; with a shared secret both ends prove they
//!   know it (HMAC-SHA256 over both ends' nonces); the secret never crosses
//!   the wire.
//! * [`client`]: openraft's [`openraft::RaftNetworkFactory`] ([`Network`])
//!   and the [`ForwardClient`] a follower uses to send writes and
//!   linearizable reads to the leader.
//! * [`server`]: the listener that dispatches peers' requests to the local
//!   `Raft` and serves forwarded writes and reads.
//! * [`read`]: the reads a node serves from its engine, shared by local
//!   (stale) reads and forwarded ones.
//!
//! Time comes from `tokio::time` only, randomness (handshake nonces) from a
//! [`NonceSource`] the node supplies, so the simulation can own both.

pub mod auth;
pub mod client;
pub mod frame;
pub mod links;
pub mod message;
pub mod read;
pub mod server;
pub mod vote_gate;

pub use client::{ForwardClient, Network, PeerClient};
pub use message::{ForwardError, ReadAnswer, ReadRequest};
pub use server::{RpcServer, ServerHandle};
pub use vote_gate::VoteGate;

use crate::identity::{Identity, IdentityRefusal};
use crate::state_machine::StateMachine;
use crate::typ::TypeConfig;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// The Raft handle of a ballast node.
pub type BallastRaft = openraft::Raft<TypeConfig, StateMachine>;

/// Wire version carried by every frame (the byte after the length).
/// Version 2 added the identity fields of the handshake.
pub const WIRE_VERSION: u8 = 2;

/// The smallest `max_frame_bytes` accepted: room for a snapshot chunk
/// header and the handshake with margin.
pub const MAX_FRAME_BYTES_MIN: u32 = 4096;

/// The slowest transfer a Raft RPC is given time for, in bytes per second:
/// an AppendEntries carrying `n` bytes gets openraft's deadline plus
/// `n / TRANSFER_BYTES_PER_SEC_MIN` seconds, covering the send, the
/// follower's decode, append and (durable preset) fsync. Measured on the
/// 2-core test machine, a 15 MiB entry takes 0.1-0.4 s end to end; 8 MiB/s
/// leaves room for a loaded machine, and a node's value limit must fit
/// within its request timeout at this rate (the config checks that).
pub const TRANSFER_BYTES_PER_SEC_MIN: u64 = 8 << 20;

/// Where handshake nonces come from. Production uses the operating
/// system's generator; tests and the simulation use a seeded one.
pub trait NonceSource: Send + Sync + 'static {
    /// 32 bytes that the peer cannot predict.
    fn nonce(&self) -> [u8; 32];
}

/// A shared secret between peers. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// A secret from its bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Secret {
        Secret(Arc::from(bytes.as_ref()))
    }

    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// Settings of the Raft network, shared by clients and the server.
#[derive(Clone)]
pub struct NetConfig {
    /// The largest frame sent or accepted, in bytes (length prefix
    /// excluded). A larger frame is refused on both ends.
    pub max_frame_bytes: u32,
    /// Snapshot chunk size, in bytes; must leave room for the frame's
    /// header within `max_frame_bytes`.
    pub snapshot_chunk_bytes: usize,
    /// Deadline for connecting and authenticating.
    pub connect_timeout: Duration,
    /// Deadline for one forwarded write or read (Raft RPCs use openraft's
    /// per-call TTL, capped by this).
    pub call_timeout: Duration,
    /// A server closes a connection that sends nothing for this long.
    pub idle_timeout: Duration,
    /// The most connections the server serves at once; more are closed on
    /// accept.
    pub max_connections: usize,
    /// Idle connections kept per peer by the [`ForwardClient`].
    pub pooled_per_peer: usize,
    /// First wait before reconnecting to an unreachable peer; doubles up
    /// to `backoff_max`.
    pub backoff_initial: Duration,
    /// The longest wait between reconnect attempts.
    pub backoff_max: Duration,
    /// The shared secret, if peers must authenticate.
    pub secret: Option<Secret>,
    /// Nonces for the handshake.
    pub nonces: Arc<dyn NonceSource>,
    /// Links cut by a partition test (see [`links`]); `None` in production.
    pub links: Option<links::Links>,
    /// The slowest transfer an RPC's deadline allows for (see
    /// [`TRANSFER_BYTES_PER_SEC_MIN`]).
    pub transfer_bytes_per_sec_min: u64,
    /// This node's identity, checked against every peer's in the
    /// handshake; `None` (tools and tests of the network alone) skips the
    /// identity checks.
    pub identity: Option<Identity>,
}

impl fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("snapshot_chunk_bytes", &self.snapshot_chunk_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("secret", &self.secret)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl NetConfig {
    /// Defaults (16 MiB frames, 1 MiB snapshot chunks, 64 connections)
    /// with the given nonce source and no secret.
    pub fn new(nonces: Arc<dyn NonceSource>) -> NetConfig {
        NetConfig {
            max_frame_bytes: 16 << 20,
            snapshot_chunk_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_connections: 64,
            pooled_per_peer: 4,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            secret: None,
            nonces,
            links: None,
            transfer_bytes_per_sec_min: TRANSFER_BYTES_PER_SEC_MIN,
            identity: None,
        }
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |field: &'static str, why: String| Err(NetError::Config { field, why });
        if self.max_frame_bytes < MAX_FRAME_BYTES_MIN {
            return bad(
                "max_frame_bytes",
                format!(
                    "{} is below the minimum {MAX_FRAME_BYTES_MIN}",
                    self.max_frame_bytes
                ),
            );
        }
        // A chunk frame holds the chunk plus a small header (tag, offset,
        // length prefix); 1 KiB of margin covers it.
        if self.snapshot_chunk_bytes == 0
            || self.snapshot_chunk_bytes as u64 + 1024 > u64::from(self.max_frame_bytes)
        {
            return bad(
                "snapshot_chunk_bytes",
                format!(
                    "{} must be above 0 and at least 1 KiB below max_frame_bytes ({})",
                    self.snapshot_chunk_bytes, self.max_frame_bytes
                ),
            );
        }
        if self.transfer_bytes_per_sec_min == 0 {
            return bad("transfer_bytes_per_sec_min", "must be above 0".into());
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1".into());
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return bad(
                "backoff_initial",
                "must be above 0 and at most backoff_max".into(),
            );
        }
        Ok(())
    }
}

impl NetConfig {
    /// `base` plus the time `bytes` take at `transfer_bytes_per_sec_min`:
    /// the deadline of an RPC that carries them.
    pub fn deadline_for(&self, base: Duration, bytes: usize) -> Duration {
        let micros = (bytes as u64).saturating_mul(1_000_000) / self.transfer_bytes_per_sec_min;
        base.saturating_add(Duration::from_micros(micros))
    }
}

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Connecting, reading or writing failed; the connection is dropped and
    /// the next call reconnects.
    #[error("I/O error talking to {peer}: {source}")]
    Io {
        /// The peer's address.
        peer: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A frame was larger than `max_frame_bytes` (sent or received).
    #[error("frame of {len} bytes refused: max_frame_bytes is {max}")]
    FrameTooLarge {
        /// The frame's length.
        len: u64,
        /// The configured maximum.
        max: u32,
    },
    /// A frame did not decode: a bug, a version mismatch or not a peer.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The peer speaks another wire version.
    #[error("wire version {found} not supported (this build speaks {WIRE_VERSION}): run the same ballast version on every node")]
    Version {
        /// The version found.
        found: u8,
    },
    /// The handshake failed (wrong or missing secret).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The call did not finish before its deadline.
    #[error("{what} timed out after {ms} ms")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// The deadline.
        ms: u64,
    },
    /// The peer answered something this request does not expect.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A setting is invalid.
    #[error("network setting {field}: {why}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// This node refused the peer's identity (another cluster, no cluster,
    /// a replaced data directory); the text says what to do.
    #[error("peer refused: {0}")]
    Identity(IdentityRefusal),
    /// The peer refused this node's identity; the text says why and what
    /// to do.
    #[error("{0}")]
    IdentityRefused(String),
    /// The identity file could not be updated (adopting a cluster id or
    /// remembering a peer); the connection is refused. Check the disk.
    #[error("cannot update this node's identity file: {0}")]
    IdentityStore(String),
}

impl NetError {
    pub(crate) fn io(peer: impl fmt::Display, source: io::Error) -> NetError {
        NetError::Io {
            peer: peer.to_string(),
            source,
        }
    }
}

/// Runs `fut` with a deadline (tokio time, so the simulation controls it).
pub(crate) async fn with_deadline<T>(
    what: &'static str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(NetError::Timeout {
            what,
            ms: limit.as_millis() as u64,
        }),
    }
}
