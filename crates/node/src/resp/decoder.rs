//! The incremental, bounded decoder for client requests.
//!
//! A request is either an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`,
//! what every client library sends) or an inline line of words
//! (`GET k\r\n`, what a person types into telnet or nc).
//!
//! Bounds, checked before bytes are kept (see [`Limits`]):
//! - a `*<count>` above `args_max` is refused when its header is read;
//! - a `$<length>` above `bulk_bytes_max` is refused when its header is
//!   read, before any of the body arrives;
//! - a request whose bytes would exceed `frame_bytes_max` is refused at
//!   the header that would cross it;
//! - a line (inline request or header) that has no line terminator within
//!   `inline_bytes_max` bytes is refused.
//!
//! So as long as the caller reads more only after [`Decoder::decode`]
//! returned `Ok(None)`, the buffer never holds more than
//! [`Limits::buffered_bytes_max`] bytes plus one read.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, ProtocolError};
use crate::resp::inline::split_args;
use crate::resp::integer::parse_i64;

/// Size limits of the decoder. Names carry units; every limit is checked
/// before the bytes it limits are buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (key or value) in bytes. Redis's
    /// `proto-max-bulk-len` is 512 MiB; ballast keeps values small enough
    /// to replicate in one Raft entry, so 16 MiB.
    pub bulk_bytes_max: usize,
    /// Largest request in wire bytes, headers included: one maximal bulk
    /// string plus room for the rest of an MSET. Redis bounds a client's
    /// query buffer at 1 GiB; this is much tighter on purpose.
    pub frame_bytes_max: usize,
    /// Most arguments in one request, command name included. Redis's
    /// limit is `INT_MAX`-ish; 1,048,576 is Redis's historical value.
    /// Each received argument also costs one `Bytes` handle (32 bytes) on
    /// top of its wire bytes: at most `args_max` x 32 bytes, 32 MiB with
    /// the defaults.
    pub args_max: usize,
    /// Longest line without a terminator: an inline request, or the
    /// header line of an array or bulk string. Redis's
    /// `PROTO_INLINE_MAX_SIZE`, 64 KiB.
    pub inline_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bulk_bytes_max: 16 * 1024 * 1024,
            frame_bytes_max: 32 * 1024 * 1024,
            args_max: 1024 * 1024,
            inline_bytes_max: 64 * 1024,
        }
    }
}

impl Limits {
    /// Checks that the limits can work together.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |why: &str| Err(Error::InvalidLimits(why.to_string()));
        if self.bulk_bytes_max == 0 || self.args_max == 0 {
            return invalid("bulk_bytes_max and args_max must be at least 1");
        }
        // A header line is at most `$` + 20 digits + CRLF; anything shorter
        // would refuse valid requests.
        if self.inline_bytes_max < 32 {
            return invalid("inline_bytes_max must be at least 32 bytes");
        }
        if self.frame_bytes_max < self.bulk_bytes_max {
            return invalid("frame_bytes_max must be at least bulk_bytes_max");
        }
        if self.bulk_bytes_max > usize::MAX / 2 {
            return invalid("bulk_bytes_max is too large to address");
        }
        Ok(())
    }

    /// The most bytes the decoder leaves in the buffer when it returns
    /// `Ok(None)`: a line still without terminator, or an announced bulk
    /// string plus its CRLF that has not fully arrived.
    pub fn buffered_bytes_max(&self) -> usize {
        self.inline_bytes_max.max(self.bulk_bytes_max + 2)
    }
}

/// Where the decoder is inside a request.
#[derive(Debug)]
enum State {
    /// Between requests.
    Idle,
    /// Inside an array of bulk strings.
    Array {
        /// Arguments still to come.
        remaining: usize,
        /// Arguments received so far.
        args: Vec<Bytes>,
        /// The announced length of the next bulk string, once its header
        /// has been read.
        bulk_bytes: Option<usize>,
        /// Wire bytes of this request accounted so far (headers, bodies,
        /// CRLFs), including the announced current bulk string.
        frame_bytes: usize,
    },
}

