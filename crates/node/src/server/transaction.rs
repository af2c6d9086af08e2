//! MULTI, EXEC, DISCARD, WATCH and UNWATCH on one connection.
//!
//! MULTI starts queueing: each later command is answered `+QUEUED` and
//! kept, as a request (reads too, [`Request::Read`]) or, for what the
//! connection answers itself (PING, ECHO, ...), as its reply. EXEC proposes
//! the queued requests as ONE log entry ([`Request::Transaction`]), which
//! every replica applies atomically, in order, and answers with one reply
//! per queued command; a command refused while running (INCR of a
//! non-integer) gets its error in place and the others still apply, as in
//! Redis. An unknown command or a wrong argument count while queueing
//! makes EXEC answer EXECABORT and apply nothing; other argument errors
//! are answered in place at EXEC, as Redis does (it checks them when the
//! command runs).
//!
//! WATCH reads its keys (value and expiry) linearizably and keeps what it
//! saw; EXEC carries that, and apply compares it with the keys' state at
//! the entry's place in the log: any difference aborts the transaction
//! (null reply). A key changed and changed back (A to B to A) before EXEC
//! is not seen as changed (README, "Transactions").
//!
//! SCAN, KEYS, DBSIZE and INFO are not served inside MULTI: they are
//! answered in place at EXEC with an error saying so.
//!
//! Limits: at most `TRANSACTION_COMMANDS_MAX` commands and about
//! `TRANSACTION_BYTES_MAX` argument bytes queued (beyond either the command
//! is refused and EXEC aborts, as Redis does when it refuses a queued
//! command), and at most `WATCHED_KEYS_MAX` watched keys per connection.
//! The entry must also pass the node's request limit, checked at EXEC.

use std::collections::BTreeMap;
use std::sync::Arc;

use ballast_raft::typ::{Response, Watched};
use ballast_raft::Request;
use bytes::Bytes;

use super::plan::Planned;
use super::replies::api_error_reply;
use super::shared::Shared;
use crate::api::{Consistency, KvApi, Value};
use crate::command::Command;
use crate::error::Error;
use crate::resp::Reply;

/// Most commands one MULTI may queue.
pub(super) const TRANSACTION_COMMANDS_MAX: usize = 100_000;

/// Most argument bytes one MULTI may queue.
pub(super) const TRANSACTION_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Most keys one connection may WATCH at once.
pub(super) const WATCHED_KEYS_MAX: usize = 10_000;

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// What a WATCH read saw: each key and its value, if any.
pub(super) type Seen = Vec<(Bytes, Option<Value>)>;

/// What a request of a connection runs.
#[derive(Debug)]
pub(super) enum Job {
    /// A command against the API.
    Command(Command),
    /// WATCH of these keys, in this watch generation.
    Watch(Vec<Bytes>, u64),
    /// EXEC of what MULTI queued.
    Exec(Vec<Queued>),
}

/// A command queued by MULTI.
#[derive(Debug)]
pub(super) enum Queued {
    /// Goes into the transaction's log entry.
    Planned(Planned),
    /// Answered without the log (PING, ECHO, an argument error, ...).
    Local(Reply),
}

/// One connection's transaction state.
#[derive(Debug, Default)]
pub(super) struct Transaction {
    /// `Some` between MULTI and EXEC / DISCARD.
    queued: Option<Vec<Queued>>,
    queued_bytes: usize,
    /// A command was refused while queueing: EXEC aborts.
    dirty: bool,
    /// What WATCH saw, by key.
    watched: BTreeMap<Bytes, Option<Value>>,
    /// Bumped by UNWATCH, EXEC and DISCARD: a WATCH read still running
    /// when they came must not add its keys afterwards.
    generation: u64,
}

impl Transaction {
    pub(super) fn in_multi(&self) -> bool {
        self.queued.is_some()
    }

