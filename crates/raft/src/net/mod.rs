//! The Raft network: peers talk over TCP (through the [`transport`] seam) with length-prefixed frames whose
//! payload is bincode 2.x (serde). Byte layout and the conversation are in
//! `FORMAT-rpc.md` beside this crate.
//!
//! * [`frame`]: reading and writing one frame, refusing any frame over the
//!   configured `frame_bytes_max` before allocating for it.
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
//! * [`config`]: the network's settings and limits; [`error`]: why an
//!   operation failed, and the deadline every step runs under.
//! * [`transport`]: the network seam (listen, connect); TCP through tokio
//!   in production, the simulated network under simulation.
//! * [`links`] and [`vote_gate`]: the partition tests' cut links, and the
//!   gate that keeps a node from voting while it must not.
//!
//! Time comes from `tokio::time` only, randomness (handshake nonces) from a
//! [`NonceSource`] the node supplies, so the simulation can own both.

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod frame;
pub mod links;
pub mod message;
pub mod read;
pub mod server;
pub mod transport;
pub mod vote_gate;

pub use crate::nonce::NonceSource;
pub use crate::state_machine::BallastRaft;
pub use client::{ForwardClient, Network, PeerClient};
pub use config::{NetConfig, Secret, FRAME_BYTES_MAX_FLOOR, TRANSFER_BYTES_PER_SEC_MIN};
pub use error::NetError;
pub use message::{ForwardError, ReadAnswer, ReadRequest, WIRE_VERSION};
pub use server::{RpcServer, ServerHandle};
pub use transport::{DynTransport, TokioTransport, Transport};
pub use vote_gate::VoteGate;
