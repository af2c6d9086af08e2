//! What frames carry. After the handshake ([`super::auth`]) a connection is
//! a sequence of request/reply pairs: the client sends one [`RpcRequest`],
//! the server answers with one [`RpcReply`], in order. See `FORMAT-rpc.md`.

use crate::identity::{Id16, PeerIdentity};
use crate::typ::{NodeId, Request, Response, SnapshotMeta, TypeConfig, Vote};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

/// Wire version carried by every frame (the byte after the length).
/// Version 2 added the identity fields of the handshake.
pub const WIRE_VERSION: u8 = 2;

/// Handshake, client to server: the client's nonce and identity.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    /// Fresh random bytes from the client.
    pub client_nonce: [u8; 32],
    /// Who the client is (`None`: a tool without a node identity; no
    /// identity check then).
    pub identity: Option<PeerIdentity>,
}

/// Handshake, server to client: the server's nonce and, when it has a
/// secret, its proof of knowing it; its identity, and the incarnation it
/// knows for the client's node id.
#[derive(Debug, Serialize, Deserialize)]
pub struct Challenge {
    /// Fresh random bytes from the server.
    pub server_nonce: [u8; 32],
    /// HMAC-SHA256 proof (see `FORMAT-rpc.md`), `None` without a secret.
    pub server_proof: Option<[u8; 32]>,
    /// Who the server is.
    pub identity: Option<PeerIdentity>,
    /// The incarnation the server saw first for the client's node id, if
    /// it saw one: a starting node with an empty data directory learns
    /// from it that it was wiped.
    pub known_incarnation: Option<Id16>,
}

/// Handshake, client to server: the client's proof.
#[derive(Debug, Serialize, Deserialize)]
pub struct Proof {
    /// HMAC-SHA256 proof, `None` without a secret.
    pub client_proof: Option<[u8; 32]>,
    /// Why the client refuses the server's identity, if it does; the
    /// client hangs up after sending it, and the server logs it.
    pub identity_refusal: Option<String>,
}

/// Handshake, server to client: the verdict.
#[derive(Debug, Serialize, Deserialize)]
pub enum Verdict {
    /// Authenticated: requests may follow.
    Welcome,
    /// Refused (authentication); the server closes the connection.
    Refused(String),
    /// Refused: the client's identity does not fit this node's cluster
    /// (another cluster, no cluster, a replaced data directory).
    RefusedIdentity(String),
}

/// A read a follower forwards to the leader (or a node serves locally).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadRequest {
    /// The live values of these keys.
    GetMany(Vec<Vec<u8>>),
    /// Up to `limit` live keys from `start` (inclusive).
    Scan {
        /// First key.
        start: Vec<u8>,
        /// Most keys returned.
        limit: u32,
    },
    /// The number of live keys.
    Count,
}

/// The answer to a [`ReadRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadAnswer {
    /// One entry per requested key, `None` if absent: the value and its
    /// expiry (ms since the Unix epoch), if it has one.
    Values(Vec<Option<(Vec<u8>, Option<u64>)>>),
    /// Keys in order, and where the next page starts.
    Keys {
        /// The keys.
        keys: Vec<Vec<u8>>,
        /// The next page's first key, `None` at the end.
        next: Option<Vec<u8>>,
    },
    /// A count of live keys.
    Count(u64),
}

/// Why a forwarded write or read was not served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The receiver is not the leader; `leader` is who it thinks is.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader the receiver knows of.
        leader: Option<NodeId>,
    },
    /// The request is not acceptable; nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// The receiver could not serve it (storage, replication, shutdown)
    /// and nothing was proposed: a retry cannot apply it twice.
    #[error("{0}")]
    Unavailable(String),
    /// The write was handed to Raft and its answer was lost (Raft dropped
    /// it, the entry was discarded after it was appended, the proposer
    /// stopped): it may or may not be applied. Never for reads.
    #[error("{0}")]
    Unknown(String),
}

/// A request on an authenticated connection.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    /// Raft AppendEntries.
    Append(AppendEntriesRequest<TypeConfig>),
    /// Raft RequestVote.
    Vote(VoteRequest<TypeConfig>),
    /// Raft Pre-Vote.
    PreVote(VoteRequest<TypeConfig>),
    /// Raft TransferLeader.
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// Starts a snapshot stream of `len` bytes; chunks follow.
    SnapshotBegin {
        /// The leader's vote, for `install_full_snapshot`.
        vote: Vote,
        /// The snapshot's metadata.
        meta: SnapshotMeta,
        /// The stream's length in bytes.
        len: u64,
    },
    /// The next chunk of the stream begun on this connection.
    SnapshotChunk {
        /// Where the chunk starts in the stream.
        offset: u64,
        /// The bytes.
        #[serde(with = "serde_bytes_vec")]
        data: Vec<u8>,
    },
    /// Ends the stream: the receiver verifies and installs it.
    SnapshotEnd,
    /// A write forwarded by a follower: the leader proposes it.
    Write(Request),
    /// A linearizable read forwarded by a follower.
    Read(ReadRequest),
    /// Asks whether the node is waiting, after an unclean restart, for a
    /// leader to catch it up (and so neither votes nor stands).
    RejoinStatus,
}

