//! The client side: one authenticated TCP connection per openraft client
//! ([`PeerClient`], reused across calls, dropped after any failure and
//! re-established on the next call, with openraft backing off in between),
//! and a small per-peer pool for forwarded writes and reads
//! ([`ForwardClient`]).

use super::config::NetConfig;
use super::error::{with_deadline, NetError};
use super::message::{ForwardError, ReadAnswer, ReadRequest, RpcReply, RpcRequest};
use super::transport::{is_idle_and_open, BoxConnection};
use super::{auth, frame};
use crate::identity::{Id16, PeerIdentity};
use crate::snapshot::{Snapshot, SnapshotData, SnapshotTransfer};
use crate::typ::{Node, NodeId, Request, Response, TypeConfig, Vote};
use openraft::error::{ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::errors::ErrorSource;
use openraft::errors::RPCError;
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::BufReader;
use tokio::time::Instant;

/// One authenticated connection to a peer.
pub struct Conn {
    io: BufReader<BoxConnection>,
    peer: String,
    frame_bytes_max: u32,
    links: Option<super::links::Links>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.peer)
    }
}

impl Conn {
    /// Connects to `addr` and runs the handshake, within
    /// `cfg.connect_timeout`.
    pub async fn connect(addr: &str, cfg: &NetConfig) -> Result<Conn, NetError> {
        check_link(cfg.links.as_ref(), addr)?;
        with_deadline("connect", cfg.connect_timeout, async {
            let stream = cfg
                .transport
                .connect(addr)
                .await
                .map_err(|e| NetError::io(addr, e))?;
            // Raft RPCs are small and latency-bound.
            stream
                .set_nodelay(true)
                .map_err(|e| NetError::io(addr, e))?;
            let mut io = BufReader::new(stream);
            auth::client(&mut io, cfg, addr).await?;
            Ok(Conn {
                io,
                peer: addr.to_string(),
                frame_bytes_max: cfg.frame_bytes_max,
                links: cfg.links.clone(),
            })
        })
        .await
    }

    /// Asks the node at `addr` who it is (its identity, and the
    /// incarnation it knows for this node) without opening a session,
    /// within `cfg.connect_timeout`. A starting node uses it to tell a new
    /// cluster from one it was wiped out of.
    pub async fn probe(
        addr: &str,
        cfg: &NetConfig,
    ) -> Result<(Option<PeerIdentity>, Option<Id16>), NetError> {
        with_deadline("probe", cfg.connect_timeout, async {
            let stream = cfg
                .transport
                .connect(addr)
                .await
                .map_err(|e| NetError::io(addr, e))?;
            let mut io = BufReader::new(stream);
            auth::probe(&mut io, cfg, addr).await
        })
        .await
    }

    /// Whether the peer already closed this (idle) connection, or sent
    /// something unasked: either way it cannot carry a request. Checked
    /// before a pooled connection is reused, so that a request is not sent
    /// into a connection the peer has closed (it would fail as "outcome
    /// unknown" although the peer never read it).
    fn is_dead(&mut self) -> bool {
        if !self.io.buffer().is_empty() {
            return true;
        }
        // End of stream (peer closed), stray bytes or an error.
        !is_idle_and_open(&mut **self.io.get_mut())
    }

    /// Sends `req` and reads its reply.
    pub async fn call(&mut self, req: &RpcRequest) -> Result<RpcReply, NetError> {
        check_link(self.links.as_ref(), &self.peer)?;
        frame::write(&mut self.io, req, self.frame_bytes_max, &self.peer).await?;
        match frame::read(&mut self.io, self.frame_bytes_max, &self.peer).await? {
            Some(reply) => Ok(reply),
            None => Err(NetError::Protocol(format!(
                "{} closed the connection before replying",
                self.peer
            ))),
        }
    }
}

/// Fails like an unreachable peer if a partition test cut the link.
fn check_link(links: Option<&super::links::Links>, addr: &str) -> Result<(), NetError> {
    match links {
        Some(l) if l.is_cut(addr) => Err(NetError::io(
            addr,
            std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "link cut by a partition test",
            ),
        )),
        _ => Ok(()),
    }
}

/// openraft's network factory: a [`PeerClient`] per target.
#[derive(Clone, Debug)]
pub struct Network {
    cfg: Arc<NetConfig>,
    id: NodeId,
}

impl Network {
    /// The network of node `id`.
    pub fn new(id: NodeId, cfg: Arc<NetConfig>) -> Network {
        Network { cfg, id }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            cfg: self.cfg.clone(),
            id: self.id,
            target,
            addr: node.raft_addr.clone(),
            conn: None,
        }
    }
}

/// Sends Raft RPCs to one peer over one reused connection.
pub struct PeerClient {
    cfg: Arc<NetConfig>,
    id: NodeId,
    target: NodeId,
    addr: String,
    conn: Option<Conn>,
}

