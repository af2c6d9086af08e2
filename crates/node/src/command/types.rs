//! The typed commands a client request parses into.

use bytes::Bytes;

use crate::resp::Protocol;

/// A typed client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PING [message]`: `+PONG`, or the message as a bulk string.
    Ping {
        /// Echoed back when present.
        message: Option<Bytes>,
    },
    /// `ECHO message`.
    Echo {
        /// Echoed back.
        message: Bytes,
    },
    /// `GET key`.
    Get {
        /// The key.
        key: Bytes,
    },
    /// `SET key value [NX | XX] [GET] [EX seconds | PX milliseconds]`,
    /// options in any order.
    Set {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
        /// Time to live; `None` clears any existing TTL, as in Redis.
        expire_ms: Option<i64>,
        /// Only set if the key is absent (NX) or present (XX).
        condition: Option<SetCondition>,
        /// Reply with the old value instead of `OK`.
        get: bool,
    },
    /// `DEL key [key ...]`: how many existed.
    Del {
        /// At least one key.
        keys: Vec<Bytes>,
    },
    /// `EXISTS key [key ...]`: how many exist, counting repeats.
    Exists {
        /// At least one key.
        keys: Vec<Bytes>,
    },
    /// `MGET key [key ...]`.
    MGet {
        /// At least one key.
        keys: Vec<Bytes>,
    },
    /// `MSET key value [key value ...]`, applied atomically.
    MSet {
        /// At least one pair.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `INCR key`, `DECR key` and `INCRBY key delta`: add to an integer value.
    IncrBy {
        /// The key.
        key: Bytes,
        /// 1 for INCR, -1 for DECR.
        delta: i64,
    },
    /// `EXPIRE key seconds` and `PEXPIRE key milliseconds`. A time that is
    /// not positive deletes the key, as in Redis.
    Expire {
        /// The key.
        key: Bytes,
        /// Time to live from now, converted to milliseconds.
        ttl_ms: i64,
        /// Redis 7's NX / XX / GT / LT.
        condition: ExpireCondition,
        /// The unit the client gave (EXPIRE or PEXPIRE), for error texts.
        unit: TimeUnit,
    },
    /// `TTL key` and `PTTL key`: remaining time to live, -1 without TTL,
    /// -2 when the key is missing.
    Ttl {
        /// The key.
        key: Bytes,
        /// Unit of the reply.
        unit: TimeUnit,
    },
    /// `PERSIST key`: drop the TTL.
    Persist {
        /// The key.
        key: Bytes,
    },
    /// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
    Scan {
        /// 0 starts a scan; the server returns the next cursor.
        cursor: u64,
        /// Glob pattern (see [`crate::glob`]); `None` for every key,
        /// including a bare `*`, which Redis also treats as every key.
        pattern: Option<Bytes>,
        /// Hint of how many keys to examine per call, at least 1.
        count: Option<u64>,
        /// Only keys of this type (`string` is the only one ballast has).
        type_name: Option<Bytes>,
    },
    /// `DBSIZE`.
    DbSize,
    /// `FLUSHALL [ASYNC|SYNC]` and `FLUSHDB [ASYNC|SYNC]` (one database, so
    /// the same): every key goes, as one log entry. ASYNC and SYNC are
    /// accepted and mean the same: the entry is one range delete, as cheap
    /// as Redis's lazy free, and the reply waits for it to be applied.
    FlushAll,
    /// `INFO [section ...]`.
    Info {
        /// Requested sections, as sent; empty for the default set.
        sections: Vec<Bytes>,
    },
    /// `COMMAND [subcommand ...]`: redis-cli sends `COMMAND DOCS` on connect.
    Command(CommandQuery),
    /// `AUTH [username] password`.
    Auth {
        /// `None` means the default user.
        username: Option<Bytes>,
        /// The password.
        password: Bytes,
    },
    /// `HELLO [protover [AUTH username password] [SETNAME name]]`:
    /// protocol 2 or 3; any other version is refused with `NOPROTO`.
    Hello {
        /// The protocol to switch to; `None` keeps the current one.
        protocol: Option<Protocol>,
        /// Credentials to authenticate with first.
        auth: Option<(Bytes, Bytes)>,
        /// A connection name.
        client_name: Option<Bytes>,
    },
    /// `QUIT`: reply `+OK`, then close. Redis ignores extra arguments.
    Quit,
    /// `SETNX key value`: SET NX answering 1 or 0.
    SetNx {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// `GETSET key value`: SET GET (drops any TTL, as in Redis).
    GetSet {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// `STRLEN key`: the value's length, 0 for a missing key.
    Strlen {
        /// The key.
        key: Bytes,
    },
    /// `GETRANGE key start end`: a substring, Redis's index rules.
    GetRange {
        /// The key.
        key: Bytes,
        /// First byte (negative: from the end).
        start: i64,
        /// Last byte, inclusive (negative: from the end).
        end: i64,
    },
    /// `EXPIREAT key unix-seconds` and `PEXPIREAT key unix-ms`. A time in
    /// the past deletes the key, as in Redis.
    ExpireAt {
        /// The key.
        key: Bytes,
        /// Absolute deadline in milliseconds since the Unix epoch.
        at_ms: i64,
        /// Redis 7's NX / XX / GT / LT.
        condition: ExpireCondition,
    },
    /// `EXPIRETIME key` and `PEXPIRETIME key`: the absolute deadline, -1
    /// without TTL, -2 when the key is missing.
    ExpireTime {
        /// The key.
        key: Bytes,
        /// Unit of the reply.
        unit: TimeUnit,
    },
    /// `KEYS pattern`: every key matching the glob (see [`crate::glob`]).
    Keys {
        /// The glob pattern.
        pattern: Bytes,
    },
    /// `TYPE key`: `string`, or `none` for a missing key.
    Type {
        /// The key.
        key: Bytes,
    },
    /// `TOUCH key [key ...]`: how many exist, counting repeats.
    Touch {
        /// At least one key.
        keys: Vec<Bytes>,
    },
    /// `SELECT index`: only database 0 exists.
    Select,
    /// `TIME`: the node's clock as seconds and microseconds.
    Time,
    /// `CLIENT subcommand ...`: this connection's name and identity.
    Client(ClientQuery),
    /// `CAS key expected new`: set `key` to `new` only if it holds
    /// `expected`; ballast's compare-and-set.
    Cas {
        /// The key.
        key: Bytes,
        /// The value the key must hold.
        expected: Bytes,
        /// The value to store.
        new: Bytes,
    },
    /// `GETDEL key`: the value, and the key removed.
    GetDel {
        /// The key.
        key: Bytes,
    },
    /// `GETEX key [EX s | PX ms | EXAT ts | PXAT ms | PERSIST]`.
    GetEx {
        /// The key.
        key: Bytes,
        /// The expiry to set; `None`: a plain read.
        change: Option<ExpiryChange>,
    },
    /// `APPEND key value`: the new length.
    Append {
        /// The key.
        key: Bytes,
        /// The bytes to append.
        value: Bytes,
    },
    /// `SETRANGE key offset value`: the new length.
    SetRange {
        /// The key.
        key: Bytes,
        /// Byte offset, not negative.
        offset: u64,
        /// The bytes to write.
        value: Bytes,
    },
    /// `INCRBYFLOAT key increment`: the new value as Redis prints it.
    IncrByFloat {
        /// The key.
        key: Bytes,
        /// The increment, a float Redis accepts (checked by the parser).
        increment: Bytes,
    },
    /// `RENAME key newkey` and `RENAMENX key newkey`.
    Rename {
        /// The source key.
        from: Bytes,
        /// The destination key.
        to: Bytes,
        /// RENAMENX: only if `to` does not exist.
        only_if_absent: bool,
    },
    /// `MSETNX key value [key value ...]`: all or nothing, 1 or 0.
    MSetNx {
        /// At least one pair.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `MULTI`: start queueing.
    Multi,
    /// `EXEC`: run what was queued, as one log entry.
    Exec,
    /// `DISCARD`: drop what was queued.
    Discard,
    /// `WATCH key [key ...]`: EXEC aborts if one of them changes.
    Watch {
        /// At least one key.
        keys: Vec<Bytes>,
    },
    /// `UNWATCH`.
    Unwatch,
}

/// GETEX's expiry option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryChange {
    /// PERSIST: drop the expiry.
    Persist,
    /// EX / PX: milliseconds from now, positive.
    InMs(i64),
    /// EXAT / PXAT: milliseconds since the Unix epoch, positive.
    AtMs(i64),
}

pub use ballast_raft::typ::ExpireCondition;

/// SET's NX / XX condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if the key exists.
    IfPresent,
}

/// Unit of a TTL reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// TTL.
    Seconds,
    /// PTTL.
    Milliseconds,
}

/// What `CLIENT` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientQuery {
    /// `CLIENT ID`.
    Id,
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT SETNAME name`; an empty name clears it.
    SetName(Bytes),
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
    SetInfo {
        /// True for LIB-NAME, false for LIB-VER.
        lib_name: bool,
        /// The value.
        value: Bytes,
    },
    /// `CLIENT INFO`: this connection's line.
    Info,
    /// `CLIENT LIST`: one line per open connection.
    List,
}

/// What `COMMAND` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandQuery {
    /// Bare `COMMAND`: details of every command.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND LIST`.
    List,
    /// `COMMAND DOCS [name ...]`; empty for all.
    Docs(Vec<Bytes>),
    /// `COMMAND INFO [name ...]`; empty for all.
    Info(Vec<Bytes>),
    /// `COMMAND HELP`.
    Help,
}
