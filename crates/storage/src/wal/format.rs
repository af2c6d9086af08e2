//! The byte layout of log files and records (see `FORMAT-wal.md`), shared by
//! the WAL, the Raft log and single-file logs such as the manifest.
//!
//! Everything here is pure: encoding appends to a caller's buffer, decoding
//! works on a byte buffer. The file-level rules (which damage is a torn tail
//! and which is corruption) live with the callers, which know whether a file
//! is the last one.

use crate::coding::{get_fixed32, get_fixed64};
use crate::error::{Error, Result};
use bytes::Bytes;
use crc32fast::Hasher;
use std::path::Path;

/// Magic bytes at the start of every WAL (and Raft log) segment.
pub const WAL_MAGIC: [u8; 8] = *b"BLSTWAL\0";

/// The newest format version this build reads.
pub const FORMAT_VERSION: u32 = 2;

/// The version of the WAL and Raft log segments this build writes. Version
/// 2 adds the link record (see [`KIND_LINK`]); version 1 segments, which
/// have none, are still read.
pub const SEGMENT_FORMAT_VERSION: u32 = 2;

/// The version of single-file logs (the manifest) this build writes: their
/// layout is version 1's (no link record), so an older build still reads
/// them.
pub const LOG_FILE_FORMAT_VERSION: u32 = 1;

/// The first version whose segments start with a link record.
const LINK_VERSION: u32 = 2;

/// Length of the file header: magic (8), version (4), number (8), CRC (4).
pub const FILE_HEADER_LEN: usize = 24;

/// Length of a record header: CRC (4), payload length (4), type (1).
pub const RECORD_HEADER_LEN: usize = 9;

/// Largest stored payload: the length field is a u32.
pub const PAYLOAD_BYTES_MAX: usize = u32::MAX as usize;

/// Record kind: a complete record (the only kind written by version 1).
pub const KIND_FULL: u8 = 1;

/// Record kind (version 2): the link record, the first record of every
/// segment, never returned as data. Its payload is
/// [`LINK_PAYLOAD_LEN`] bytes: the offset where the previous segment's
/// data ended when this segment was started (u64 LE), or
/// [`PREV_END_UNKNOWN`]. Recovery compares it with where the previous
/// segment's records really end: without it, a lost record at the end of
/// a segment (a misdirected or lost write of data already fsynced) read
/// as that segment's clean end, and the records of the next segment were
/// replayed over a silent hole.
pub const KIND_LINK: u8 = 2;

/// Payload length of a link record.
pub const LINK_PAYLOAD_LEN: usize = 8;

/// Encoded length of a link record.
pub const LINK_RECORD_LEN: usize = RECORD_HEADER_LEN + LINK_PAYLOAD_LEN;

/// A link record's value when the writer did not know where the previous
/// segment ended (the first segment, or one whose predecessor recovery did
/// not read): nothing to check. Never a real end, which is at least
/// [`FILE_HEADER_LEN`].
pub const PREV_END_UNKNOWN: u64 = 0;

/// Bits of the type byte holding the record kind. Kinds 0 and 3..=15 are
/// reserved (0 so that a zeroed header never looks like a record).
pub const KIND_MASK: u8 = 0x0f;

/// Type-byte flag: the stored payload is snappy-compressed (raw format).
pub const FLAG_SNAPPY: u8 = 0x80;

/// Type-byte bits that must be zero in version 1.
const RESERVED_BITS: u8 = 0x70;