impl PeerClient {
    /// Sends `req` within `limit`, connecting first if needed. Any failure
    /// drops the connection: its state (a half-read reply) is unknown.
    async fn call(
        &mut self,
        req: &RpcRequest,
        limit: Duration,
        action: RPCTypes,
    ) -> Result<RpcReply, RPCError<TypeConfig>> {
        let r = with_deadline("Raft RPC", limit, async {
            if self.conn.is_none() {
                self.conn = Some(Conn::connect(&self.addr, &self.cfg).await?);
            }
            match self.conn.as_mut() {
                Some(c) => c.call(req).await,
                None => unreachable!("connected just above"),
            }
        })
        .await;
        match r {
            Ok(RpcReply::Failed(why)) => {
                Err(RPCError::Unreachable(Unreachable::from_string(format!(
                    "node {} at {} could not serve it: {why}",
                    self.target, self.addr
                ))))
            }
            Ok(reply) => Ok(reply),
            Err(e) => {
                self.conn = None;
                Err(self.rpc_error(e, limit, action))
            }
        }
    }

    fn rpc_error(&self, e: NetError, limit: Duration, action: RPCTypes) -> RPCError<TypeConfig> {
        match e {
            NetError::Timeout { .. } => RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout: limit,
            }),
            other => RPCError::Unreachable(Unreachable::new(&other)),
        }
    }

    fn unexpected(&mut self, reply: RpcReply) -> RPCError<TypeConfig> {
        self.conn = None;
        RPCError::Unreachable(Unreachable::new(&NetError::Protocol(format!(
            "unexpected reply from {}: {reply:?}",
            self.addr
        ))))
    }

    async fn stream_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        step: Duration,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let data = snapshot.snapshot;
        let len = data.stream_len();
        let begin = RpcRequest::SnapshotBegin {
            vote,
            meta: snapshot.meta,
            len,
        };
        self.expect_ack(&begin, step).await?;
        let chunk = self.cfg.snapshot_chunk_bytes;
        let mut offset = 0u64;
        while offset < len {
            let bytes = data.read_chunk(offset, chunk).map_err(|e| {
                StreamingError::StorageError(openraft::StorageError::read_snapshot(
                    None,
                    ErrorSource::from_error(&e),
                ))
            })?;
            if bytes.is_empty() {
                return Err(StreamingError::StorageError(
                    openraft::StorageError::read_snapshot(
                        None,
                        ErrorSource::from_string(format!(
                            "snapshot stream ended at {offset} of {len} bytes"
                        )),
                    ),
                ));
            }
            let n = bytes.len() as u64;
            self.expect_ack(
                &RpcRequest::SnapshotChunk {
                    offset,
                    data: bytes,
                },
                step,
            )
            .await?;
            offset += n;
        }
        match self
            .call(&RpcRequest::SnapshotEnd, step, RPCTypes::InstallSnapshot)
            .await
        {
            Ok(RpcReply::Snapshot(resp)) => Ok(resp),
            Ok(other) => Err(streaming(self.unexpected(other))),
            Err(e) => Err(streaming(e)),
        }
    }

    async fn expect_ack(
        &mut self,
        req: &RpcRequest,
        step: Duration,
    ) -> Result<(), StreamingError<TypeConfig>> {
        match self.call(req, step, RPCTypes::InstallSnapshot).await {
            Ok(RpcReply::SnapshotAck) => Ok(()),
            Ok(other) => Err(streaming(self.unexpected(other))),
            Err(e) => Err(streaming(e)),
        }
    }
}

