//! Framing shared by every SSTable block: block handles, the 5-byte block
//! trailer (compression type + CRC32), reading and checking a block, and the
//! fixed 64-byte footer. See `FORMAT-table.md` beside this crate.

use crate::coding::{get_fixed32, get_fixed64, get_varint64, put_varint64};
use crate::error::{Error, Result};
use crate::fs::FileHandle;
use crate::options::Compression;
use bytes::Bytes;
use std::io;
use std::path::Path;

/// The newest SSTable format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The footer's magic number: the bytes `BLSTSST1` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"BLSTSST1");

/// Length of the footer, in every format version.
pub const FOOTER_LEN: usize = 64;

/// Bytes that follow every stored block: compression type u8 + CRC32 u32 LE.
pub const BLOCK_TRAILER_LEN: usize = 5;

/// Block compression type byte: stored as is.
pub const BLOCK_TYPE_NONE: u8 = 0;
/// Block compression type byte: snappy raw format.
pub const BLOCK_TYPE_SNAPPY: u8 = 1;

/// Largest decoded block accepted (offsets inside a decoded block are u32).
const DECODED_BLOCK_BYTES_MAX: usize = u32::MAX as usize;

/// Where a block lives in the file: `size` counts the stored (possibly
/// compressed) bytes, without the 5-byte trailer that follows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    /// Offset of the block's first byte.
    pub offset: u64,
    /// Stored length, trailer excluded.
    pub size: u64,
}

impl BlockHandle {
    /// Appends the varint form (offset varint64, size varint64).
    pub fn encode_to(&self, dst: &mut Vec<u8>) {
        put_varint64(dst, self.offset);
        put_varint64(dst, self.size);
    }

    /// Decodes the varint form; the input must be exactly one handle.
    pub fn decode_exact(src: &[u8]) -> Option<BlockHandle> {
        let (offset, n) = get_varint64(src)?;
        let (size, m) = get_varint64(&src[n..])?;
        (n + m == src.len()).then_some(BlockHandle { offset, size })
    }

    /// First byte after the block's trailer, or `None` on overflow.
    pub fn end(&self) -> Option<u64> {
        self.offset
            .checked_add(self.size)?
            .checked_add(BLOCK_TRAILER_LEN as u64)
    }

    /// True for the "no block" handle (offset 0, size 0).
    pub fn is_absent(&self) -> bool {
        self.offset == 0 && self.size == 0
    }

    fn put_fixed(&self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(&self.offset.to_le_bytes());
        dst.extend_from_slice(&self.size.to_le_bytes());
    }

    fn get_fixed(src: &[u8]) -> BlockHandle {
        BlockHandle {
            offset: get_fixed64(src),
            size: get_fixed64(&src[8..]),
        }
    }
}

/// The fixed-length trailer of every table file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// The bloom filter block ([`BlockHandle::is_absent`] when the table has none).
    pub filter: BlockHandle,
    /// The index block.
    pub index: BlockHandle,
    /// The properties block.
    pub properties: BlockHandle,
    /// The format version the file was written with.
    pub version: u32,
}

impl Footer {
    /// The 64 footer bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOOTER_LEN);
        self.filter.put_fixed(&mut out);
        self.index.put_fixed(&mut out);
        self.properties.put_fixed(&mut out);
        out.extend_from_slice(&self.version.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&MAGIC.to_le_bytes());
        debug_assert_eq!(out.len(), FOOTER_LEN);
        out
    }

    /// Checks and decodes a footer read at `offset` of `path`: magic, then
    /// CRC (both [`Error::Corruption`]), then version
    /// ([`Error::UnsupportedFormat`] if newer than [`FORMAT_VERSION`]).
    pub fn decode(buf: &[u8], path: &Path, offset: u64) -> Result<Footer> {
        if buf.len() != FOOTER_LEN {
            return Err(Error::corruption(
                path,
                offset,
                "footer has the wrong length",
            ));
        }
        let magic = get_fixed64(&buf[56..]);
        if magic != MAGIC {
            return Err(Error::corruption(
                path,
                offset,
                format!("bad table magic {magic:#018x} (not an SSTable, or truncated)"),
            ));
        }
        let crc = get_fixed32(&buf[52..]);
        if crc != crc32fast::hash(&buf[..52]) {
            return Err(Error::corruption(path, offset, "footer checksum mismatch"));
        }
        let version = get_fixed32(&buf[48..]);
        Error::check_format_version(path, offset, version, FORMAT_VERSION)?;
        Ok(Footer {
            filter: BlockHandle::get_fixed(&buf[0..]),
            index: BlockHandle::get_fixed(&buf[16..]),
            properties: BlockHandle::get_fixed(&buf[32..]),
            version,
        })
    }
}

