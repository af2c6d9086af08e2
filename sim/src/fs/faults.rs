//! The fault injectors of the simulated disk: what may fail
//! ([`Injectors`]), what did ([`Fired`]), the undo log that gives a failed
//! fsync its Linux meaning (see the parent module's docs), and the bad
//! sectors of latent sector errors ([`BadSectors`]).

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use turmoil::fs::shim::std::fs as tfs;

/// The sector size of the simulated disk: latent errors and misdirected
/// writes act on whole sectors, as a drive's do.
pub(super) const SECTOR_BYTES: u64 = 512;

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
    /// Probability that an open (other than for reading), rename, unlink
    /// or `set_len` fails with an I/O error, changing nothing.
    pub meta_error: f64,
    /// Probability that a read finds a latent sector error: the sectors it
    /// covers go bad, and every later read of them fails (recovery
    /// included) until they are rewritten or
    /// [`super::SimIo::repair_bad_sectors`] remaps them.
    pub latent_read: f64,
    /// Probability that a data write is misdirected: it reports success
    /// but lands 1-8 sectors before or after its offset, or at its offset
    /// in another file open for writing (TigerBeetle's simulator models
    /// the same); the intended place keeps what it had.
    pub misdirected_write: f64,
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
    /// Injected errors on open, rename, unlink and `set_len`.
    pub meta_errors: u64,
    /// Reads returned with a flipped byte.
    pub corrupt_reads: u64,
    /// Writes refused for lack of space.
    pub disk_full: u64,
    /// Pauses at least 1 ms long (slow-disk fsyncs).
    pub slow_pauses: u64,
    /// Writes and `set_len`s a failed fsync dropped (Linux semantics: they
    /// are gone, and the next fsync succeeds without them).
    pub dropped_writes: u64,
    /// Slow (at least 1 ms) fsyncs of a WAL segment holding unsynced
    /// writes: the pauses a waiting writer actually sat through.
    pub slow_wal_syncs: u64,
    /// Slow fsyncs of any file kind holding unsynced writes (WAL, table,
    /// manifest): in the throughput preset no writer waits on a WAL fsync,
    /// but flushes, and writers stalled behind them, wait on these.
    pub slow_dirty_syncs: u64,
    /// Injected fsync errors on WAL segments, and the simulated time of the
    /// first since the last arm: the engine must accept no write after it
    /// until it is reopened.
    pub wal_sync_errors: u64,
    /// Power losses that dropped something: unsynced file data or directory
    /// entries (creates, renames, removes) not yet made durable.
    pub power_losses_with_loss: u64,
    /// Reads refused by a bad sector (a latent sector error).
    pub latent_read_errors: u64,
    /// Writes that landed in the wrong place.
    pub misdirected_writes: u64,
    /// Files given a flipped byte at rest.
    pub rotted_files: u64,
    /// Misdirected writes or bit rot that touched a WAL segment: a damaged
    /// last record reads as a torn write (see the engine oracle).
    pub wal_damage: u64,
}

/// What one write or `set_len` replaced, to roll it back when an fsync of
/// its file fails.
#[derive(Debug, Clone)]
pub(super) struct Undo {
    /// File length before the change.
    pub(super) len_before: u64,
    /// Where `bytes_before` goes back.
    pub(super) offset: u64,
    /// The bytes the change overwrote or cut off (within `len_before`).
    pub(super) bytes_before: Vec<u8>,
}

/// Records what changing `[offset, end)` of `file` (or cutting it to
/// `offset` when `end` is `None`) replaces.
pub(super) fn undo_entry(file: &tfs::File, offset: u64, end: Option<u64>) -> io::Result<Undo> {
    let len_before = file.metadata()?.len();
    let stop = end.map_or(len_before, |e| e.min(len_before));
    let mut bytes_before = Vec::new();
    if offset < stop {
        bytes_before = vec![0u8; (stop - offset) as usize];
        let mut got = 0;
        while got < bytes_before.len() {
            let n = file.read_at(&mut bytes_before[got..], offset + got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        bytes_before.truncate(got);
    }
    Ok(Undo {
        len_before,
        offset,
        bytes_before,
    })
}

/// Latent sector errors: per file, the sector ranges `[start, end)` whose
/// reads fail. They belong to the disk, not to a boot, so they outlive
/// crashes and disarming; a write over a whole bad range remaps it.
#[derive(Debug, Default)]
pub(super) struct BadSectors {
    regions: BTreeMap<PathBuf, Vec<(u64, u64)>>,
}

impl BadSectors {
    /// The sector-aligned range covering `len` bytes at `offset`.
    fn sectors(offset: u64, len: u64) -> (u64, u64) {
        let start = offset / SECTOR_BYTES * SECTOR_BYTES;
        let end = (offset + len.max(1)).div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
        (start, end)
    }

    /// True if reading `len` bytes at `offset` of `path` touches a bad
    /// sector.
    pub(super) fn hit(&self, path: &Path, offset: u64, len: u64) -> bool {
        let (start, end) = Self::sectors(offset, len);
        self.regions
            .get(path)
            .is_some_and(|r| r.iter().any(|&(a, b)| a < end && start < b))
    }

    /// Marks the sectors under `len` bytes at `offset` of `path` bad.
    pub(super) fn add(&mut self, path: &Path, offset: u64, len: u64) {
        let r = Self::sectors(offset, len);
        self.regions.entry(path.to_path_buf()).or_default().push(r);
    }

    /// A write of `len` bytes at `offset` remaps the bad ranges it covers
    /// whole.
    pub(super) fn rewritten(&mut self, path: &Path, offset: u64, len: u64) {
        if let Some(r) = self.regions.get_mut(path) {
            r.retain(|&(a, b)| !(offset <= a && b <= offset + len));
            if r.is_empty() {
                self.regions.remove(path);
            }
        }
    }

    /// The file at `path` is gone (its sectors are free again).
    pub(super) fn removed(&mut self, path: &Path) {
        self.regions.remove(path);
    }

    /// The file at `from` is now at `to`.
    pub(super) fn renamed(&mut self, from: &Path, to: &Path) {
        self.regions.remove(to);
        if let Some(r) = self.regions.remove(from) {
            self.regions.insert(to.to_path_buf(), r);
        }
    }

    /// Every bad sector remapped.
    pub(super) fn clear(&mut self) {
        self.regions.clear();
    }
}

/// The error a bad sector returns (EIO on Linux).
pub(super) fn latent_error() -> io::Error {
    io::Error::other("latent sector error: the sector cannot be read (injected)")
}
