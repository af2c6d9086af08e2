//! The engine's file seam on turmoil's simulated disk.
//!
//! [`TurmoilFs`] implements `ballast_storage::fs::FileSystem` over
//! `turmoil::fs::shim::std::fs`, whose durability model is POSIX-shaped:
//! writes are pending until `sync_data`, creates/renames/removes are pending
//! until `sync_dir` of the parent, and `Sim::crash` drops everything pending
//! (tearing pending writes at `block_size` when configured).
//!
//! On top of that the seam owns the simulation's I/O state ([`SimIo`]): a
//! seeded RNG for simulated latencies (`io_delay`), and the switchable fault
//! injectors (write and fsync errors, a full disk, corrupted reads). The
//! injectors live here rather than in turmoil's `FsConfig` because turmoil's
//! probabilities hold for the whole run, including recovery; the scenarios
//! need faults that fire during the workload and can be lifted for the
//! recovery that is checked ("the disk was replaced"), and they need an exact
//! count of what fired.

use ballast_storage::fs::{DynFile, FileHandle, FileSystem, IoOp, OpenMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use turmoil::fs::shim::std::fs as tfs;

/// Which fault injectors are armed while the workload runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Injectors {
    /// Probability that a data write fails with an I/O error.
    pub write_error: f64,
    /// Probability that a file or directory fsync fails.
    pub sync_error: f64,
    /// Probability that a read fails with an I/O error.
    pub read_error: f64,
    /// Probability that a read returns data with one byte flipped.
    pub corrupt_read: f64,
    /// Bytes of file growth allowed before writes fail with "disk full".
    pub space_bytes: Option<u64>,
}

/// Simulated latency ranges, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Fsync of a file.
    pub sync_us: (u64, u64),
    /// Fsync of a directory, rename, create, remove.
    pub meta_us: (u64, u64),
}

impl Latency {
    /// An ordinary SSD-ish disk.
    pub const NORMAL: Latency = Latency {
        sync_us: (200, 1_500),
        meta_us: (100, 800),
    };
    /// A slow disk: fsyncs take milliseconds.
    pub const SLOW: Latency = Latency {
        sync_us: (1_000, 8_000),
        meta_us: (500, 4_000),
    };
    /// The longest fsync this disk takes.
    pub fn max_sync(&self) -> Duration {
        Duration::from_micros(self.sync_us.1.max(self.meta_us.1))
    }
}

/// What the file being worked on is, for crash triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tag {
    /// A WAL segment.
    Wal,
    /// An SSTable (flush or compaction output).
    Table,
    /// A manifest log.
    Manifest,
    /// CURRENT or CURRENT.tmp (the manifest switch).
    Current,
    /// Anything else.
    Other,
}

fn tag_of(path: &Path) -> Tag {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".sst") {
        Tag::Table
    } else if name.starts_with("MANIFEST") {
        Tag::Manifest
    } else if name.starts_with("CURRENT") {
        Tag::Current
    } else if path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|p| p == "wal")
    {
        Tag::Wal
    } else {
        Tag::Other
    }
}

/// A pause the engine is sitting in (an `io_delay` it awaits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// What is about to happen after the pause.
    pub op: IoOp,
    /// The file last touched before it.
    pub tag: Tag,
    /// Simulated time the pause ends.
    pub until: Duration,
}

/// Counts of injected faults that actually fired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fired {
    /// Injected write errors.
    pub write_errors: u64,
    /// Injected fsync errors (file or directory).
    pub sync_errors: u64,
    /// Injected read errors.
    pub read_errors: u64,
    /// Reads returned with a flipped byte.
    pub corrupt_reads: u64,
    /// Writes refused for lack of space.
    pub disk_full: u64,
    /// Pauses at least 1 ms long (slow-disk fsyncs).
    pub slow_pauses: u64,
}