/// Frames the block contents `raw` for disk: compresses them with snappy if
/// asked and if that saves at least 1/8, then appends the stored bytes and
/// the 5-byte trailer to `dst`. Returns the stored size (the handle's size).
pub(crate) fn append_block(
    dst: &mut Vec<u8>,
    raw: &[u8],
    compression: Compression,
    encoder: &mut snap::raw::Encoder,
) -> u64 {
    let start = dst.len();
    let mut block_type = BLOCK_TYPE_NONE;
    if compression == Compression::Snappy && !raw.is_empty() {
        let max = snap::raw::max_compress_len(raw.len());
        if max > 0 {
            dst.resize(start + max, 0);
            match encoder.compress(raw, &mut dst[start..]) {
                Ok(n) if n <= raw.len() - raw.len() / 8 => {
                    dst.truncate(start + n);
                    block_type = BLOCK_TYPE_SNAPPY;
                }
                _ => dst.truncate(start),
            }
        }
    }
    if block_type == BLOCK_TYPE_NONE {
        dst.extend_from_slice(raw);
    }
    let size = (dst.len() - start) as u64;
    dst.push(block_type);
    let crc = crc32fast::hash(&dst[start..]);
    dst.extend_from_slice(&crc.to_le_bytes());
    size
}

/// Reads `len` bytes at `offset`; a short file is corruption (truncation).
pub(crate) fn read_exact(
    file: &dyn FileHandle,
    path: &Path,
    offset: u64,
    buf: &mut [u8],
) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::corruption(
                path,
                offset,
                format!("file ends inside the {}-byte range read here", buf.len()),
            )
        } else {
            Error::io(path, e)
        }
    })
}

/// Reads the block at `handle`, checks its CRC and compression type and
/// returns its (decompressed) contents. Every failure is
/// [`Error::Corruption`] naming `path` and the block's offset.
pub(crate) fn read_block(file: &dyn FileHandle, path: &Path, handle: BlockHandle) -> Result<Bytes> {
    let corrupt = |reason: String| Error::corruption(path, handle.offset, reason);
    let size = usize::try_from(handle.size)
        .ok()
        .filter(|&s| s <= DECODED_BLOCK_BYTES_MAX)
        .ok_or_else(|| corrupt(format!("block size {} is implausible", handle.size)))?;
    let mut buf = vec![0u8; size + BLOCK_TRAILER_LEN];
    read_exact(file, path, handle.offset, &mut buf)?;
    let stored_crc = get_fixed32(&buf[size + 1..]);
    let actual_crc = crc32fast::hash(&buf[..size + 1]);
    if stored_crc != actual_crc
        && !crate::planted::active(crate::planted::PlantedBug::IgnoreCrcMismatch)
    {
        return Err(corrupt(format!(
            "block checksum mismatch (stored {stored_crc:#010x}, computed {actual_crc:#010x})"
        )));
    }
    match buf[size] {
        BLOCK_TYPE_NONE => {
            buf.truncate(size);
            Ok(Bytes::from(buf))
        }
        BLOCK_TYPE_SNAPPY => {
            let input = &buf[..size];
            let len = snap::raw::decompress_len(input)
                .map_err(|e| corrupt(format!("snappy header: {e}")))?;
            if len > DECODED_BLOCK_BYTES_MAX {
                return Err(corrupt(format!("snappy block claims {len} bytes")));
            }
            let mut out = vec![0u8; len];
            let n = snap::raw::Decoder::new()
                .decompress(input, &mut out)
                .map_err(|e| corrupt(format!("snappy decode: {e}")))?;
            if n != len {
                return Err(corrupt("snappy block shorter than its header".to_string()));
            }
            Ok(Bytes::from(out))
        }
        t => Err(corrupt(format!("unknown block compression type {t}"))),
    }
}