/// Encodes the 24-byte file header for a file with `magic`, format
/// `version` ([`SEGMENT_FORMAT_VERSION`] or [`LOG_FILE_FORMAT_VERSION`])
/// and `number` (the segment number for WAL segments; any salt for
/// single-file logs).
pub fn encode_file_header(magic: &[u8; 8], version: u32, number: u64) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(magic);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..20].copy_from_slice(&number.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileHeader {
    /// A complete, valid header carrying this number.
    Valid(u64),
    /// The header was never completely written: the file is shorter than a
    /// header, or the header bytes are all zero (and, from [`decode_file`],
    /// a damaged header followed only by zero bytes).
    Unwritten,
}

/// Decodes the header at the start of `data` (a whole file or at least its
/// first [`FILE_HEADER_LEN`] bytes). A damaged header is
/// [`Error::Corruption`] at offset 0 of `path`; a newer version is
/// [`Error::UnsupportedFormat`].
pub fn decode_file_header(path: &Path, data: &[u8], magic: &[u8; 8]) -> Result<FileHeader> {
    if data.len() < FILE_HEADER_LEN {
        return Ok(FileHeader::Unwritten);
    }
    let h = &data[..FILE_HEADER_LEN];
    if all_zero(h) {
        return Ok(FileHeader::Unwritten);
    }
    if get_fixed32(&h[20..]) != crc32fast::hash(&h[..20]) {
        return Err(Error::corruption(path, 0, "file header checksum mismatch"));
    }
    if &h[..8] != magic {
        return Err(Error::corruption(
            path,
            0,
            "wrong magic: not a file of this kind",
        ));
    }
    Error::check_format_version(path, 0, get_fixed32(&h[8..]), FORMAT_VERSION)?;
    Ok(FileHeader::Valid(get_fixed64(&h[12..])))
}

/// A CRC32 state that has already absorbed the salt (the segment number as 8
/// little-endian bytes). Cloning it per record avoids re-hashing the salt.
pub fn salted_hasher(salt: u64) -> Hasher {
    let mut h = Hasher::new();
    h.update(&salt.to_le_bytes());
    h
}

/// Appends one record to `dst`: header then `stored` (the payload as stored,
/// already compressed if `compressed`). `salted` comes from
/// [`salted_hasher`]. Allocates nothing beyond `dst`'s growth. The caller
/// guarantees `stored.len() <= PAYLOAD_BYTES_MAX`.
#[inline]
pub fn encode_record(dst: &mut Vec<u8>, salted: &Hasher, stored: &[u8], compressed: bool) {
    let ty = KIND_FULL | if compressed { FLAG_SNAPPY } else { 0 };
    encode_typed(dst, salted, stored, ty);
}

/// Appends the link record saying that the previous segment's data ended
/// at `prev_end` (see [`KIND_LINK`]).
pub fn encode_link_record(dst: &mut Vec<u8>, salted: &Hasher, prev_end: u64) {
    encode_typed(dst, salted, &prev_end.to_le_bytes(), KIND_LINK);
}

#[inline]
fn encode_typed(dst: &mut Vec<u8>, salted: &Hasher, stored: &[u8], ty: u8) {
    debug_assert!(stored.len() <= PAYLOAD_BYTES_MAX);
    let mut tail = [0u8; 5];
    tail[..4].copy_from_slice(&(stored.len() as u32).to_le_bytes());
    tail[4] = ty;
    let mut h = salted.clone();
    h.update(&tail);
    h.update(stored);
    let crc = h.finalize();
    dst.reserve(RECORD_HEADER_LEN + stored.len());
    let start = dst.len();
    dst.extend_from_slice(&crc.to_le_bytes());
    dst.extend_from_slice(&tail);
    dst.extend_from_slice(stored);
    // The write side of the pair with `scan_records`: the record just
    // encoded reads back (checksum and all) with its encoded length.
    debug_assert_eq!(
        check_record(&dst[start..], salted).map(|(len, _)| RECORD_HEADER_LEN + len),
        Some(dst.len() - start),
        "a WAL record does not decode to the length it was encoded with"
    );
}

/// Snappy compression with a reusable scratch buffer and encoder, so that
/// compressing records allocates only while the scratch buffer grows.
pub struct Compressor {
    threshold: u64,
    encoder: Option<snap::raw::Encoder>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// Compresses payloads of at least `threshold` bytes (0 = never).
    pub fn new(threshold: u64) -> Self {
        Compressor {
            threshold,
            encoder: None,
            scratch: Vec::new(),
        }
    }

    /// Tries to compress `payload`. Returns the compressed length (the bytes
    /// are [`Compressor::compressed`]`(len)`) if compression applies and
    /// actually shrinks the payload, else `None`.
    pub fn compress(&mut self, payload: &[u8]) -> Option<usize> {
        if self.threshold == 0 || (payload.len() as u64) < self.threshold {
            return None;
        }
        let max = snap::raw::max_compress_len(payload.len());
        if max == 0 {
            return None; // too large for snappy
        }
        if self.scratch.len() < max {
            self.scratch.resize(max, 0);
        }
        let enc = self.encoder.get_or_insert_with(snap::raw::Encoder::new);
        match enc.compress(payload, &mut self.scratch) {
            Ok(n) if n < payload.len() => Some(n),
            _ => None,
        }
    }

    /// The first `len` bytes of the last compression's output.
    pub fn compressed(&self, len: usize) -> &[u8] {
        &self.scratch[..len]
    }
}

/// Where a scan of records stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// The data ended cleanly at `offset`: the end of the buffer, or an
    /// all-zero record header followed only by zero bytes (preallocated
    /// space).
    Clean {
        /// Offset just past the last record.
        offset: u64,
    },
    /// The record at `offset` failed a check (checksum, length past the
    /// end, truncated header, or a zeroed header with data after it).
    Bad {
        /// Offset of the bad record.
        offset: u64,
        /// Which check failed.
        reason: &'static str,
        /// Offset of a valid record found after the bad one in the same
        /// buffer, if any: then the damage cannot be a torn tail.
        valid_after: Option<u64>,
    },
}

