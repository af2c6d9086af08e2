//! Raft snapshots as SSTable sets on disk, and their transfer stream.
//!
//! A snapshot is a directory holding the engine's tables at one applied
//! log id (hard links made by `Db::checkpoint`) and a small descriptor
//! file, `SNAPSHOT`, with the snapshot's meta (last log id, membership) and,
//! per table, its name, level, length, CRC32 and key range. The state
//! machine keeps its snapshots under `<state machine dir>/snapshots/`; a
//! snapshot received from a leader is staged in the node's
//! [`SnapshotInbox`] first. [`SnapshotData`] is a shared handle to one such
//! directory: the directory of a superseded snapshot is deleted when its
//! last handle goes, so a snapshot still being streamed to a follower
//! stays on disk until the stream is done.
//!
//! The transfer stream ([`SnapshotTransfer`]) is a simple archive: a
//! header (magic, version, descriptor length, header CRC), the descriptor
//! (CRC-checked itself), then every table's bytes in descriptor order,
//! each checked against the descriptor's CRC32. Byte layouts are in
//! `FORMAT-snapshot.md` beside this crate.

use crate::codec::DecodeError;
use crate::state_machine::{decode_marker, encode_marker, SnapshotMeta};
use crate::transfer::{check_announced_len, check_chunk, SnapshotInbox, SnapshotTransfer};
use ballast_storage::fs::{self, DynFile, DynFs, OpenMode};
use ballast_storage::{Checkpoint, FileDesc};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
const CRC_CHUNK_BYTES: usize = 1 << 20;
/// Longest table file name accepted in a descriptor.
const NAME_BYTES_MAX: usize = 32;

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
    fn number(&self) -> Option<u64> {
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

fn malformed<T>(what: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::Malformed(what.into()))
}

/// Reads little-endian fields off the front of a slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return malformed(format!("descriptor ends inside {what}"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes32(&mut self, what: &str) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
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
        let mut c = Cursor(&body[9..]);
        let marker = c.bytes32("meta")?;
        let (last_log_id, last_membership) = decode_marker(&marker)?;
        let max_seq = c.u64("max_seq")?;
        let count = c.u32("file count")? as usize;
        // Each file takes at least 38 bytes, so the count cannot make us
        // allocate more than the descriptor's own size.
        let mut files = Vec::with_capacity(count.min(c.0.len() / 38));
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
                smallest: c.bytes32("smallest key")?,
                largest: c.bytes32("largest key")?,
                smallest_seq: c.u64("smallest seq")?,
                largest_seq: c.u64("largest seq")?,
            };
            if files.iter().any(|g: &SnapshotFile| g.name == f.name) {
                return malformed(format!("{} is listed twice", f.name));
            }
            files.push(f);
        }
        if !c.0.is_empty() {
            return malformed(format!("{} trailing bytes in descriptor", c.0.len()));
        }
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

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn decode_error(path: &Path, e: DecodeError) -> io::Error {
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

/// One snapshot directory. Deleted with its files when the last handle
/// drops, if it was marked obsolete.
struct SnapshotDir {
    fs: DynFs,
    path: PathBuf,
    descriptor: Descriptor,
    /// The encoded descriptor, as in `SNAPSHOT` and in the stream.
    encoded: Vec<u8>,
    obsolete: AtomicBool,
}

impl Drop for SnapshotDir {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::SeqCst) {
            match fs::remove_dir_with_files(&*self.fs, &self.path) {
                Ok(()) => tracing::debug!(dir = %self.path.display(), "removed an old snapshot"),
                // Harmless: the state machine removes leftovers at open.
                Err(e) => {
                    tracing::warn!(dir = %self.path.display(), error = %e, "could not remove an old snapshot")
                }
            }
        }
    }
}

/// A handle to a snapshot on disk: what openraft moves between the state
/// machine and the network. Cloning shares the directory.
#[derive(Clone)]
pub struct SnapshotData(Arc<SnapshotDir>);

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotData")
            .field("dir", &self.0.path)
            .field("last_log_id", &self.0.descriptor.meta.last_log_id)
            .field("files", &self.0.descriptor.files.len())
            .finish()
    }
}

