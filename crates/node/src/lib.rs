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
//! - [`glob::glob_match`] is Redis's glob dialect for `SCAN ... MATCH`.
//!
//! - [`server::RespServer`] serves those clients over TCP, on any
//!   [`KvApi`];
//! - [`admin::serve`] is the admin HTTP port (`/metrics`, `/status`,
//!   membership) on any [`AdminApi`].
//!
//! The node that implements [`KvApi`] over Raft comes with the network.
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
pub mod error;
pub mod glob;
pub mod resp;
pub mod server;

pub use api::{AdminApi, ApiError, Consistency, KvApi, NodeStatus, ScanPage, Value};
pub use command::Command;
pub use error::{Error, ProtocolError};