/// One record found by [`scan_records`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Offset of the record header in the buffer.
    pub offset: u64,
    /// Encoded length (header plus stored payload).
    pub len: u64,
    /// The payload as stored.
    pub stored: &'a [u8],
    /// True if `stored` is snappy-compressed.
    pub compressed: bool,
    /// A link record ([`KIND_LINK`]) rather than data.
    pub link: bool,
}

/// Checks the record header `hdr` (at least [`RECORD_HEADER_LEN`] bytes) and
/// its stored payload at the start of `rest`; returns the stored length and
/// the type byte if the length fits and the checksum matches.
#[inline]
fn check_record(rest: &[u8], salted: &Hasher) -> Option<(usize, u8)> {
    let len = get_fixed32(&rest[4..]) as usize;
    let end = RECORD_HEADER_LEN.checked_add(len)?;
    if end > rest.len() {
        return None;
    }
    let mut h = salted.clone();
    h.update(&rest[4..end]);
    let ok = h.finalize() == get_fixed32(rest)
        || crate::planted::active(crate::planted::PlantedBug::IgnoreCrcMismatch);
    ok.then_some((len, rest[8]))
}

#[inline]
fn valid_type(ty: u8) -> bool {
    (ty & KIND_MASK == KIND_FULL && ty & RESERVED_BITS == 0) || ty == KIND_LINK
}

/// Scans the records of `buf` starting at `start`, calling `f` for each valid
/// one in order, until the data ends or a record fails its checks. `salt` is
/// the number mixed into every record's CRC. A record whose checksum matches
/// but whose type is unknown is [`Error::Corruption`] (naming `path` and the
/// record's offset): it was written that way, so it is not a torn write.
pub fn scan_records<'a>(
    path: &Path,
    buf: &'a [u8],
    salt: u64,
    start: usize,
    mut f: impl FnMut(RawRecord<'a>) -> Result<()>,
) -> Result<ScanEnd> {
    let salted = salted_hasher(salt);
    let mut off = start.min(buf.len());
    loop {
        let rest = &buf[off..];
        if rest.is_empty() {
            return Ok(ScanEnd::Clean { offset: off as u64 });
        }
        let bad = |reason| {
            Ok(ScanEnd::Bad {
                offset: off as u64,
                reason,
                valid_after: find_valid_record(buf, &salted, off + 1).map(|p| p as u64),
            })
        };
        if rest.len() < RECORD_HEADER_LEN {
            if all_zero(rest) {
                return Ok(ScanEnd::Clean { offset: off as u64 });
            }
            return bad("truncated record header");
        }
        if all_zero(&rest[..RECORD_HEADER_LEN]) {
            if all_zero(rest) {
                return Ok(ScanEnd::Clean { offset: off as u64 });
            }
            return bad("zeroed record header followed by non-zero bytes");
        }
        let Some((len, ty)) = check_record(rest, &salted) else {
            let len = get_fixed32(&rest[4..]) as usize;
            if len > rest.len() - RECORD_HEADER_LEN {
                return bad("record length runs past the end of the file");
            }
            return bad("record checksum mismatch");
        };
        if !valid_type(ty) {
            return Err(Error::corruption(
                path,
                off as u64,
                format!("record has a valid checksum but unknown type byte {ty:#04x}"),
            ));
        }
        let enc_len = RECORD_HEADER_LEN + len;
        // The read side of the pair with `encode_record`: the decoded
        // record (header and stored payload) lies inside `buf`.
        debug_assert!(off + enc_len <= buf.len());
        f(RawRecord {
            offset: off as u64,
            len: enc_len as u64,
            stored: &rest[RECORD_HEADER_LEN..enc_len],
            compressed: ty & FLAG_SNAPPY != 0,
            link: ty == KIND_LINK,
        })?;
        off += enc_len;
    }
}