    /// Queues a command in MULTI: `+QUEUED`, or a refusal past the limits
    /// (which makes EXEC abort).
    pub(super) fn enqueue(&mut self, queued: Queued, args_bytes: usize) -> Reply {
        let full = self.queued.as_ref().map_or(0, Vec::len) >= TRANSACTION_COMMANDS_MAX
            || self.queued_bytes.saturating_add(args_bytes) > TRANSACTION_BYTES_MAX;
        if full {
            self.flag();
            return Reply::Error(format!(
                "ERR a transaction holds at most {TRANSACTION_COMMANDS_MAX} commands and \
                 {TRANSACTION_BYTES_MAX} bytes; this one is discarded at EXEC, split it"
            ));
        }
        self.queued_bytes += args_bytes;
        if let Some(queue) = self.queued.as_mut() {
            queue.push(queued);
        }
        Reply::Simple("QUEUED".to_string())
    }

    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH: the reply if known now, or
    /// the job that will answer it.
    pub(super) fn command(&mut self, command: Command) -> Result<Reply, Job> {
        Ok(match command {
            Command::Multi if self.in_multi() => {
                Reply::Error("ERR MULTI calls can not be nested".to_string())
            }
            Command::Multi => {
                self.queued = Some(Vec::new());
                Reply::ok()
            }
            Command::Discard if !self.in_multi() => {
                Reply::Error("ERR DISCARD without MULTI".to_string())
            }
            Command::Discard => {
                self.finish();
                self.unwatch();
                Reply::ok()
            }
            Command::Exec if !self.in_multi() => Reply::Error("ERR EXEC without MULTI".to_string()),
            Command::Exec => {
                let (queued, dirty) = self.finish();
                if dirty {
                    self.unwatch();
                    Reply::Error(EXECABORT.to_string())
                } else {
                    return Err(Job::Exec(queued));
                }
            }
            Command::Watch { .. } if self.in_multi() => {
                Reply::Error("ERR WATCH inside MULTI is not allowed".to_string())
            }
            Command::Watch { keys } => {
                if self.watched.len().saturating_add(keys.len()) > WATCHED_KEYS_MAX {
                    Reply::Error(format!(
                        "ERR at most {WATCHED_KEYS_MAX} keys can be WATCHed; UNWATCH or EXEC first"
                    ))
                } else {
                    return Err(Job::Watch(keys, self.generation));
                }
            }
            // Queued like any command, and a no-op at EXEC (EXEC unwatches).
            Command::Unwatch if self.in_multi() => self.enqueue(Queued::Local(Reply::ok()), 0),
            Command::Unwatch => {
                self.unwatch();
                Reply::ok()
            }
            _ => Reply::Error("ERR internal error: not a transaction command".to_string()),
        })
    }

    /// EXEC refused before it ran (wrong arity): Redis ends any
    /// transaction at once and answers EXECABORT with the reason.
    pub(super) fn abort_exec(&mut self, error: &Error) -> Reply {
        self.finish();
        self.unwatch();
        let text = error.to_string();
        let reason = text.strip_prefix("ERR ").unwrap_or(&text);
        Reply::Error(format!(
            "EXECABORT Transaction discarded because of: {reason}"
        ))
    }

    /// Marks the transaction as refused (EXEC will abort).
    pub(super) fn flag(&mut self) {
        if self.in_multi() {
            self.dirty = true;
        }
    }

    fn unwatch(&mut self) {
        self.watched.clear();
        self.generation += 1;
    }

    /// Ends the MULTI (EXEC, DISCARD): what was queued, and whether it
    /// was refused.
    fn finish(&mut self) -> (Vec<Queued>, bool) {
        let queued = self.queued.take().unwrap_or_default();
        let dirty = std::mem::take(&mut self.dirty);
        self.queued_bytes = 0;
        (queued, dirty)
    }

    /// Records a finished WATCH read of `generation`.
    pub(super) fn watched(&mut self, generation: u64, seen: Seen) {
        if generation != self.generation {
            return;
        }
        for (key, value) in seen {
            // The first WATCH of a key counts, as in Redis.
            self.watched.entry(key).or_insert(value);
        }
    }

    /// What EXEC carries: every watched key and what it held. Clears the
    /// watches (EXEC unwatches, as in Redis).
    pub(super) fn take_watched(&mut self) -> Vec<Watched> {
        let watched = std::mem::take(&mut self.watched)
            .into_iter()
            .map(|(key, value)| Watched {
                key: key.to_vec(),
                seen: value.map(|v| (v.value.to_vec(), v.expire_at_ms)),
            })
            .collect();
        self.generation += 1;
        watched
    }
}

/// A command's name for messages.
pub(super) fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Scan { .. } => "SCAN",
        Command::Keys { .. } => "KEYS",
        Command::DbSize => "DBSIZE",
        Command::Info { .. } => "INFO",
        _ => "this command",
    }
}

