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
//! `entries_in_flight_max` entries are between proposal and answer; while they
//! are, new writes queue up and leave together as the next entry.
//!
//! Validation: every request is checked here, the last gate before the
//! log ([`Request::validate`] with the node's limits, taken once from the
//! state machine), whoever submitted it (the node's API or a follower's
//! forwarded write), and the entry the proposer forms is checked against
//! what the log format holds before it is proposed. An entry the codec
//! would refuse to read back can therefore never be appended: such an
//! entry halts every replica that applies it.
//!
//! Order: the queue is first-in, first-out and the task proposes entries in
//! queue order, so once [`Proposer::submit`] returns, the write is ordered
//! before every write submitted after it (what pipelined writes of one
//! client connection rely on).

use crate::net::message::ForwardError;
use crate::planted::NodeBug;
use crate::state_machine::{BallastRaft, ProposeContext, StateMachine};
use crate::typ::{Proposal, Request, Response};
use ballast_storage::Clock;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::ClientWriteError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// How the proposer batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposerOptions {
    /// Entries proposed and not yet committed, at most. More lets entries
    /// overlap in the pipeline; fewer makes each carry more writes.
    pub entries_in_flight_max: usize,
    /// Writes (requests) per entry, at most.
    pub writes_per_entry_max: usize,
    /// Bytes of keys and values per entry, at most (a larger single
    /// request still goes, alone).
    pub entry_bytes_max: usize,
    /// Writes queued and not yet proposed, at most; submitting waits while
    /// the queue is full.
    pub queued_writes_max: usize,
}

