//! The RPC server: accepts peers (at most `connections_max` at once),
//! authenticates them, and serves their requests one at a time per
//! connection: Raft RPCs go to the local `Raft`, a snapshot stream is
//! staged in the [`SnapshotInbox`] and installed with
//! `Raft::install_full_snapshot`, forwarded writes are proposed and
//! forwarded reads served after openraft's read index.
//!
//! A connection that sends a malformed or oversized frame, fails the
//! handshake or stays idle past `idle_timeout` is closed with a logged
//! reason; other connections are not affected.

use super::config::NetConfig;
use super::error::{with_deadline, NetError};
use super::message::ReadAnswer;
use super::message::{ForwardError, ReadRequest, RpcReply, RpcRequest};
use super::transport::{BoxConnection, BoxListener};
use super::vote_gate::VoteGate;
use super::{auth, frame, read};
use crate::propose::Proposer;
use crate::snapshot::{SnapshotData, SnapshotInbox, SnapshotTransfer};
use crate::state_machine::BallastRaft;
use crate::typ::SnapshotMeta;
use crate::typ::Vote;
use ballast_storage::Db;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::RaftError;
use openraft::raft::{ReadPolicy, VoteRequest};
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::BufReader;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// What the server serves requests with.
#[derive(Clone)]
pub struct ServerContext {
    /// The local Raft.
    pub raft: BallastRaft,
    /// The engine the state machine applies to, for forwarded reads.
    pub db: Arc<Db>,
    /// Where incoming snapshots are staged.
    pub inbox: SnapshotInbox,
    /// Where forwarded writes are proposed (batched with the leader's own).
    pub proposer: Proposer,
    /// Network settings.
    pub cfg: Arc<NetConfig>,
    /// Closed while this node must not vote (see [`super::vote_gate`]).
    pub votes: VoteGate,
}

/// The RPC server.
#[derive(Debug)]
pub struct RpcServer;

/// A running server: its address, and how to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection and waits for that.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "RPC server task ended abnormally");
        }
    }
}

impl RpcServer {
    /// Binds `addr` and starts serving.
    pub async fn start(addr: &str, ctx: ServerContext) -> Result<ServerHandle, NetError> {
        ctx.cfg.validate()?;
        let listener = ctx
            .cfg
            .transport
            .bind(addr)
            .await
            .map_err(|e| NetError::io(addr, e))?;
        let local_addr = listener.local_addr().map_err(|e| NetError::io(addr, e))?;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, ctx, stop_rx));
        Ok(ServerHandle {
            local_addr,
            stop,
            task,
        })
    }
}

async fn accept_loop(listener: BoxListener, ctx: ServerContext, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(ctx.cfg.connections_max));
    let mut conns = JoinSet::new();
    loop {
        // Reap finished connections so the set stays bounded.
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: the listener survives.
                tracing::warn!(error = %e, "RPC accept failed");
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                %peer,
                connections_max = ctx.cfg.connections_max,
                "refusing an RPC connection: the server is at connections_max"
            );
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            serve(stream, peer, ctx, stop).await;
            drop(permit);
        });
    }
    conns.shutdown().await;
}

/// The snapshot a connection is receiving.
struct Incoming {
    vote: Vote,
    meta: SnapshotMeta,
    rx: <SnapshotData as SnapshotTransfer>::Receiver,
}

async fn serve(
    stream: BoxConnection,
    peer: SocketAddr,
    ctx: ServerContext,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = ctx.cfg.clone();
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    let mut io = BufReader::new(stream);
    let hs = with_deadline(
        "handshake",
        cfg.connect_timeout,
        auth::server(&mut io, &cfg, peer),
    );
    let hs = tokio::select! {
        r = hs => r,
        _ = stop.changed() => return,
    };
    if let Err(e) = hs {
        tracing::warn!(%peer, error = %e, "closing RPC connection: handshake failed");
        return;
    }
    let mut incoming: Option<Incoming> = None;
    loop {
        let next = tokio::time::timeout(
            cfg.idle_timeout,
            frame::read::<_, RpcRequest>(&mut io, cfg.frame_bytes_max, peer),
        );
        let next = tokio::select! {
            r = next => r,
            _ = stop.changed() => return,
        };
        let req = match next {
            Err(_) => {
                tracing::debug!(%peer, "closing idle RPC connection");
                return;
            }
            Ok(Ok(None)) => return,
            Ok(Ok(Some(req))) => req,
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "closing RPC connection: bad frame");
                return;
            }
        };
        let reply = tokio::select! {
            r = handle(&ctx, &mut incoming, req) => r,
            _ = stop.changed() => return,
        };
        if let Err(e) = send_reply(&mut io, reply, cfg.frame_bytes_max, peer).await {
            tracing::warn!(%peer, error = %e, "closing RPC connection: cannot reply");
            return;
        }
    }
}

async fn send_reply(
    io: &mut BufReader<BoxConnection>,
    reply: RpcReply,
    max: u32,
    peer: impl Display,
) -> Result<(), NetError> {
    match frame::write(io, &reply, max, &peer).await {
        // A reply too large for one frame (a huge read): say so instead.
        Err(NetError::FrameTooLarge { len, max }) => {
            let why = format!("the reply of {len} bytes exceeds frame_bytes_max {max}");
            let small = match reply {
                RpcReply::Read(_) => RpcReply::Read(Err(ForwardError::Invalid(why))),
                _ => RpcReply::Failed(why),
            };
            frame::write(io, &small, max, &peer).await
        }
        r => r,
    }
}

