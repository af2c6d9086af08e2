//! Snapshots on disk: [`SnapshotData`], a shared handle to one snapshot
//! directory (the engine's tables, hard-linked, and the `SNAPSHOT`
//! descriptor). The directory of a superseded snapshot is deleted when its
//! last handle goes, so a snapshot still being streamed to a follower stays
//! on disk until the stream is done.
//!
//! Limits: a table is checksummed [`CRC_CHUNK_BYTES`] at a time.

use super::format::{decode_error, invalid, Descriptor, DESCRIPTOR_FILE};
use crate::codec::encode_marker;
use crate::typ::{LeaderId, Node, NodeId, SnapshotMeta};
use ballast_storage::fs::{self, DynFs, OpenMode};
use ballast_storage::{Checkpoint, FileDesc};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Bytes read at a time when checksumming a table.
pub const CRC_CHUNK_BYTES: usize = 1 << 20;

/// A snapshot of ballast: its meta and a handle to its directory.
pub type Snapshot = openraft::storage::Snapshot<LeaderId, NodeId, Node, SnapshotData>;

/// One snapshot directory. Deleted with its files when the last handle
/// drops, if it was marked obsolete.
pub(super) struct SnapshotDir {
    pub(super) fs: DynFs,
    pub(super) path: PathBuf,
    pub(super) descriptor: Descriptor,
    /// The encoded descriptor, as in `SNAPSHOT` and in the stream.
    pub(super) encoded: Vec<u8>,
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
pub struct SnapshotData(pub(super) Arc<SnapshotDir>);

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
/// (hard links where the file system can) and its descriptor. Each table
/// is read back and checked against the descriptor's CRC first (unless
/// `verify` is off, a planted bug): what lies on disk may differ from what
/// was received (damage at rest, or a copy made through a bad read), and
/// this directory is what a restart finishes an install from.
pub(crate) fn link_snapshot(
    fs: DynFs,
    from: &SnapshotData,
    to: &Path,
    verify: bool,
) -> io::Result<SnapshotData> {
    fs.create_dir_all(to)?;
    for f in &from.0.descriptor.files {
        let path = to.join(&f.name);
        let original = from.dir().join(&f.name);
        fs.hard_link(&original, &path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("linking {} to {}: {e}", original.display(), path.display()),
            )
        })?;
        if verify {
            let crc = file_crc(&fs, &path, f.len)?;
            if crc != f.crc32 {
                return Err(invalid(format!(
                    "{}: CRC {crc:08x} on disk, the snapshot descriptor says {:08x} \
                     (damaged at rest or by a bad read; the snapshot is refused)",
                    path.display(),
                    f.crc32
                )));
            }
        }
    }
    fs.sync_dir(to)?;
    SnapshotData::create(fs, to, from.0.descriptor.clone())
}
