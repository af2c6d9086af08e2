//! The properties block: facts about a table, encoded as tagged records so
//! that fields can be added without a format version bump.
//!
//! Each record is `tag varint32 | length varint64 | payload[length]`.
//! Numeric payloads are one varint64 filling the payload exactly; key
//! payloads are the raw bytes. Readers skip records with unknown tags.
//! Records appear in increasing tag order, each tag at most once.

use crate::coding::{put_varint32, put_varint64, Decoder};

const TAG_FORMAT_VERSION: u32 = 1;
const TAG_ENTRIES: u32 = 2;
const TAG_SMALLEST_KEY: u32 = 3;
const TAG_LARGEST_KEY: u32 = 4;
const TAG_SMALLEST_SEQ: u32 = 5;
const TAG_LARGEST_SEQ: u32 = 6;
const TAG_DATA_BLOCKS: u32 = 7;
const TAG_RAW_KEY_BYTES: u32 = 8;
const TAG_RAW_VALUE_BYTES: u32 = 9;
const TAG_BLOOM_BITS_PER_KEY: u32 = 10;
const TAG_DATA_BYTES: u32 = 11;

/// Facts recorded about a table when it was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableProperties {
    /// Format version the table was written with.
    pub format_version: u32,
    /// Number of entries.
    pub entries: u64,
    /// Smallest internal key (empty for an empty table).
    pub smallest: Vec<u8>,
    /// Largest internal key (empty for an empty table).
    pub largest: Vec<u8>,
    /// Smallest sequence number of any entry (0 for an empty table).
    pub smallest_seq: u64,
    /// Largest sequence number of any entry (0 for an empty table).
    pub largest_seq: u64,
    /// Number of data blocks.
    pub data_blocks: u64,
    /// Sum of the internal key lengths of all entries.
    pub raw_key_bytes: u64,
    /// Sum of the value lengths of all entries.
    pub raw_value_bytes: u64,
    /// Bloom filter bits per key (0: no filter).
    pub bloom_bits_per_key: u32,
    /// Bytes of data blocks on disk, trailers included.
    pub data_bytes: u64,
}

fn put_u64(dst: &mut Vec<u8>, tag: u32, v: u64) {
    let mut payload = Vec::with_capacity(10);
    put_varint64(&mut payload, v);
    put_bytes(dst, tag, &payload);
}

fn put_bytes(dst: &mut Vec<u8>, tag: u32, payload: &[u8]) {
    put_varint32(dst, tag);
    put_varint64(dst, payload.len() as u64);
    dst.extend_from_slice(payload);
}

impl TableProperties {
    /// The properties block contents.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.smallest.len() + self.largest.len());
        put_u64(&mut out, TAG_FORMAT_VERSION, u64::from(self.format_version));
        put_u64(&mut out, TAG_ENTRIES, self.entries);
        put_bytes(&mut out, TAG_SMALLEST_KEY, &self.smallest);
        put_bytes(&mut out, TAG_LARGEST_KEY, &self.largest);
        put_u64(&mut out, TAG_SMALLEST_SEQ, self.smallest_seq);
        put_u64(&mut out, TAG_LARGEST_SEQ, self.largest_seq);
        put_u64(&mut out, TAG_DATA_BLOCKS, self.data_blocks);
        put_u64(&mut out, TAG_RAW_KEY_BYTES, self.raw_key_bytes);
        put_u64(&mut out, TAG_RAW_VALUE_BYTES, self.raw_value_bytes);
        put_u64(
            &mut out,
            TAG_BLOOM_BITS_PER_KEY,
            u64::from(self.bloom_bits_per_key),
        );
        put_u64(&mut out, TAG_DATA_BYTES, self.data_bytes);
        out
    }

    /// Decodes a properties block; the error says what is malformed.
    pub fn decode(buf: &[u8]) -> Result<TableProperties, String> {
        let mut p = TableProperties::default();
        let mut d = Decoder::new(buf);
        let mut last_tag = 0u32;
        while !d.is_empty() {
            let at = d.position();
            let tag = d.varint32().ok_or(format!("bad tag at {at}"))?;
            let payload = d
                .length_prefixed()
                .ok_or(format!("record with tag {tag} at {at} runs past the block"))?;
            if tag <= last_tag {
                return Err(format!("tag {tag} at {at} is out of order"));
            }
            last_tag = tag;
            let num = || -> Result<u64, String> {
                let mut pd = Decoder::new(payload);
                match pd.varint64() {
                    Some(v) if pd.is_empty() => Ok(v),
                    _ => Err(format!("bad number in record with tag {tag} at {at}")),
                }
            };
            let num32 = || -> Result<u32, String> {
                u32::try_from(num()?).map_err(|_| format!("tag {tag} at {at} exceeds u32"))
            };
            match tag {
                TAG_FORMAT_VERSION => p.format_version = num32()?,
                TAG_ENTRIES => p.entries = num()?,
                TAG_SMALLEST_KEY => p.smallest = payload.to_vec(),
                TAG_LARGEST_KEY => p.largest = payload.to_vec(),
                TAG_SMALLEST_SEQ => p.smallest_seq = num()?,
                TAG_LARGEST_SEQ => p.largest_seq = num()?,
                TAG_DATA_BLOCKS => p.data_blocks = num()?,
                TAG_RAW_KEY_BYTES => p.raw_key_bytes = num()?,
                TAG_RAW_VALUE_BYTES => p.raw_value_bytes = num()?,
                TAG_BLOOM_BITS_PER_KEY => p.bloom_bits_per_key = num32()?,
                TAG_DATA_BYTES => p.data_bytes = num()?,
                _ => {} // a field added by a later writer
            }
        }
        Ok(p)
    }
}
