//! The crate's one error type.
//!
//! Most variants are answers to a client: their `Display` text is exactly
//! the RESP error line Redis would send (without the leading `-`), so a
//! client library that matches on Redis's messages keeps working. Use
//! [`Error::to_reply`] to turn one into a reply and
//! [`Error::closes_connection`] to decide whether to hang up after it.

use crate::resp::encoder::Reply;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The client broke RESP framing or a size limit. Reply with this
    /// error, then close the connection: the stream can no longer be
    /// resynchronised, which is also what Redis does.
    #[error("ERR Protocol error: {0}")]
    Protocol(ProtocolError),

    /// A command got the wrong number of arguments. `command` is the
    /// lowercase name (`get`, or `command|count` for a subcommand).
    #[error("ERR wrong number of arguments for '{command}' command")]
    WrongArity {
        /// Lowercase command name as Redis prints it.
        command: String,
    },

    /// The command name is not one this node serves.
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand {
        /// The name as the client sent it (truncated to 128 bytes).
        name: String,
        /// The first arguments, each quoted and followed by a space, at
        /// most about 128 bytes in total, as Redis formats them.
        args: String,
    },

    /// A container command (`COMMAND`) got a subcommand it does not know.
    #[error("ERR unknown subcommand '{subcommand}'. Try {command} HELP.")]
    UnknownSubcommand {
        /// The container command, uppercase (`COMMAND`).
        command: String,
        /// The subcommand as the client sent it.
        subcommand: String,
    },

    /// An argument that must be a signed 64-bit integer is not one.
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,

    /// An argument that must fit a C int (SELECT's index) is an integer
    /// outside that range.
    #[error("ERR value is out of range, value must between -2147483648 and 2147483647")]
    NotAnInt32,

    /// Options that cannot be combined, are unknown, or lack their value.
    #[error("ERR syntax error")]
    Syntax,

    /// An expire time that is not positive (SET) or overflows milliseconds.
    #[error("ERR invalid expire time in '{command}' command")]
    InvalidExpireTime {
        /// Lowercase command name.
        command: String,
    },

    /// A SCAN cursor that is not an unsigned 64-bit integer.
    #[error("ERR invalid cursor")]
    InvalidCursor,

    /// An option Redis knows but this node does not serve (EXPIRE NX/XX/GT/LT).
    #[error("ERR Unsupported option {option}")]
    UnsupportedOption {
        /// The option as the client sent it.
        option: String,
    },

    /// EXPIRE with NX and one of XX, GT, LT: use one of them.
    #[error("ERR NX and XX, GT or LT options at the same time are not compatible")]
    ExpireNxWithOthers,

    /// EXPIRE with both GT and LT: use one of them.
    #[error("ERR GT and LT options at the same time are not compatible")]
    ExpireGtWithLt,

    /// SETRANGE with a negative offset.
    #[error("ERR offset is out of range")]
    OffsetOutOfRange,

    /// INCRBYFLOAT's increment is not a number Redis reads (decimal,
    /// optionally signed, with an exponent; `inf`). Hexadecimal floats
    /// are not served.
    #[error("ERR value is not a valid float")]
    NotAFloat,

    /// HELLO's protocol version is not an integer.
    #[error("ERR Protocol version is not an integer or out of range")]
    InvalidProtocolVersion,

    /// HELLO asked for a protocol other than RESP2 or RESP3. The client
    /// should retry with `HELLO 3`, `HELLO 2` or without HELLO.
    #[error("NOPROTO unsupported protocol version")]
    NoProto,

    /// HELLO got an option it does not know, or one without its values.
    #[error("ERR Syntax error in HELLO option '{option}'")]
    HelloOption {
        /// The option as the client sent it.
        option: String,
    },

    /// `DECRBY key -9223372036854775808`: the decrement has no negation
    /// in 64 bits. Decrement by a smaller amount.
    #[error("ERR decrement would overflow")]
    DecrementOverflow,

    /// `SELECT` of a database other than 0: ballast has one keyspace.
    /// Use `SELECT 0` or leave the database alone.
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,

    /// A client or library name with a space or control character: such
    /// names would break CLIENT LIST's one line per client.
    #[error("ERR {what} cannot contain spaces, newlines or special characters.")]
    InvalidClientName {
        /// `Client names`, `lib-name` or `lib-ver`, as Redis words it.
        what: &'static str,
    },

    /// `CLIENT SETINFO` of an attribute other than LIB-NAME or LIB-VER.
    #[error("ERR Unrecognized option '{option}'")]
    UnrecognizedOption {
        /// The attribute as the client sent it.
        option: String,
    },

    /// A [`crate::resp::Limits`] that cannot work; this is a configuration
    /// mistake of the operator, never sent to a client. Fix the named limit.
    #[error("invalid protocol limits: {0}")]
    InvalidLimits(String),
}

impl Error {
    /// Whether the connection must be closed after replying with this
    /// error. Only protocol errors close it: after one, the decoder no
    /// longer knows where the next request starts.
    pub fn closes_connection(&self) -> bool {
        matches!(self, Error::Protocol(_))
    }

    /// The RESP error reply a client should see.
    pub fn to_reply(&self) -> Reply {
        Reply::Error(self.to_string())
    }
}

impl From<ProtocolError> for Error {
    fn from(error: ProtocolError) -> Self {
        Error::Protocol(error)
    }
}

/// The ways a client can break RESP framing; the text after
/// `ERR Protocol error: ` in the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `*<count>` is not an integer or exceeds `args_max`.
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$<length>` is not an integer, is negative, or exceeds `bulk_bytes_max`.
    #[error("invalid bulk length")]
    InvalidBulkLength,
    /// Inside an array, an element did not start with `$`.
    #[error("expected '$', got '{}'", char::from(*got))]
    ExpectedBulk {
        /// The byte found instead of `$`.
        got: u8,
    },
    /// A `*<count>` line without CRLF grew beyond `inline_bytes_max`.
    #[error("too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `$<length>` line without CRLF grew beyond `inline_bytes_max`.
    #[error("too big bulk count string")]
    TooBigBulkCount,
    /// An inline command longer than `inline_bytes_max`.
    #[error("too big inline request")]
    TooBigInlineRequest,
    /// An inline command with an unterminated quote, or a closing quote
    /// not followed by a space.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A bulk string's body was not followed by CRLF. (Redis silently
    /// skips two bytes here; refusing is safer than guessing.)
    #[error("expected CRLF after bulk string")]
    MissingBulkTerminator,
    /// The request as a whole would exceed `frame_bytes_max`.
    #[error("request larger than {frame_bytes_max} bytes")]
    FrameTooBig {
        /// The configured limit.
        frame_bytes_max: usize,
    },
    /// An inline command with more than `args_max` words.
    #[error("too many arguments in inline request")]
    TooManyInlineArguments,
}
