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
//!
//! A failed file fsync behaves as on Linux after a writeback error (the
//! PostgreSQL fsync lesson of 2018): the file's writes since its last
//! successful fsync are dropped, as if their dirty pages had been marked
//! clean and then evicted, so reads see the file as it was at that fsync,
//! and the next fsync reports success without bringing them back. turmoil
//! would keep them pending and persist them on the next fsync, which no
//! Linux file system promises; the seam keeps an undo log per file (the
//! bytes each write or `set_len` replaced) while fsync errors are armed and
//! rolls the file back with it. Writes made while disarmed are not logged,
//! so a failure drops only the writes of the armed boot.
//!
//! Every [`SimIo`] is one simulated disk's state: nothing here is global or
//! thread-local, so a cluster simulation creates one per host.

mod at_rest;
mod faults;
mod file_faults;
mod inode;
mod link;
mod pause;

pub use self::at_rest::{bad_sector_at_rest, rot_at_rest};
pub use self::faults::{Fired, Injectors};
pub use self::pause::{Latency, Pause, Tag};

use self::faults::{latent_error, undo_entry, BadSectors, Undo};
use self::inode::{Inodes, INODE_DIR};
use self::pause::tag_of;
use crate::trace::{fnv1a, FNV_OFFSET};
use ballast_storage::fs::{DynFile, FileHandle, FileSystem, IoOp, OpenMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use turmoil::fs::shim::std::fs as tfs;

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
    /// Simulated time of the first injected WAL fsync error since the last
    /// arm.
    pub first_wal_sync_error: Option<Duration>,
    /// The most recent pause.
    pub pause: Option<Pause>,
    /// FNV-1a hash of every file operation so far: its kind, path,
    /// offset and length (or target), and whether it succeeded. The driver
    /// puts it in the run's trace, so the trace hash covers all I/O.
    pub io_hash: u64,
    /// File operations so far.
    pub io_ops: u64,
    /// Process lifetimes so far: [`SimIo::crashed`] ends one. A seam and
    /// its files belong to the lifetime they were made in, and fail every
    /// operation after it ended, as a killed process does nothing more:
    /// turmoil's `bounce` drops the host's tasks and so runs destructors
    /// (the engine's `Drop` hands its write-back buffer to the OS), which a
    /// SIGKILL never does.
    pub life: u64,
    /// Pauses (`io_delay` calls) so far: the driver counts them to crash
    /// at the k-th await point of a recovery.
    pub pauses: u64,
    last_tag: Tag,
    /// Files written since their last fsync.
    pub dirty: BTreeSet<PathBuf>,
    /// Directory entries created, renamed or removed since the last fsync of
    /// their directory.
    pub unsynced_entries: BTreeSet<PathBuf>,
    /// Files removed since the last fsync of their directory.
    removed_unsynced: BTreeSet<PathBuf>,
    /// Per file, the changes since its last fsync, oldest first (kept only
    /// while fsync errors are armed; see the module docs).
    undo: BTreeMap<PathBuf, Vec<Undo>>,
    /// Every file opened, to re-point handles a rename moves (see
    /// `TurmoilFs::rename_op`).
    open_files: Vec<std::sync::Weak<TurmoilFile>>,
    /// Latent sector errors: they belong to the disk and outlive crashes.
    bad: BadSectors,
    /// The inode each path names (see `fs/inode.rs`).
    inodes: Inodes,
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
            first_wal_sync_error: None,
            pause: None,
            pauses: 0,
            io_hash: FNV_OFFSET,
            io_ops: 0,
            life: 0,
            last_tag: Tag::Other,
            dirty: BTreeSet::new(),
            unsynced_entries: BTreeSet::new(),
            removed_unsynced: BTreeSet::new(),
            undo: BTreeMap::new(),
            open_files: Vec::new(),
            bad: BadSectors::default(),
            inodes: Inodes::default(),
        }))
    }

    /// Arms (or disarms) the fault injectors.
    pub fn arm(&mut self, on: bool) {
        self.armed = on;
        self.space_used = 0;
        // The undo log describes the files as this boot changed them; a
        // crash between boots (every re-arm follows one) makes it stale.
        self.undo.clear();
        if on {
            self.first_fault = None;
            self.first_wal_sync_error = None;
        }
    }

    /// Remaps every bad sector (the disk was repaired, and the data under
    /// them reads again): to check that a recovery refused by latent
    /// sector errors damaged nothing.
    pub fn repair_bad_sectors(&mut self) {
        self.bad.clear();
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

    /// Records a crash of the host whose disk this is, before the driver
    /// calls turmoil's `crash`/`bounce`. A power loss drops what is unsynced
    /// (counted in [`Fired::power_losses_with_loss`] if there was any); a
    /// process crash keeps it in the page cache. Returns whether the power
    /// loss dropped anything.
    pub fn crashed(&mut self, power_loss: bool) -> bool {
        self.life += 1;
        self.undo.clear();
        self.pause = None;
        if !power_loss {
            return false;
        }
        let lost = !self.dirty.is_empty() || !self.unsynced_entries.is_empty();
        self.fired.power_losses_with_loss += u64::from(lost);
        self.dirty.clear();
        self.unsynced_entries.clear();
        self.removed_unsynced.clear();
        self.inodes.power_lost();
        lost
    }

    /// Adds one file operation and its outcome to [`SimIo::io_hash`].
    fn record<T>(&mut self, op: &str, path: &Path, a: u64, b: u64, r: &io::Result<T>) {
        let mut h = fnv1a(self.io_hash, op.as_bytes());
        h = fnv1a(h, path.as_os_str().as_encoded_bytes());
        h = fnv1a(h, &a.to_le_bytes());
        h = fnv1a(h, &b.to_le_bytes());
        self.io_hash = match r {
            Ok(_) => fnv1a(h, b"ok"),
            Err(e) => fnv1a(h, format!("{:?}", e.kind()).as_bytes()),
        };
        self.io_ops += 1;
    }

    /// Rolls the metadata-error injector; counts what fires.
    fn meta_fault(&mut self, what: &str) -> io::Result<()> {
        let p = self.injectors.meta_error;
        if self.roll(p) {
            self.fired.meta_errors += 1;
            self.fault();
            return Err(injected(what));
        }
        Ok(())
    }

    /// True while a failed fsync can drop writes, so changes need an undo
    /// entry.
    fn logging_undo(&self) -> bool {
        self.armed && self.injectors.sync_error > 0.0
    }

    /// turmoil made the entries of `dir` durable.
    fn dir_committed(&mut self, dir: &Path) {
        self.unsynced_entries.retain(|p| p.parent() != Some(dir));
        self.removed_unsynced.retain(|p| p.parent() != Some(dir));
        self.inodes.dir_committed(dir);
    }
}

