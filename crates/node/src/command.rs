//! Requests as typed commands, parsed with Redis's arity rules and error
//! texts so that clients see exactly what Redis would tell them.
//!
//! Parsing checks only the shape of a request (arity, options, integer
//! syntax); whether a key holds an integer, or whether a password is
//! right, is for the server to decide.

use bytes::Bytes;

use crate::error::Error;
use crate::resp::integer::parse_i64;
use crate::resp::Protocol;

mod grammar;
use grammar::{parse_client_query, parse_command_query, parse_hello, parse_scan, parse_set};

/// Bytes of the command name and of the arguments quoted in an
/// unknown-command error, as in Redis.
const UNKNOWN_COMMAND_QUOTE_BYTES_MAX: usize = 128;

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
}

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

impl Command {
    /// Parses a decoded request (command name first). Names and options
    /// are case-insensitive.
    ///
    /// ```
    /// use ballast_node::{Command, Error};
    /// let args: Vec<bytes::Bytes> = vec!["get".into()];
    /// assert_eq!(
    ///     Command::parse(&args).unwrap_err().to_string(),
    ///     "ERR wrong number of arguments for 'get' command"
    /// );
    /// ```
    pub fn parse(args: &[Bytes]) -> Result<Command, Error> {
        let Some((name, rest)) = args.split_first() else {
            // The decoder never yields an empty request; treat one as an
            // unknown empty command rather than trusting that here.
            return Err(unknown_command(args));
        };
        let name = name.to_ascii_lowercase();
        let arity = |ok: bool| -> Result<(), Error> {
            if ok {
                Ok(())
            } else {
                Err(wrong_arity(&String::from_utf8_lossy(&name)))
            }
        };
        let command = match name.as_slice() {
            b"ping" => {
                arity(rest.len() <= 1)?;
                Command::Ping {
                    message: rest.first().cloned(),
                }
            }
            b"echo" => {
                arity(rest.len() == 1)?;
                Command::Echo {
                    message: rest[0].clone(),
                }
            }
            b"get" => {
                arity(rest.len() == 1)?;
                Command::Get {
                    key: rest[0].clone(),
                }
            }
            b"set" => {
                arity(rest.len() >= 2)?;
                parse_set(rest)?
            }
            b"del" | b"exists" | b"mget" => {
                arity(!rest.is_empty())?;
                let keys = rest.to_vec();
                match name.as_slice() {
                    b"del" => Command::Del { keys },
                    b"exists" => Command::Exists { keys },
                    _ => Command::MGet { keys },
                }
            }
            b"mset" => {
                arity(!rest.is_empty() && rest.len() % 2 == 0)?;
                Command::MSet {
                    pairs: rest
                        .chunks_exact(2)
                        .map(|pair| (pair[0].clone(), pair[1].clone()))
                        .collect(),
                }
            }
            b"incr" | b"decr" => {
                arity(rest.len() == 1)?;
                Command::IncrBy {
                    key: rest[0].clone(),
                    delta: if name.as_slice() == b"incr" { 1 } else { -1 },
                }
            }
            b"incrby" => {
                arity(rest.len() == 2)?;
                Command::IncrBy {
                    key: rest[0].clone(),
                    delta: integer(&rest[1])?,
                }
            }
            b"expire" | b"pexpire" => {
                arity(rest.len() >= 2)?;
                Command::Expire {
                    key: rest[0].clone(),
                    ttl_ms: expire_amount_ms(&name, rest)?,
                }
            }
            b"ttl" | b"pttl" => {
                arity(rest.len() == 1)?;
                Command::Ttl {
                    key: rest[0].clone(),
                    unit: unit_of(&name),
                }
            }
            b"persist" => {
                arity(rest.len() == 1)?;
                Command::Persist {
                    key: rest[0].clone(),
                }
            }
            b"scan" => {
                arity(!rest.is_empty())?;
                parse_scan(rest)?
            }
            b"dbsize" => {
                arity(rest.is_empty())?;
                Command::DbSize
            }
            b"info" => Command::Info {
                sections: rest.to_vec(),
            },
            b"command" => Command::Command(parse_command_query(rest)?),
            b"auth" => match rest {
                [] => return Err(wrong_arity("auth")),
                [password] => Command::Auth {
                    username: None,
                    password: password.clone(),
                },
                [username, password] => Command::Auth {
                    username: Some(username.clone()),
                    password: password.clone(),
                },
                // Redis answers a syntax error here, not an arity error.
                _ => return Err(Error::Syntax),
            },
            b"hello" => parse_hello(rest)?,
            b"quit" => Command::Quit,
            b"setnx" | b"getset" => {
                arity(rest.len() == 2)?;
                let (key, value) = (rest[0].clone(), rest[1].clone());
                if name.as_slice() == b"setnx" {
                    Command::SetNx { key, value }
                } else {
                    Command::GetSet { key, value }
                }
            }
            b"setex" | b"psetex" => {
                arity(rest.len() == 3)?;
                let command = String::from_utf8_lossy(&name).into_owned();
                let invalid = || Error::InvalidExpireTime {
                    command: command.clone(),
                };
                let amount = integer(&rest[1])?;
                if amount <= 0 {
                    return Err(invalid());
                }
                let expire_ms = if name.as_slice() == b"setex" {
                    amount.checked_mul(1000).ok_or_else(invalid)?
                } else {
                    amount
                };
                Command::Set {
                    key: rest[0].clone(),
                    value: rest[2].clone(),
                    expire_ms: Some(expire_ms),
                    condition: None,
                    get: false,
                }
            }
            b"decrby" => {
                arity(rest.len() == 2)?;
                let delta = integer(&rest[1])?;
                Command::IncrBy {
                    key: rest[0].clone(),
                    // Redis refuses the one delta it cannot negate.
                    delta: delta.checked_neg().ok_or(Error::DecrementOverflow)?,
                }
            }
            b"strlen" | b"type" => {
                arity(rest.len() == 1)?;
                let key = rest[0].clone();
                if name.as_slice() == b"strlen" {
                    Command::Strlen { key }
                } else {
                    Command::Type { key }
                }
            }
            b"getrange" => {
                arity(rest.len() == 3)?;
                Command::GetRange {
                    key: rest[0].clone(),
                    start: integer(&rest[1])?,
                    end: integer(&rest[2])?,
                }
            }
            b"unlink" => {
                arity(!rest.is_empty())?;
                Command::Del {
                    keys: rest.to_vec(),
                }
            }
            b"touch" => {
                arity(!rest.is_empty())?;
                Command::Touch {
                    keys: rest.to_vec(),
                }
            }
            b"expireat" | b"pexpireat" => {
                arity(rest.len() >= 2)?;
                Command::ExpireAt {
                    key: rest[0].clone(),
                    at_ms: expire_amount_ms(&name, rest)?,
                }
            }
            b"expiretime" | b"pexpiretime" => {
                arity(rest.len() == 1)?;
                Command::ExpireTime {
                    key: rest[0].clone(),
                    unit: unit_of(&name),
                }
            }
            b"keys" => {
                arity(rest.len() == 1)?;
                Command::Keys {
                    pattern: rest[0].clone(),
                }
            }
            b"select" => {
                arity(rest.len() == 1)?;
                // Redis reads the index as a C int, with its own error for
                // an integer outside that range.
                let index = i32::try_from(integer(&rest[0])?).map_err(|_| Error::NotAnInt32)?;
                if index != 0 {
                    return Err(Error::DbIndexOutOfRange);
                }
                Command::Select
            }
            b"time" => {
                arity(rest.is_empty())?;
                Command::Time
            }
            b"client" => Command::Client(parse_client_query(rest)?),
            b"cas" => {
                arity(rest.len() == 3)?;
                Command::Cas {
                    key: rest[0].clone(),
                    expected: rest[1].clone(),
                    new: rest[2].clone(),
                }
            }
            _ => return Err(unknown_command(args)),
        };
        Ok(command)
    }
}

