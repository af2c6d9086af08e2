//! The decoder refuses oversized and malformed requests with Redis's
//! error text, as soon as the header that makes them so is read, and
//! never holds more than its limits allow, whatever the bytes.

use ballast_node::resp::{Decoder, Limits};
use ballast_node::{Error, ProtocolError};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

fn decoder() -> Decoder {
    Decoder::new(Limits::default()).unwrap()
}

fn small_limits() -> Limits {
    Limits {
        bulk_bytes_max: 64,
        frame_bytes_max: 256,
        args_max: 8,
        inline_bytes_max: 48,
    }
}

fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Result<Option<Vec<Bytes>>, Error> {
    decoder.decode(&mut BytesMut::from(bytes))
}

fn protocol_error(result: Result<Option<Vec<Bytes>>, Error>) -> ProtocolError {
    match result {
        Err(Error::Protocol(error)) => error,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn bulk_length_above_the_limit_is_refused_at_its_header() {
    let limits = Limits::default();
    let mut decoder = decoder();
    // Only the header: the body has not been sent, and never needs to be.
    let header = format!("*2\r\n$3\r\nSET\r\n${}\r\n", limits.bulk_bytes_max + 1);
    let error = decode_all(&mut decoder, header.as_bytes()).unwrap_err();
    assert_eq!(error.to_string(), "ERR Protocol error: invalid bulk length");
    assert!(error.closes_connection());
}

#[test]
fn bulk_length_at_the_limit_waits_for_the_body() {
    let limits = small_limits();
    let mut decoder = Decoder::new(limits).unwrap();
    let header = format!("*1\r\n${}\r\n", limits.bulk_bytes_max);
    let mut buffer = BytesMut::from(header.as_bytes());
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    buffer.extend_from_slice(&vec![b'x'; limits.bulk_bytes_max]);
    buffer.extend_from_slice(b"\r\n");
    let args = decoder.decode(&mut buffer).unwrap().unwrap();
    assert_eq!(args[0].len(), limits.bulk_bytes_max);
    assert!(buffer.is_empty());
}

#[test]
fn malformed_bulk_lengths_are_refused() {
    for header in ["$-1", "$abc", "$", "$01", "$+1", "$99999999999999999999999"] {
        let request = format!("*1\r\n{header}\r\n");
        assert_eq!(
            protocol_error(decode_all(&mut decoder(), request.as_bytes())),
            ProtocolError::InvalidBulkLength,
            "{header}"
        );
    }
}

#[test]
fn multibulk_count_above_the_limit_is_refused_at_its_header() {
    let limits = Limits::default();
    let request = format!("*{}\r\n", limits.args_max + 1);
    let error = decode_all(&mut decoder(), request.as_bytes()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR Protocol error: invalid multibulk length"
    );
    assert!(error.closes_connection());
    for header in ["*abc", "*", "*1x", "*99999999999999999999999"] {
        let request = format!("{header}\r\n");
        assert_eq!(
            protocol_error(decode_all(&mut decoder(), request.as_bytes())),
            ProtocolError::InvalidMultibulkLength,
            "{header}"
        );
    }
}

#[test]
fn multibulk_count_that_cannot_fit_the_frame_is_refused_at_its_header() {
    let limits = small_limits();
    // 8 args is allowed, but 8 minimal bulk strings do not fit 40 bytes.
    let limits = Limits {
        bulk_bytes_max: 32,
        frame_bytes_max: 40,
        ..limits
    };
    let mut decoder = Decoder::new(limits).unwrap();
    assert_eq!(
        protocol_error(decode_all(&mut decoder, b"*8\r\n")),
        ProtocolError::FrameTooBig {
            frame_bytes_max: 40
        }
    );
}

#[test]
fn frame_above_the_limit_is_refused_at_the_header_that_crosses_it() {
    let limits = small_limits();
    let mut decoder = Decoder::new(limits).unwrap();
    // 4 + 3 * (5 + 60 + 2) = 205 bytes fit in 256; a fourth one does not.
    let mut buffer = BytesMut::from(&b"*5\r\n"[..]);
    for _ in 0..3 {
        buffer.extend_from_slice(b"$60\r\n");
        buffer.extend_from_slice(&[b'v'; 60]);
        buffer.extend_from_slice(b"\r\n");
    }
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    assert!(decoder.pending_frame_bytes() <= limits.frame_bytes_max);
    buffer.extend_from_slice(b"$60\r\n");
    let error = decoder.decode(&mut buffer).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR Protocol error: request larger than 256 bytes"
    );
}

#[test]
fn inline_line_without_terminator_above_the_limit_is_refused() {
    let limits = Limits::default();
    let mut decoder = decoder();
    let mut buffer = BytesMut::from(vec![b'a'; limits.inline_bytes_max].as_slice());
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    buffer.extend_from_slice(b"a");
    let error = decoder.decode(&mut buffer).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR Protocol error: too big inline request"
    );
    assert!(error.closes_connection());
}

