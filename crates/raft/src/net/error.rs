//! Why a network operation failed ([`NetError`]), and the one place a
//! deadline is put on a network step (`with_deadline`, tokio time, so the
//! simulation controls it).

use super::message::WIRE_VERSION;
use crate::identity::IdentityRefusal;
use std::fmt;
use std::io;
use std::time::Duration;

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
    /// A frame was larger than `frame_bytes_max` (sent or received).
    #[error("frame of {len} bytes refused: frame_bytes_max is {max}")]
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
