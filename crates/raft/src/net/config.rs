//! The settings of the Raft network ([`NetConfig`]), shared by clients and
//! the server, and the shared secret peers prove they know ([`Secret`]).
//!
//! Limits: frames are at least [`FRAME_BYTES_MAX_FLOOR`] bytes (`frame_bytes_max`); a
//! snapshot chunk leaves 1 KiB of its frame for the header; an RPC's
//! deadline allows for [`TRANSFER_BYTES_PER_SEC_MIN`]; the server serves
//! at most `connections_max` connections at once.

use super::error::NetError;
use super::links;
use super::transport::{DynTransport, TokioTransport};
use crate::identity::Identity;
use crate::nonce::NonceSource;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The smallest `frame_bytes_max` accepted: room for a snapshot chunk
/// header and the handshake with margin.
pub const FRAME_BYTES_MAX_FLOOR: u32 = 4096;

/// The slowest transfer a Raft RPC is given time for, in bytes per second:
/// an AppendEntries carrying `n` bytes gets openraft's deadline plus
/// `n / TRANSFER_BYTES_PER_SEC_MIN` seconds, covering the send, the
/// follower's decode, append and (durable preset) fsync. Measured on the
/// 2-core test machine, a 15 MiB entry takes 0.1-0.4 s end to end; 8 MiB/s
/// leaves room for a loaded machine, and a node's value limit must fit
/// within its request timeout at this rate (the config checks that).
pub const TRANSFER_BYTES_PER_SEC_MIN: u64 = 8 << 20;

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
    pub frame_bytes_max: u32,
    /// Snapshot chunk size, in bytes; must leave room for the frame's
    /// header within `frame_bytes_max`.
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
    pub connections_max: usize,
    /// Idle connections kept per peer by the [`super::ForwardClient`].
    pub pooled_per_peer_max: usize,
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
    /// How to listen and connect ([`super::transport`]): TCP in
    /// production.
    pub transport: DynTransport,
}

impl fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("frame_bytes_max", &self.frame_bytes_max)
            .field("snapshot_chunk_bytes", &self.snapshot_chunk_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("connections_max", &self.connections_max)
            .field("secret", &self.secret)
            .field("identity", &self.identity)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl NetConfig {
    /// Defaults (16 MiB frames, 1 MiB snapshot chunks, 64 connections)
    /// with the given nonce source and no secret.
    pub fn new(nonces: Arc<dyn NonceSource>) -> NetConfig {
        NetConfig {
            frame_bytes_max: 16 << 20,
            snapshot_chunk_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            connections_max: 64,
            pooled_per_peer_max: 4,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            secret: None,
            nonces,
            links: None,
            transfer_bytes_per_sec_min: TRANSFER_BYTES_PER_SEC_MIN,
            identity: None,
            transport: TokioTransport::shared(),
        }
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |field: &'static str, why: String| Err(NetError::Config { field, why });
        if self.frame_bytes_max < FRAME_BYTES_MAX_FLOOR {
            return bad(
                "frame_bytes_max",
                format!(
                    "{} is below the minimum {FRAME_BYTES_MAX_FLOOR}",
                    self.frame_bytes_max
                ),
            );
        }
        // A chunk frame holds the chunk plus a small header (tag, offset,
        // length prefix); 1 KiB of margin covers it.
        if self.snapshot_chunk_bytes == 0
            || self.snapshot_chunk_bytes as u64 + 1024 > u64::from(self.frame_bytes_max)
        {
            return bad(
                "snapshot_chunk_bytes",
                format!(
                    "{} must be above 0 and at least 1 KiB below frame_bytes_max ({})",
                    self.snapshot_chunk_bytes, self.frame_bytes_max
                ),
            );
        }
        if self.transfer_bytes_per_sec_min == 0 {
            return bad("transfer_bytes_per_sec_min", "must be above 0".into());
        }
        if self.connections_max == 0 {
            return bad("connections_max", "must be at least 1".into());
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
