//! One client connection: read, decode, dispatch, reply in order. The
//! module docs of [`super`] describe the rules; this file is the loop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ballast_raft::net::transport::BoxConnection;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::access::Access;
use super::metrics::Metrics;
use super::shared::{ClientEntry, Shared};
use super::table::{self, COMMANDS};
use super::transaction::{self, aborts_transaction, command_name, Job, Queued, Seen, Transaction};
use crate::api::{KvApi, Ordered};
use crate::command::{ClientQuery, Command, CommandQuery};
use crate::error::Error;
use crate::resp::{encode_as, Decoder, Protocol, Reply};

/// Bytes asked of the socket per read when the buffer has less room.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The Redis version ballast answers to (HELLO, INFO): clients gate
/// features on it, and ballast serves Redis 7's commands it lists.
pub(super) const REDIS_VERSION: &str = "7.0.0";

const NOAUTH: &str = "NOAUTH Authentication required.";
const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already authenticated, \
otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
select the RESP protocol version at the same time";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const AUTH_WITHOUT_PASSWORD: &str = "ERR AUTH <password> called without any password configured \
for the default user. Are you sure your configuration is correct?";

/// A request read from the connection, in order. Each carries the
/// protocol the connection spoke when it was read: a HELLO changes the
/// encoding of its own reply and of later ones, never of earlier replies
/// still waiting to be written.
enum Slot {
    /// Running against the API; `ordered` is set once the API has ordered
    /// its write (see [`Ordered`]).
    Running {
        access: Access,
        ordered: Arc<AtomicBool>,
        protocol: Protocol,
    },
    /// Answered, waiting for the replies before it.
    Ready(Reply, Protocol),
}

/// A finished request.
struct Done {
    seq: u64,
    reply: Reply,
    metric: usize,
    received: Instant,
    /// A WATCH's generation and what it read.
    watched: Option<(u64, Seen)>,
}

/// A parsed request waiting for an earlier, conflicting one.
struct Held {
    job: Job,
    access: Access,
    metric: usize,
    received: Instant,
}

struct Connection<A> {
    shared: Arc<Shared<A>>,
    id: u64,
    authenticated: bool,
    /// What HELLO chose; replies are encoded in it.
    protocol: Protocol,
    /// This connection's entry in the shared client table.
    client: ClientEntry,
    decoder: Decoder,
    input: BytesMut,
    output: BytesMut,
    /// Requests not yet written, oldest first; `slots[0]` has `first_seq`.
    slots: VecDeque<Slot>,
    first_seq: u64,
    running: JoinSet<Done>,
    /// Woken when a running write becomes ordered.
    ordered_wake: Arc<Notify>,
    held: Option<Held>,
    /// Read no more requests; close once every reply is written.
    closing: bool,
    /// The client closed its sending side.
    read_closed: bool,
    /// MULTI and WATCH state.
    tx: Transaction,
}

