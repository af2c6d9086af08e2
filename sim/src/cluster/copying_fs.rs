//! A file system without hard links: the simulated disk of one node, with
//! `hard_link` left to the seam's default (copy, then fsync the copy), as
//! on file systems that cannot link. The node's snapshot builds and
//! installs then copy tables, reading them through whatever faults the
//! disk injects, so the cluster simulation reaches both paths of the seam.

use ballast_storage::fs::{DynFile, DynFs, FileSystem, IoOp, OpenMode};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `inner` with every operation passed through except `hard_link`.
#[derive(Debug)]
pub struct CopyingFs(pub DynFs);

impl CopyingFs {
    /// Wraps `inner`.
    pub fn shared(inner: DynFs) -> DynFs {
        Arc::new(CopyingFs(inner))
    }
}

impl FileSystem for CopyingFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<DynFile> {
        self.0.open(path, mode)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_file(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.0.list_dir(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.0.exists(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.sync_dir(dir)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.0.remove_dir(path)
    }
    fn io_delay(&self, op: IoOp) -> Option<Duration> {
        self.0.io_delay(op)
    }
    fn lock(&self, path: &Path) -> io::Result<Option<DynFile>> {
        self.0.lock(path)
    }
}