/// The reply to an [`RpcRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcReply {
    /// To `Append`.
    Append(AppendEntriesResponse<TypeConfig>),
    /// To `Vote` and `PreVote`.
    Vote(VoteResponse<TypeConfig>),
    /// To `TransferLeader`.
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    /// To `SnapshotBegin` and `SnapshotChunk`: received, send more.
    SnapshotAck,
    /// To `SnapshotEnd`: the install's outcome.
    Snapshot(SnapshotResponse<TypeConfig>),
    /// To `Write`.
    Write(Result<Response, ForwardError>),
    /// To `Read`.
    Read(Result<ReadAnswer, ForwardError>),
    /// The server could not serve a Raft request (for example its Raft
    /// stopped, or a snapshot stream was refused); the text says why.
    Failed(String),
    /// To `RejoinStatus`.
    RejoinStatus {
        /// True while the node waits to be caught up (its vote gate is
        /// closed).
        waiting: bool,
        /// Its last log id.
        last_log: Option<crate::typ::LogId>,
    },
}

/// Byte vectors as one length-prefixed run (bincode's `serialize_bytes`)
/// rather than a sequence of integers: the same bytes on the wire for a
/// `Vec<u8>` in bincode, but explicit and cheap to decode.
mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame;
    use crate::state_machine::StoredMembershipOf;
    use crate::typ::{Entry, EntryPayload, LeaderId, LogId, Membership, Node, Proposal};
    use std::collections::{BTreeMap, BTreeSet};

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(LeaderId { term, node_id: 1 }, index)
    }

    fn round_trip(req: &RpcRequest) -> RpcRequest {
        let bytes = frame::encode(req, 1 << 20).expect("encode");
        frame::decode(&bytes[frame::LEN_BYTES..]).expect("decode")
    }

    #[test]
    fn raft_messages_survive_bincode() {
        let nodes = BTreeMap::from([
            (1, Node::new("127.0.0.1:7001", "127.0.0.1:6001")),
            (2, Node::new("127.0.0.1:7002", "127.0.0.1:6002")),
        ]);
        let m = Membership::new(vec![BTreeSet::from([1, 2])], nodes).expect("valid");
        let entries = vec![
            Entry {
                log_id: log_id(2, 5),
                payload: EntryPayload::Normal(Proposal::new(
                    99,
                    Request::Put {
                        key: b"k".to_vec(),
                        value: vec![0, 255, 7],
                        expire_at_ms: Some(1234),
                    },
                )),
            },
            Entry {
                log_id: log_id(2, 6),
                payload: EntryPayload::Membership(m.clone()),
            },
        ];
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(log_id(1, 4)),
            entries: entries.clone(),
            leader_commit: Some(log_id(1, 4)),
        };
        match round_trip(&RpcRequest::Append(append)) {
            RpcRequest::Append(a) => {
                assert_eq!(a.entries, entries);
                assert_eq!(a.prev_log_id, Some(log_id(1, 4)));
                assert_eq!(a.vote, Vote::new_committed(2, 1));
            }
            other => panic!("wrong variant: {other:?}"),
        }
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(2, 6)),
            last_membership: StoredMembershipOf::new(Some(log_id(2, 6)), m),
        };
        match round_trip(&RpcRequest::SnapshotBegin {
            vote: Vote::new(3, 2),
            meta: meta.clone(),
            len: 77,
        }) {
            RpcRequest::SnapshotBegin {
                vote,
                meta: back,
                len,
            } => {
                assert_eq!((vote, len), (Vote::new(3, 2), 77));
                assert_eq!(back, meta);
            }
            other => panic!("wrong variant: {other:?}"),
        }
        match round_trip(&RpcRequest::SnapshotChunk {
            offset: 5,
            data: vec![1, 2, 3],
        }) {
            RpcRequest::SnapshotChunk { offset, data } => {
                assert_eq!((offset, data), (5, vec![1, 2, 3]))
            }
            other => panic!("wrong variant: {other:?}"),
        }
    }
}