fn streaming(e: RPCError<TypeConfig>) -> StreamingError<TypeConfig> {
    match e {
        RPCError::Timeout(t) => StreamingError::Timeout(t),
        RPCError::Unreachable(u) => StreamingError::Unreachable(u),
        RPCError::Network(n) => StreamingError::Network(n),
        RPCError::RemoteError(r) => {
            StreamingError::Unreachable(Unreachable::from_string(r.to_string()))
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    /// Sends the entries, or as many of the first ones as fit half a frame
    /// (at least one) and answers `PartialSuccess` for them: openraft
    /// batches up to `max_payload_entries` entries whatever their size, and
    /// a frame over `frame_bytes_max` would fail every retry, so a lagging
    /// follower would never catch up.
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let fit = entries_within(&rpc.entries, self.cfg.frame_bytes_max as usize / 2);
        let partial = fit < rpc.entries.len();
        if partial {
            rpc.entries.truncate(fit);
            let last = rpc.entries.last().map(|e| e.log_id);
            // Never tell the follower of a commit beyond what it was sent.
            if rpc.leader_commit > last {
                rpc.leader_commit = last;
            }
        }
        let last = rpc.entries.last().map(|e| e.log_id);
        // openraft's deadline is sized for a heartbeat; a big entry needs
        // time to cross and be stored, or every try times out and the
        // entry (and everything behind it) never arrives.
        let bytes: usize = rpc.entries.iter().map(entry_wire_bytes).sum();
        let limit = self.cfg.deadline_for(option.soft_ttl(), bytes);
        let req = RpcRequest::Append(rpc);
        match self.call(&req, limit, RPCTypes::AppendEntries).await? {
            RpcReply::Append(AppendEntriesResponse::Success) if partial => {
                Ok(AppendEntriesResponse::PartialSuccess(last))
            }
            RpcReply::Append(r) => Ok(r),
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(&RpcRequest::Vote(rpc), option.soft_ttl(), RPCTypes::Vote)
            .await?
        {
            RpcReply::Vote(r) => Ok(r),
            other => Err(self.unexpected(other)),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(&RpcRequest::PreVote(rpc), option.soft_ttl(), RPCTypes::Vote)
            .await?
        {
            RpcReply::Vote(r) => Ok(r),
            other => Err(self.unexpected(other)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        // Each step (begin, every chunk, the final install) gets the soft
        // TTL: a snapshot of any size makes progress or fails, and the
        // caller's cancel stops it between steps.
        let step = option.soft_ttl();
        let r = tokio::select! {
            r = self.stream_snapshot(vote, snapshot, step) => r,
            closed = cancel => Err(StreamingError::Closed(closed)),
        };
        if r.is_err() {
            // Mid-stream: the receiver holds a partial snapshot for this
            // connection; a new connection starts clean.
            self.conn = None;
        }
        r
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(
                &RpcRequest::TransferLeader(req),
                option.soft_ttl(),
                RPCTypes::TransferLeader,
            )
            .await?
        {
            RpcReply::TransferLeader(r) => Ok(r),
            other => Err(self.unexpected(other)),
        }
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(exponential_backoff(
            self.cfg.backoff_initial,
            self.cfg.backoff_max,
        ))
    }
}

/// Waits doubling from `initial` up to `max`, forever.
pub fn exponential_backoff(initial: Duration, max: Duration) -> Backoff {
    Backoff::new(std::iter::successors(Some(initial), move |d| {
        Some(d.saturating_mul(2).min(max))
    }))
}

/// Why a forwarded call failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardFailure {
    /// The request never left this node (connecting or authenticating
    /// failed): retrying cannot apply it twice.
    #[error("not sent: {0}")]
    NotSent(NetError),
    /// The request may have reached the peer: a write's outcome is unknown.
    #[error("outcome unknown: {0}")]
    Unknown(NetError),
}

/// The most peers the pool keeps connections for (the cluster's size is
/// small; a bound keeps address churn from growing it).
const POOL_PEERS_MAX: usize = 16;

/// Sends forwarded writes and reads to the leader over pooled connections.
pub struct ForwardClient {
    cfg: Arc<NetConfig>,
    pool: Mutex<BTreeMap<String, Vec<(Conn, Instant)>>>,
}

impl std::fmt::Debug for ForwardClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardClient").finish_non_exhaustive()
    }
}

impl ForwardClient {
    /// A client with an empty pool.
    pub fn new(cfg: Arc<NetConfig>) -> ForwardClient {
        ForwardClient {
            cfg,
            pool: Mutex::new(BTreeMap::new()),
        }
    }

    /// Asks the node at `addr` (the leader) to propose `req`.
    pub async fn write(
        &self,
        addr: &str,
        req: Request,
    ) -> Result<Result<Response, ForwardError>, ForwardFailure> {
        match self.call(addr, &RpcRequest::Write(req)).await? {
            RpcReply::Write(r) => Ok(r),
            other => Err(ForwardFailure::Unknown(NetError::Protocol(format!(
                "unexpected reply to a write: {other:?}"
            )))),
        }
    }

    /// Asks the node at `addr` (the leader) for a linearizable read.
    pub async fn read(
        &self,
        addr: &str,
        req: ReadRequest,
    ) -> Result<Result<ReadAnswer, ForwardError>, ForwardFailure> {
        match self.call(addr, &RpcRequest::Read(req)).await? {
            RpcReply::Read(r) => Ok(r),
            other => Err(ForwardFailure::Unknown(NetError::Protocol(format!(
                "unexpected reply to a read: {other:?}"
            )))),
        }
    }

    /// Asks the node at `addr` whether it waits, after an unclean restart,
    /// for a leader to catch it up, and for its last log id.
    pub async fn rejoin_status(
        &self,
        addr: &str,
    ) -> Result<(bool, Option<crate::typ::LogId>), ForwardFailure> {
        match self.call(addr, &RpcRequest::RejoinStatus).await? {
            RpcReply::RejoinStatus { waiting, last_log } => Ok((waiting, last_log)),
            other => Err(ForwardFailure::Unknown(NetError::Protocol(format!(
                "unexpected reply to a rejoin status: {other:?}"
            )))),
        }
    }

    fn take(&self, addr: &str) -> Option<Conn> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let conns = pool.get_mut(addr)?;
        // A connection idle for half the server's idle timeout may be
        // closing on the other end: sending on it would make a write's
        // outcome unknown for nothing.
        let fresh = self.cfg.idle_timeout / 2;
        while let Some((mut c, since)) = conns.pop() {
            if since.elapsed() < fresh && !c.is_dead() {
                return Some(c);
            }
        }
        None
    }

    fn give_back(&self, addr: &str, conn: Conn) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if !pool.contains_key(addr) && pool.len() >= POOL_PEERS_MAX {
            pool.pop_first();
        }
        let conns = pool.entry(addr.to_string()).or_default();
        if conns.len() < self.cfg.pooled_per_peer_max {
            conns.push((conn, Instant::now()));
        }
    }

    async fn call(&self, addr: &str, req: &RpcRequest) -> Result<RpcReply, ForwardFailure> {
        let deadline = Instant::now() + self.cfg.call_timeout;
        let mut conn = match self.take(addr) {
            Some(c) => c,
            None => tokio::time::timeout_at(deadline, Conn::connect(addr, &self.cfg))
                .await
                .map_err(|_| {
                    ForwardFailure::NotSent(NetError::Timeout {
                        what: "connect",
                        ms: self.cfg.call_timeout.as_millis() as u64,
                    })
                })?
                .map_err(ForwardFailure::NotSent)?,
        };
        let reply = tokio::time::timeout_at(deadline, conn.call(req))
            .await
            .map_err(|_| {
                ForwardFailure::Unknown(NetError::Timeout {
                    what: "forwarded call",
                    ms: self.cfg.call_timeout.as_millis() as u64,
                })
            })?
            .map_err(ForwardFailure::Unknown)?;
        self.give_back(addr, conn);
        Ok(reply)
    }
}