/// True if this node must refuse `rpc` because its own log is empty while
/// the candidate's holds more than the initial membership entry (index 0,
/// what a bootstrapping member's first election carries). An empty log
/// next to a cluster that has entries means a new or wiped data directory:
/// before the wipe this node may have acknowledged entries toward a
/// commit, and a vote now (Raft finds any candidate as up to date as an
/// empty log) could elect a leader without them. A candidate that can win
/// without this node is elected by a majority that overlaps every commit
/// quorum in a node other than this one, so it holds every committed
/// entry; once it sends entries here, the log is no longer empty.
/// The planted `WipedNodeRebootstraps` votes as before.
fn refuses_as_empty(ctx: &ServerContext, rpc: &VoteRequest<crate::TypeConfig>) -> bool {
    let planted = ctx
        .cfg
        .identity
        .as_ref()
        .map_or(crate::planted::Planted::NONE, |i| i.planted());
    !planted.has(crate::planted::NodeBug::WipedNodeRebootstraps)
        && ctx.raft.data_metrics().borrow_watched().last_log.is_none()
        && rpc.last_log_id.is_some_and(|l| l.index > 0)
}

fn failed(e: impl Display) -> RpcReply {
    RpcReply::Failed(e.to_string())
}

async fn handle(ctx: &ServerContext, incoming: &mut Option<Incoming>, req: RpcRequest) -> RpcReply {
    let raft = &ctx.raft;
    match req {
        RpcRequest::Append(rpc) => match raft.append_entries(rpc).await {
            Ok(r) => RpcReply::Append(r),
            Err(e) => failed(e),
        },
        RpcRequest::Vote(rpc) | RpcRequest::PreVote(rpc)
            if !ctx.votes.admits(rpc.vote.leader_id.node_id) =>
        {
            failed(
                "not voting: this node restarted after an unclean shutdown and may have lost \
             entries it acknowledged; it votes again once a leader has caught it up",
            )
        }
        RpcRequest::Vote(rpc) | RpcRequest::PreVote(rpc) if refuses_as_empty(ctx, &rpc) => failed(
            "not voting: this node's Raft log is empty (a new or wiped data directory) and the \
             candidate's is not; a wiped node may have acknowledged entries it no longer holds, \
             so it votes once a leader has sent it entries",
        ),
        RpcRequest::Vote(rpc) => match raft.vote(rpc).await {
            Ok(r) => RpcReply::Vote(r),
            Err(e) => failed(e),
        },
        RpcRequest::PreVote(rpc) => match raft.pre_vote(rpc).await {
            Ok(r) => RpcReply::Vote(r),
            Err(e) => failed(e),
        },
        RpcRequest::TransferLeader(rpc) => match raft.handle_transfer_leader(rpc).await {
            Ok(r) => RpcReply::TransferLeader(r),
            Err(e) => failed(e),
        },
        RpcRequest::SnapshotBegin { vote, meta, len } => {
            // A new stream replaces an unfinished one (the sender restarted).
            *incoming = None;
            match SnapshotData::begin_receive(&ctx.inbox, &meta, len) {
                Ok(rx) => {
                    tracing::info!(?meta.last_log_id, len, "receiving a snapshot");
                    *incoming = Some(Incoming { vote, meta, rx });
                    RpcReply::SnapshotAck
                }
                Err(e) => failed(format!("snapshot refused: {e}")),
            }
        }
        RpcRequest::SnapshotChunk { offset, data } => {
            let Some(inc) = incoming.as_mut() else {
                return failed("snapshot chunk without a snapshot begun on this connection");
            };
            match SnapshotData::receive_chunk(&mut inc.rx, offset, &data) {
                Ok(()) => RpcReply::SnapshotAck,
                Err(e) => {
                    *incoming = None;
                    failed(format!("snapshot chunk refused: {e}"))
                }
            }
        }
        RpcRequest::SnapshotEnd => {
            let Some(inc) = incoming.take() else {
                return failed("snapshot end without a snapshot begun on this connection");
            };
            let data = match SnapshotData::finish_receive(inc.rx) {
                Ok(d) => d,
                Err(e) => return failed(format!("snapshot refused: {e}")),
            };
            let snapshot = openraft::Snapshot {
                meta: inc.meta,
                snapshot: data,
            };
            match raft.install_full_snapshot(inc.vote, snapshot).await {
                Ok(r) => RpcReply::Snapshot(r),
                Err(e) => failed(e),
            }
        }
        RpcRequest::Write(req) => RpcReply::Write(ctx.proposer.propose(req).await),
        RpcRequest::Read(req) => RpcReply::Read(read_linearizable(raft, &ctx.db, &req).await),
        RpcRequest::RejoinStatus => RpcReply::RejoinStatus {
            waiting: ctx.votes.is_waiting(),
            last_log: raft.data_metrics().borrow_watched().last_log,
        },
    }
}

/// Serves `req` linearizably on this node (which must be the leader):
/// openraft's read index, then the engine.
pub async fn read_linearizable(
    raft: &BallastRaft,
    db: &Db,
    req: &ReadRequest,
) -> Result<ReadAnswer, ForwardError> {
    raft.ensure_linearizable(ReadPolicy::ReadIndex)
        .await
        .map_err(not_leader_or)?;
    read::execute(db, req).map_err(|e| ForwardError::Unavailable(e.to_string()))
}

/// A Raft error as a [`ForwardError`]: `NotLeader` when openraft says
/// to forward, `Unavailable` otherwise.
pub fn not_leader_or<E>(e: RaftError<crate::TypeConfig, E>) -> ForwardError
where
    E: std::error::Error + openraft::TryAsRef<openraft::errors::ForwardToLeader<crate::TypeConfig>>,
{
    match e.forward_to_leader() {
        Some(f) => ForwardError::NotLeader {
            leader: f.leader_id,
        },
        None => ForwardError::Unavailable(e.to_string()),
    }
}
