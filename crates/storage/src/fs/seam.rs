//! The seam itself: the [`FileSystem`] and [`FileHandle`] traits every file
//! operation goes through, what kind of operation a simulated delay is for
//! ([`IoOp`]), and the few helpers built only on the traits (durable write,
//! copy, read, parent fsync). The implementations are beside it.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A shared, dynamically dispatched file system.
pub type DynFs = Arc<dyn FileSystem>;

/// A shared open file.
pub type DynFile = Arc<dyn FileHandle>;

/// Which kind of operation an [`FileSystem::io_delay`] is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// A data write.
    Write,
    /// A file fsync/fdatasync.
    Sync,
    /// A directory fsync.
    SyncDir,
    /// A rename, create or remove.
    Metadata,
}

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    Write,
    /// Read and write; the file must not exist (its entry needs a
    /// `sync_dir` of the parent to be durable).
    CreateNew,
    /// Read and write; created if missing, truncated to zero if present.
    CreateTruncate,
}

/// The file system operations the engine needs.
pub trait FileSystem: Send + Sync + fmt::Debug + 'static {
    /// Opens `path` in `mode`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<DynFile>;
    /// Creates `path` and missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` atomically if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries in `dir`, sorted (sorted so that behaviour
    /// never depends on directory order).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// True if `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes an empty directory (its removal needs a `sync_dir` of the
    /// parent to be durable).
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Makes `link` (which must not exist) name the same bytes as
    /// `original`. Where the file system can, this is a hard link: no data
    /// is copied, and the bytes stay readable through `link` after
    /// `original` is removed, which is what lets a checkpoint keep its
    /// tables while compaction deletes them from the engine.
    ///
    /// The default copies instead, in chunks of [`COPY_CHUNK_BYTES`], and
    /// fsyncs the copy, so every implementation works; either way the new
    /// directory entry needs a `sync_dir` of `link`'s parent to be durable.
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        copy_file(self, original, link)
    }
    /// Simulated latency to await before an operation. Production returns
    /// `None` and nothing is awaited.
    fn io_delay(&self, _op: IoOp) -> Option<Duration> {
        None
    }
    /// Takes an exclusive advisory lock on `path` (created if missing) for
    /// the life of the returned handle. The default does nothing, for file
    /// systems with a single user (the simulation).
    fn lock(&self, _path: &Path) -> io::Result<Option<DynFile>> {
        Ok(None)
    }
}

/// An open file. All I/O is positional, so one handle can be shared by
/// readers without a lock.
pub trait FileHandle: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns the count (0 at end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the written data (and the size) durable: fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// True if the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads exactly `buf.len()` bytes at `offset`, failing with
    /// `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file ends before the requested range",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Awaits the simulated delay for `op`, if the file system has one.
pub async fn pause(fs: &dyn FileSystem, op: IoOp) {
    if let Some(d) = fs.io_delay(op) {
        tokio::time::sleep(d).await;
    }
}

/// Writes `contents` to `path` (creating or truncating it), fsyncs the file,
/// and fsyncs the parent directory. Used for small files whose existence
/// must be durable before they are relied upon.
pub fn write_file_durably(fs: &dyn FileSystem, path: &Path, contents: &[u8]) -> io::Result<()> {
    let file = fs.open(path, OpenMode::CreateTruncate)?;
    file.write_all_at(contents, 0)?;
    file.sync_data()?;
    sync_parent(fs, path)
}

/// Bytes read and written at a time by [`copy_file`].
pub const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Copies `from` to a new file `to` (which must not exist) in chunks of
/// [`COPY_CHUNK_BYTES`], then fsyncs it. The entry of `to` still needs a
/// `sync_dir` of its parent. A failed copy removes the partial file.
pub fn copy_file<F: FileSystem + ?Sized>(fs: &F, from: &Path, to: &Path) -> io::Result<()> {
    let src = fs.open(from, OpenMode::Read)?;
    let len = src.len()?;
    let dst = fs.open(to, OpenMode::CreateNew)?;
    let copied = (|| {
        let mut buf = vec![0u8; COPY_CHUNK_BYTES.min(usize::try_from(len).unwrap_or(usize::MAX))];
        let mut offset = 0u64;
        while offset < len {
            let n = buf
                .len()
                .min(usize::try_from(len - offset).unwrap_or(usize::MAX));
            src.read_exact_at(&mut buf[..n], offset)?;
            dst.write_all_at(&buf[..n], offset)?;
            offset += n as u64;
        }
        dst.sync_data()
    })();
    if copied.is_err() {
        drop(dst);
        let _ = fs.remove_file(to);
    }
    copied
}

/// Removes every file in `dir`, then `dir` itself, and fsyncs its parent.
/// The directory must hold files only. Missing `dir` is not an error.
pub fn remove_dir_with_files(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    if !fs.exists(dir)? {
        return Ok(());
    }
    for name in fs.list_dir(dir)? {
        fs.remove_file(&dir.join(name))?;
    }
    fs.remove_dir(dir)?;
    sync_parent(fs, dir)
}

/// Reads the whole file at `path`.
pub fn read_file(fs: &dyn FileSystem, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open(path, OpenMode::Read)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Fsyncs the directory that contains `path`.
pub fn sync_parent(fs: &dyn FileSystem, path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs.sync_dir(dir),
        _ => fs.sync_dir(Path::new(".")),
    }
}
