//! A file system that keeps every file write in process memory until its
//! fsync: power loss on a real process.
//!
//! [`VolatileFs`] wraps another file system (normally [`super::StdFs`]).
//! `write_all_at` and `set_len` only change an in-memory overlay of the
//! file; reads see the overlay on top of the file; `sync_data` writes the
//! overlay through to the file and fsyncs it. So a SIGKILL of a process
//! running on it drops exactly the writes a power cut would drop (those
//! not yet fsynced), and [`VolatileFs::cut_power`] does the same inside a
//! process, for in-process tests: it throws the overlays away and fails
//! every later operation, as a machine without power would.
//!
//! What it does not model: directory entries (create, rename, remove) go
//! to the wrapped file system at once, as if every directory fsync had
//! already happened, and writes are never torn. The simulation's turmoil
//! file system models both; this one exists for real processes and real
//! disks (the chaos scenarios' power loss, in-process cluster tests).
//!
//! Memory: an overlay holds the bytes written to a file since its last
//! fsync, merged by offset (a byte rewritten twice is held once), so it is
//! bounded by what the engine leaves unsynced: the WAL between fsyncs, a
//! table until its fsync.

use super::seam::{DynFile, DynFs, FileHandle, FileSystem, IoOp, OpenMode};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What a file has been told since its last fsync.
#[derive(Debug, Default)]
struct Pending {
    /// Written bytes by offset; extents never overlap.
    extents: BTreeMap<u64, Vec<u8>>,
    /// The lowest length any `set_len` cut the file to since the last
    /// fsync: the file's own bytes at or past it are gone.
    cut: Option<u64>,
    /// The length the last `set_len` set.
    len: Option<u64>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.extents.is_empty() && self.cut.is_none() && self.len.is_none()
    }

    fn extents_end(&self) -> u64 {
        self.extents
            .iter()
            .next_back()
            .map_or(0, |(off, b)| off + b.len() as u64)
    }

    /// Removes `[start, end)` from the extents, keeping what lies outside.
    fn clear_range(&mut self, start: u64, end: u64) {
        let hit: Vec<u64> = self
            .extents
            .range(..end)
            .rev()
            .take_while(|(off, b)| **off + b.len() as u64 > start)
            .map(|(off, _)| *off)
            .collect();
        for off in hit {
            let Some(bytes) = self.extents.remove(&off) else {
                continue;
            };
            let e_end = off + bytes.len() as u64;
            if off < start {
                self.extents
                    .insert(off, bytes[..(start - off) as usize].to_vec());
            }
            if e_end > end {
                self.extents
                    .insert(end, bytes[(end - off) as usize..].to_vec());
            }
        }
    }

    fn write(&mut self, buf: &[u8], offset: u64) {
        if buf.is_empty() {
            return;
        }
        self.clear_range(offset, offset + buf.len() as u64);
        self.extents.insert(offset, buf.to_vec());
    }

    fn set_len(&mut self, len: u64) {
        self.clear_range(len, u64::MAX);
        self.cut = Some(self.cut.map_or(len, |c| c.min(len)));
        self.len = Some(len);
    }

    /// The file's length given the wrapped file's length `base_len`.
    fn logical_len(&self, base_len: u64) -> u64 {
        let base = match (self.len, self.cut) {
            (Some(len), _) => len,
            (None, Some(cut)) => base_len.min(cut),
            (None, None) => base_len,
        };
        base.max(self.extents_end())
    }

    /// How much of the wrapped file's bytes still show through.
    fn base_visible(&self, base_len: u64) -> u64 {
        self.cut.map_or(base_len, |c| c.min(base_len))
    }
}

/// The shared state of one [`VolatileFs`].
#[derive(Debug, Default)]
struct State {
    /// Unsynced changes by path. A handle keeps its file's entry (a
    /// renamed or removed file's open handles still write to it).
    files: Mutex<BTreeMap<PathBuf, Arc<Mutex<Pending>>>>,
    /// Set by [`VolatileFs::cut_power`].
    dead: AtomicBool,
    /// Set by [`VolatileFs::hold_syncs_under`].
    held: Mutex<Option<PathBuf>>,
}

/// File writes held in memory until fsync, over another file system. See
/// the module docs.
#[derive(Debug, Clone)]
pub struct VolatileFs {
    inner: DynFs,
    state: Arc<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the maps consistent before anything
    // in it could panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn powered_off() -> io::Error {
    io::Error::other("the power is off (VolatileFs::cut_power)")
}

impl VolatileFs {
    /// Holds `inner`'s file writes in memory until their fsync.
    pub fn new(inner: DynFs) -> VolatileFs {
        VolatileFs {
            inner,
            state: Arc::default(),
        }
    }

