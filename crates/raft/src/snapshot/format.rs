//! The snapshot formats, pure: the descriptor (the `SNAPSHOT` file of a
//! snapshot directory, also sent at the head of the transfer stream) and
//! the stream header before it. Byte layouts in `FORMAT-snapshot.md`
//! beside this crate; keep the two in step.
//!
//! Limits: a descriptor of at most [`DESCRIPTOR_BYTES_MAX`] bytes is
//! accepted from a stream; table names are 1 to 20 digits then `.sst`, at
//! most [`NAME_BYTES_MAX`] bytes, so nothing in a descriptor can reach a
//! path outside its directory.

use crate::byte_reader::{malformed, ByteReader, DecodeError};
use crate::codec::{decode_marker, encode_marker};
use crate::typ::SnapshotMeta;
use std::io;
use std::path::Path;

/// Magic bytes at the start of a snapshot descriptor.
pub const DESCRIPTOR_MAGIC: &[u8; 8] = b"BLSTSNAP";
/// The descriptor format version this build writes and the newest it reads.
pub const DESCRIPTOR_FORMAT_VERSION: u8 = 1;
/// Magic bytes at the start of a snapshot transfer stream.
pub const STREAM_MAGIC: &[u8; 8] = b"BLSTSNPS";
/// The stream format version this build writes and the newest it reads.
pub const STREAM_FORMAT_VERSION: u8 = 1;
/// The largest descriptor accepted (it is held in memory whole; about 100
/// bytes plus two keys per table, so this allows well over 100 000 tables).
pub const DESCRIPTOR_BYTES_MAX: u32 = 16 << 20;
/// The descriptor's file name inside a snapshot directory.
pub const DESCRIPTOR_FILE: &str = "SNAPSHOT";
/// Bytes of the stream header before the descriptor: magic, version,
/// descriptor length (u32), header CRC (u32).
pub const STREAM_HEADER_LEN: usize = 8 + 1 + 4 + 4;
/// Bytes read at a time when checksumming a table.
/// Longest table file name accepted in a descriptor.
pub const NAME_BYTES_MAX: usize = 32;

/// One table of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// File name inside the snapshot directory: `{number:06}.sst`.
    pub name: String,
    /// LSM level.
    pub level: u32,
    /// Length in bytes.
    pub len: u64,
    /// CRC32 (IEEE, crc32fast) of the whole file.
    pub crc32: u32,
    /// Smallest internal key.
    pub smallest: Vec<u8>,
    /// Largest internal key.
    pub largest: Vec<u8>,
    /// Smallest sequence number inside.
    pub smallest_seq: u64,
    /// Largest sequence number inside.
    pub largest_seq: u64,
}

impl SnapshotFile {
    /// The table number its name carries.
    pub(super) fn number(&self) -> Option<u64> {
        self.name.strip_suffix(".sst")?.parse().ok()
    }
}

/// What a snapshot directory's `SNAPSHOT` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The snapshot's meta: last log id and membership.
    pub meta: SnapshotMeta,
    /// The highest engine sequence number in the tables (at least).
    pub max_seq: u64,
    /// The tables.
    pub files: Vec<SnapshotFile>,
}