#[test]
fn inline_line_with_terminator_above_the_limit_is_refused() {
    let limits = small_limits();
    let mut line = vec![b'a'; limits.inline_bytes_max + 1];
    line.extend_from_slice(b"\r\n");
    let mut decoder = Decoder::new(limits).unwrap();
    assert_eq!(
        protocol_error(decode_all(&mut decoder, &line)),
        ProtocolError::TooBigInlineRequest
    );
}

#[test]
fn header_lines_without_terminator_above_the_limit_are_refused() {
    let limits = small_limits();
    let mut header = b"*".to_vec();
    header.extend(vec![b'1'; limits.inline_bytes_max]);
    assert_eq!(
        protocol_error(decode_all(&mut Decoder::new(limits).unwrap(), &header)),
        ProtocolError::TooBigMultibulkCount
    );
    let mut header = b"*1\r\n$".to_vec();
    header.extend(vec![b'1'; limits.inline_bytes_max]);
    assert_eq!(
        protocol_error(decode_all(&mut Decoder::new(limits).unwrap(), &header)),
        ProtocolError::TooBigBulkCount
    );
}

#[test]
fn array_elements_must_be_bulk_strings() {
    let error = decode_all(&mut decoder(), b"*1\r\n:1\r\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR Protocol error: expected '$', got ':'"
    );
}

#[test]
fn bulk_body_must_end_in_crlf() {
    assert_eq!(
        protocol_error(decode_all(&mut decoder(), b"*1\r\n$1\r\nab\r\n")),
        ProtocolError::MissingBulkTerminator
    );
}

#[test]
fn unbalanced_inline_quotes_are_refused() {
    let error = decode_all(&mut decoder(), b"SET k \"v\r\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR Protocol error: unbalanced quotes in request"
    );
}

#[test]
fn inline_word_count_above_args_max_is_refused() {
    let mut decoder = Decoder::new(small_limits()).unwrap();
    assert_eq!(
        protocol_error(decode_all(&mut decoder, b"a b c d e f g h i\r\n")),
        ProtocolError::TooManyInlineArguments
    );
}

#[test]
fn unusable_limits_are_refused() {
    for limits in [
        Limits {
            bulk_bytes_max: 0,
            ..Limits::default()
        },
        Limits {
            args_max: 0,
            ..Limits::default()
        },
        Limits {
            inline_bytes_max: 4,
            ..Limits::default()
        },
        Limits {
            frame_bytes_max: 1,
            ..Limits::default()
        },
    ] {
        assert!(
            matches!(Decoder::new(limits), Err(Error::InvalidLimits(_))),
            "{limits:?}"
        );
    }
}

proptest! {
    /// Random bytes, fed in random chunks, never panic the decoder, and
    /// whenever it asks for more it holds no more than its limits allow.
    #[test]
    fn random_bytes_never_panic_nor_exceed_the_limits(
        chunks in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![
                    Just(b'*'), Just(b'$'), Just(b'\r'), Just(b'\n'), Just(b' '),
                    Just(b'"'), Just(b'\''), Just(b'\\'), b'0'..=b'9', any::<u8>(),
                ],
                0..40,
            ),
            0..40,
        )
    ) {
        let limits = small_limits();
        let mut decoder = Decoder::new(limits).unwrap();
        let mut buffer = BytesMut::new();
        'feed: for chunk in chunks {
            buffer.extend_from_slice(&chunk);
            loop {
                match decoder.decode(&mut buffer) {
                    Ok(Some(args)) => {
                        prop_assert!(!args.is_empty());
                        prop_assert!(args.len() <= limits.args_max);
                        prop_assert!(args.iter().all(|arg| arg.len() <= limits.bulk_bytes_max.max(limits.inline_bytes_max)));
                    }
                    Ok(None) => {
                        prop_assert!(buffer.len() <= limits.buffered_bytes_max());
                        prop_assert!(decoder.pending_frame_bytes() <= limits.frame_bytes_max);
                        break;
                    }
                    Err(error) => {
                        prop_assert!(error.closes_connection());
                        prop_assert!(error.to_string().starts_with("ERR Protocol error: "));
                        break 'feed;
                    }
                }
            }
        }
    }

    /// Structured but hostile requests: headers with arbitrary numbers.
    #[test]
    fn hostile_headers_are_refused_before_their_bodies(count in any::<i64>(), length in any::<i64>()) {
        let limits = small_limits();
        let mut decoder = Decoder::new(limits).unwrap();
        let request = format!("*{count}\r\n${length}\r\n");
        let mut buffer = BytesMut::from(request.as_bytes());
        match decoder.decode(&mut buffer) {
            Ok(None) => {
                // Either an empty array was skipped and the `$` line is an
                // incomplete inline request, or both headers were accepted.
                prop_assert!(buffer.len() <= limits.buffered_bytes_max());
                prop_assert!(decoder.pending_frame_bytes() <= limits.frame_bytes_max);
            }
            Ok(Some(args)) => prop_assert!(count <= 0, "{args:?}"),
            Err(error) => prop_assert!(error.closes_connection()),
        }
    }
}
