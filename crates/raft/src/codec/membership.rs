//! The membership codec: the body of a membership entry, and the last
//! part of the applied marker. Byte layout in `FORMAT-raftlog.md`.
//!
//! Limits: counts of configs, voters and nodes are bounded by the bytes
//! left (`ByteReader::count`).

use super::write::{put_bytes, put_len};
use crate::byte_reader::{malformed, ByteReader, DecodeError};
use crate::typ::{Membership, Node, NodeId};
use std::collections::{BTreeMap, BTreeSet};

/// Appends the encoding of a membership (the body of a membership entry).
pub fn encode_membership(dst: &mut Vec<u8>, m: &Membership) {
    let configs = m.get_joint_config();
    put_len(dst, configs.len());
    for config in configs {
        put_len(dst, config.len());
        for id in config {
            dst.extend_from_slice(&id.to_le_bytes());
        }
    }
    let nodes: Vec<(&NodeId, &Node)> = m.nodes().collect();
    put_len(dst, nodes.len());
    for (id, node) in nodes {
        dst.extend_from_slice(&id.to_le_bytes());
        put_bytes(dst, node.raft_addr.as_bytes());
        put_bytes(dst, node.client_addr.as_bytes());
    }
}

/// Decodes a membership encoded by [`encode_membership`] that makes up the
/// whole of `src`.
pub fn decode_membership_exact(src: &[u8]) -> Result<Membership, DecodeError> {
    let mut r = ByteReader::new(src);
    let m = decode_membership(&mut r)?;
    r.finish("membership")?;
    Ok(m)
}

/// Decodes a membership from the front of `r`.
pub(super) fn decode_membership(r: &mut ByteReader<'_>) -> Result<Membership, DecodeError> {
    let n_configs = r.count(4, "config count")?;
    let mut configs = Vec::with_capacity(n_configs);
    for _ in 0..n_configs {
        let n = r.count(8, "voter count")?;
        let mut set = BTreeSet::new();
        for _ in 0..n {
            set.insert(r.u64("voter id")?);
        }
        configs.push(set);
    }
    let n_nodes = r.count(16, "node count")?;
    let mut nodes = BTreeMap::new();
    for _ in 0..n_nodes {
        let id = r.u64("node id")?;
        let raft_addr = r.string("raft address")?;
        let client_addr = r.string("client address")?;
        nodes.insert(
            id,
            Node {
                raft_addr,
                client_addr,
            },
        );
    }
    Membership::new(configs, nodes).or_else(|e| malformed(format!("invalid membership: {e}")))
}