/// The simulation's I/O state, shared by the seam and the scenario driver.
#[derive(Debug)]
pub struct SimIo {
    rng: StdRng,
    /// Latency model.
    pub latency: Latency,
    /// Injectors to use while armed.
    pub injectors: Injectors,
    armed: bool,
    space_used: u64,
    /// What fired so far.
    pub fired: Fired,
    /// Simulated time of the first injected fault since the last arm.
    pub first_fault: Option<Duration>,
    /// The most recent pause.
    pub pause: Option<Pause>,
    last_tag: Tag,
    /// Files written since their last fsync.
    pub dirty: BTreeSet<PathBuf>,
    /// Every file opened, to re-point handles a rename moves (see
    /// [`TurmoilFs::rename`]).
    open_files: Vec<std::sync::Weak<TurmoilFile>>,
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

impl SimIo {
    /// State seeded with `seed`.
    pub fn new(seed: u64, latency: Latency, injectors: Injectors) -> Arc<Mutex<SimIo>> {
        Arc::new(Mutex::new(SimIo {
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_f5f5_0000_0001),
            latency,
            injectors,
            armed: false,
            space_used: 0,
            fired: Fired::default(),
            first_fault: None,
            pause: None,
            last_tag: Tag::Other,
            dirty: BTreeSet::new(),
            open_files: Vec::new(),
        }))
    }

    /// Arms (or disarms) the fault injectors.
    pub fn arm(&mut self, on: bool) {
        self.armed = on;
        self.space_used = 0;
        if on {
            self.first_fault = None;
        }
    }

    /// True if a pause is in progress at `t` whose `op` and `tag` match.
    pub fn paused_at(&self, t: Duration, op: Option<IoOp>, tag: Option<Tag>) -> bool {
        self.pause.is_some_and(|p| {
            p.until > t && op.is_none_or(|o| o == p.op) && tag.is_none_or(|g| g == p.tag)
        })
    }

    fn roll(&mut self, p: f64) -> bool {
        self.armed && p > 0.0 && self.rng.gen_bool(p)
    }

    fn fault(&mut self) {
        if self.first_fault.is_none() {
            self.first_fault = Some(now());
        }
    }

    fn touch(&mut self, path: &Path) {
        self.last_tag = tag_of(path);
    }
}

fn lock(io: &Mutex<SimIo>) -> MutexGuard<'_, SimIo> {
    io.lock().unwrap_or_else(|e| e.into_inner())
}

/// The turmoil-backed file system.
#[derive(Debug, Clone)]
pub struct TurmoilFs {
    io: Arc<Mutex<SimIo>>,
}

impl TurmoilFs {
    /// A file system sharing `io` with the driver.
    pub fn new(io: Arc<Mutex<SimIo>>) -> Arc<TurmoilFs> {
        Arc::new(TurmoilFs { io })
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} error"))
}

