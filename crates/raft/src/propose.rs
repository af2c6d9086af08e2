//! The leader's proposer: turns concurrent writes into few log entries.
//!
//! Every write the leader proposes (its own clients' and those forwarded by
//! followers) goes through one queue. A single task takes what is queued
//! (up to a count and a byte budget) and proposes it as one entry: the
//! request itself when it is alone, a [`Request::Multi`] otherwise. So 50
//! clients writing at once cost a few entries, each appended, replicated,
//! fsynced and applied once, instead of 50.
//!
//! Nothing waits to fill a batch: when the leader is idle a write is
//! proposed as soon as it arrives. Batches form because at most
//! `entries_in_flight` entries are between proposal and answer; while they
//! are, new writes queue up and leave together as the next entry.
//!
//! Order: the queue is first-in, first-out and the task proposes entries in
//! queue order, so once [`Proposer::submit`] returns, the write is ordered
//! before every write submitted after it (what pipelined writes of one
//! client connection rely on).

use crate::net::{BallastRaft, ForwardError};
use crate::typ::{Proposal, Request, Response};
use ballast_storage::Clock;
use openraft::errors::ClientWriteError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// How the proposer batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposerOptions {
    /// Entries proposed and not yet committed, at most. More lets entries
    /// overlap in the pipeline; fewer makes each carry more writes.
    pub entries_in_flight: usize,
    /// Requests per entry, at most.
    pub requests_per_entry: usize,
    /// Bytes of keys and values per entry, at most (a larger single
    /// request still goes, alone).
    pub bytes_per_entry: usize,
    /// Writes queued and not yet proposed, at most; submitting waits while
    /// the queue is full.
    pub queue: usize,
}

impl Default for ProposerOptions {
    fn default() -> Self {
        ProposerOptions {
            entries_in_flight: 1,
            requests_per_entry: 1024,
            bytes_per_entry: 1 << 20,
            queue: 16 * 1024,
        }
    }
}

type Answer = Result<Response, ForwardError>;

struct Pending {
    req: Request,
    bytes: usize,
    reply: oneshot::Sender<Answer>,
}

/// A handle to the proposer task; clones share it. The task ends when the
/// last handle is dropped.
#[derive(Clone, Debug)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    counts: Arc<Counts>,
}

/// What the proposer has proposed so far.
#[derive(Debug, Default)]
struct Counts {
    entries: AtomicU64,
    requests: AtomicU64,
}

/// Totals since the proposer started: `requests / entries` is the mean
/// number of writes per log entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProposerStats {
    /// Log entries proposed.
    pub entries: u64,
    /// Writes those entries carried.
    pub requests: u64,
}

/// A submitted write: ordered, not yet answered.
#[derive(Debug)]
pub struct Submitted(oneshot::Receiver<Answer>);

impl Submitted {
    /// The write's answer once its entry is applied (or why it failed).
    pub async fn answer(self) -> Answer {
        self.0.await.unwrap_or_else(|_| {
            Err(ForwardError::Unknown(
                "the proposer stopped before answering".into(),
            ))
        })
    }
}

impl Proposer {
    /// Starts the proposer task for `raft`, stamping entries with `clock`.
    /// Needs a tokio runtime.
    pub fn start(raft: BallastRaft, clock: Arc<dyn Clock>, opts: ProposerOptions) -> Proposer {
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let counts = Arc::new(Counts::default());
        tokio::spawn(run(raft, clock, opts, rx, counts.clone()));
        Proposer { tx, counts }
    }

    /// What was proposed so far.
    pub fn stats(&self) -> ProposerStats {
        ProposerStats {
            entries: self.counts.entries.load(Ordering::Relaxed),
            requests: self.counts.requests.load(Ordering::Relaxed),
        }
    }

    /// Queues `req` for the leader's log. When this returns the write is
    /// ordered before every write submitted later.
    pub async fn submit(&self, req: Request) -> Result<Submitted, ForwardError> {
        let (reply, rx) = oneshot::channel();
        let bytes = req.payload_bytes();
        self.tx
            .send(Pending { req, bytes, reply })
            .await
            .map_err(|_| ForwardError::Unavailable("the proposer has stopped".into()))?;
        Ok(Submitted(rx))
    }

    /// Proposes `req` and waits for its answer.
    pub async fn propose(&self, req: Request) -> Answer {
        self.submit(req).await?.answer().await
    }
}

async fn run(
    raft: BallastRaft,
    clock: Arc<dyn Clock>,
    opts: ProposerOptions,
    mut rx: mpsc::Receiver<Pending>,
    counts: Arc<Counts>,
) {
    let in_flight = Arc::new(Semaphore::new(opts.entries_in_flight.max(1)));
    let mut carried: Option<Pending> = None;
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < opts.requests_per_entry {
            match rx.try_recv() {
                Ok(p) if bytes + p.bytes > opts.bytes_per_entry => {
                    carried = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.bytes;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let (reqs, replies): (Vec<Request>, Vec<oneshot::Sender<Answer>>) =
            batch.into_iter().map(|p| (p.req, p.reply)).unzip();
        let req = match <[Request; 1]>::try_from(reqs) {
            Ok([one]) => one,
            Err(reqs) => Request::Multi(reqs),
        };
        counts.entries.fetch_add(1, Ordering::Relaxed);
        counts
            .requests
            .fetch_add(replies.len() as u64, Ordering::Relaxed);
        let (responder, committed, answer) = openraft::impls::ProgressResponder::new();
        let proposal = Proposal::new(clock.now_ms(), req);
        if let Err(e) = raft.client_write_ff(proposal, Some(responder)).await {
            let why = format!("raft stopped: {e}");
            for r in replies {
                let _ = r.send(Err(ForwardError::Unavailable(why.clone())));
            }
            continue;
        }
        tokio::spawn(async move {
            // The entry counts as in flight until it is committed (or
            // fails): the next one may be proposed while it is applied.
            let _ = committed.await;
            drop(permit);
            let outcome = answer.await;
            let answers: Vec<Answer> = match outcome {
                Err(_) => vec![Err(ForwardError::Unknown(
                    "Raft dropped the write before answering".into(),
                ))],
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                    vec![Err(ForwardError::NotLeader {
                        leader: f.leader_id,
                    })]
                }
                // openraft answers ForwardToLeader only for an entry it
                // did not append (above); any other error comes after the
                // append (LogEntryDiscarded: truncated or purged, possibly
                // committed elsewhere), so the outcome is unknown.
                Ok(Err(e)) => vec![Err(ForwardError::Unknown(e.to_string()))],
                Ok(Ok(r)) => match r.data {
                    Response::Multi(answers) if replies.len() > 1 => {
                        if answers.len() == replies.len() {
                            answers.into_iter().map(Ok).collect()
                        } else {
                            vec![Err(ForwardError::Unknown(format!(
                                "internal: {} answers to a multi of {} writes",
                                answers.len(),
                                replies.len()
                            )))]
                        }
                    }
                    data if replies.len() == 1 => vec![Ok(data)],
                    other => vec![Err(ForwardError::Unknown(format!(
                        "internal: a multi of {} writes answered {other:?}",
                        replies.len()
                    )))],
                },
            };
            if answers.len() == replies.len() {
                for (reply, a) in replies.into_iter().zip(answers) {
                    let _ = reply.send(a);
                }
            } else {
                // One outcome for the whole entry.
                let a = answers.into_iter().next().expect("one outcome");
                for reply in replies {
                    let _ = reply.send(a.clone());
                }
            }
        });
    }
}