/// Decodes requests from a byte stream, one at a time.
///
/// Feed it the connection's read buffer after each read; it consumes the
/// bytes of each complete request and keeps partial state between calls,
/// so a request split across reads costs no re-parsing of bulk bodies.
/// After an error the connection must be closed (see
/// [`Error::closes_connection`]); the decoder is reset but the stream is
/// not resynchronised.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    state: State,
    /// Bytes at the front of the buffer already searched for a line
    /// terminator without finding one, so that a line arriving a byte at a
    /// time is searched once in total, not once per byte.
    line_searched_bytes: usize,
}

/// Minimal wire size of one bulk string, `$0\r\n\r\n`: lets a huge
/// `*<count>` be refused against `frame_bytes_max` at its header.
const BULK_WIRE_BYTES_MIN: usize = 6;

impl Decoder {
    /// A decoder with the given limits, or [`Error::InvalidLimits`].
    pub fn new(limits: Limits) -> Result<Self, Error> {
        limits.validate()?;
        Ok(Decoder {
            limits,
            state: State::Idle,
            line_searched_bytes: 0,
        })
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Wire bytes of the request in progress that were consumed from the
    /// buffer or announced by a header; 0 between requests. Never exceeds
    /// `frame_bytes_max`.
    pub fn pending_frame_bytes(&self) -> usize {
        match &self.state {
            State::Idle => 0,
            State::Array { frame_bytes, .. } => *frame_bytes,
        }
    }

    /// Decodes the next request from the front of `buffer`.
    ///
    /// Returns `Ok(Some(args))` for a complete request (never empty: Redis
    /// ignores `*0`, `*-1` and blank inline lines, and so does this),
    /// `Ok(None)` when more bytes are needed, or a protocol error.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Vec<Bytes>>, Error> {
        let result = self.decode_inner(buffer);
        if result.is_err() {
            self.state = State::Idle;
            self.line_searched_bytes = 0;
        }
        result
    }

    fn decode_inner(&mut self, buffer: &mut BytesMut) -> Result<Option<Vec<Bytes>>, Error> {
        loop {
            match &mut self.state {
                State::Idle => {
                    let Some(&first) = buffer.first() else {
                        return Ok(None);
                    };
                    if first == b'*' {
                        if !self.start_array(buffer)? {
                            return Ok(None);
                        }
                    } else {
                        match self.inline(buffer)? {
                            None => return Ok(None),
                            Some(args) if args.is_empty() => continue,
                            Some(args) => return Ok(Some(args)),
                        }
                    }
                }
                State::Array {
                    remaining,
                    args,
                    bulk_bytes,
                    frame_bytes,
                } => {
                    let Some(length) = *bulk_bytes else {
                        // Header of the next bulk string.
                        let Some(&first) = buffer.first() else {
                            return Ok(None);
                        };
                        if first != b'$' {
                            return Err(ProtocolError::ExpectedBulk { got: first }.into());
                        }
                        let Some(line_bytes) = find_line(
                            buffer,
                            &mut self.line_searched_bytes,
                            self.limits.inline_bytes_max,
                            ProtocolError::TooBigBulkCount,
                        )?
                        else {
                            return Ok(None);
                        };
                        let length = parse_i64(&buffer[1..line_bytes])
                            .and_then(|length| usize::try_from(length).ok())
                            .filter(|&length| length <= self.limits.bulk_bytes_max)
                            .ok_or(ProtocolError::InvalidBulkLength)?;
                        // Cannot overflow: each term is bounded by a limit
                        // that validate() keeps far below usize::MAX.
                        let total = *frame_bytes + line_bytes + 2 + length + 2;
                        if total > self.limits.frame_bytes_max {
                            return Err(ProtocolError::FrameTooBig {
                                frame_bytes_max: self.limits.frame_bytes_max,
                            }
                            .into());
                        }
                        buffer.advance(line_bytes + 2);
                        self.line_searched_bytes = 0;
                        *frame_bytes = total;
                        *bulk_bytes = Some(length);
                        continue;
                    };
                    if buffer.len() < length + 2 {
                        // Ask for exactly the rest of this bulk string in
                        // one allocation; bounded by bulk_bytes_max.
                        buffer.reserve(length + 2 - buffer.len());
                        return Ok(None);
                    }
                    if &buffer[length..length + 2] != b"\r\n" {
                        return Err(ProtocolError::MissingBulkTerminator.into());
                    }
                    args.push(buffer.split_to(length).freeze());
                    buffer.advance(2);
                    *bulk_bytes = None;
                    *remaining -= 1;
                    if *remaining == 0 {
                        let args = std::mem::take(args);
                        self.state = State::Idle;
                        return Ok(Some(args));
                    }
                }
            }
        }
    }