impl FileSystem for TurmoilFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<DynFile> {
        let mut o = tfs::OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::Write => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::CreateTruncate => o.read(true).write(true).create(true).truncate(true),
        };
        let file = o.open(path)?;
        let mut io = lock(&self.io);
        io.touch(path);
        if mode == OpenMode::CreateTruncate {
            io.dirty.insert(path.to_path_buf());
        }
        let file = Arc::new(TurmoilFile {
            file: Mutex::new(file),
            path: Mutex::new(path.to_path_buf()),
            writable: mode != OpenMode::Read,
            io: self.io.clone(),
        });
        io.open_files.retain(|f| f.strong_count() > 0);
        io.open_files.push(Arc::downgrade(&file));
        Ok(file)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        tfs::create_dir_all(path)
    }

    /// Renames, and re-points open handles of `from` at `to`: turmoil's
    /// handles name their file by path, so without this a handle opened
    /// before the rename would fail ("No such file") where a POSIX file
    /// descriptor keeps working (the Raft log renames a prepared segment it
    /// already holds open).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut io = lock(&self.io);
        io.touch(to);
        tfs::rename(from, to)?;
        let moved: Vec<Arc<TurmoilFile>> = io
            .open_files
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|f| *lock_path(&f.path) == from)
            .collect();
        if io.dirty.remove(from) {
            io.dirty.insert(to.to_path_buf());
        }
        drop(io);
        for f in moved {
            let mut o = tfs::OpenOptions::new();
            o.read(true).write(f.writable);
            let reopened = o.open(to)?;
            *f.file.lock().unwrap_or_else(|e| e.into_inner()) = reopened;
            *lock_path(&f.path) = to.to_path_buf();
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut io = lock(&self.io);
        io.dirty.remove(path);
        drop(io);
        tfs::remove_file(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in tfs::read_dir(dir)? {
            let e = e?;
            if let Some(n) = e.file_name().to_str() {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(tfs::exists(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut io = lock(&self.io);
        let p = io.injectors.sync_error;
        if io.roll(p) {
            io.fired.sync_errors += 1;
            io.fault();
            return Err(injected("directory fsync"));
        }
        drop(io);
        tfs::sync_dir(dir)
    }

    /// Removes an empty directory. turmoil keys the operations it keeps
    /// pending until a directory fsync by path: a file removal left
    /// pending in a directory that is then removed and created again would
    /// be applied by the new directory's first fsync, deleting a new file
    /// of the same name (the Raft log's snapshot inbox reuses `recv-000001`
    /// this way). A POSIX unlink is immediate, so the directory is synced
    /// first; that makes those removals durable a little early, a kinder
    /// disk only for files that were being deleted anyway.
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        tfs::sync_dir(path)?;
        tfs::remove_dir(path)
    }

    fn io_delay(&self, op: IoOp) -> Option<Duration> {
        let mut io = lock(&self.io);
        let (lo, hi) = match op {
            IoOp::Sync => io.latency.sync_us,
            IoOp::Write => (0, 50),
            IoOp::SyncDir | IoOp::Metadata => io.latency.meta_us,
        };
        let d = Duration::from_micros(io.rng.gen_range(lo..=hi));
        if d >= Duration::from_millis(1) {
            io.fired.slow_pauses += 1;
        }
        let tag = io.last_tag;
        io.pause = Some(Pause {
            op,
            tag,
            until: now() + d,
        });
        Some(d)
    }
}

/// An open file on the simulated disk.
#[derive(Debug)]
pub struct TurmoilFile {
    file: Mutex<tfs::File>,
    path: Mutex<PathBuf>,
    writable: bool,
    io: Arc<Mutex<SimIo>>,
}

fn lock_path(p: &Mutex<PathBuf>) -> MutexGuard<'_, PathBuf> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl TurmoilFile {
    fn file(&self) -> MutexGuard<'_, tfs::File> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self) -> PathBuf {
        lock_path(&self.path).clone()
    }
}

impl FileHandle for TurmoilFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut io = lock(&self.io);
        let p = io.injectors.read_error;
        if io.roll(p) {
            io.fired.read_errors += 1;
            io.fault();
            return Err(injected("read"));
        }
        let n = self.file().read_at(buf, offset)?;
        let p = io.injectors.corrupt_read;
        if n > 0 && io.roll(p) {
            let at = io.rng.gen_range(0..n);
            let flip: u8 = io.rng.gen_range(1..=255);
            buf[at] ^= flip;
            io.fired.corrupt_reads += 1;
            io.fault();
        }
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut io = lock(&self.io);
        io.touch(&self.path());
        let p = io.injectors.write_error;
        if io.roll(p) {
            io.fired.write_errors += 1;
            io.fault();
            return Err(injected("write"));
        }
        if let (true, Some(space)) = (io.armed, io.injectors.space_bytes) {
            let len = self.file().metadata()?.len();
            let growth = (offset + buf.len() as u64).saturating_sub(len);
            if io.space_used + growth > space {
                io.fired.disk_full += 1;
                io.fault();
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device (injected)",
                ));
            }
            io.space_used += growth;
        }
        io.dirty.insert(self.path());
        drop(io);
        self.file().write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut io = lock(&self.io);
        let p = io.injectors.sync_error;
        if io.roll(p) {
            io.fired.sync_errors += 1;
            io.fault();
            return Err(injected("fsync"));
        }
        io.dirty.remove(&self.path());
        drop(io);
        self.file().sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file().metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        lock(&self.io).dirty.insert(self.path());
        self.file().set_len(len)
    }
}