impl SnapshotData {
    /// Opens the snapshot in `dir`: reads and checks its descriptor, and
    /// that every table is there with its length (CRCs are checked when a
    /// snapshot is received, not at every open).
    pub fn open(fs: DynFs, dir: &Path) -> io::Result<SnapshotData> {
        let path = dir.join(DESCRIPTOR_FILE);
        let encoded = fs::read_file(&*fs, &path)?;
        let descriptor = Descriptor::decode(&encoded).map_err(|e| decode_error(&path, e))?;
        for f in &descriptor.files {
            let p = dir.join(&f.name);
            let len = fs.open(&p, OpenMode::Read)?.len()?;
            if len != f.len {
                return Err(invalid(format!(
                    "{} has {len} bytes, the descriptor says {}",
                    p.display(),
                    f.len
                )));
            }
        }
        Ok(SnapshotData::new(
            fs,
            dir.to_path_buf(),
            descriptor,
            encoded,
        ))
    }

    fn new(fs: DynFs, path: PathBuf, descriptor: Descriptor, encoded: Vec<u8>) -> SnapshotData {
        SnapshotData(Arc::new(SnapshotDir {
            fs,
            path,
            descriptor,
            encoded,
            obsolete: AtomicBool::new(false),
        }))
    }

    /// Writes `descriptor` durably into `dir` (which holds its tables,
    /// already durable) and returns the snapshot.
    pub(crate) fn create(
        fs: DynFs,
        dir: &Path,
        descriptor: Descriptor,
    ) -> io::Result<SnapshotData> {
        let encoded = descriptor.encode();
        fs::write_file_durably(&*fs, &dir.join(DESCRIPTOR_FILE), &encoded)?;
        fs::sync_parent(&*fs, dir)?;
        Ok(SnapshotData::new(
            fs,
            dir.to_path_buf(),
            descriptor,
            encoded,
        ))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.0.path
    }

    /// The descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.0.descriptor
    }

    /// The snapshot's meta.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.0.descriptor.meta
    }

    /// The engine checkpoint these tables make, for `Db::install`.
    pub fn checkpoint(&self) -> io::Result<Checkpoint> {
        let d = &self.0.descriptor;
        let mut tables = Vec::with_capacity(d.files.len());
        for f in &d.files {
            let number = f
                .number()
                .ok_or_else(|| invalid(format!("{} is not a table name", f.name)))?;
            tables.push(FileDesc {
                level: f.level,
                number,
                size: f.len,
                smallest: f.smallest.clone(),
                largest: f.largest.clone(),
                smallest_seq: f.smallest_seq,
                largest_seq: f.largest_seq,
            });
        }
        Ok(Checkpoint {
            dir: self.0.path.clone(),
            tables,
            applied_marker: Some(encode_marker(
                d.meta.last_log_id.as_ref(),
                &d.meta.last_membership,
            )),
            max_seq: d.max_seq,
        })
    }

    /// Deletes the directory once the last handle is gone.
    pub(crate) fn mark_obsolete(&self) {
        self.0.obsolete.store(true, Ordering::SeqCst);
    }

    /// Stream length of the header and descriptor.
    fn header_len(&self) -> u64 {
        (STREAM_HEADER_LEN + self.0.encoded.len()) as u64
    }

    fn stream_header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(STREAM_HEADER_LEN + self.0.encoded.len());
        h.extend_from_slice(STREAM_MAGIC);
        h.push(STREAM_FORMAT_VERSION);
        h.extend_from_slice(&(self.0.encoded.len() as u32).to_le_bytes());
        let crc = crc32fast::hash(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&self.0.encoded);
        h
    }
}

/// Computes the CRC32 of the file at `path`, reading `CRC_CHUNK_BYTES` at
/// a time.
pub(crate) fn file_crc(fs: &DynFs, path: &Path, len: u64) -> io::Result<u32> {
    let file = fs.open(path, OpenMode::Read)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CRC_CHUNK_BYTES.min(len as usize)];
    let mut off = 0u64;
    while off < len {
        let n = buf.len().min((len - off) as usize);
        file.read_exact_at(&mut buf[..n], off)?;
        hasher.update(&buf[..n]);
        off += n as u64;
    }
    Ok(hasher.finalize())
}