    /// Reads a `*<count>` header. Returns false when it is incomplete.
    fn start_array(&mut self, buffer: &mut BytesMut) -> Result<bool, Error> {
        let Some(line_bytes) = find_line(
            buffer,
            &mut self.line_searched_bytes,
            self.limits.inline_bytes_max,
            ProtocolError::TooBigMultibulkCount,
        )?
        else {
            return Ok(false);
        };
        let count =
            parse_i64(&buffer[1..line_bytes]).ok_or(ProtocolError::InvalidMultibulkLength)?;
        buffer.advance(line_bytes + 2);
        self.line_searched_bytes = 0;
        if count <= 0 {
            // Redis ignores empty and null arrays from clients.
            return Ok(true);
        }
        let count = usize::try_from(count)
            .ok()
            .filter(|&count| count <= self.limits.args_max)
            .ok_or(ProtocolError::InvalidMultibulkLength)?;
        let frame_bytes = line_bytes + 2;
        if count
            .checked_mul(BULK_WIRE_BYTES_MIN)
            .and_then(|bytes| bytes.checked_add(frame_bytes))
            .is_none_or(|bytes| bytes > self.limits.frame_bytes_max)
        {
            return Err(ProtocolError::FrameTooBig {
                frame_bytes_max: self.limits.frame_bytes_max,
            }
            .into());
        }
        self.state = State::Array {
            remaining: count,
            // Capped: a client announcing a million arguments has not yet
            // sent them; the vector grows as they arrive.
            args: Vec::with_capacity(count.min(1024)),
            bulk_bytes: None,
            frame_bytes,
        };
        Ok(true)
    }

    /// Reads one inline line. `Ok(None)` when it is incomplete.
    fn inline(&mut self, buffer: &mut BytesMut) -> Result<Option<Vec<Bytes>>, Error> {
        let searched = self.line_searched_bytes.min(buffer.len());
        let Some(offset) = buffer[searched..].iter().position(|&byte| byte == b'\n') else {
            if buffer.len() > self.limits.inline_bytes_max {
                return Err(ProtocolError::TooBigInlineRequest.into());
            }
            self.line_searched_bytes = buffer.len();
            return Ok(None);
        };
        let newline = searched + offset;
        if newline > self.limits.inline_bytes_max {
            return Err(ProtocolError::TooBigInlineRequest.into());
        }
        let line = buffer.split_to(newline + 1);
        self.line_searched_bytes = 0;
        // Redis accepts a bare LF as well as CRLF from people typing.
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let args = split_args(line)?;
        if args.len() > self.limits.args_max {
            return Err(ProtocolError::TooManyInlineArguments.into());
        }
        Ok(Some(args))
    }
}

/// Finds the CRLF ending the header line at the front of `buffer` and
/// returns the line's length without it; `Ok(None)` if it has not arrived
/// and the line is still within `line_bytes_max`.
fn find_line(
    buffer: &BytesMut,
    searched_bytes: &mut usize,
    line_bytes_max: usize,
    too_big: ProtocolError,
) -> Result<Option<usize>, Error> {
    // Back up one byte: a CR may have been the last byte searched.
    let start = searched_bytes.saturating_sub(1).min(buffer.len());
    match buffer[start..].windows(2).position(|pair| pair == b"\r\n") {
        Some(offset) if start + offset <= line_bytes_max => Ok(Some(start + offset)),
        Some(_) => Err(too_big.into()),
        None if buffer.len() > line_bytes_max => Err(too_big.into()),
        None => {
            *searched_bytes = buffer.len();
            Ok(None)
        }
    }
}