/// Searches `buf` from `from` on, byte by byte, for a record that passes all
/// checks with this salt. Only the region up to the last non-zero byte is
/// searched (a record's type byte is never zero), and only positions with a
/// plausible type byte and length are checksummed.
fn find_valid_record(buf: &[u8], salted: &Hasher, from: usize) -> Option<usize> {
    let last_nz = last_nonzero(buf)?;
    let last_start = last_nz.checked_sub(RECORD_HEADER_LEN - 1)?;
    (from..=last_start).find(|&p| {
        valid_type(buf[p + RECORD_HEADER_LEN - 1]) && check_record(&buf[p..], salted).is_some()
    })
}

/// True if every byte of `b` is zero (vectorisable: no early exit per byte).
pub fn all_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &x| a | x) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

/// Index of the last non-zero byte of `b`.
fn last_nonzero(b: &[u8]) -> Option<usize> {
    let tail = b.len() % 64;
    let (body, rem) = b.split_at(b.len() - tail);
    if let Some(i) = rem.iter().rposition(|&x| x != 0) {
        return Some(body.len() + i);
    }
    for (ci, c) in body.chunks_exact(64).enumerate().rev() {
        if c.iter().fold(0u8, |a, &x| a | x) != 0 {
            return c.iter().rposition(|&x| x != 0).map(|i| ci * 64 + i);
        }
    }
    None
}

/// Turns a stored payload into the payload: a zero-copy slice of `whole`
/// (which `stored` must lie within) if not compressed, else a decompressed
/// copy. A snappy stream that does not decode is [`Error::Corruption`] at
/// `offset` of `path`.
pub fn decode_payload(
    path: &Path,
    offset: u64,
    whole: &Bytes,
    stored: &[u8],
    compressed: bool,
) -> Result<Bytes> {
    if compressed {
        decompress(path, offset, stored).map(Bytes::from)
    } else {
        Ok(whole.slice_ref(stored))
    }
}

/// Decompresses a snappy (raw) payload of the record at `offset` of `path`.
pub fn decompress(path: &Path, offset: u64, stored: &[u8]) -> Result<Vec<u8>> {
    let bad = |e: snap::Error| {
        Error::corruption(
            path,
            offset,
            format!("compressed payload does not decode: {e}"),
        )
    };
    let n = snap::raw::decompress_len(stored).map_err(bad)?;
    if n > PAYLOAD_BYTES_MAX {
        return Err(Error::corruption(
            path,
            offset,
            "decompressed payload too large",
        ));
    }
    let mut out = vec![0u8; n];
    let got = snap::raw::Decoder::new()
        .decompress(stored, &mut out)
        .map_err(bad)?;
    out.truncate(got);
    Ok(out)
}

/// A whole file decoded: its header and the records up to where the scan
/// stopped. Payloads are zero-copy slices of the file buffer unless they were
/// compressed.
#[derive(Debug, Clone)]
pub struct DecodedFile {
    /// The header.
    pub header: FileHeader,
    /// The format version in the header (0 for an unwritten header).
    pub version: u32,
    /// What the link record at the start of the file says (version 2
    /// segments; see [`KIND_LINK`]): where the previous segment's data
    /// ended, or [`PREV_END_UNKNOWN`]. `None` if there is none.
    pub link: Option<u64>,
    /// `(offset, encoded length, payload)` of every valid data record, in
    /// order (the link record is not one).
    pub records: Vec<(u64, u64, Bytes)>,
    /// Where the scan stopped (`Clean` at 0 for an unwritten header).
    pub end: ScanEnd,
    /// Length of the file.
    pub file_len: u64,
}