/// Makes a durable snapshot directory `to` on `fs` holding `from`'s tables
/// (hard links where the file system can) and its descriptor.
pub(crate) fn link_snapshot(fs: DynFs, from: &SnapshotData, to: &Path) -> io::Result<SnapshotData> {
    fs.create_dir_all(to)?;
    for f in &from.0.descriptor.files {
        fs.hard_link(&from.dir().join(&f.name), &to.join(&f.name))?;
    }
    fs.sync_dir(to)?;
    SnapshotData::create(fs, to, from.0.descriptor.clone())
}

/// Receiving side of one snapshot stream: writes into a fresh directory
/// under the inbox, checking every piece as it arrives. Dropped before
/// [`SnapshotTransfer::finish_receive`] succeeds, it removes that
/// directory.
pub struct SnapshotReceiver {
    fs: DynFs,
    dir: PathBuf,
    expected: SnapshotMeta,
    total: u64,
    received: u64,
    /// Header and descriptor bytes so far (bounded by
    /// `STREAM_HEADER_LEN + DESCRIPTOR_BYTES_MAX`).
    header: Vec<u8>,
    /// Descriptor length, once the fixed header is in.
    descriptor_len: Option<usize>,
    descriptor: Option<Descriptor>,
    /// The table being written: index, bytes so far, open file, running CRC.
    file_index: usize,
    file_written: u64,
    file: Option<DynFile>,
    hasher: crc32fast::Hasher,
    failed: Option<String>,
    done: bool,
}

impl std::fmt::Debug for SnapshotReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReceiver")
            .field("dir", &self.dir)
            .field("received", &self.received)
            .field("total", &self.total)
            .finish()
    }
}

impl Drop for SnapshotReceiver {
    fn drop(&mut self) {
        if !self.done {
            self.file = None;
            if let Err(e) = fs::remove_dir_with_files(&*self.fs, &self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove an unfinished snapshot");
            }
        }
    }
}

/// Prefix of the staging directories receivers create in the inbox.
const RECEIVE_PREFIX: &str = "recv-";
/// A file every receiving directory holds, created exclusively so that two
/// receivers never share a directory.
const CLAIM_FILE: &str = "CLAIM";
/// Attempts at finding a free staging directory name.
const CLAIM_ATTEMPTS_MAX: u64 = 1024;

