//! What a node takes from its surroundings: the file system, the clock,
//! the source of handshake nonces, the network, where the engine's
//! background work runs, and (for partition tests) cut links. Production
//! uses [`NodeEnv::production`]; tests and the simulation supply their own,
//! so the node's code names no concrete file system, clock, random source
//! or network. (The simulation implements these seams; production code
//! never imports it.)

use ballast_raft::net::links::Links;
use ballast_raft::net::{DynTransport, NonceSource, TokioTransport};
use ballast_storage::fs::{DynFs, StdFs};
use ballast_storage::{Background, Clock, SystemClock};
use std::sync::Arc;

/// A node's environment. See the module docs.
#[derive(Clone)]
pub struct NodeEnv {
    /// Every file the node opens (Raft log, engine, snapshots).
    pub fs: DynFs,
    /// Wall-clock time (expiry stamps, the engine's TTL checks).
    pub clock: Arc<dyn Clock>,
    /// Handshake nonces and fresh identities.
    pub nonces: Arc<dyn NonceSource>,
    /// How the node listens and connects (the Raft RPC server and
    /// clients).
    pub transport: DynTransport,
    /// Where the engine runs flushes, compactions and timed syncs: OS
    /// threads in production, tasks on the runtime under simulation.
    pub background: Background,
    /// Peer links a test has cut; `None` in production.
    pub links: Option<Links>,
}

impl std::fmt::Debug for NodeEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeEnv")
            .field("fs", &self.fs)
            .field("clock", &self.clock)
            .field("transport", &self.transport)
            .field("background", &self.background)
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
    /// std::fs, the system clock, the operating system's random numbers,
    /// TCP, background threads, no cut links.
    pub fn production() -> NodeEnv {
        NodeEnv {
            fs: Arc::new(StdFs),
            clock: Arc::new(SystemClock),
            nonces: Arc::new(OsNonces),
            transport: TokioTransport::shared(),
            background: Background::Thread,
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
