//! A fault-injecting wrapper around any [`FileSystem`], for tests of the
//! engine's error handling: failed fsyncs, failed writes, a full disk and
//! corrupting reads.
//! (Power loss and torn writes are the simulation's job: see `sim/`.)

use super::seam::{copy_file, DynFile, DynFs, FileHandle, FileSystem, IoOp, OpenMode};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Switches that tests flip while the engine runs.
#[derive(Debug)]
pub struct FaultSwitches {
    /// Every `sync_data` fails with EIO while set.
    pub fail_sync: AtomicBool,
    /// Every write fails with EIO while set.
    pub fail_write: AtomicBool,
    /// Bytes that may still be added to files before writes fail with
    /// ENOSPC. `u64::MAX` means unlimited. Removing a file gives its bytes back.
    pub space_left_bytes: AtomicU64,
    /// Successful fsyncs (file and directory) left before every later one
    /// fails with EIO, as if `fail_sync` were set from then on; `u64::MAX`
    /// means no limit. Lets a test fail the n-th fsync of an operation.
    pub syncs_before_failure: AtomicU64,
    /// Successful `sync_data` calls so far.
    pub syncs: AtomicU64,
    /// Successful `sync_dir` calls so far.
    pub dir_syncs: AtomicU64,
    /// Reads left that return their bytes with the first one flipped (a
    /// corrupting controller or bus); each read that does so uses one up.
    pub corrupt_reads_left: AtomicU64,
    /// `hard_link` copies (the seam's default), as on a file system without
    /// hard links, so a corrupting read during the copy reaches the disk.
    pub links_as_copies: AtomicBool,
}

impl Default for FaultSwitches {
    fn default() -> Self {
        FaultSwitches {
            fail_sync: AtomicBool::new(false),
            fail_write: AtomicBool::new(false),
            space_left_bytes: AtomicU64::new(u64::MAX),
            syncs_before_failure: AtomicU64::new(u64::MAX),
            syncs: AtomicU64::new(0),
            dir_syncs: AtomicU64::new(0),
            corrupt_reads_left: AtomicU64::new(0),
            links_as_copies: AtomicBool::new(false),
        }
    }
}

impl FaultSwitches {
    /// True if the next fsync must fail (and uses up one allowed fsync).
    fn sync_fails(&self) -> bool {
        if self.fail_sync.load(Ordering::SeqCst) {
            return true;
        }
        self.syncs_before_failure
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                u64::MAX => None,
                0 => None,
                n => Some(n - 1),
            })
            .map_or_else(|left| left == 0, |_| false)
    }

    fn take_space(&self, bytes: u64) -> io::Result<()> {
        let mut cur = self.space_left_bytes.load(Ordering::SeqCst);
        loop {
            if cur == u64::MAX {
                return Ok(());
            }
            if bytes > cur {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            match self.space_left_bytes.compare_exchange(
                cur,
                cur - bytes,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    fn give_space(&self, bytes: u64) {
        let _ = self
            .space_left_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                (cur != u64::MAX).then(|| cur.saturating_add(bytes).min(u64::MAX - 1))
            });
    }
}

/// A [`FileSystem`] that fails on command.
#[derive(Debug, Clone)]
pub struct FaultFs {
    inner: DynFs,
    switches: Arc<FaultSwitches>,
}

impl FaultFs {
    /// Wraps `inner`; returns the file system and its switches.
    pub fn new(inner: DynFs) -> (Arc<FaultFs>, Arc<FaultSwitches>) {
        let switches = Arc::new(FaultSwitches::default());
        (
            Arc::new(FaultFs {
                inner,
                switches: switches.clone(),
            }),
            switches,
        )
    }
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected EIO on {what}"))
}

#[derive(Debug)]
struct FaultFile {
    inner: DynFile,
    switches: Arc<FaultSwitches>,
}

impl FileSystem for FaultFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<DynFile> {
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(FaultFile {
            inner,
            switches: self.switches.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.switches.fail_write.load(Ordering::SeqCst) {
            return Err(eio("rename"));
        }
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let len = self
            .inner
            .open(path, OpenMode::Read)
            .and_then(|f| f.len())
            .unwrap_or(0);
        self.inner.remove_file(path)?;
        self.switches.give_space(len);
        Ok(())
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.switches.sync_fails() {
            return Err(eio("directory fsync"));
        }
        self.inner.sync_dir(dir)?;
        self.switches.dir_syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir(path)
    }
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        // A link is a metadata write: it fails with the other writes, and
        // (sharing the original's bytes) takes no space.
        if self.switches.fail_write.load(Ordering::SeqCst) {
            return Err(eio("hard link"));
        }
        if self.switches.links_as_copies.load(Ordering::SeqCst) {
            return copy_file(self, original, link);
        }
        self.inner.hard_link(original, link)
    }
    fn io_delay(&self, op: IoOp) -> Option<Duration> {
        self.inner.io_delay(op)
    }
    fn lock(&self, path: &Path) -> io::Result<Option<DynFile>> {
        self.inner.lock(path)
    }
}

impl FileHandle for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        let corrupt = n > 0
            && self
                .switches
                .corrupt_reads_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
        if corrupt {
            buf[0] ^= 0x01;
        }
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.switches.fail_write.load(Ordering::SeqCst) {
            return Err(eio("write"));
        }
        let len = self.inner.len()?;
        let end = offset + buf.len() as u64;
        if end > len {
            self.switches.take_space(end - len)?;
        }
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.switches.sync_fails() {
            return Err(eio("fsync"));
        }
        self.inner.sync_data()?;
        self.switches.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let cur = self.inner.len()?;
        if len > cur {
            if self.switches.fail_write.load(Ordering::SeqCst) {
                return Err(eio("set_len"));
            }
            self.switches.take_space(len - cur)?;
        } else {
            self.switches.give_space(cur - len);
        }
        self.inner.set_len(len)
    }
}