/// The unit of a time command: the `P` forms count milliseconds.
fn unit_of(name: &[u8]) -> TimeUnit {
    if name.first() == Some(&b'p') {
        TimeUnit::Milliseconds
    } else {
        TimeUnit::Seconds
    }
}

/// The time argument of EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT, in
/// milliseconds. Redis 7's NX / XX / GT / LT are not served (yet): any
/// third argument is refused.
fn expire_amount_ms(name: &[u8], rest: &[Bytes]) -> Result<i64, Error> {
    if let Some(option) = rest.get(2) {
        return Err(Error::UnsupportedOption {
            option: String::from_utf8_lossy(option).into_owned(),
        });
    }
    let amount = integer(&rest[1])?;
    match unit_of(name) {
        TimeUnit::Milliseconds => Ok(amount),
        TimeUnit::Seconds => amount
            .checked_mul(1000)
            .ok_or_else(|| Error::InvalidExpireTime {
                command: String::from_utf8_lossy(name).into_owned(),
            }),
    }
}

fn wrong_arity(command: &str) -> Error {
    Error::WrongArity {
        command: command.to_string(),
    }
}

fn integer(arg: &[u8]) -> Result<i64, Error> {
    parse_i64(arg).ok_or(Error::NotAnInteger)
}

/// Redis's text: the name and the first arguments, each cut so that the
/// quoted arguments stay near 128 bytes.
fn unknown_command(args: &[Bytes]) -> Error {
    let name = args
        .first()
        .map(|name| truncated(name, UNKNOWN_COMMAND_QUOTE_BYTES_MAX));
    let mut quoted = String::new();
    for arg in args.iter().skip(1) {
        if quoted.len() >= UNKNOWN_COMMAND_QUOTE_BYTES_MAX {
            break;
        }
        let room = UNKNOWN_COMMAND_QUOTE_BYTES_MAX - quoted.len();
        quoted.push('\'');
        quoted.push_str(&truncated(arg, room));
        quoted.push_str("' ");
    }
    Error::UnknownCommand {
        name: name.unwrap_or_default(),
        args: quoted,
    }
}

fn truncated(bytes: &[u8], bytes_max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(bytes_max)]).into_owned()
}
