//! Requests as typed commands, parsed with Redis's arity rules and error
//! texts so that clients see exactly what Redis would tell them.
//!
//! Parsing checks only the shape of a request (arity, options, integer
//! syntax); whether a key holds an integer, or whether a password is
//! right, is for the server to decide.

use bytes::Bytes;

use crate::error::Error;
use crate::resp::integer::parse_i64;

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
    /// `HELLO [2 [AUTH username password] [SETNAME name]]`. Only protocol
    /// 2 is served; `HELLO 3` is refused with `NOPROTO`.
    Hello {
        /// Credentials to authenticate with first.
        auth: Option<(Bytes, Bytes)>,
        /// A connection name.
        client_name: Option<Bytes>,
    },
    /// `QUIT`: reply `+OK`, then close. Redis ignores extra arguments.
    Quit,
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
                if let Some(option) = rest.get(2) {
                    // Redis 7's NX / XX / GT / LT are not served (yet).
                    return Err(Error::UnsupportedOption {
                        option: String::from_utf8_lossy(option).into_owned(),
                    });
                }
                let amount = integer(&rest[1])?;
                let ttl_ms = if name.as_slice() == b"expire" {
                    amount
                        .checked_mul(1000)
                        .ok_or_else(|| Error::InvalidExpireTime {
                            command: "expire".to_string(),
                        })?
                } else {
                    amount
                };
                Command::Expire {
                    key: rest[0].clone(),
                    ttl_ms,
                }
            }
            b"ttl" | b"pttl" => {
                arity(rest.len() == 1)?;
                Command::Ttl {
                    key: rest[0].clone(),
                    unit: if name.as_slice() == b"ttl" {
                        TimeUnit::Seconds
                    } else {
                        TimeUnit::Milliseconds
                    },
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

/// Redis's SET option grammar: options in any order, repeats allowed,
/// NX with XX and EX with PX refused; every option is read before the
/// expire time is parsed, so a syntax error wins over a bad integer.
fn parse_set(rest: &[Bytes]) -> Result<Command, Error> {
    let mut condition = None;
    let mut get = false;
    let mut expire: Option<(TimeUnit, &Bytes)> = None;
    let mut index = 2;
    while index < rest.len() {
        let option = rest[index].to_ascii_uppercase();
        let next = rest.get(index + 1);
        match (option.as_slice(), next) {
            (b"NX", _) if condition != Some(SetCondition::IfPresent) => {
                condition = Some(SetCondition::IfAbsent)
            }
            (b"XX", _) if condition != Some(SetCondition::IfAbsent) => {
                condition = Some(SetCondition::IfPresent)
            }
            (b"GET", _) => get = true,
            (b"EX", Some(value)) if !matches!(expire, Some((TimeUnit::Milliseconds, _))) => {
                expire = Some((TimeUnit::Seconds, value));
                index += 1;
            }
            (b"PX", Some(value)) if !matches!(expire, Some((TimeUnit::Seconds, _))) => {
                expire = Some((TimeUnit::Milliseconds, value));
                index += 1;
            }
            _ => return Err(Error::Syntax),
        }
        index += 1;
    }
    let expire_ms = match expire {
        None => None,
        Some((unit, value)) => {
            let invalid = || Error::InvalidExpireTime {
                command: "set".to_string(),
            };
            let amount = integer(value)?;
            if amount <= 0 {
                return Err(invalid());
            }
            Some(match unit {
                TimeUnit::Seconds => amount.checked_mul(1000).ok_or_else(invalid)?,
                TimeUnit::Milliseconds => amount,
            })
        }
    };
    Ok(Command::Set {
        key: rest[0].clone(),
        value: rest[1].clone(),
        expire_ms,
        condition,
        get,
    })
}

/// Redis's SCAN grammar: the cursor first (`ERR invalid cursor`), then
/// option pairs; a COUNT below 1 is a syntax error.
fn parse_scan(rest: &[Bytes]) -> Result<Command, Error> {
    let cursor = std::str::from_utf8(&rest[0])
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or(Error::InvalidCursor)?;
    let mut pattern = None;
    let mut count = None;
    let mut type_name = None;
    let mut options = rest[1..].iter();
    while let Some(option) = options.next() {
        let option = option.to_ascii_uppercase();
        let Some(value) = options.next() else {
            return Err(Error::Syntax);
        };
        match option.as_slice() {
            b"MATCH" => pattern = Some(value.clone()),
            b"COUNT" => {
                let value = integer(value)?;
                if value < 1 {
                    return Err(Error::Syntax);
                }
                count = Some(value.unsigned_abs());
            }
            b"TYPE" => type_name = Some(value.clone()),
            _ => return Err(Error::Syntax),
        }
    }
    Ok(Command::Scan {
        cursor,
        pattern: pattern.filter(|pattern| !crate::glob::matches_every_key(pattern)),
        count,
        type_name,
    })
}

fn parse_command_query(rest: &[Bytes]) -> Result<CommandQuery, Error> {
    let Some((subcommand, names)) = rest.split_first() else {
        return Ok(CommandQuery::All);
    };
    let lower = subcommand.to_ascii_lowercase();
    let exact = |query: CommandQuery| {
        if names.is_empty() {
            Ok(query)
        } else {
            Err(wrong_arity(&format!(
                "command|{}",
                String::from_utf8_lossy(&lower)
            )))
        }
    };
    match lower.as_slice() {
        b"count" => exact(CommandQuery::Count),
        b"list" => exact(CommandQuery::List),
        b"help" => exact(CommandQuery::Help),
        b"docs" => Ok(CommandQuery::Docs(names.to_vec())),
        b"info" => Ok(CommandQuery::Info(names.to_vec())),
        _ => Err(Error::UnknownSubcommand {
            command: "COMMAND".to_string(),
            subcommand: truncated(subcommand, UNKNOWN_COMMAND_QUOTE_BYTES_MAX),
        }),
    }
}

/// Redis's HELLO grammar: the protocol version is checked before the
/// options, so `HELLO 3 AUTH ...` is refused with NOPROTO.
fn parse_hello(rest: &[Bytes]) -> Result<Command, Error> {
    let Some((version, options)) = rest.split_first() else {
        return Ok(Command::Hello {
            auth: None,
            client_name: None,
        });
    };
    let version = parse_i64(version).ok_or(Error::InvalidProtocolVersion)?;
    if version != 2 {
        // 3 is valid RESP but not served: ballast speaks RESP2 only.
        return Err(Error::NoProto);
    }
    let mut auth = None;
    let mut client_name = None;
    let mut index = 0;
    while index < options.len() {
        let option = options[index].to_ascii_uppercase();
        let more = options.len() - index - 1;
        match option.as_slice() {
            b"AUTH" if more >= 2 => {
                auth = Some((options[index + 1].clone(), options[index + 2].clone()));
                index += 3;
            }
            b"SETNAME" if more >= 1 => {
                client_name = Some(options[index + 1].clone());
                index += 2;
            }
            _ => {
                return Err(Error::HelloOption {
                    option: truncated(&options[index], UNKNOWN_COMMAND_QUOTE_BYTES_MAX),
                })
            }
        }
    }
    Ok(Command::Hello { auth, client_name })
}
