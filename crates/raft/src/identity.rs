//! Who a node is: the cluster it belongs to and the incarnation of its data
//! directory, kept in the file `identity` in the data directory, and checked
//! in every peer handshake ([`crate::net::auth`]).
//!
//! * The **cluster id** (16 random bytes) is chosen once, by the node that
//!   bootstraps the cluster, and written durably before `Raft::initialize`.
//!   Every other node adopts it from a peer's handshake, before it accepts
//!   any request on that connection: the founding members when the
//!   bootstrapper first contacts them, a node added later (as a learner)
//!   when the leader first contacts it.
//! * The **incarnation** (16 random bytes) is chosen when the file is first
//!   created, so a wiped data directory comes back with a new one.
//! * **Peers**: the incarnation each peer presented the first time it was
//!   seen. A member that comes back with another incarnation lost its data
//!   directory: it is refused, because an empty log that votes can lose a
//!   committed entry (and two of them can form a new majority). Records of
//!   nodes that leave the membership are dropped, so the same node id can
//!   be added back (as a learner: the replacement procedure).
//!
//! File layout (text, one item a line, replaced atomically: temporary file
//! written and fsynced, renamed, directory fsynced):
//!
//! ```text
//! ballast identity 1
//! incarnation <32 hex digits>
//! cluster <32 hex digits | none>
//! peer <node id> <32 hex digits>      (zero or more, ascending node id)
//! crc32 <8 hex digits>                (CRC-32 of every byte before this line)
//! ```
//!
//! Randomness comes from the node's [`NonceSource`] (seeded in the
//! simulation); files go through the `ballast_storage::fs` seam.

use crate::error::{Error, Result};
use crate::nonce::NonceSource;
use crate::planted::{NodeBug, Planted};
use crate::typ::NodeId;
use ballast_storage::fs::{self, FileSystem, OpenMode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The identity file's name in the data directory.
pub const IDENTITY_FILE: &str = "identity";
const IDENTITY_TMP_FILE: &str = "identity.tmp";
/// The identity file's format version.
pub const IDENTITY_VERSION: u32 = 1;
/// Peers remembered, at most: far above any cluster's size; a bound keeps a
/// stream of made-up node ids from growing the file.
pub const PEERS_MAX: usize = 1024;

/// 16 random bytes naming something: a cluster or an incarnation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Id16(pub [u8; 16]);

impl Id16 {
    fn random(nonces: &dyn NonceSource) -> Id16 {
        let n = nonces.nonce();
        let mut b = [0u8; 16];
        b.copy_from_slice(&n[..16]);
        Id16(b)
    }

    fn parse(s: &str) -> Option<Id16> {
        if s.len() != 32 {
            return None;
        }
        let mut b = [0u8; 16];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Id16(b))
    }
}

impl fmt::Display for Id16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Id16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What one end of a handshake says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerIdentity {
    /// Its node id.
    pub node_id: NodeId,
    /// Its cluster, `None` before it bootstrapped or joined one.
    pub cluster_id: Option<Id16>,
    /// Its data directory's incarnation.
    pub incarnation: Id16,
}

/// Why a peer was refused in the handshake. Both ends log it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityRefusal {
    /// The peer belongs to another cluster: check its address, or its data
    /// directory (it may have been bootstrapped on its own).
    #[error("node {peer} belongs to cluster {theirs}, this node to cluster {ours}: check the peer's address and data directory")]
    OtherCluster {
        /// The peer's node id.
        peer: NodeId,
        /// Its cluster id.
        theirs: Id16,
        /// Ours.
        ours: Id16,
    },
    /// The peer has no cluster identity (an empty or wiped data directory)
    /// and talks to a member of an initialized cluster.
    #[error("node {peer} has no cluster identity (a new or wiped data directory) and cluster {cluster} does not know it: {REPLACE_HOWTO}")]
    NoIdentity {
        /// The peer's node id.
        peer: NodeId,
        /// The cluster it talks to.
        cluster: Id16,
    },
    /// The peer presents another incarnation than the one this node saw
    /// first: its data directory was wiped or replaced.
    #[error("node {peer} came back with another data directory (incarnation {presented}, known as {known}): {REPLACE_HOWTO}")]
    Replaced {
        /// The peer's node id.
        peer: NodeId,
        /// The incarnation this node knows.
        known: Id16,
        /// The one it presented.
        presented: Id16,
    },
}