fn lock(io: &Mutex<SimIo>) -> MutexGuard<'_, SimIo> {
    io.lock().unwrap_or_else(|e| e.into_inner())
}

/// The turmoil-backed file system.
#[derive(Debug, Clone)]
pub struct TurmoilFs {
    io: Arc<Mutex<SimIo>>,
    /// The process lifetime this seam belongs to ([`SimIo::life`]).
    life: u64,
}

impl TurmoilFs {
    /// A file system sharing `io` with the driver, for the current process
    /// lifetime: after the next [`SimIo::crashed`] every call fails.
    pub fn new(io: Arc<Mutex<SimIo>>) -> Arc<TurmoilFs> {
        let life = lock(&io).life;
        Arc::new(TurmoilFs { io, life })
    }

    fn alive(&self) -> io::Result<()> {
        alive(&self.io, self.life)
    }
}

/// Fails once the process lifetime `life` has ended.
fn alive(io: &Mutex<SimIo>, life: u64) -> io::Result<()> {
    if lock(io).life == life {
        Ok(())
    } else {
        Err(io::Error::other("the process was killed (simulated crash)"))
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} error"))
}

impl TurmoilFs {
    fn open_op(&self, path: &Path, mode: OpenMode) -> io::Result<DynFile> {
        self.alive()?;
        if mode != OpenMode::Read {
            lock(&self.io).meta_fault("open")?;
        }
        let mut o = tfs::OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::Write => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::CreateTruncate => o.read(true).write(true).create(true).truncate(true),
        };
        let created =
            matches!(mode, OpenMode::CreateNew | OpenMode::CreateTruncate) && !tfs::exists(path);
        if created && lock(&self.io).removed_unsynced.contains(path) {
            // turmoil keys files by path, not inode: a pending unlink of
            // this name, applied by a later directory fsync, would wipe
            // the data already fsynced into the new file of the same name
            // (a false zeroed WAL header the simulation once reported).
            // Committing the directory first models the same result a
            // real file system gives for the new inode, at the cost of
            // making that directory's pending entries durable a little
            // early.
            if let Some(dir) = path.parent() {
                tfs::sync_dir(dir)?;
                lock(&self.io).dir_committed(dir);
            }
        }
        let mut file = o.open(path)?;
        let mut io = lock(&self.io);
        io.touch(path);
        if created {
            io.unsynced_entries.insert(path.to_path_buf());
        }
        let inode = io.inodes.at(path, created);
        let data = io.inodes.data_path(inode).cloned();
        if let Some(data) = &data {
            // A linked name: the turmoil file there only carries the
            // entry; the bytes are at the inode's data path.
            o.create(false).create_new(false);
            file = o.open(data)?;
        }
        if mode == OpenMode::CreateTruncate {
            io.dirty.insert(data.unwrap_or_else(|| path.to_path_buf()));
        }
        let file = Arc::new(TurmoilFile {
            file: Mutex::new(file),
            path: Mutex::new(path.to_path_buf()),
            writable: mode != OpenMode::Read,
            io: self.io.clone(),
            life: self.life,
            inode,
        });
        io.open_files.retain(|f| f.strong_count() > 0);
        io.open_files.push(Arc::downgrade(&file));
        Ok(file)
    }

    fn create_dir_all_op(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        tfs::create_dir_all(path)
    }

    fn rename_op(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.alive()?;
        let mut io = lock(&self.io);
        io.meta_fault("rename")?;
        io.touch(to);
        tfs::rename(from, to)?;
        io.bad.renamed(from, to);
        io.inodes.renamed(from, to);
        io.unsynced_entries.insert(from.to_path_buf());
        io.unsynced_entries.insert(to.to_path_buf());
        // The rename removes `from`'s entry: a file created under that
        // name before the rename is committed needs the same care as one
        // created after an unlink (see `open_op`), or turmoil moves the
        // new file's fsynced data with the pending rename and leaves the
        // target empty (`cluster-durable-mixed` seed 76).
        io.removed_unsynced.insert(from.to_path_buf());
        if io.dirty.remove(from) {
            io.dirty.insert(to.to_path_buf());
        }
        // The pending changes travel with the file.
        io.undo.remove(to);
        if let Some(u) = io.undo.remove(from) {
            io.undo.insert(to.to_path_buf(), u);
        }
        // turmoil's handles name their file by path: re-point the open
        // handles of `from` at `to`, as a POSIX file descriptor keeps
        // working across a rename (the Raft log renames a prepared segment
        // it already holds open; without this its next write failed with
        // "No such file": `cluster-durable-delay` seed 0).
        let moved: Vec<Arc<TurmoilFile>> = io
            .open_files
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|f| *lock_path(&f.path) == from)
            .collect();
        let linked = io.inodes.data_path_of(to).is_some();
        drop(io);
        for f in moved {
            if linked {
                // The handle already reaches the inode's data path.
                *lock_path(&f.path) = to.to_path_buf();
                continue;
            }
            let mut o = tfs::OpenOptions::new();
            o.read(true).write(f.writable);
            let reopened = o.open(to)?;
            *f.file.lock().unwrap_or_else(|e| e.into_inner()) = reopened;
            *lock_path(&f.path) = to.to_path_buf();
        }
        Ok(())
    }

    fn remove_file_op(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        let mut io = lock(&self.io);
        io.meta_fault("unlink")?;
        if io.dirty.contains(path) && tfs::exists(path) {
            // turmoil keys pending writes by path, and neither an unlink
            // nor its directory fsync drops them: the next fsync of a new
            // file at this name (a Raft log segment recreated after a
            // truncation) applied the removed file's unsynced bytes to it,
            // and a power loss then showed a truncated entry behind the
            // new ones (`replicated-power-loss` seed 568). A real file
            // system frees them with the inode. Flushing them into the
            // file being removed is the nearest turmoil allows; the cost:
            // an unlink lost to a power loss brings the file back with
            // them (sim/README.md, "What is not modelled yet").
            tfs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)?
                .sync_data()?;
        }
        io.dirty.remove(path);
        io.undo.remove(path);
        io.bad.removed(path);
        io.inodes.removed(path);
        io.unsynced_entries.insert(path.to_path_buf());
        io.removed_unsynced.insert(path.to_path_buf());
        drop(io);
        tfs::remove_file(path)
    }

    fn list_dir_op(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.alive()?;
        let mut names = Vec::new();
        for e in tfs::read_dir(dir)? {
            let e = e?;
            if let Some(n) = e.file_name().to_str() {
                names.push(n.to_string());
            }
        }
        if dir == Path::new("/") {
            // The simulator's own directory of linked inodes.
            names.retain(|n| Path::new("/").join(n) != Path::new(INODE_DIR));
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir_op(&self, dir: &Path) -> io::Result<()> {
        self.alive()?;
        let mut io = lock(&self.io);
        let p = io.injectors.sync_error;
        if io.roll(p) {
            io.fired.sync_errors += 1;
            io.fault();
            return Err(injected("directory fsync"));
        }
        tfs::sync_dir(dir)?;
        io.dir_committed(dir);
        drop(io);
        self.collect_inodes()
    }

    fn remove_dir_op(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        // A POSIX rmdir needs the directory empty, so once the removal is
        // durable the unlinks of its entries are too. turmoil keeps them
        // pending until an fsync of the directory itself, which nothing
        // can run once it is gone; a power loss then undid them and the
        // files came back in a directory made again at the same path
        // (`cluster-throughput-disk-wipe` seed 9007). Commit them first.
        tfs::sync_dir(path)?;
        lock(&self.io).dir_committed(path);
        tfs::remove_dir(path)?;
        // turmoil keeps a removed directory's entry pending until its
        // parent is fsynced, and a `create_dir_all` of the same path in
        // between then succeeds while creating a file in it fails with
        // "parent directory not found" (a snapshot directory reused after
        // a failed build: `cluster-throughput-fsync-error` seed 9). A POSIX
        // rmdir is immediate, so the removal is committed at once; that
        // makes the parent's other pending entries durable a little early.
        if let Some(parent) = path.parent() {
            tfs::sync_dir(parent)?;
            lock(&self.io).dir_committed(parent);
        }
        Ok(())
    }
}

impl FileSystem for TurmoilFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<DynFile> {
        let r = self.open_op(path, mode);
        let m = match mode {
            OpenMode::Read => 0,
            OpenMode::Write => 1,
            OpenMode::CreateNew => 2,
            OpenMode::CreateTruncate => 3,
        };
        lock(&self.io).record("open", path, m, 0, &r);
        r
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let r = self.create_dir_all_op(path);
        lock(&self.io).record("mkdir", path, 0, 0, &r);
        r
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let r = self.rename_op(from, to);
        let mut io = lock(&self.io);
        io.record("rename-from", from, 0, 0, &r);
        io.record("rename-to", to, 0, 0, &r);
        r
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let r = self.remove_file_op(path);
        lock(&self.io).record("unlink", path, 0, 0, &r);
        r
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let r = self.list_dir_op(dir);
        let n = r.as_ref().map_or(0, |v| v.len() as u64);
        lock(&self.io).record("list", dir, n, 0, &r);
        r
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(tfs::exists(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let r = self.sync_dir_op(dir);
        lock(&self.io).record("fsync-dir", dir, 0, 0, &r);
        r
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let r = self.remove_dir_op(path);
        lock(&self.io).record("rmdir", path, 0, 0, &r);
        r
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        let r = self.hard_link_op(original, link);
        let mut io = lock(&self.io);
        io.record("link-from", original, 0, 0, &r);
        io.record("link-to", link, 0, 0, &r);
        r
    }

    fn io_delay(&self, op: IoOp) -> Option<Duration> {
        let mut io = lock(&self.io);
        let (lo, hi) = match op {
            IoOp::Sync => io.latency.sync_us,
            IoOp::Write => (0, 50),
            IoOp::SyncDir | IoOp::Metadata => io.latency.meta_us,
        };
        let d = Duration::from_micros(io.rng.gen_range(lo..=hi));
        let tag = io.last_tag;
        io.pauses += 1;
        if d >= Duration::from_millis(1) {
            io.fired.slow_pauses += 1;
            if op == IoOp::Sync && io.dirty.iter().any(|p| tag_of(p) == tag) {
                io.fired.slow_dirty_syncs += 1;
                io.fired.slow_wal_syncs += u64::from(tag == Tag::Wal);
            }
        }
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
    life: u64,
    /// The inode it opened (see `fs/inode.rs`).
    inode: u64,
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

    /// True if this handle's file was unlinked (or renamed over): POSIX
    /// lets the descriptor go on, on an inode no path names, so writes
    /// and fsyncs through it succeed and reach no file, and never the new
    /// file at the same path (turmoil's handles name their file by path).
    fn unlinked(&self, io: &SimIo) -> bool {
        !io.inodes.names(&self.path(), self.inode)
    }

    /// Where this file's bytes live in turmoil: its own path, or its
    /// inode's data path if it is linked (see `fs/inode.rs`).
    fn data(&self, io: &SimIo) -> PathBuf {
        io.inodes
            .data_path(self.inode)
            .cloned()
            .unwrap_or_else(|| self.path())
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "the file was unlinked (the simulated disk cannot read an unlinked inode)",
    )
}

impl TurmoilFile {
    fn read_at_op(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        alive(&self.io, self.life)?;
        let mut io = lock(&self.io);
        if self.unlinked(&io) {
            return Err(gone());
        }
        let p = io.injectors.read_error;
        if io.roll(p) {
            io.fired.read_errors += 1;
            io.fault();
            return Err(injected("read"));
        }
        // Bad sectors fail every read, armed or not: they are on the disk.
        let path = self.data(&io);
        if io.bad.hit(&path, offset, buf.len() as u64) {
            io.fired.latent_read_errors += 1;
            io.fault();
            return Err(latent_error());
        }
        let p = io.injectors.latent_read;
        if !buf.is_empty() && io.roll(p) {
            io.bad.add(&path, offset, buf.len() as u64);
            io.fired.latent_read_errors += 1;
            io.fault();
            return Err(latent_error());
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

    fn write_all_at_op(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        alive(&self.io, self.life)?;
        let mut io = lock(&self.io);
        if self.unlinked(&io) {
            return Ok(());
        }
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
        if io.logging_undo() {
            let u = undo_entry(&self.file(), offset, Some(offset + buf.len() as u64))?;
            let data = self.data(&io);
            io.undo.entry(data).or_default().push(u);
        }
        let data = self.data(&io);
        io.bad.rewritten(&data, offset, buf.len() as u64);
        let p = io.injectors.misdirected_write;
        if io.roll(p) {
            return self.misdirect(io, buf, offset);
        }
        io.dirty.insert(data);
        drop(io);
        self.file().write_all_at(buf, offset)
    }

    fn sync_data_op(&self) -> io::Result<()> {
        alive(&self.io, self.life)?;
        let mut io = lock(&self.io);
        if self.unlinked(&io) {
            return Ok(());
        }
        let p = io.injectors.sync_error;
        if io.roll(p) {
            io.fired.sync_errors += 1;
            io.fault();
            if tag_of(&self.path()) == Tag::Wal {
                io.fired.wal_sync_errors += 1;
                io.first_wal_sync_error.get_or_insert(now());
            }
            let data = self.data(&io);
            let undo = io.undo.remove(&data).unwrap_or_default();
            io.fired.dropped_writes += undo.len() as u64;
            io.dirty.remove(&data);
            drop(io);
            self.drop_unsynced(undo)?;
            return Err(injected("fsync"));
        }
        let data = self.data(&io);
        io.dirty.remove(&data);
        io.undo.remove(&data);
        drop(io);
        self.file().sync_data()
    }

    fn len_op(&self) -> io::Result<u64> {
        alive(&self.io, self.life)?;
        if self.unlinked(&lock(&self.io)) {
            return Err(gone());
        }
        Ok(self.file().metadata()?.len())
    }

    fn set_len_op(&self, len: u64) -> io::Result<()> {
        alive(&self.io, self.life)?;
        let mut io = lock(&self.io);
        if self.unlinked(&io) {
            return Ok(());
        }
        io.meta_fault("set_len")?;
        if io.logging_undo() {
            let u = undo_entry(&self.file(), len, None)?;
            let data = self.data(&io);
            io.undo.entry(data).or_default().push(u);
        }
        let data = self.data(&io);
        io.dirty.insert(data);
        drop(io);
        self.file().set_len(len)
    }
}

impl FileHandle for TurmoilFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let r = self.read_at_op(buf, offset);
        let n = r.as_ref().map_or(0, |&n| n as u64);
        lock(&self.io).record("read", &self.path(), offset, n, &r);
        r
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let r = self.write_all_at_op(buf, offset);
        lock(&self.io).record("write", &self.path(), offset, buf.len() as u64, &r);
        r
    }

    fn sync_data(&self) -> io::Result<()> {
        let r = self.sync_data_op();
        lock(&self.io).record("fsync", &self.path(), 0, 0, &r);
        r
    }

    fn len(&self) -> io::Result<u64> {
        let r = self.len_op();
        let n = r.as_ref().map_or(0, |&n| n);
        lock(&self.io).record("len", &self.path(), n, 0, &r);
        r
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let r = self.set_len_op(len);
        lock(&self.io).record("set-len", &self.path(), len, 0, &r);
        r
    }
}

#[cfg(test)]
#[path = "fs_tests.rs"]
mod tests;