    /// Power loss: every write not yet fsynced is gone, and every later
    /// operation through this file system (or a handle it opened) fails.
    /// Open a new `VolatileFs` on the same directory to "boot" again.
    pub fn cut_power(&self) {
        self.state.dead.store(true, Ordering::SeqCst);
        let files = lock(&self.state.files);
        for p in files.values() {
            *lock(p) = Pending::default();
        }
    }

    /// A power cut that has already happened for the files under `dir`,
    /// though the process runs on until [`VolatileFs::cut_power`]: from
    /// now on an fsync of such a file returns without making anything
    /// durable, so the cut loses everything written to them since this
    /// call. It compresses into one test step what a relaxed preset allows
    /// at any moment: an entry acknowledged from the page cache, and the
    /// power gone before the next fsync. Files elsewhere (the vote's, say)
    /// stay honest.
    pub fn hold_syncs_under(&self, dir: &Path) {
        *lock(&self.state.held) = Some(dir.to_path_buf());
    }

    /// Bytes written and not yet fsynced, over all files.
    pub fn unsynced_bytes(&self) -> u64 {
        lock(&self.state.files)
            .values()
            .map(|p| {
                lock(p)
                    .extents
                    .values()
                    .map(|b| b.len() as u64)
                    .sum::<u64>()
            })
            .sum()
    }

    fn alive(&self) -> io::Result<()> {
        if self.state.dead.load(Ordering::SeqCst) {
            return Err(powered_off());
        }
        Ok(())
    }

    fn pending_for(&self, path: &Path, fresh: bool) -> Arc<Mutex<Pending>> {
        let mut files = lock(&self.state.files);
        let entry = files.entry(path.to_path_buf()).or_default();
        if fresh {
            *lock(entry) = Pending::default();
        }
        entry.clone()
    }
}

impl FileSystem for VolatileFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<DynFile> {
        self.alive()?;
        let inner = self.inner.open(path, mode)?;
        // A new or truncated file starts with no pending writes; an
        // existing one shares its pending writes with its other handles.
        let fresh = matches!(mode, OpenMode::CreateNew | OpenMode::CreateTruncate);
        Ok(Arc::new(VolatileFile {
            inner,
            path: path.to_path_buf(),
            pending: self.pending_for(path, fresh),
            state: self.state.clone(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        self.inner.create_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.alive()?;
        self.inner.rename(from, to)?;
        let mut files = lock(&self.state.files);
        match files.remove(from) {
            Some(p) => files.insert(to.to_path_buf(), p),
            None => files.remove(to),
        };
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        self.inner.remove_file(path)?;
        lock(&self.state.files).remove(path);
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.alive()?;
        self.inner.list_dir(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.alive()?;
        self.inner.exists(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.alive()?;
        self.inner.sync_dir(dir)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        self.inner.remove_dir(path)
    }

    /// Links share bytes: the original's pending writes are made durable
    /// first, so both names see the same content (the engine links only
    /// tables it fsynced already, so this costs nothing there).
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        self.alive()?;
        let pending = lock(&self.state.files).get(original).cloned();
        if let Some(p) = pending {
            if !lock(&p).is_empty() {
                let f = self.open(original, OpenMode::Write)?;
                f.sync_data()?;
            }
        }
        self.inner.hard_link(original, link)
    }

    fn io_delay(&self, op: IoOp) -> Option<Duration> {
        self.inner.io_delay(op)
    }

    fn lock(&self, path: &Path) -> io::Result<Option<DynFile>> {
        self.alive()?;
        self.inner.lock(path)
    }
}

#[derive(Debug)]
struct VolatileFile {
    inner: DynFile,
    path: PathBuf,
    pending: Arc<Mutex<Pending>>,
    state: Arc<State>,
}

impl VolatileFile {
    fn alive(&self) -> io::Result<()> {
        if self.state.dead.load(Ordering::SeqCst) {
            return Err(powered_off());
        }
        Ok(())
    }
}

impl FileHandle for VolatileFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.alive()?;
        let p = lock(&self.pending);
        let base_len = self.inner.len()?;
        let len = p.logical_len(base_len);
        if offset >= len || buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min((len - offset) as usize);
        let out = &mut buf[..n];
        let end = offset + n as u64;
        out.fill(0);
        // The wrapped file's bytes that still show through...
        let visible = p.base_visible(base_len);
        if offset < visible {
            let upto = (visible.min(end) - offset) as usize;
            self.inner.read_exact_at(&mut out[..upto], offset)?;
        }
        // ...under the pending writes.
        let first = p
            .extents
            .range(..=offset)
            .next_back()
            .map_or(offset, |(off, _)| *off);
        for (&off, bytes) in p.extents.range(first..end) {
            let e_end = off + bytes.len() as u64;
            if e_end <= offset {
                continue;
            }
            let from = off.max(offset);
            let to = e_end.min(end);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&bytes[(from - off) as usize..(to - off) as usize]);
        }
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.alive()?;
        lock(&self.pending).write(buf, offset);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.alive()?;
        let held = lock(&self.state.held)
            .as_ref()
            .is_some_and(|dir| self.path.starts_with(dir));
        if held {
            return Ok(());
        }
        let mut p = lock(&self.pending);
        if let Some(cut) = p.cut {
            self.inner.set_len(cut)?;
        }
        if let Some(len) = p.len {
            self.inner.set_len(len)?;
        }
        for (&off, bytes) in &p.extents {
            self.inner.write_all_at(bytes, off)?;
        }
        self.inner.sync_data()?;
        *p = Pending::default();
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.alive()?;
        let p = lock(&self.pending);
        Ok(p.logical_len(self.inner.len()?))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.alive()?;
        lock(&self.pending).set_len(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFs;

    fn read_all(f: &DynFile) -> Vec<u8> {
        let mut buf = vec![0u8; f.len().unwrap() as usize];
        f.read_exact_at(&mut buf, 0).unwrap();
        buf
    }

    #[test]
    fn reads_see_unsynced_writes_and_only_synced_ones_survive_power_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let fs = VolatileFs::new(StdFs::shared());
        let f = fs.open(&path, OpenMode::CreateNew).unwrap();
        f.write_all_at(b"hello world", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b"HELLO", 0).unwrap();
        f.write_all_at(b"!!", 11).unwrap();
        assert_eq!(read_all(&f), b"HELLO world!!");
        // Another handle of the same file sees the same bytes.
        let g = fs.open(&path, OpenMode::Read).unwrap();
        assert_eq!(read_all(&g), b"HELLO world!!");
        assert_eq!(fs.unsynced_bytes(), 7);
        fs.cut_power();
        assert!(f.write_all_at(b"x", 0).is_err(), "no writes without power");
        assert!(fs.open(&path, OpenMode::Read).is_err());
        let after = VolatileFs::new(StdFs::shared());
        let f = after.open(&path, OpenMode::Read).unwrap();
        assert_eq!(read_all(&f), b"hello world");
    }

    #[test]
    fn set_len_cuts_and_extends_like_a_file_until_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let fs = VolatileFs::new(StdFs::shared());
        let f = fs.open(&path, OpenMode::CreateNew).unwrap();
        f.write_all_at(b"0123456789", 0).unwrap();
        f.sync_data().unwrap();
        f.set_len(4).unwrap();
        f.set_len(8).unwrap();
        f.write_all_at(b"ab", 6).unwrap();
        assert_eq!(read_all(&f), b"0123\0\0ab");
        // Unsynced: the disk still has the old bytes.
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"0123\0\0ab");
    }