/// How many of the first `entries` fit in about `budget` bytes on the wire
/// (at least one: a single entry always goes, and the node's limits make
/// one entry fit a frame).
fn entries_within(entries: &[crate::typ::Entry], budget: usize) -> usize {
    let mut total = 0usize;
    for (i, e) in entries.iter().enumerate() {
        total = total.saturating_add(entry_wire_bytes(e));
        if total > budget && i > 0 {
            return i;
        }
    }
    entries.len()
}

/// An upper estimate of an entry's encoded size.
fn entry_wire_bytes(e: &crate::typ::Entry) -> usize {
    use openraft::EntryPayload;
    const PER_ENTRY: usize = 64;
    match &e.payload {
        EntryPayload::Blank => PER_ENTRY,
        EntryPayload::Normal(p) => PER_ENTRY + p.request.payload_bytes(),
        EntryPayload::Membership(m) => {
            PER_ENTRY
                + 4096
                + m.nodes()
                    .map(|(_, n)| 64 + n.raft_addr.len() + n.client_addr.len())
                    .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typ::{log_id, Entry, EntryPayload, Proposal};

    fn put(index: u64, value_bytes: usize) -> Entry {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(Proposal::new(
                0,
                Request::Put {
                    key: b"k".to_vec(),
                    value: vec![0; value_bytes],
                    expire_at_ms: None,
                },
            )),
        }
    }

    #[test]
    fn deadlines_grow_with_the_bytes_carried() {
        let mut cfg = NetConfig::new(Arc::new(Fixed));
        cfg.transfer_bytes_per_sec_min = 8 << 20;
        let base = Duration::from_millis(75);
        assert_eq!(cfg.deadline_for(base, 0), base);
        assert_eq!(
            cfg.deadline_for(base, 16 << 20),
            base + Duration::from_secs(2)
        );
        assert_eq!(
            cfg.deadline_for(base, usize::MAX),
            base + Duration::from_micros(u64::MAX / (8 << 20))
        );
    }

    struct Fixed;
    impl crate::nonce::NonceSource for Fixed {
        fn nonce(&self) -> [u8; 32] {
            [1; 32]
        }
    }

    #[test]
    fn entries_are_cut_at_the_budget_but_one_always_goes() {
        let es: Vec<Entry> = (1..=10).map(|i| put(i, 1000)).collect();
        assert_eq!(entries_within(&es, 100_000), 10);
        assert_eq!(entries_within(&es, 3_500), 3);
        assert_eq!(entries_within(&es, 10), 1);
        assert_eq!(entries_within(&[], 10), 0);
        // The estimate is never below the real encoding.
        for e in &es {
            let real = frame::encode(e, u32::MAX).expect("encodes").len();
            assert!(
                entry_wire_bytes(e) >= real,
                "{} < {real}",
                entry_wire_bytes(e)
            );
        }
    }
}