impl Default for ProposerOptions {
    fn default() -> Self {
        ProposerOptions {
            entries_in_flight_max: 1,
            writes_per_entry_max: 1024,
            entry_bytes_max: 1 << 20,
            queued_writes_max: 16 * 1024,
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
    raft: BallastRaft,
    /// Taken from the state machine at the first write (openraft owns it).
    context: Arc<tokio::sync::OnceCell<ProposeContext>>,
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
        let (tx, rx) = mpsc::channel(opts.queued_writes_max.max(1));
        let counts = Arc::new(Counts::default());
        let context = Arc::new(tokio::sync::OnceCell::new());
        tokio::spawn(run(
            raft.clone(),
            clock,
            opts,
            rx,
            counts.clone(),
            context.clone(),
        ));
        Proposer {
            tx,
            counts,
            raft,
            context,
        }
    }

    /// The state machine's limits and shared state, fetched once.
    async fn context(&self) -> Result<&ProposeContext, ForwardError> {
        fetch_context(&self.raft, &self.context).await
    }

    /// Checks `req` as this node's proposer would: [`Request::validate`]
    /// with the node's limits. `Invalid` says why; nothing was written.
    pub async fn validate(&self, req: &Request) -> Result<(), ForwardError> {
        let ctx = self.context().await?;
        if ctx.planted.has(NodeBug::SkipRequestValidation) {
            return Ok(());
        }
        req.validate(&ctx.limits)
            .map_err(|e| ForwardError::Invalid(e.to_string()))
    }

    /// What was proposed so far.
    pub fn stats(&self) -> ProposerStats {
        ProposerStats {
            entries: self.counts.entries.load(Ordering::Relaxed),
            requests: self.counts.requests.load(Ordering::Relaxed),
        }
    }

    /// Validates `req` ([`Proposer::validate`]) and queues it for the
    /// leader's log. When this returns the write is ordered before every
    /// write submitted later.
    pub async fn submit(&self, req: Request) -> Result<Submitted, ForwardError> {
        self.validate(&req).await?;
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

async fn fetch_context<'a>(
    raft: &BallastRaft,
    cell: &'a tokio::sync::OnceCell<ProposeContext>,
) -> Result<&'a ProposeContext, ForwardError> {
    cell.get_or_try_init(|| async {
        raft.with_state_machine(|sm: &mut StateMachine| {
            let ctx = sm.propose_context();
            Box::pin(std::future::ready(ctx))
        })
        .await
        .map_err(|e| ForwardError::Unavailable(format!("raft stopped: {e}")))
    })
    .await
}

/// How long a new leader waits to apply its log before its first stamp:
/// its first entry is committed (and the log before it applied) within a
/// round trip to a quorum; past this the quorum is likely gone.
const NEW_TERM_APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The last time this proposer stamped, and in which term.
#[derive(Default)]
struct Stamp {
    term: Option<u64>,
    at_ms: u64,
}

/// The time to stamp on the next entry: never below the last one in the
/// log, so that entry times never decrease along it (expiry is a pure
/// function of the log). Within a term that is the larger of the clock and
/// the last stamp; in a new term this node first applies its whole log
/// (entries of earlier leaders, whose clocks may run ahead of ours, are in
/// it), then stamps no earlier than the last applied time.
async fn stamp(
    raft: &BallastRaft,
    clock: &dyn Clock,
    context: &tokio::sync::OnceCell<ProposeContext>,
    last: &mut Stamp,
) -> Result<u64, ForwardError> {
    let ctx = fetch_context(raft, context).await?;
    if ctx.planted.has(NodeBug::ExpireByLocalClock) {
        return Ok(clock.now_ms());
    }
    let (term, last_log, leading) = {
        let m = raft.metrics();
        let m = m.borrow_watched();
        (
            m.current_term,
            m.last_log_index,
            m.state == openraft::ServerState::Leader,
        )
    };
    // Only a leader's stamps reach the log (elsewhere openraft refuses the
    // write), and only a leader's log is sure to get applied up to its end.
    if leading && last.term != Some(term) {
        if let Some(index) = last_log {
            raft.wait(Some(NEW_TERM_APPLY_WAIT))
                .applied_index_at_least(Some(index), "a new leader applies its log before stamping")
                .await
                .map_err(|e| {
                    ForwardError::Unavailable(format!(
                        "the new leader has not applied its log yet, nothing was written: {e}"
                    ))
                })?;
        }
        last.term = Some(term);
    }
    let floor = ctx.applied_at_ms.load(Ordering::Acquire).max(last.at_ms);
    last.at_ms = clock.now_ms().max(floor);
    Ok(last.at_ms)
}

async fn run(
    raft: BallastRaft,
    clock: Arc<dyn Clock>,
    opts: ProposerOptions,
    mut rx: mpsc::Receiver<Pending>,
    counts: Arc<Counts>,
    context: Arc<tokio::sync::OnceCell<ProposeContext>>,
) {
    let in_flight = Arc::new(Semaphore::new(opts.entries_in_flight_max.max(1)));
    let mut carried: Option<Pending> = None;
    let mut last_stamp = Stamp::default();
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
        while batch.len() < opts.writes_per_entry_max {
            match rx.try_recv() {
                Ok(p) if bytes + p.bytes > opts.entry_bytes_max => {
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
        // The last gate: only an entry the codec reads back is appended
        // (a poison entry would stop every replica at apply). Requests were
        // validated one by one in `submit`; this checks what was formed.
        let skip = match fetch_context(&raft, &context).await {
            Ok(ctx) => ctx.planted.has(NodeBug::SkipRequestValidation),
            Err(e) => {
                for r in replies {
                    let _ = r.send(Err(e.clone()));
                }
                continue;
            }
        };
        if let Err(e) = req
            .check_structure()
            .or_else(|e| if skip { Ok(()) } else { Err(e) })
        {
            let why = format!("refused before the log: {e}");
            for r in replies {
                let _ = r.send(Err(ForwardError::Invalid(why.clone())));
            }
            continue;
        }
        let at_ms = match stamp(&raft, &*clock, &context, &mut last_stamp).await {
            Ok(at) => at,
            Err(e) => {
                for r in replies {
                    let _ = r.send(Err(e.clone()));
                }
                continue;
            }
        };
        let (responder, committed, answer) = openraft::impls::ProgressResponder::new();
        let proposal = Proposal::new(at_ms, req);
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