impl Descriptor {
    /// Encodes the descriptor (layout in `FORMAT-snapshot.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(DESCRIPTOR_MAGIC);
        out.push(DESCRIPTOR_FORMAT_VERSION);
        let marker = encode_marker(self.meta.last_log_id.as_ref(), &self.meta.last_membership);
        out.extend_from_slice(&(marker.len() as u32).to_le_bytes());
        out.extend_from_slice(&marker);
        out.extend_from_slice(&self.max_seq.to_le_bytes());
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for f in &self.files {
            out.extend_from_slice(&(f.name.len() as u16).to_le_bytes());
            out.extend_from_slice(f.name.as_bytes());
            out.extend_from_slice(&f.level.to_le_bytes());
            out.extend_from_slice(&f.len.to_le_bytes());
            out.extend_from_slice(&f.crc32.to_le_bytes());
            for key in [&f.smallest, &f.largest] {
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
            }
            out.extend_from_slice(&f.smallest_seq.to_le_bytes());
            out.extend_from_slice(&f.largest_seq.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a descriptor: checks magic, version and CRC first, then
    /// every field; trailing bytes are refused.
    pub fn decode(src: &[u8]) -> Result<Descriptor, DecodeError> {
        if src.len() < DESCRIPTOR_MAGIC.len() + 1 + 4 {
            return malformed(format!("descriptor of {} bytes is too short", src.len()));
        }
        if &src[..8] != DESCRIPTOR_MAGIC {
            return malformed("bad descriptor magic");
        }
        let version = src[8];
        if version == 0 || version > DESCRIPTOR_FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let (body, crc) = src.split_at(src.len() - 4);
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != want {
            return malformed("descriptor CRC mismatch");
        }
        let mut c = ByteReader::new(&body[9..]);
        let marker = c.bytes_ref("meta")?;
        let (last_log_id, last_membership) = decode_marker(marker)?;
        let max_seq = c.u64("max_seq")?;
        let count = c.u32("file count")? as usize;
        // Each file takes at least 38 bytes, so the count cannot make us
        // allocate more than the descriptor's own size.
        let mut files = Vec::with_capacity(count.min(c.rest().len() / 38));
        for _ in 0..count {
            let name_len = c.u16("file name")? as usize;
            let name = c.take(name_len, "file name")?;
            let name = std::str::from_utf8(name)
                .ok()
                .filter(|n| valid_table_name(n))
                .map(str::to_string);
            let Some(name) = name else {
                return malformed("a file name is not a table name (digits then .sst)");
            };
            let f = SnapshotFile {
                name,
                level: c.u32("level")?,
                len: c.u64("length")?,
                crc32: c.u32("CRC")?,
                smallest: c.bytes("smallest key")?,
                largest: c.bytes("largest key")?,
                smallest_seq: c.u64("smallest seq")?,
                largest_seq: c.u64("largest seq")?,
            };
            if files.iter().any(|g: &SnapshotFile| g.name == f.name) {
                return malformed(format!("{} is listed twice", f.name));
            }
            files.push(f);
        }
        c.finish("descriptor")?;
        Ok(Descriptor {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
            },
            max_seq,
            files,
        })
    }

    /// Total bytes of the tables.
    pub fn files_len(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }
}

/// A table name: 1 to 20 ASCII digits, then `.sst`. Nothing else can
/// reach a path (no separators, no `..`).
fn valid_table_name(name: &str) -> bool {
    name.len() <= NAME_BYTES_MAX
        && name.strip_suffix(".sst").is_some_and(|n| {
            !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit())
        })
}

pub(super) fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

pub(super) fn decode_error(path: &Path, e: DecodeError) -> io::Error {
    match e {
        DecodeError::Version(v) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has snapshot format version {v}, this build reads up to {}: upgrade ballast",
                path.display(),
                DESCRIPTOR_FORMAT_VERSION
            ),
        ),
        DecodeError::Malformed(why) => invalid(format!("{}: {why}", path.display())),
    }
}

/// The stream header before `descriptor` (its encoding), and the
/// descriptor: magic, version, descriptor length, header CRC.
pub(super) fn encode_stream_header(descriptor: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(STREAM_HEADER_LEN + descriptor.len());
    h.extend_from_slice(STREAM_MAGIC);
    h.push(STREAM_FORMAT_VERSION);
    h.extend_from_slice(&(descriptor.len() as u32).to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(descriptor);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_digits_then_sst_only() {
        for ok in ["000001.sst", "1.sst", "12345678901234567890.sst"] {
            assert!(valid_table_name(ok), "{ok}");
        }
        for bad in [
            ".sst",
            "../x.sst",
            "a/1.sst",
            "1.sst/",
            "SNAPSHOT",
            "123456789012345678901.sst",
            "-1.sst",
        ] {
            assert!(!valid_table_name(bad), "{bad}");
        }
    }

    #[test]
    fn descriptors_round_trip_and_every_damage_is_refused() {
        let d = Descriptor {
            meta: SnapshotMeta::default(),
            max_seq: 77,
            files: vec![SnapshotFile {
                name: "000012.sst".into(),
                level: 1,
                len: 4096,
                crc32: 0xdead_beef,
                smallest: b"a\0\0\0\0\0\0\0\x01".to_vec(),
                largest: b"z\0\0\0\0\0\0\0\x01".to_vec(),
                smallest_seq: 3,
                largest_seq: 9,
            }],
        };
        let enc = d.encode();
        assert_eq!(Descriptor::decode(&enc).expect("decode"), d);
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x40;
            assert!(Descriptor::decode(&bad).is_err(), "flip at {i}");
        }
        for cut in 0..enc.len() {
            assert!(Descriptor::decode(&enc[..cut]).is_err(), "cut at {cut}");
        }
        let mut newer = enc.clone();
        newer[8] = DESCRIPTOR_FORMAT_VERSION + 1;
        assert_eq!(
            Descriptor::decode(&newer),
            Err(DecodeError::Version(DESCRIPTOR_FORMAT_VERSION + 1))
        );
    }
}
