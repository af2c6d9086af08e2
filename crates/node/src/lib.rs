//! ballast's node: the client-facing side of a ballast server.
//!
//! Clients speak RESP2 so that every Redis client (redis-cli,
//! redis-benchmark, the `redis` crate, ...) works unchanged:
//!
//! - [`resp::Decoder`] turns bytes from a client into requests (arrays of
//!   bulk strings, or inline commands typed by a person), refusing
//!   oversized or malformed input before it is buffered;
//! - [`resp::Reply`] and [`resp::encode`] write replies;
//! - [`Command`] is a typed request, parsed with Redis's own error texts;
//! - [`glob::glob_match`] is Redis's glob dialect for `SCAN ... MATCH`;
//! - [`server::RespServer`] serves those clients over TCP, on any
//!   [`KvApi`];
//! - [`admin::serve`] is the admin HTTP port (`/metrics`, `/status`,
//!   membership) on any [`AdminApi`].
//!
//! - [`Node`] is a replicated node: the engine as openraft's state machine,
//!   peers over TCP; it implements [`KvApi`] and [`AdminApi`], so the RESP
//!   server and the admin port serve it (the `ballast node` command wires
//!   the three together).
//!
//! ```
//! use ballast_node::{resp::{Decoder, Limits}, Command};
//! use bytes::BytesMut;
//!
//! let mut decoder = Decoder::new(Limits::default()).unwrap();
//! let mut buffer = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n"[..]);
//! let args = decoder.decode(&mut buffer).unwrap().unwrap();
//! let command = Command::parse(&args).unwrap();
//! assert_eq!(command, Command::Get { key: "hello".into() });
//! ```
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod command;
pub mod config;
pub mod env;
pub mod error;
pub mod glob;
pub mod node;
pub mod rejoin;
pub mod resp;
pub mod server;

pub use api::{AdminApi, ApiError, Consistency, KvApi, NodeStatus, ScanPage, Value};
pub use command::Command;
pub use config::NodeConfig;
pub use env::NodeEnv;
pub use error::{Error, ProtocolError};
pub use node::{Node, OpenState};