/// How to bring a node with a lost data directory back.
pub const REPLACE_HOWTO: &str = "a node that lost its data directory must be replaced: remove it from the cluster (POST /membership/remove on the leader's admin port), start it with an empty data directory and no initial_members, add it back as a learner (POST /membership/learner), then promote it (POST /membership/promote)";

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    incarnation: Id16,
    cluster_id: Option<Id16>,
    peers: BTreeMap<NodeId, Id16>,
}

impl State {
    fn encode(&self) -> Vec<u8> {
        let mut s = format!(
            "ballast identity {IDENTITY_VERSION}\nincarnation {}\ncluster {}\n",
            self.incarnation,
            self.cluster_id
                .map_or_else(|| "none".to_string(), |c| c.to_string())
        );
        for (id, inc) in &self.peers {
            s.push_str(&format!("peer {id} {inc}\n"));
        }
        let crc = crc32fast::hash(s.as_bytes());
        s.push_str(&format!("crc32 {crc:08x}\n"));
        s.into_bytes()
    }

    fn decode(path: &Path, bytes: &[u8]) -> Result<State> {
        let bad = |why: &str| Error::corrupt(path, format!("identity file: {why}"));
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
        let body_end = text.rfind("crc32 ").ok_or_else(|| bad("no crc32 line"))?;
        let (body, crc_line) = text.split_at(body_end);
        let crc = crc_line
            .trim()
            .strip_prefix("crc32 ")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad("bad crc32 line"))?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return Err(bad("checksum mismatch"));
        }
        let mut lines = body.lines();
        let version = lines
            .next()
            .and_then(|l| l.strip_prefix("ballast identity "))
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| bad("bad first line"))?;
        if version != IDENTITY_VERSION {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                found: version,
                supported: IDENTITY_VERSION,
            });
        }
        let incarnation = lines
            .next()
            .and_then(|l| l.strip_prefix("incarnation "))
            .and_then(Id16::parse)
            .ok_or_else(|| bad("bad incarnation line"))?;
        let cluster_id = match lines.next().and_then(|l| l.strip_prefix("cluster ")) {
            Some("none") => None,
            Some(c) => Some(Id16::parse(c).ok_or_else(|| bad("bad cluster id"))?),
            None => return Err(bad("no cluster line")),
        };
        let mut peers = BTreeMap::new();
        for line in lines {
            let mut parts = line.strip_prefix("peer ").unwrap_or_default().split(' ');
            let (Some(id), Some(inc), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad("bad peer line"));
            };
            let id: NodeId = id.parse().map_err(|_| bad("bad peer id"))?;
            peers.insert(
                id,
                Id16::parse(inc).ok_or_else(|| bad("bad peer incarnation"))?,
            );
        }
        Ok(State {
            incarnation,
            cluster_id,
            peers,
        })
    }
}

/// A node's identity, shared by its handshakes (clients and server).
/// Cloning gives another handle to the same identity.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<SharedIdentity>,
}

