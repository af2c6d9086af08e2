//! What a node takes from its surroundings: the file system, the source of
//! handshake nonces, and (for partition tests) cut links. Production uses
//! [`NodeEnv::production`]; tests and the simulation supply their own, so
//! the node's code names no concrete file system or random source.

use ballast_raft::net::links::Links;
use ballast_raft::net::NonceSource;
use ballast_storage::fs::{DynFs, StdFs};
use std::sync::Arc;

/// A node's environment. See the module docs.
#[derive(Clone)]
pub struct NodeEnv {
    /// Every file the node opens (Raft log, engine, snapshots).
    pub fs: DynFs,
    /// Handshake nonces.
    pub nonces: Arc<dyn NonceSource>,
    /// Peer links a test has cut; `None` in production.
    pub links: Option<Links>,
}

impl std::fmt::Debug for NodeEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeEnv")
            .field("fs", &self.fs)
            .field("links", &self.links)
            .finish_non_exhaustive()
    }
}

/// Handshake nonces from the operating system's generator.
struct OsNonces;

impl NonceSource for OsNonces {
    fn nonce(&self) -> [u8; 32] {
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        b
    }
}

impl NodeEnv {
    /// std::fs, the operating system's random numbers, no cut links.
    pub fn production() -> NodeEnv {
        NodeEnv {
            fs: Arc::new(StdFs),
            nonces: Arc::new(OsNonces),
            links: None,
        }
    }

    /// Production, but on the file system `fs` (for example a
    /// [`ballast_storage::fs::VolatileFs`]).
    pub fn with_fs(fs: DynFs) -> NodeEnv {
        NodeEnv {
            fs,
            ..NodeEnv::production()
        }
    }
}
