//! Faults a file handle applies to itself: a misdirected write (the
//! bytes land in the wrong place) and the Linux meaning of a failed fsync
//! (the writes since the last good one are gone).

use super::faults::{Undo, SECTOR_BYTES};
use super::pause::{tag_of, Tag};
use super::{lock_path, SimIo, TurmoilFile};
use rand::Rng;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, MutexGuard};

impl TurmoilFile {
    /// A misdirected write: reports success, but the bytes land 1-8
    /// sectors away from `offset` in this file, or at `offset` in another
    /// file open for writing; the intended place keeps what it had.
    pub(super) fn misdirect(
        &self,
        mut io: MutexGuard<'_, SimIo>,
        buf: &[u8],
        offset: u64,
    ) -> io::Result<()> {
        let me = self.path();
        let others: Vec<Arc<TurmoilFile>> = io
            .open_files
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|f| f.writable && f.life == self.life && *lock_path(&f.path) != me)
            .collect();
        let (target, at) = if !others.is_empty() && io.rng.gen_bool(0.5) {
            let f = others[io.rng.gen_range(0..others.len())].clone();
            (Some(f), offset)
        } else {
            let shift = SECTOR_BYTES * io.rng.gen_range(1..=8u64);
            let back = offset >= shift && io.rng.gen_bool(0.5);
            (None, if back { offset - shift } else { offset + shift })
        };
        let path = target.as_ref().map_or_else(|| me.clone(), |f| f.path());
        io.fired.misdirected_writes += 1;
        io.fired.wal_damage += u64::from(tag_of(&me) == Tag::Wal || tag_of(&path) == Tag::Wal);
        io.fault();
        let data = target
            .as_ref()
            .map_or_else(|| self.data(&io), |f| f.data(&io));
        io.dirty.insert(data);
        let done: io::Result<()> = Ok(());
        io.record("misdirect", &path, at, buf.len() as u64, &done);
        drop(io);
        match target {
            Some(f) => f.file().write_all_at(buf, at),
            None => self.file().write_all_at(buf, at),
        }
    }

    /// Linux after a failed fsync: the changes since the last successful
    /// fsync are gone. Rolls them back newest first, then makes the rolled
    /// back file durable, so neither a read nor a later power loss nor a
    /// later fsync brings them back.
    pub(super) fn drop_unsynced(&self, undo: Vec<Undo>) -> io::Result<()> {
        if undo.is_empty() {
            return Ok(());
        }
        for u in undo.iter().rev() {
            if !u.bytes_before.is_empty() {
                self.file().write_all_at(&u.bytes_before, u.offset)?;
            }
            self.file().set_len(u.len_before)?;
        }
        self.file().sync_data()
    }
}