/// Counts the connection as open for as long as it lives, aborts included.
struct OpenGuard(Arc<Metrics>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// Removes the connection from the client table however it ends.
struct ClientGuard<A>(Arc<Shared<A>>, u64);

impl<A> Drop for ClientGuard<A> {
    fn drop(&mut self) {
        self.0.clients().remove(&self.1);
    }
}

/// Serves one connection until it closes.
pub(crate) async fn run<A: KvApi>(
    shared: Arc<Shared<A>>,
    stream: BoxConnection,
    id: u64,
    stop: watch::Receiver<bool>,
) {
    shared.metrics.connection_opened();
    let _open = OpenGuard(shared.metrics.clone());
    let decoder = match Decoder::new(shared.config.limits) {
        Ok(decoder) => decoder,
        Err(error) => {
            // validate() ran in RespServer::new; this cannot happen unless
            // the limits were changed since, so say so and hang up.
            tracing::error!(%error, "RESP decoder limits are invalid");
            return;
        }
    };
    let address = |addr: std::io::Result<std::net::SocketAddr>| {
        addr.map(|addr| addr.to_string()).unwrap_or_default()
    };
    let client = ClientEntry {
        addr: address(stream.peer_addr()),
        local_addr: address(stream.local_addr()),
        resp: Protocol::Resp2.version(),
        ..ClientEntry::default()
    };
    shared.clients().insert(id, client.clone());
    let _client = ClientGuard(shared.clone(), id);
    let connection = Connection {
        authenticated: shared.config.password.is_none(),
        protocol: Protocol::Resp2,
        client,
        shared,
        id,
        decoder,
        input: BytesMut::with_capacity(READ_CHUNK_BYTES),
        output: BytesMut::new(),
        slots: VecDeque::new(),
        first_seq: 0,
        running: JoinSet::new(),
        ordered_wake: Arc::new(Notify::new()),
        held: None,
        closing: false,
        read_closed: false,
        tx: Transaction::default(),
    };
    connection.serve(stream, stop).await;
}

impl<A: KvApi> Connection<A> {
    async fn serve(mut self, stream: BoxConnection, mut stop: watch::Receiver<bool>) {
        let (mut reader, mut writer) = stream.into_split();
        let stall = Duration::from_millis(self.shared.config.stall_timeout_ms);
        let idle = Duration::from_millis(self.shared.config.idle_timeout_ms);
        let mut last_read = Instant::now();
        let mut last_activity = last_read;
        // When unwritten replies last made progress (or appeared).
        let mut write_waiting_since: Option<Instant> = None;
        // Whether this loop already yielded once to let running requests
        // finish before writing what is ready.
        let mut deferred_write = false;
        loop {
            self.dispatch_buffered();
            if !self.drain_completed() {
                return;
            }
            self.flush_ready();
            // Replies written one at a time cost a syscall and a TCP segment
            // each. Requests answered together (one log entry answers many)
            // finish within a moment of each other: give them one yield to
            // finish, then write all the ready replies at once.
            if !self.output.is_empty() && !self.running.is_empty() && !deferred_write {
                deferred_write = true;
                tokio::task::yield_now().await;
                continue;
            }
            if self.output.is_empty() {
                write_waiting_since = None;
            } else if write_waiting_since.is_none() {
                write_waiting_since = Some(Instant::now());
            }
            let answered_all = self.slots.is_empty() && self.output.is_empty();
            if answered_all && (self.closing || self.read_closed) {
                break;
            }
            let can_read =
                !self.closing && !self.read_closed && self.held.is_none() && self.has_room();
            let partial_request = !self.input.is_empty() || self.decoder.pending_frame_bytes() > 0;
            let deadline = if let Some(since) = write_waiting_since {
                Some(since + stall)
            } else if can_read && partial_request {
                Some(last_read + stall)
            } else if !idle.is_zero() && answered_all {
                Some(last_activity + idle)
            } else {
                None
            };
            if self.input.capacity() - self.input.len() < READ_CHUNK_BYTES / 4 {
                self.input.reserve(READ_CHUNK_BYTES);
            }
            tokio::select! {
                changed = stop.changed(), if !self.closing => {
                    // Shutdown (or the server is gone): finish what was read.
                    let _ = changed;
                    self.closing = true;
                }
                read = reader.read_buf(&mut self.input), if can_read => match read {
                    Ok(0) => self.read_closed = true,
                    Ok(_) => {
                        last_read = Instant::now();
                        last_activity = last_read;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "RESP connection read failed");
                        return;
                    }
                },
                // A held request may now go ahead; the loop re-checks it.
                () = self.ordered_wake.notified(), if self.held.is_some() => {}
                Some(done) = self.running.join_next(), if !self.running.is_empty() => match done {
                    Ok(done) => {
                        last_activity = Instant::now();
                        self.complete(done);
                    }
                    Err(error) => {
                        // The reply of that request is lost; answering the
                        // later ones out of place would be worse.
                        tracing::error!(%error, "a RESP request task failed; closing the connection");
                        return;
                    }
                },
                written = writer.write_buf(&mut self.output), if !self.output.is_empty() => match written {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        deferred_write = false;
                        last_activity = Instant::now();
                        write_waiting_since = Some(last_activity);
                    }
                },
                () = sleep_until_or_never(deadline) => {
                    tracing::debug!(id = self.id, "RESP connection idle or stalled; closing it");
                    return;
                }
            }
        }
        let _ = writer.shutdown().await;
    }

    fn has_room(&self) -> bool {
        self.slots.len() < self.shared.config.pending_replies_max
            && self.output.len() < self.shared.config.reply_buffer_bytes_max
    }

    /// Decodes and dispatches buffered requests while the rules allow.
    fn dispatch_buffered(&mut self) {
        while !self.closing && self.has_room() {
            if let Some(held) = self.held.take() {
                if self.blocked(&held.access) {
                    self.held = Some(held);
                    return;
                }
                self.spawn(held);
                continue;
            }
            match self.decoder.decode(&mut self.input) {
                Ok(Some(args)) => self.dispatch(args),
                Ok(None) => return,
                Err(error) => {
                    self.answer(error.to_reply(), Metrics::slot(None), Instant::now());
                    if error.closes_connection() {
                        self.closing = true;
                    }
                }
            }
        }
    }

    /// Whether `access` must wait for an earlier request: one it conflicts
    /// with that is still running, unless `access` is a blind write and
    /// the earlier one is a write already ordered by the API (then the
    /// API applies them in this order).
    fn blocked(&self, access: &Access) -> bool {
        self.slots.iter().any(|slot| match slot {
            Slot::Running {
                access: running,
                ordered,
                ..
            } => {
                running.conflicts(access)
                    && !(access.blind_write && ordered.load(Ordering::Acquire))
            }
            Slot::Ready(..) => false,
        })
    }

    fn dispatch(&mut self, args: Vec<Bytes>) {
        let received = Instant::now();
        let name = args.first().map(|name| &name[..]);
        let metric = Metrics::slot(name);
        let no_auth_command = name
            .and_then(table::lookup)
            .is_some_and(|index| COMMANDS[index].flags.contains(&"no_auth"));
        let args_bytes: usize = args.iter().map(Bytes::len).sum();
        let command = match Command::parse(&args) {
            Ok(command) => command,
            Err(error) => {
                // Redis checks the name and arity before authentication,
                // the other arguments after.
                let before_auth = aborts_transaction(&error);
                let reply = if self.authenticated || before_auth || no_auth_command {
                    error.to_reply()
                } else {
                    Reply::Error(NOAUTH.to_string())
                };
                if self.tx.in_multi() && self.authenticated && !before_auth {
                    // Redis checks other arguments when the command runs:
                    // at EXEC, in its place.
                    let queued = self.tx.enqueue(Queued::Local(reply), args_bytes);
                    self.answer(queued, metric, received);
                    return;
                }
                let reply = match &error {
                    // Redis answers a refused EXEC so, in MULTI or not.
                    Error::WrongArity { command } if command == "exec" => {
                        self.tx.abort_exec(&error)
                    }
                    _ => reply,
                };
                self.tx.flag();
                self.answer(reply, metric, received);
                return;
            }
        };
        if !self.authenticated && !no_auth_command {
            self.tx.flag();
            self.answer(Reply::Error(NOAUTH.to_string()), metric, received);
            return;
        }
        let outcome = match command {
            Command::Multi
            | Command::Exec
            | Command::Discard
            | Command::Watch { .. }
            | Command::Unwatch => self.tx.command(command),
            Command::Quit => self.local_reply(Command::Quit).map_err(Job::Command),
            command if self.tx.in_multi() => Ok(self.queue(command, args_bytes)),
            command => self.local_reply(command).map_err(Job::Command),
        };
        match outcome {
            Ok(reply) => self.answer(reply, metric, received),
            Err(job) => self.dispatch_job(job, metric, received),
        }
    }

    /// A command parsed while in MULTI (not MULTI, EXEC, DISCARD, WATCH,
    /// QUIT): queued, answered `+QUEUED`.
    fn queue(&mut self, command: Command, args_bytes: usize) -> Reply {
        let queued = match self.local_reply(command) {
            Ok(reply) => Queued::Local(reply),
            Err(command) => match self.shared.plan(&command, true) {
                Ok(Some(planned)) => Queued::Planned(planned),
                Ok(None) => Queued::Local(Reply::Error(format!(
                    "ERR {} is not served inside MULTI; run it outside the transaction",
                    command_name(&command)
                ))),
                Err(reply) => Queued::Local(reply),
            },
        };
        self.tx.enqueue(queued, args_bytes)
    }

    /// Dispatches a job; it waits for the earlier requests it conflicts
    /// with, as every request does.
    fn dispatch_job(&mut self, job: Job, metric: usize, received: Instant) {
        let held = Held {
            access: Access::of_job(&job),
            job,
            metric,
            received,
        };
        if self.blocked(&held.access) {
            self.held = Some(held);
        } else {
            self.spawn(held);
        }
    }

    /// The reply of a command the connection answers by itself (PING,
    /// AUTH, HELLO, ...), or the command back if it needs the API.
    fn local_reply(&mut self, command: Command) -> Result<Reply, Command> {
        Ok(match command {
            Command::Ping { message: None } => Reply::Simple("PONG".to_string()),
            Command::Ping {
                message: Some(message),
            } => Reply::Bulk(message),
            Command::Echo { message } => Reply::Bulk(message),
            Command::Command(query) => command_reply(query),
            Command::Auth { username, password } => {
                match self.check_password(username.as_deref(), &password) {
                    Ok(()) => {
                        self.authenticated = true;
                        Reply::ok()
                    }
                    Err(reply) => reply,
                }
            }
            Command::Hello {
                protocol,
                auth,
                client_name,
            } => self.hello(protocol, auth, client_name),
            Command::Select => Reply::ok(),
            Command::Time => {
                // The node's clock (simulated under turmoil), in Redis's
                // shape: seconds and microseconds as bulk strings.
                let now_ms = self.shared.api.now_ms();
                Reply::Array(vec![
                    Reply::bulk((now_ms / 1000).to_string()),
                    Reply::bulk(((now_ms % 1000) * 1000).to_string()),
                ])
            }
            Command::Client(query) => self.client_reply(query),
            Command::Quit => {
                self.closing = true;
                Reply::ok()
            }
            command => return Err(command),
        })
    }

    fn next_seq(&self) -> u64 {
        self.first_seq + self.slots.len() as u64
    }

    /// Queues a reply that is already known.
    fn answer(&mut self, reply: Reply, metric: usize, received: Instant) {
        self.record(metric, received, &reply);
        self.slots.push_back(Slot::Ready(reply, self.protocol));
    }

    fn spawn(&mut self, held: Held) {
        let seq = self.next_seq();
        let ordered = Arc::new(AtomicBool::new(false));
        let signal = Ordered::new(ordered.clone(), self.ordered_wake.clone());
        self.slots.push_back(Slot::Running {
            access: held.access,
            ordered,
            protocol: self.protocol,
        });
        let shared = self.shared.clone();
        let (metric, received) = (held.metric, held.received);
        // EXEC takes the watches when it runs: a WATCH before it has
        // finished by then (EXEC waits for every earlier request).
        let watched = match &held.job {
            Job::Exec(_) => self.tx.take_watched(),
            _ => Vec::new(),
        };
        self.running.spawn(async move {
            let (reply, watched) = match held.job {
                Job::Command(command) => (shared.execute(command, signal).await, None),
                Job::Watch(keys, generation) => {
                    let (reply, seen) = transaction::watch(&shared, keys).await;
                    (reply, seen.map(|seen| (generation, seen)))
                }
                Job::Exec(queued) => (transaction::exec(shared, queued, watched).await, None),
            };
            Done {
                seq,
                reply,
                metric,
                received,
                watched,
            }
        });
    }

    /// Takes the answers of every request that has finished, without
    /// waiting. False if a request task failed (the connection must close).
    fn drain_completed(&mut self) -> bool {
        while let Some(done) = self.running.try_join_next() {
            match done {
                Ok(done) => self.complete(done),
                Err(error) => {
                    tracing::error!(%error, "a RESP request task failed; closing the connection");
                    return false;
                }
            }
        }
        true
    }

    fn complete(&mut self, done: Done) {
        self.record(done.metric, done.received, &done.reply);
        if let Some((generation, seen)) = done.watched {
            self.tx.watched(generation, seen);
        }
        let index = done.seq.checked_sub(self.first_seq).map(|i| i as usize);
        match index.and_then(|index| self.slots.get_mut(index)) {
            Some(slot @ Slot::Running { .. }) => {
                if let Slot::Running { protocol, .. } = *slot {
                    *slot = Slot::Ready(done.reply, protocol);
                }
            }
            _ => tracing::error!(seq = done.seq, "a RESP reply has no request waiting for it"),
        }
    }

    fn record(&self, metric: usize, received: Instant, reply: &Reply) {
        let latency_us = u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared
            .metrics
            .record(metric, latency_us, matches!(reply, Reply::Error(_)));
    }

    /// Moves the answered prefix of the requests into the output buffer.
    fn flush_ready(&mut self) {
        while let Some(Slot::Ready(..)) = self.slots.front() {
            if let Some(Slot::Ready(reply, protocol)) = self.slots.pop_front() {
                encode_as(&reply, protocol, &mut self.output);
                self.first_seq += 1;
            }
        }
    }

    fn check_password(&self, username: Option<&[u8]>, password: &[u8]) -> Result<(), Reply> {
        let default_user = username.is_none_or(|name| name == b"default");
        match &self.shared.config.password {
            // Without a password the default user takes any password, as
            // Redis's `nopass` default user does; bare AUTH is a mistake.
            None if username.is_none() => Err(Reply::Error(AUTH_WITHOUT_PASSWORD.to_string())),
            None if default_user => Ok(()),
            Some(expected) if default_user && same_secret(expected.as_bytes(), password) => Ok(()),
            _ => Err(Reply::Error(WRONGPASS.to_string())),
        }
    }

    /// HELLO: authenticates if asked, switches protocol, names the
    /// connection, and answers Redis 7's map of server facts (a map in
    /// RESP3, a flat array in RESP2). Nothing changes when a step fails.
    fn hello(
        &mut self,
        protocol: Option<Protocol>,
        auth: Option<(Bytes, Bytes)>,
        client_name: Option<Bytes>,
    ) -> Reply {
        match auth {
            Some((username, password)) => {
                if let Err(reply) = self.check_password(Some(&username), &password) {
                    return reply;
                }
                self.authenticated = true;
            }
            None if !self.authenticated => return Reply::Error(NOAUTH_HELLO.to_string()),
            None => {}
        }
        if let Some(protocol) = protocol {
            self.protocol = protocol;
            self.client.resp = protocol.version();
        }
        if let Some(name) = client_name {
            self.set_client_name(name);
        }
        self.publish_client();
        let role = if self.shared.api.status().role == "leader" {
            "master"
        } else {
            "replica"
        };
        let field = |name: &str, value: Reply| (Reply::bulk(name), value);
        Reply::Map(vec![
            field("server", Reply::bulk("redis")),
            field("version", Reply::bulk(REDIS_VERSION)),
            field("proto", Reply::Integer(self.protocol.version())),
            field(
                "id",
                Reply::Integer(i64::try_from(self.id).unwrap_or(i64::MAX)),
            ),
            field("mode", Reply::bulk("standalone")),
            field("role", Reply::bulk(role)),
            field("modules", Reply::Array(vec![])),
        ])
    }

    /// Redis clears the name on an empty one.
    fn set_client_name(&mut self, name: Bytes) {
        self.client.name = (!name.is_empty()).then_some(name);
    }

    /// Copies this connection's entry into the shared table.
    fn publish_client(&self) {
        self.shared.clients().insert(self.id, self.client.clone());
    }

    fn client_reply(&mut self, query: ClientQuery) -> Reply {
        match query {
            ClientQuery::Id => Reply::Integer(i64::try_from(self.id).unwrap_or(i64::MAX)),
            ClientQuery::GetName => self
                .client
                .name
                .clone()
                .map_or(Reply::NullBulk, Reply::Bulk),
            ClientQuery::SetName(name) => {
                self.set_client_name(name);
                self.publish_client();
                Reply::ok()
            }
            ClientQuery::SetInfo { lib_name, value } => {
                let slot = if lib_name {
                    &mut self.client.lib_name
                } else {
                    &mut self.client.lib_ver
                };
                *slot = Some(value);
                self.publish_client();
                Reply::ok()
            }
            ClientQuery::Info => Reply::Verbatim(format!("{}\n", self.client.line(self.id))),
            ClientQuery::List => {
                let mut text = String::new();
                for (id, client) in self.shared.clients().iter() {
                    text.push_str(&client.line(*id));
                    text.push('\n');
                }
                Reply::Verbatim(text)
            }
        }
    }
}

