//! Argument helpers shared by the command parser and its option
//! grammars: arity and integer errors, and Redis's unknown-command text.

use bytes::Bytes;

use crate::error::Error;
use crate::resp::integer::parse_i64;

/// Bytes of the command name and of the arguments quoted in an
/// unknown-command error, as in Redis.
pub(super) const UNKNOWN_COMMAND_QUOTE_BYTES_MAX: usize = 128;

pub(super) fn wrong_arity(command: &str) -> Error {
    Error::WrongArity {
        command: command.to_string(),
    }
}

pub(super) fn integer(arg: &[u8]) -> Result<i64, Error> {
    parse_i64(arg).ok_or(Error::NotAnInteger)
}

/// Redis's text: the name and the first arguments, each cut so that the
/// quoted arguments stay near 128 bytes.
pub(super) fn unknown_command(args: &[Bytes]) -> Error {
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

pub(super) fn truncated(bytes: &[u8], bytes_max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(bytes_max)]).into_owned()
}
