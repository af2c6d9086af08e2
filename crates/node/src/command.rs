//! Requests as typed commands, parsed with Redis's arity rules and error
//! texts so that clients see exactly what Redis would tell them.
//!
//! Parsing checks only the shape of a request (arity, options, integer
//! syntax); whether a key holds an integer, or whether a password is
//! right, is for the server to decide.

use bytes::Bytes;

use crate::error::Error;

mod args;
mod grammar;
mod types;
use args::{integer, unknown_command, wrong_arity};
use grammar::{
    parse_client_query, parse_command_query, parse_expire_condition, parse_getex, parse_hello,
    parse_scan, parse_set,
};
pub use types::{
    ClientQuery, Command, CommandQuery, ExpireCondition, ExpiryChange, SetCondition, TimeUnit,
};

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
            b"mset" | b"msetnx" => {
                arity(!rest.is_empty() && rest.len() % 2 == 0)?;
                let pairs = rest
                    .chunks_exact(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect();
                if name.as_slice() == b"mset" {
                    Command::MSet { pairs }
                } else {
                    Command::MSetNx { pairs }
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
                let (ttl_ms, condition) = expire_amount_ms(&name, rest)?;
                Command::Expire {
                    key: rest[0].clone(),
                    ttl_ms,
                    condition,
                    unit: unit_of(&name),
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
            b"flushall" | b"flushdb" => match rest {
                [] => Command::FlushAll,
                [mode]
                    if mode.eq_ignore_ascii_case(b"sync")
                        || mode.eq_ignore_ascii_case(b"async") =>
                {
                    Command::FlushAll
                }
                // Redis 7: any other argument, or more than one, is a
                // syntax error (the arity is -1: no arity error).
                _ => return Err(Error::Syntax),
            },
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
                let (at_ms, condition) = expire_amount_ms(&name, rest)?;
                Command::ExpireAt {
                    key: rest[0].clone(),
                    at_ms,
                    condition,
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
            b"getdel" => {
                arity(rest.len() == 1)?;
                Command::GetDel {
                    key: rest[0].clone(),
                }
            }
            b"getex" => {
                arity(!rest.is_empty())?;
                Command::GetEx {
                    key: rest[0].clone(),
                    change: parse_getex(&rest[1..])?,
                }
            }
            b"append" => {
                arity(rest.len() == 2)?;
                Command::Append {
                    key: rest[0].clone(),
                    value: rest[1].clone(),
                }
            }
            b"setrange" => {
                arity(rest.len() == 3)?;
                let offset = integer(&rest[1])?;
                Command::SetRange {
                    key: rest[0].clone(),
                    offset: u64::try_from(offset).map_err(|_| Error::OffsetOutOfRange)?,
                    value: rest[2].clone(),
                }
            }
            b"incrbyfloat" => {
                arity(rest.len() == 2)?;
                if !ballast_raft::state_machine::is_redis_float(&rest[1]) {
                    return Err(Error::NotAFloat);
                }
                Command::IncrByFloat {
                    key: rest[0].clone(),
                    increment: rest[1].clone(),
                }
            }
            b"rename" | b"renamenx" => {
                arity(rest.len() == 2)?;
                Command::Rename {
                    from: rest[0].clone(),
                    to: rest[1].clone(),
                    only_if_absent: name.as_slice() == b"renamenx",
                }
            }
            b"multi" | b"exec" | b"discard" | b"unwatch" => {
                arity(rest.is_empty())?;
                match name.as_slice() {
                    b"multi" => Command::Multi,
                    b"exec" => Command::Exec,
                    b"discard" => Command::Discard,
                    _ => Command::Unwatch,
                }
            }
            b"watch" => {
                arity(!rest.is_empty())?;
                Command::Watch {
                    keys: rest.to_vec(),
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
/// milliseconds, and Redis 7's NX / XX / GT / LT after it. As in Redis,
/// the options are checked before the time is parsed.
fn expire_amount_ms(name: &[u8], rest: &[Bytes]) -> Result<(i64, ExpireCondition), Error> {
    let condition = parse_expire_condition(&rest[2..])?;
    let amount = integer(&rest[1])?;
    let amount = match unit_of(name) {
        TimeUnit::Milliseconds => amount,
        TimeUnit::Seconds => amount
            .checked_mul(1000)
            .ok_or_else(|| Error::InvalidExpireTime {
                command: String::from_utf8_lossy(name).into_owned(),
            })?,
    };
    Ok((amount, condition))
}
