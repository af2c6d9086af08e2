//! A file system for log-store tests, wrapping the real one:
//!
//! * it keeps, per file (per inode: a name follows renames, a recreated
//!   name is a new file), how far the file was written and how far an
//!   fsync made it durable, so a test can check "acknowledged implies
//!   fsynced" byte-exactly;
//! * it can hold one chosen fsync (`sync_data`) inside the call, blocking
//!   the calling thread until the test releases it, so a test can act
//!   while the log store's flusher (or a roll) is mid-fsync.
//!
//! Holding blocks a runtime thread: tests that hold use a multi-threaded
//! runtime, and a [`Hold`] releases on drop, so a failing test never leaves
//! a thread blocked.
#![allow(dead_code)]

use ballast_storage::fs::{DynFile, FileHandle, FileSystem, IoOp, OpenMode, StdFs};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What the wrapper knows about one file.
#[derive(Debug, Default)]
pub struct FileState {
    name: Mutex<PathBuf>,
    marks: Mutex<Marks>,
}

/// Byte watermarks of one file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// Highest end offset written.
    pub written: u64,
    /// Highest `written` that an fsync started after and completed.
    pub durable: u64,
    /// Completed fsyncs.
    pub syncs: u64,
}

type Pred = Box<dyn Fn(&Path) -> bool + Send>;

#[derive(Default)]
struct GateState {
    /// The next fsync of a file whose name matches is held.
    armed: Option<Pred>,
    /// Name of the file whose fsync is held now.
    holding: Option<PathBuf>,
    released: bool,
}

#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

impl Gate {
    fn release(&self) {
        let mut g = self.state.lock().expect("gate");
        g.armed = None;
        g.released = true;
        self.cv.notify_all();
    }

    /// Blocks the calling thread if `name`'s fsync is the one armed.
    fn pass(&self, name: &Path) {
        let mut g = self.state.lock().expect("gate");
        if !g.armed.as_ref().is_some_and(|p| p(name)) {
            return;
        }
        g.armed = None;
        g.holding = Some(name.to_path_buf());
        while !g.released {
            g = self.cv.wait(g).expect("gate");
        }
        g.holding = None;
    }
}

/// The wrapper.
#[derive(Default)]
pub struct GatedFs {
    inner: StdFs,
    files: Mutex<BTreeMap<PathBuf, Arc<FileState>>>,
    gate: Arc<Gate>,
}

impl std::fmt::Debug for GatedFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatedFs")
    }
}

/// An armed hold; dropping it releases the held fsync (if any) and
/// disarms.
pub struct Hold {
    gate: Arc<Gate>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.gate.release();
    }
}

impl Hold {
    /// Waits (polling, up to 30 s) until an fsync is held; returns the name
    /// of its file.
    pub async fn held(&self) -> PathBuf {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(p) = self.gate.state.lock().expect("gate").holding.clone() {
                return p;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no fsync was held within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// True while an fsync is held.
    pub fn is_holding(&self) -> bool {
        self.gate.state.lock().expect("gate").holding.is_some()
    }

    /// Lets the held fsync (and any later one) proceed.
    pub fn release(&self) {
        self.gate.release();
    }
}

impl GatedFs {
    pub fn new() -> Arc<GatedFs> {
        Arc::new(GatedFs::default())
    }

    /// Holds the next fsync of a file whose current name matches `pred`,
    /// until the returned [`Hold`] releases it.
    pub fn hold_next_sync(&self, pred: impl Fn(&Path) -> bool + Send + 'static) -> Hold {
        let mut g = self.gate.state.lock().expect("gate");
        g.armed = Some(Box::new(pred));
        g.released = false;
        Hold {
            gate: self.gate.clone(),
        }
    }

    /// The watermarks of the file now named `path`.
    pub fn marks(&self, path: &Path) -> Option<Marks> {
        let files = self.files.lock().expect("files");
        files.get(path).map(|f| *f.marks.lock().expect("marks"))
    }

    fn state_for(&self, path: &Path, fresh: bool) -> Arc<FileState> {
        let mut files = self.files.lock().expect("files");
        if !fresh {
            if let Some(s) = files.get(path) {
                return s.clone();
            }
        }
        // A file the wrapper has not seen: what exists now counts as
        // written and durable. A created one starts empty.
        let len = if fresh {
            0
        } else {
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        };
        let s = Arc::new(FileState {
            name: Mutex::new(path.to_path_buf()),
            marks: Mutex::new(Marks {
                written: len,
                durable: len,
                syncs: 0,
            }),
        });
        files.insert(path.to_path_buf(), s.clone());
        s
    }
}

impl FileSystem for GatedFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<DynFile> {
        let inner = self.inner.open(path, mode)?;
        let fresh = matches!(mode, OpenMode::CreateNew | OpenMode::CreateTruncate);
        Ok(Arc::new(GatedFile {
            inner,
            state: self.state_for(path, fresh),
            gate: self.gate.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)?;
        let mut files = self.files.lock().expect("files");
        if let Some(s) = files.remove(from) {
            *s.name.lock().expect("name") = to.to_path_buf();
            files.insert(to.to_path_buf(), s);
        }
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)?;
        self.files.lock().expect("files").remove(path);
        Ok(())
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir(path)
    }
    fn io_delay(&self, _op: IoOp) -> Option<Duration> {
        None
    }
}

struct GatedFile {
    inner: DynFile,
    state: Arc<FileState>,
    gate: Arc<Gate>,
}

impl std::fmt::Debug for GatedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatedFile")
            .field("state", &self.state)
            .finish()
    }
}

impl FileHandle for GatedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)?;
        let mut m = self.state.marks.lock().expect("marks");
        m.written = m.written.max(offset + buf.len() as u64);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        // What was written before the fsync started is what it makes
        // durable.
        let upto = self.state.marks.lock().expect("marks").written;
        let name = self.state.name.lock().expect("name").clone();
        self.gate.pass(&name);
        self.inner.sync_data()?;
        let mut m = self.state.marks.lock().expect("marks");
        m.durable = m.durable.max(upto);
        m.syncs += 1;
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        let mut m = self.state.marks.lock().expect("marks");
        m.written = len;
        m.durable = m.durable.min(len);
        Ok(())
    }
}
