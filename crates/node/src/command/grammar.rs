//! The option grammars of the commands that have options (SET, SCAN,
//! COMMAND, CLIENT, HELLO), each as Redis 7 reads them: which error wins
//! when several apply is part of the grammar.

use bytes::Bytes;

use super::args::{integer, truncated, wrong_arity, UNKNOWN_COMMAND_QUOTE_BYTES_MAX};
use super::types::{
    ClientQuery, Command, CommandQuery, ExpireCondition, ExpiryChange, SetCondition, TimeUnit,
};
use crate::error::Error;
use crate::resp::integer::parse_i64;
use crate::resp::Protocol;

/// Redis's SET option grammar: options in any order, repeats allowed,
/// NX with XX and EX with PX refused; every option is read before the
/// expire time is parsed, so a syntax error wins over a bad integer.
pub(super) fn parse_set(rest: &[Bytes]) -> Result<Command, Error> {
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

/// Redis 7's EXPIRE options: any of NX, XX, GT, LT (repeats allowed),
/// then the combinations it refuses, with its texts.
pub(super) fn parse_expire_condition(options: &[Bytes]) -> Result<ExpireCondition, Error> {
    let mut condition = ExpireCondition::default();
    for option in options {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" => condition.nx = true,
            b"XX" => condition.xx = true,
            b"GT" => condition.gt = true,
            b"LT" => condition.lt = true,
            _ => {
                return Err(Error::UnsupportedOption {
                    option: String::from_utf8_lossy(option).into_owned(),
                })
            }
        }
    }
    if condition.nx && (condition.xx || condition.gt || condition.lt) {
        return Err(Error::ExpireNxWithOthers);
    }
    if condition.gt && condition.lt {
        return Err(Error::ExpireGtWithLt);
    }
    Ok(condition)
}

/// Redis 7's GETEX grammar: at most one of EX, PX, EXAT, PXAT (each with
/// its value) and PERSIST, else a syntax error; then the time, which must
/// be positive and fit milliseconds.
pub(super) fn parse_getex(options: &[Bytes]) -> Result<Option<ExpiryChange>, Error> {
    let mut chosen: Option<(Vec<u8>, Option<&Bytes>)> = None;
    let mut index = 0;
    while index < options.len() {
        let option = options[index].to_ascii_uppercase();
        let next = options.get(index + 1);
        match (option.as_slice(), next) {
            // The same option again is allowed (the last one counts), as
            // in Redis; two different ones are not.
            (b"PERSIST", _) if chosen.as_ref().is_none_or(|(o, _)| *o == option) => {
                chosen = Some((option, None))
            }
            (b"EX" | b"PX" | b"EXAT" | b"PXAT", Some(value))
                if chosen.as_ref().is_none_or(|(o, _)| *o == option) =>
            {
                chosen = Some((option, Some(value)));
                index += 1;
            }
            _ => return Err(Error::Syntax),
        }
        index += 1;
    }
    let Some((option, value)) = chosen else {
        return Ok(None);
    };
    let Some(value) = value else {
        return Ok(Some(ExpiryChange::Persist));
    };
    let invalid = || Error::InvalidExpireTime {
        command: "getex".to_string(),
    };
    let amount = integer(value)?;
    if amount <= 0 {
        return Err(invalid());
    }
    let seconds = matches!(option.as_slice(), b"EX" | b"EXAT");
    let ms = if seconds {
        amount.checked_mul(1000).ok_or_else(invalid)?
    } else {
        amount
    };
    Ok(Some(if option.ends_with(b"AT") {
        ExpiryChange::AtMs(ms)
    } else {
        ExpiryChange::InMs(ms)
    }))
}

/// Redis's SCAN grammar: the cursor first (`ERR invalid cursor`), then
/// option pairs; a COUNT below 1 is a syntax error.
pub(super) fn parse_scan(rest: &[Bytes]) -> Result<Command, Error> {
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

pub(super) fn parse_command_query(rest: &[Bytes]) -> Result<CommandQuery, Error> {
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

/// Redis's CLIENT grammar for the subcommands served; arity errors name
/// the subcommand (`client|setname`), as Redis 7 does.
pub(super) fn parse_client_query(rest: &[Bytes]) -> Result<ClientQuery, Error> {
    let Some((subcommand, args)) = rest.split_first() else {
        return Err(wrong_arity("client"));
    };
    let lower = subcommand.to_ascii_lowercase();
    let arity = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(wrong_arity(&format!(
                "client|{}",
                String::from_utf8_lossy(&lower)
            )))
        }
    };
    Ok(match lower.as_slice() {
        b"id" => arity(args.is_empty()).map(|()| ClientQuery::Id)?,
        b"getname" => arity(args.is_empty()).map(|()| ClientQuery::GetName)?,
        b"info" => arity(args.is_empty()).map(|()| ClientQuery::Info)?,
        // Redis's filters (TYPE, ID) are not served; plain LIST is.
        b"list" if args.is_empty() => ClientQuery::List,
        b"list" => return Err(Error::Syntax),
        b"setname" => {
            arity(args.len() == 1)?;
            check_client_name(&args[0], "Client names")?;
            ClientQuery::SetName(args[0].clone())
        }
        b"setinfo" => {
            arity(args.len() == 2)?;
            let attribute = args[0].to_ascii_lowercase();
            let lib_name = match attribute.as_slice() {
                b"lib-name" => true,
                b"lib-ver" => false,
                _ => {
                    return Err(Error::UnrecognizedOption {
                        option: truncated(&args[0], UNKNOWN_COMMAND_QUOTE_BYTES_MAX),
                    })
                }
            };
            check_client_name(&args[1], if lib_name { "lib-name" } else { "lib-ver" })?;
            ClientQuery::SetInfo {
                lib_name,
                value: args[1].clone(),
            }
        }
        _ => {
            return Err(Error::UnknownSubcommand {
                command: "CLIENT".to_string(),
                subcommand: truncated(subcommand, UNKNOWN_COMMAND_QUOTE_BYTES_MAX),
            })
        }
    })
}

/// Redis allows only printable ASCII without spaces in client names and
/// library names, so that CLIENT LIST stays one line per client.
fn check_client_name(name: &[u8], what: &'static str) -> Result<(), Error> {
    if name.iter().all(|byte| (b'!'..=b'~').contains(byte)) {
        Ok(())
    } else {
        Err(Error::InvalidClientName { what })
    }
}

/// Redis's HELLO grammar: the protocol version is checked before the
/// options, so `HELLO 4 AUTH ...` is refused with NOPROTO.
pub(super) fn parse_hello(rest: &[Bytes]) -> Result<Command, Error> {
    let Some((version, options)) = rest.split_first() else {
        return Ok(Command::Hello {
            protocol: None,
            auth: None,
            client_name: None,
        });
    };
    let protocol = match parse_i64(version).ok_or(Error::InvalidProtocolVersion)? {
        2 => Protocol::Resp2,
        3 => Protocol::Resp3,
        _ => return Err(Error::NoProto),
    };
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
                check_client_name(&options[index + 1], "Client names")?;
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
    Ok(Command::Hello {
        protocol: Some(protocol),
        auth,
        client_name,
    })
}