/// What every handle of one identity shares: where its file is, and
/// its content under the lock that orders its replacements.
struct SharedIdentity {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    node_id: NodeId,
    planted: Planted,
    /// Held across the file replacement so that two handshakes never
    /// write the file at once, and memory never runs ahead of the disk.
    state: Mutex<State>,
    existed: bool,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("Identity")
            .field("node_id", &self.inner.node_id)
            .field("cluster_id", &s.cluster_id)
            .field("incarnation", &s.incarnation)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the identity in `dir`, or creates one (a fresh incarnation,
    /// no cluster) durably if there is none.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        node_id: NodeId,
        nonces: &dyn NonceSource,
        planted: Planted,
    ) -> Result<Identity> {
        let path = dir.join(IDENTITY_FILE);
        let (state, existed) = match fs::read_file(&*fs, &path) {
            Ok(bytes) => (State::decode(&path, &bytes)?, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let state = State {
                    incarnation: Id16::random(nonces),
                    cluster_id: None,
                    peers: BTreeMap::new(),
                };
                store(&*fs, dir, &state)?;
                (state, false)
            }
            Err(source) => return Err(Error::Io { path, source }),
        };
        Ok(Identity {
            inner: Arc::new(SharedIdentity {
                fs,
                dir: dir.to_path_buf(),
                node_id,
                planted,
                state: Mutex::new(state),
                existed,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as the last
        // successful write made it (memory changes only after the file).
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the identity file existed when opened (false: this data
    /// directory is new, or was wiped).
    pub fn existed(&self) -> bool {
        self.inner.existed
    }

    /// The node's planted bugs (tests and simulation only).
    pub fn planted(&self) -> Planted {
        self.inner.planted
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The cluster this node belongs to, if it bootstrapped or joined one.
    pub fn cluster_id(&self) -> Option<Id16> {
        self.lock().cluster_id
    }

    /// This data directory's incarnation.
    pub fn incarnation(&self) -> Id16 {
        self.lock().incarnation
    }

    /// What this node says about itself in a handshake.
    pub fn me(&self) -> PeerIdentity {
        let s = self.lock();
        PeerIdentity {
            node_id: self.inner.node_id,
            cluster_id: s.cluster_id,
            incarnation: s.incarnation,
        }
    }

    /// The incarnation this node knows for `peer`, if any.
    pub fn known(&self, peer: NodeId) -> Option<Id16> {
        self.lock().peers.get(&peer).copied()
    }

    /// Chooses a new cluster id and writes it durably (the bootstrapping
    /// node, before `Raft::initialize`). Keeps an id already set.
    pub fn found_cluster(&self, nonces: &dyn NonceSource) -> Result<Id16> {
        let mut s = self.lock();
        if let Some(c) = s.cluster_id {
            return Ok(c);
        }
        let mut next = s.clone();
        let id = Id16::random(nonces);
        next.cluster_id = Some(id);
        store(&*self.inner.fs, &self.inner.dir, &next)?;
        *s = next;
        Ok(id)
    }

    /// Why `peer` would be refused, without changing anything.
    pub fn refusal(&self, peer: &PeerIdentity, peer_is_client: bool) -> Option<IdentityRefusal> {
        if self.inner.planted.has(NodeBug::WipedNodeRebootstraps) {
            return None;
        }
        refusal(&self.lock(), peer, peer_is_client)
    }

    /// Checks `peer` (the other end of a handshake): same cluster, and the
    /// incarnation this node saw first. As the server (`peer_is_client`),
    /// a node without a cluster adopts the client's (durably, before
    /// returning). A peer seen for the first time is remembered (durably)
    /// once this node is in a cluster. Returns why the peer is refused, if
    /// it is.
    pub fn check_peer(
        &self,
        peer: &PeerIdentity,
        peer_is_client: bool,
    ) -> Result<Option<IdentityRefusal>> {
        let adopt = peer_is_client;
        if self.inner.planted.has(NodeBug::WipedNodeRebootstraps) {
            return Ok(None);
        }
        let mut s = self.lock();
        let mut next = s.clone();
        if let Some(refusal) = refusal(&next, peer, peer_is_client) {
            return Ok(Some(refusal));
        }
        match (next.cluster_id, peer.cluster_id) {
            // Neither belongs to a cluster yet: founding members before the
            // bootstrap (or a probe). Nothing to remember.
            (None, None) => return Ok(None),
            (None, Some(theirs)) if adopt => next.cluster_id = Some(theirs),
            _ => {}
        }
        if next.cluster_id.is_some()
            && !next.peers.contains_key(&peer.node_id)
            && next.peers.len() < PEERS_MAX
        {
            next.peers.insert(peer.node_id, peer.incarnation);
        }
        if next != *s {
            store(&*self.inner.fs, &self.inner.dir, &next)?;
            if s.cluster_id != next.cluster_id {
                tracing::info!(
                    cluster_id = %next.cluster_id.map(|c| c.to_string()).unwrap_or_default(),
                    from = peer.node_id,
                    "joined cluster: adopted its id from the peer's handshake"
                );
            }
            *s = next;
        }
        Ok(None)
    }

    /// Forgets the peers not in `members` (the current membership), so a
    /// node that was removed can be added back with a new data directory.
    pub fn retain_peers(&self, members: impl Fn(NodeId) -> bool) -> Result<()> {
        let mut s = self.lock();
        // Called at every metrics change: most find nothing to forget.
        if s.peers.keys().all(|id| members(*id)) {
            return Ok(());
        }
        let mut next = s.clone();
        next.peers.retain(|id, _| members(*id));
        if next != *s {
            store(&*self.inner.fs, &self.inner.dir, &next)?;
            *s = next;
        }
        Ok(())
    }
}

/// Why `peer` is refused by a node in `state`, if it is. `peer_is_client`:
/// the peer opened the connection. A node without a cluster adopts one only
/// as the server of a handshake (a leader reaching a new member), so as a
/// client it has nothing to offer a cluster member and is refused; as a
/// server it is refused only if it is known under another incarnation.
fn refusal(state: &State, peer: &PeerIdentity, peer_is_client: bool) -> Option<IdentityRefusal> {
    match (state.cluster_id, peer.cluster_id) {
        (Some(ours), Some(theirs)) if ours != theirs => {
            return Some(IdentityRefusal::OtherCluster {
                peer: peer.node_id,
                theirs,
                ours,
            })
        }
        (Some(cluster), None) if peer_is_client => {
            return Some(IdentityRefusal::NoIdentity {
                peer: peer.node_id,
                cluster,
            })
        }
        _ => {}
    }
    match state.peers.get(&peer.node_id) {
        Some(&known) if known != peer.incarnation => Some(IdentityRefusal::Replaced {
            peer: peer.node_id,
            known,
            presented: peer.incarnation,
        }),
        _ => None,
    }
}

/// Replaces the identity file in `dir` durably.
fn store(fs: &dyn FileSystem, dir: &Path, state: &State) -> Result<()> {
    let tmp = dir.join(IDENTITY_TMP_FILE);
    let path = dir.join(IDENTITY_FILE);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let file = fs
        .open(&tmp, OpenMode::CreateTruncate)
        .map_err(io_err(&tmp))?;
    file.write_all_at(&state.encode(), 0)
        .map_err(io_err(&tmp))?;
    file.sync_data().map_err(io_err(&tmp))?;
    drop(file);
    fs.rename(&tmp, &path).map_err(io_err(&path))?;
    fs.sync_dir(dir).map_err(io_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_storage::fs::StdFs;
    use std::sync::atomic::{AtomicU8, Ordering};

    struct Counter(AtomicU8);
    impl NonceSource for Counter {
        fn nonce(&self) -> [u8; 32] {
            [self.0.fetch_add(1, Ordering::Relaxed); 32]
        }
    }

    fn open(dir: &Path, id: NodeId, seed: u8) -> Identity {
        Identity::open(
            Arc::new(StdFs),
            dir,
            id,
            &Counter(AtomicU8::new(seed)),
            Planted::NONE,
        )
        .expect("opens")
    }

    #[test]
    fn identity_survives_reopen_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(dir.path(), 1, 1);
        assert!(!a.existed());
        let cluster = a.found_cluster(&Counter(AtomicU8::new(9))).unwrap();
        let peer = PeerIdentity {
            node_id: 2,
            cluster_id: Some(cluster),
            incarnation: Id16([7; 16]),
        };
        assert_eq!(a.check_peer(&peer, false).unwrap(), None);
        let b = open(dir.path(), 1, 50);
        assert!(b.existed());
        assert_eq!(b.incarnation(), a.incarnation());
        assert_eq!(b.cluster_id(), Some(cluster));
        assert_eq!(b.known(2), Some(Id16([7; 16])));
        let path = dir.path().join(IDENTITY_FILE);
        let bytes = std::fs::read(&path).unwrap();
        for i in 0..bytes.len() - 1 {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(State::decode(&path, &bad).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(dir.path(), 1, 1);
        let ours = a.found_cluster(&Counter(AtomicU8::new(9))).unwrap();
        let first = PeerIdentity {
            node_id: 2,
            cluster_id: None,
            incarnation: Id16([7; 16]),
        };
        // A node without a cluster, reached by us: not refused (it adopts);
        // connecting to us, it is.
        assert_eq!(a.check_peer(&first, false).unwrap(), None);
        assert_eq!(a.known(2), Some(Id16([7; 16])));
        assert!(matches!(
            a.check_peer(&first, true).unwrap(),
            Some(IdentityRefusal::NoIdentity { peer: 2, .. })
        ));
        // The same node, wiped: another incarnation.
        let wiped = PeerIdentity {
            incarnation: Id16([8; 16]),
            ..first
        };
        assert!(matches!(
            a.check_peer(&wiped, false).unwrap(),
            Some(IdentityRefusal::Replaced { peer: 2, .. })
        ));
        let other = PeerIdentity {
            node_id: 3,
            cluster_id: Some(Id16([5; 16])),
            incarnation: Id16([3; 16]),
        };
        assert!(matches!(
            a.check_peer(&other, false).unwrap(),
            Some(IdentityRefusal::OtherCluster { peer: 3, .. })
        ));
        // Removed from the membership: forgotten, so it can come back.
        a.retain_peers(|id| id != 2).unwrap();
        assert_eq!(a.check_peer(&wiped, false).unwrap(), None);
        // A node without a cluster adopts the peer's.
        let dir2 = tempfile::tempdir().unwrap();
        let b = open(dir2.path(), 4, 100);
        assert_eq!(b.check_peer(&a.me(), true).unwrap(), None);
        assert_eq!(b.cluster_id(), Some(ours));
        assert_eq!(open(dir2.path(), 4, 0).cluster_id(), Some(ours));
    }
}