/// Compares a secret without stopping at the first difference.
fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    expected.len() == given.len()
        && expected
            .iter()
            .zip(given)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

fn command_reply(query: CommandQuery) -> Reply {
    let named = |names: &[Bytes]| -> Vec<Option<&'static table::CommandSpec>> {
        if names.is_empty() {
            COMMANDS.iter().map(Some).collect()
        } else {
            names
                .iter()
                .map(|name| table::lookup(name).map(|index| &COMMANDS[index]))
                .collect()
        }
    };
    match query {
        CommandQuery::All => Reply::Array(COMMANDS.iter().map(table::info_reply).collect()),
        CommandQuery::Count => Reply::Integer(COMMANDS.len() as i64),
        CommandQuery::List => {
            Reply::Array(COMMANDS.iter().map(|spec| Reply::bulk(spec.name)).collect())
        }
        CommandQuery::Info(names) => Reply::Array(
            named(&names)
                .into_iter()
                .map(|spec| spec.map_or(Reply::NullBulk, table::info_reply))
                .collect(),
        ),
        CommandQuery::Docs(names) => Reply::Map(
            named(&names)
                .into_iter()
                .flatten()
                .map(table::docs_reply)
                .collect(),
        ),
        CommandQuery::Help => Reply::Array(
            [
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all commands.",
                "COUNT",
                "    Return the total number of commands in this server.",
                "LIST",
                "    Return a list of all commands in this server.",
                "INFO [<command-name> ...]",
                "    Return details about the given commands, or all of them.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about the given commands, or all of them.",
                "HELP",
                "    Print this help.",
            ]
            .iter()
            .map(|line| Reply::Simple((*line).to_string()))
            .collect(),
        ),
    }
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