/// Removes what interrupted receives left in the inbox (`recv-*`
/// directories). Call it when the node starts, before any receive.
pub fn clear_inbox(inbox: &SnapshotInbox) -> io::Result<u64> {
    if !inbox.fs.exists(&inbox.dir)? {
        return Ok(0);
    }
    let mut removed = 0;
    for name in inbox.fs.list_dir(&inbox.dir)? {
        if name.starts_with(RECEIVE_PREFIX) {
            fs::remove_dir_with_files(&*inbox.fs, &inbox.dir.join(&name))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Creates and claims a fresh staging directory under the inbox.
fn claim_dir(inbox: &SnapshotInbox) -> io::Result<PathBuf> {
    let fs = &inbox.fs;
    fs.create_dir_all(&inbox.dir)?;
    let next = fs
        .list_dir(&inbox.dir)?
        .iter()
        .filter_map(|n| n.strip_prefix(RECEIVE_PREFIX)?.parse::<u64>().ok())
        .max()
        .map_or(1, |n| n + 1);
    for n in next..next + CLAIM_ATTEMPTS_MAX {
        let dir = inbox.dir.join(format!("{RECEIVE_PREFIX}{n:06}"));
        fs.create_dir_all(&dir)?;
        match fs.open(&dir.join(CLAIM_FILE), OpenMode::CreateNew) {
            Ok(_) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "no free staging directory in {} after {CLAIM_ATTEMPTS_MAX} attempts",
        inbox.dir.display()
    )))
}

impl SnapshotReceiver {
    /// Takes header and descriptor bytes from the front of `bytes`.
    fn take_header<'a>(&mut self, mut bytes: &'a [u8]) -> io::Result<&'a [u8]> {
        while self.descriptor.is_none() && !bytes.is_empty() {
            let want = match self.descriptor_len {
                None => STREAM_HEADER_LEN,
                Some(n) => STREAM_HEADER_LEN + n,
            };
            let n = (want - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < want {
                break;
            }
            match self.descriptor_len {
                None => self.check_fixed_header()?,
                Some(_) => self.check_descriptor()?,
            }
        }
        Ok(bytes)
    }

    fn check_fixed_header(&mut self) -> io::Result<()> {
        let h = &self.header;
        if &h[..8] != STREAM_MAGIC {
            return Err(invalid("not a ballast snapshot stream (bad magic)"));
        }
        if h[8] == 0 || h[8] > STREAM_FORMAT_VERSION {
            return Err(invalid(format!(
                "snapshot stream format version {} is unknown (this build reads up to {STREAM_FORMAT_VERSION}): upgrade ballast",
                h[8]
            )));
        }
        let crc = u32::from_le_bytes([h[13], h[14], h[15], h[16]]);
        if crc32fast::hash(&h[..13]) != crc {
            return Err(invalid("snapshot stream header CRC mismatch"));
        }
        let len = u32::from_le_bytes([h[9], h[10], h[11], h[12]]);
        if len > DESCRIPTOR_BYTES_MAX {
            return Err(invalid(format!(
                "snapshot descriptor of {len} bytes exceeds the {DESCRIPTOR_BYTES_MAX}-byte limit"
            )));
        }
        if STREAM_HEADER_LEN as u64 + u64::from(len) > self.total {
            return Err(invalid(
                "snapshot descriptor runs past the announced stream",
            ));
        }
        self.descriptor_len = Some(len as usize);
        Ok(())
    }

    fn check_descriptor(&mut self) -> io::Result<()> {
        let d = Descriptor::decode(&self.header[STREAM_HEADER_LEN..])
            .map_err(|e| decode_error(Path::new("snapshot stream descriptor"), e))?;
        let want = self.header.len() as u64 + d.files_len();
        if want != self.total {
            return Err(invalid(format!(
                "snapshot stream announced {} bytes, its descriptor makes {want}",
                self.total
            )));
        }
        if d.meta != self.expected {
            return Err(invalid(format!(
                "snapshot stream holds {:?}, the sender announced {:?}",
                d.meta.last_log_id, self.expected.last_log_id
            )));
        }
        self.descriptor = Some(d);
        self.hasher = crc32fast::Hasher::new();
        self.close_finished_files()
    }

    /// Writes table bytes from `bytes`, ending tables as they complete.
    fn take_files(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let Some(d) = &self.descriptor else {
                return Err(invalid("table bytes before the descriptor"));
            };
            let Some(f) = d.files.get(self.file_index) else {
                return Err(invalid("bytes past the last table"));
            };
            let n = ((f.len - self.file_written) as usize).min(bytes.len());
            let file = match &self.file {
                Some(file) => file.clone(),
                None => {
                    let file = self.fs.open(&self.dir.join(&f.name), OpenMode::CreateNew)?;
                    self.file = Some(file.clone());
                    file
                }
            };
            file.write_all_at(&bytes[..n], self.file_written)?;
            self.hasher.update(&bytes[..n]);
            self.file_written += n as u64;
            bytes = &bytes[n..];
            self.close_finished_files()?;
        }
        Ok(())
    }

    /// Ends every table that has all its bytes (empty ones included):
    /// checks its CRC and fsyncs it.
    fn close_finished_files(&mut self) -> io::Result<()> {
        let Some(d) = &self.descriptor else {
            return Ok(());
        };
        while let Some(f) = d.files.get(self.file_index) {
            if self.file_written < f.len {
                return Ok(());
            }
            let file = match self.file.take() {
                Some(file) => file,
                None => self.fs.open(&self.dir.join(&f.name), OpenMode::CreateNew)?,
            };
            let crc = std::mem::take(&mut self.hasher).finalize();
            if crc != f.crc32 {
                return Err(invalid(format!(
                    "snapshot table {} fails its CRC (got {crc:#010x}, descriptor says {:#010x})",
                    f.name, f.crc32
                )));
            }
            file.sync_data()?;
            self.file_index += 1;
            self.file_written = 0;
        }
        Ok(())
    }
}