    #[test]
    fn held_syncs_make_nothing_durable_under_their_directory_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("log")).unwrap();
        let (held, free) = (dir.path().join("log/f"), dir.path().join("g"));
        let fs = VolatileFs::new(StdFs::shared());
        fs.hold_syncs_under(&dir.path().join("log"));
        for p in [&held, &free] {
            let f = fs.open(p, OpenMode::CreateNew).unwrap();
            f.write_all_at(b"data", 0).unwrap();
            f.sync_data().unwrap();
        }
        fs.cut_power();
        assert_eq!(std::fs::read(&held).unwrap(), b"");
        assert_eq!(std::fs::read(&free).unwrap(), b"data");
    }

    #[test]
    fn overlapping_writes_keep_the_last() {
        let mut p = Pending::default();
        p.write(b"aaaaaaaa", 0);
        p.write(b"bb", 3);
        p.write(b"cccc", 6);
        p.write(b"d", 0);
        let mut out = vec![0u8; p.extents_end() as usize];
        for (off, b) in &p.extents {
            out[*off as usize..*off as usize + b.len()].copy_from_slice(b);
        }
        assert_eq!(out, b"daabbacccc");
        assert_eq!(p.extents.values().map(Vec::len).sum::<usize>(), 10);
    }

    #[test]
    fn a_rename_carries_pending_writes_and_a_remove_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let fs = VolatileFs::new(StdFs::shared());
        let f = fs.open(&a, OpenMode::CreateNew).unwrap();
        f.write_all_at(b"pending", 0).unwrap();
        fs.rename(&a, &b).unwrap();
        let g = fs.open(&b, OpenMode::Read).unwrap();
        assert_eq!(read_all(&g), b"pending");
        fs.remove_file(&b).unwrap();
        assert_eq!(fs.unsynced_bytes(), 0);
    }
}
