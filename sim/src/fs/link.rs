//! Hard links on the simulated disk: two names, one inode (see
//! `inode.rs` for the layout). A link made of a file with unsynced writes
//! loses them through every name at a power loss; an fsync through any
//! name makes them durable for all; the new name is itself durable only
//! once its directory is fsynced; removing the original leaves the link
//! readable.

use super::inode::{Inodes, INODE_DIR};
use super::{lock, TurmoilFile, TurmoilFs};
use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::Arc;
use turmoil::fs::shim::std::fs as tfs;

impl TurmoilFs {
    pub(super) fn hard_link_op(&self, original: &Path, link: &Path) -> io::Result<()> {
        self.alive()?;
        lock(&self.io).meta_fault("link")?;
        if !tfs::exists(original) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot link {}: no such file", original.display()),
            ));
        }
        if tfs::exists(link) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("cannot link to {}: it exists", link.display()),
            ));
        }
        let ino = lock(&self.io).inodes.at(original, false);
        if lock(&self.io).inodes.data_path(ino).is_none() {
            self.share(original, ino)?;
        }
        // The new name is an empty turmoil file: it carries the directory
        // entry (pending until its directory is fsynced), never the bytes.
        tfs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(link)?;
        let mut io = lock(&self.io);
        io.touch(link);
        io.inodes.linked(link, ino);
        io.unsynced_entries.insert(link.to_path_buf());
        Ok(())
    }

    /// Moves the bytes of `original` (inode `ino`) to its hidden data
    /// path with the same durability: what turmoil holds durably stays
    /// durable, what is pending stays pending.
    fn share(&self, original: &Path, ino: u64) -> io::Result<()> {
        let data = Inodes::data_path_for(ino, original);
        let dir = Path::new(INODE_DIR);
        if !tfs::exists(dir) {
            // Made durable at once: the hidden directory is the
            // simulator's, not the engine's. This commits the root's other
            // pending entries too, once per disk.
            tfs::create_dir_all(dir)?;
            tfs::sync_dir("/")?;
            lock(&self.io).dir_committed(Path::new("/"));
        }
        // turmoil applies its own hard link at the directory fsync by
        // copying the durable bytes of the target, which is exactly the
        // durable state to start from (nothing, if never fsynced).
        tfs::hard_link(original, &data)?;
        tfs::sync_dir(dir)?;
        if !tfs::exists(&data) {
            tfs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&data)?;
            tfs::sync_dir(dir)?;
        }
        let mut io = lock(&self.io);
        if io.dirty.remove(original) {
            // The writes since the last fsync become the data file's
            // pending writes, lost at a power loss like the originals.
            let now = tfs::read(original)?;
            let f = tfs::OpenOptions::new().write(true).open(&data)?;
            f.set_len(now.len() as u64)?;
            std::os::unix::fs::FileExt::write_all_at(&f, &now, 0)?;
            io.dirty.insert(data.clone());
        }
        if let Some(u) = io.undo.remove(original) {
            io.undo.insert(data.clone(), u);
        }
        io.bad.renamed(original, &data);
        let durable: Vec<_> = if io.unsynced_entries.contains(original) {
            Vec::new()
        } else {
            vec![original.to_path_buf()]
        };
        io.inodes.share(ino, data.clone(), &durable);
        // Descriptors already open on the original now reach the data
        // path, as a descriptor names the inode, not the name.
        let open: Vec<Arc<TurmoilFile>> = io
            .open_files
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|f| f.inode == ino)
            .collect();
        drop(io);
        for f in open {
            let reopened = tfs::OpenOptions::new()
                .read(true)
                .write(f.writable)
                .open(&data)?;
            *f.file() = reopened;
        }
        Ok(())
    }

    /// Deletes the bytes of linked inodes that no name and no open file
    /// of this process lifetime refers to any more.
    pub(super) fn collect_inodes(&self) -> io::Result<()> {
        let mut io = lock(&self.io);
        let open: BTreeSet<u64> = io
            .open_files
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|f| f.life == io.life)
            .map(|f| f.inode)
            .collect();
        let dead = io.inodes.unreferenced(&open);
        if dead.is_empty() {
            return Ok(());
        }
        for (ino, data) in &dead {
            tfs::remove_file(data)?;
            io.dirty.remove(data);
            io.undo.remove(data);
            io.bad.removed(data);
            io.inodes.forget(*ino);
        }
        tfs::sync_dir(INODE_DIR)
    }
}