/// WATCH: a linearizable read of `keys`; `+OK` and what it saw.
pub(super) async fn watch<A: KvApi>(shared: &Shared<A>, keys: Vec<Bytes>) -> (Reply, Option<Seen>) {
    match shared
        .api
        .get_many(keys.clone(), Consistency::Linearizable)
        .await
    {
        Ok(values) if values.len() == keys.len() => {
            (Reply::ok(), Some(keys.into_iter().zip(values).collect()))
        }
        Ok(values) => (
            Reply::Error(format!(
                "ERR internal error: asked for {} keys, got {} answers",
                keys.len(),
                values.len()
            )),
            None,
        ),
        Err(error) => (api_error_reply(&error), None),
    }
}

/// EXEC: the queued requests as one log entry, then one reply per queued
/// command in order; a null array if a watched key changed.
pub(super) async fn exec<A: KvApi>(
    shared: Arc<Shared<A>>,
    queued: Vec<Queued>,
    watched: Vec<Watched>,
) -> Reply {
    let mut requests: Vec<Request> = queued
        .iter()
        .filter_map(|q| match q {
            Queued::Planned(planned) => Some(planned.request.clone()),
            Queued::Local(_) => None,
        })
        .collect();
    if requests.is_empty() && watched.is_empty() {
        return Reply::Array(queued.into_iter().map(local_or_missing).collect());
    }
    // The watches are checked at apply even with nothing to write: an
    // empty read stands in (a transaction is never empty).
    let placeholder = requests.is_empty();
    if placeholder {
        requests.push(Request::Read { keys: Vec::new() });
    }
    if exec_proposes_each() {
        return exec_one_by_one(&shared, queued, requests).await;
    }
    let answers = match shared
        .api
        .write(Request::Transaction { watched, requests })
        .await
    {
        Ok(Response::Multi(answers)) => answers,
        Ok(Response::Aborted) => return Reply::NullArray,
        Ok(Response::Rejected(why)) => return Reply::Error(format!("ERR {why}")),
        Ok(other) => {
            return Reply::Error(format!("ERR internal error: EXEC was answered {other:?}"))
        }
        Err(error) => return api_error_reply(&error),
    };
    let mut answers = answers.into_iter().skip(usize::from(placeholder));
    let mut replies = Vec::with_capacity(queued.len());
    for q in queued {
        replies.push(match q {
            Queued::Local(reply) => reply,
            Queued::Planned(planned) => match answers.next() {
                Some(response) => shared.shape(&planned.shape, response),
                None => Reply::Error("ERR internal error: EXEC lost an answer".to_string()),
            },
        });
    }
    Reply::Array(replies)
}

/// Whether the planted [`NodeBug::ExecProposesEach`] is on (read once
/// from `BALLAST_PLANTED_BUGS`; never without the `planted-bugs` feature).
fn exec_proposes_each() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        ballast_raft::planted::Planted::from_env()
            .is_ok_and(|planted| planted.has(ballast_raft::planted::NodeBug::ExecProposesEach))
    })
}

/// The planted [`NodeBug::ExecProposesEach`]: each queued request as an
/// entry of its own, as a transaction must never be run.
async fn exec_one_by_one<A: KvApi>(
    shared: &Shared<A>,
    queued: Vec<Queued>,
    requests: Vec<Request>,
) -> Reply {
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        answers.push(
            shared
                .api
                .write(request)
                .await
                .unwrap_or_else(|error| Response::Rejected(error.to_string())),
        );
    }
    let mut answers = answers.into_iter();
    Reply::Array(
        queued
            .into_iter()
            .map(|q| match q {
                Queued::Local(reply) => reply,
                Queued::Planned(planned) => answers
                    .next()
                    .map_or(Reply::NullBulk, |r| shared.shape(&planned.shape, r)),
            })
            .collect(),
    )
}

fn local_or_missing(queued: Queued) -> Reply {
    match queued {
        Queued::Local(reply) => reply,
        Queued::Planned(_) => Reply::Error("ERR internal error: EXEC lost a request".to_string()),
    }
}

/// Whether a parse error, while queueing, makes EXEC abort: Redis checks
/// the command name and the argument count before queueing, the rest
/// when the command runs.
pub(super) fn aborts_transaction(error: &Error) -> bool {
    matches!(
        error,
        Error::UnknownCommand { .. } | Error::WrongArity { .. }
    )
}
