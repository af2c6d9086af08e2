//! What the encoder writes the decoder reads back, however the bytes are
//! split across reads, for arrays of bulk strings and inline commands.

use ballast_node::resp::{encode, encode_request, Decoder, Limits, Reply};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

fn decoder() -> Decoder {
    Decoder::new(Limits::default()).unwrap()
}

/// Decodes every request in `bytes`, fed all at once.
fn decode_whole(bytes: &[u8]) -> Vec<Vec<Bytes>> {
    let mut decoder = decoder();
    let mut buffer = BytesMut::from(bytes);
    let mut requests = Vec::new();
    while let Some(args) = decoder.decode(&mut buffer).unwrap() {
        requests.push(args);
    }
    assert!(buffer.is_empty(), "left over: {buffer:?}");
    requests
}

/// Decodes every request in `bytes`, fed in two reads split at `split`.
fn decode_split(bytes: &[u8], split: usize) -> Vec<Vec<Bytes>> {
    let mut decoder = decoder();
    let mut buffer = BytesMut::from(&bytes[..split]);
    let mut requests = Vec::new();
    while let Some(args) = decoder.decode(&mut buffer).unwrap() {
        requests.push(args);
    }
    buffer.extend_from_slice(&bytes[split..]);
    while let Some(args) = decoder.decode(&mut buffer).unwrap() {
        requests.push(args);
    }
    assert!(buffer.is_empty(), "left over: {buffer:?}");
    requests
}

/// Decodes every request in `bytes`, fed one byte per read.
fn decode_bytewise(bytes: &[u8]) -> Vec<Vec<Bytes>> {
    let mut decoder = decoder();
    let mut buffer = BytesMut::new();
    let mut requests = Vec::new();
    for &byte in bytes {
        buffer.extend_from_slice(&[byte]);
        while let Some(args) = decoder.decode(&mut buffer).unwrap() {
            requests.push(args);
        }
    }
    assert!(buffer.is_empty(), "left over: {buffer:?}");
    requests
}

fn owned(requests: &[Vec<Bytes>]) -> Vec<Vec<Vec<u8>>> {
    requests
        .iter()
        .map(|args| args.iter().map(|arg| arg.to_vec()).collect())
        .collect()
}

#[test]
fn a_pipeline_decodes_the_same_split_at_every_byte_boundary() {
    let mut wire = BytesMut::new();
    encode_request(&["SET", "key", "va\r\nlue"], &mut wire);
    wire.extend_from_slice(b"GET \"key\"\r\n");
    wire.extend_from_slice(b"*0\r\n*-1\r\n\r\n   \n");
    encode_request(&["MSET", "", "", "k", "v"], &mut wire);
    wire.extend_from_slice(b"PING\n");
    let expected = vec![
        vec![b"SET".to_vec(), b"key".to_vec(), b"va\r\nlue".to_vec()],
        vec![b"GET".to_vec(), b"key".to_vec()],
        vec![
            b"MSET".to_vec(),
            vec![],
            vec![],
            b"k".to_vec(),
            b"v".to_vec(),
        ],
        vec![b"PING".to_vec()],
    ];
    assert_eq!(owned(&decode_whole(&wire)), expected);
    assert_eq!(owned(&decode_bytewise(&wire)), expected);
    for split in 0..=wire.len() {
        assert_eq!(
            owned(&decode_split(&wire, split)),
            expected,
            "split at {split}"
        );
    }
}

#[test]
fn a_request_in_progress_keeps_its_parsed_arguments() {
    let mut decoder = decoder();
    let mut buffer = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r"[..]);
    assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    // The first argument was consumed; only the partial header remains.
    assert_eq!(&buffer[..], b"$1\r");
    buffer.extend_from_slice(b"\nk\r\n");
    let args = decoder.decode(&mut buffer).unwrap().unwrap();
    assert_eq!(args, vec![Bytes::from("GET"), Bytes::from("k")]);
}

/// Printable words without quotes, backslashes or whitespace: what a
/// person types without quoting.
fn plain_word() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("plain", |byte| {
            byte.is_ascii_graphic() && !matches!(byte, b'"' | b'\'' | b'\\')
        }),
        1..12,
    )
}

/// Quotes any bytes for an inline command, the way redis-cli prints them.
fn quote(word: &[u8]) -> Vec<u8> {
    let mut quoted = b"\"".to_vec();
    for byte in word {
        quoted.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
    }
    quoted.push(b'"');
    quoted
}

proptest! {
    #[test]
    fn arrays_of_bulk_strings_round_trip(
        requests in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6),
            1..4,
        ),
        split in any::<prop::sample::Index>(),
    ) {
        let mut wire = BytesMut::new();
        for args in &requests {
            encode_request(args, &mut wire);
        }
        prop_assert_eq!(owned(&decode_whole(&wire)), requests.clone());
        prop_assert_eq!(owned(&decode_split(&wire, split.index(wire.len() + 1))), requests.clone());
        prop_assert_eq!(owned(&decode_bytewise(&wire)), requests);
    }

    /// The encoder's array of bulk strings is the request format, so a
    /// reply made of bulk strings decodes back to its elements.
    #[test]
    fn encoded_bulk_arrays_decode_to_their_elements(
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6),
    ) {
        let reply = Reply::Array(args.iter().map(Reply::bulk).collect());
        let mut wire = BytesMut::new();
        encode(&reply, &mut wire);
        prop_assert_eq!(owned(&decode_whole(&wire)), vec![args]);
    }

    #[test]
    fn inline_words_round_trip(
        words in proptest::collection::vec(plain_word(), 1..6),
        crlf in any::<bool>(),
    ) {
        // A line starting with `*` is an array header, in Redis as here.
        prop_assume!(words[0][0] != b'*');
        let mut line = words.join(&b' ');
        line.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        prop_assert_eq!(owned(&decode_whole(&line)), vec![words.clone()]);
        prop_assert_eq!(owned(&decode_bytewise(&line)), vec![words]);
    }

    #[test]
    fn quoted_inline_words_carry_any_bytes(
        words in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..5),
    ) {
        let mut line = words.iter().map(|word| quote(word)).collect::<Vec<_>>().join(&b' ');
        line.extend_from_slice(b"\r\n");
        prop_assert_eq!(owned(&decode_whole(&line)), vec![words]);
    }
}
