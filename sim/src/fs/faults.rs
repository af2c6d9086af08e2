//! The fault injectors of the simulated disk: what may fail
//! ([`Injectors`]), what did ([`Fired`]), and the undo log that gives a
//! failed fsync its Linux meaning (see the parent module's docs).

use std::io;
use std::os::unix::fs::FileExt;
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
    /// Probability that an open (other than for reading), rename, unlink
    /// or `set_len` fails with an I/O error, changing nothing.
    pub meta_error: f64,
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