impl SnapshotTransfer for SnapshotData {
    type Receiver = SnapshotReceiver;

    fn stream_len(&self) -> u64 {
        self.header_len() + self.0.descriptor.files_len()
    }

    fn read_chunk(&self, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let total = self.stream_len();
        let want = (total.saturating_sub(offset)).min(max as u64) as usize;
        let mut out = Vec::with_capacity(want);
        let mut pos = offset;
        let header_len = self.header_len();
        if pos < header_len && out.len() < want {
            let h = self.stream_header();
            let start = pos as usize;
            let n = (h.len() - start).min(want);
            out.extend_from_slice(&h[start..start + n]);
            pos += n as u64;
        }
        let mut file_start = header_len;
        for f in &self.0.descriptor.files {
            if out.len() == want {
                break;
            }
            let file_end = file_start + f.len;
            if pos < file_end {
                let at = pos - file_start;
                let n = ((file_end - pos) as usize).min(want - out.len());
                let old = out.len();
                out.resize(old + n, 0);
                let path = self.dir().join(&f.name);
                self.0
                    .fs
                    .open(&path, OpenMode::Read)?
                    .read_exact_at(&mut out[old..], at)?;
                pos += n as u64;
            }
            file_start = file_end;
        }
        Ok(out)
    }

    fn begin_receive(
        inbox: &SnapshotInbox,
        meta: &SnapshotMeta,
        len: u64,
    ) -> io::Result<SnapshotReceiver> {
        check_announced_len(inbox, len)?;
        if len < STREAM_HEADER_LEN as u64 {
            return Err(invalid(format!(
                "a snapshot stream of {len} bytes is shorter than its header"
            )));
        }
        let dir = claim_dir(inbox)?;
        Ok(SnapshotReceiver {
            fs: inbox.fs.clone(),
            dir,
            expected: meta.clone(),
            total: len,
            received: 0,
            header: Vec::new(),
            descriptor_len: None,
            descriptor: None,
            file_index: 0,
            file_written: 0,
            file: None,
            hasher: crc32fast::Hasher::new(),
            failed: None,
            done: false,
        })
    }

    fn receive_chunk(rx: &mut SnapshotReceiver, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if let Some(why) = &rx.failed {
            return Err(invalid(format!("snapshot stream already refused: {why}")));
        }
        let res = check_chunk(rx.received, rx.total, offset, bytes.len()).and_then(|()| {
            let rest = rx.take_header(bytes)?;
            rx.take_files(rest)
        });
        match res {
            Ok(()) => {
                rx.received += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                rx.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn finish_receive(mut rx: SnapshotReceiver) -> io::Result<SnapshotData> {
        if let Some(why) = &rx.failed {
            return Err(invalid(format!("snapshot stream already refused: {why}")));
        }
        if rx.received != rx.total {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "snapshot stream ended after {} of {} bytes",
                    rx.received, rx.total
                ),
            ));
        }
        let Some(d) = rx.descriptor.clone() else {
            return Err(invalid("snapshot stream ended before its descriptor"));
        };
        if rx.file_index != d.files.len() {
            return Err(invalid("snapshot stream ended inside a table"));
        }
        rx.fs.remove_file(&rx.dir.join(CLAIM_FILE))?;
        let data = SnapshotData::create(rx.fs.clone(), &rx.dir, d)?;
        // A received snapshot is staging only: the state machine links it
        // into its own directory when it installs it, so the inbox copy
        // goes with its last handle, installed or not.
        data.mark_obsolete();
        rx.done = true;
        Ok(data)
    }
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