/// Decodes a whole file (`data`) with header `magic`. If `expect_number` is
/// given, a valid header with another number is corruption. An unwritten
/// header followed by non-zero bytes is corruption at offset 0.
pub fn decode_file(
    path: &Path,
    data: Bytes,
    magic: &[u8; 8],
    expect_number: Option<u64>,
) -> Result<DecodedFile> {
    let file_len = data.len() as u64;
    let header = match decode_file_header(path, &data, magic) {
        Ok(h) => h,
        // A damaged header over an empty body: the header write itself was
        // torn (the file holds no data). Only the caller knows whether that
        // is acceptable (last file) or corruption. A segment's header and
        // link record are one write, so its body may be the link alone.
        Err(Error::Corruption { .. }) if empty_body(&data, expect_number) => FileHeader::Unwritten,
        Err(e) => return Err(e),
    };
    let number = match header {
        FileHeader::Unwritten => {
            if !empty_body(&data, expect_number) {
                return Err(Error::corruption(
                    path,
                    0,
                    "zeroed file header followed by non-zero bytes",
                ));
            }
            return Ok(DecodedFile {
                header,
                version: 0,
                link: None,
                records: Vec::new(),
                end: ScanEnd::Clean { offset: 0 },
                file_len,
            });
        }
        FileHeader::Valid(n) => n,
    };
    if let Some(want) = expect_number {
        if want != number {
            return Err(Error::corruption(
                path,
                0,
                format!("header says number {number}, file name says {want}"),
            ));
        }
    }
    let version = get_fixed32(&data[8..12]);
    let mut records = Vec::new();
    let mut link = None;
    let end = scan_records(path, &data, number, FILE_HEADER_LEN, |r| {
        let first = r.offset == FILE_HEADER_LEN as u64;
        if r.link {
            // Written only as the first record of a version 2 segment.
            if !first || version < LINK_VERSION || r.stored.len() != LINK_PAYLOAD_LEN {
                return Err(Error::corruption(
                    path,
                    r.offset,
                    "a link record where none belongs (not the first record of a version 2 segment, or of the wrong length)",
                ));
            }
            link = Some(get_fixed64(r.stored));
            return Ok(());
        }
        if first && version >= LINK_VERSION {
            return Err(Error::corruption(
                path,
                r.offset,
                "a version 2 segment whose first record is not its link record",
            ));
        }
        let payload = decode_payload(path, r.offset, &data, r.stored, r.compressed)?;
        records.push((r.offset, r.len, payload));
        Ok(())
    })?;
    Ok(DecodedFile {
        header,
        version,
        link,
        records,
        end,
        file_len,
    })
}

/// True if everything after the file header is zero, or (for a segment
/// whose number is known) its link record followed by zeros: a file whose
/// creation wrote no data.
fn empty_body(data: &[u8], segment: Option<u64>) -> bool {
    let body = data.get(FILE_HEADER_LEN..).unwrap_or_default();
    if all_zero(body) {
        return true;
    }
    let Some(number) = segment else {
        return false;
    };
    body.len() >= LINK_RECORD_LEN
        && check_record(body, &salted_hasher(number)) == Some((LINK_PAYLOAD_LEN, KIND_LINK))
        && all_zero(&body[LINK_RECORD_LEN..])
}

/// Decodes the single record in `rec` (exactly one encoded record) written
/// with `salt`, found at `offset` of `path`, reusing `rec`'s allocation for
/// the payload. Used to read a record back at a known position.
pub fn decode_single_record(
    path: &Path,
    offset: u64,
    mut rec: Vec<u8>,
    salt: u64,
) -> Result<Vec<u8>> {
    if rec.len() < RECORD_HEADER_LEN {
        return Err(Error::corruption(
            path,
            offset,
            "record shorter than its header",
        ));
    }
    let Some((len, ty)) = check_record(&rec, &salted_hasher(salt)) else {
        return Err(Error::corruption(
            path,
            offset,
            "no valid record at this position (checksum or length mismatch)",
        ));
    };
    if RECORD_HEADER_LEN + len != rec.len() {
        return Err(Error::corruption(
            path,
            offset,
            "record length does not match the requested position",
        ));
    }
    if !valid_type(ty) || ty == KIND_LINK {
        return Err(Error::corruption(
            path,
            offset,
            format!(
                "record has unknown type byte {ty:#04x} (or is a segment's link record, not data)"
            ),
        ));
    }
    if ty & FLAG_SNAPPY != 0 {
        decompress(path, offset, &rec[RECORD_HEADER_LEN..])
    } else {
        rec.drain(..RECORD_HEADER_LEN);
        Ok(rec)
    }
}
