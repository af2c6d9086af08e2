//! Which file a path names now. turmoil keys files by path, but a POSIX
//! file descriptor names an inode: after an unlink (or a rename over it)
//! the old descriptor still works on the old inode, and a new file at the
//! same path is another inode. The seam gives every file an inode number
//! and every handle the number it opened, so an operation through the
//! handle of an unlinked file never touches the new file at that path.
//!
//! Hard links give one inode several names. turmoil's own `hard_link`
//! copies the bytes when the link's directory is fsynced, so the names
//! drift apart; here a linked inode's bytes move to one hidden turmoil
//! file (its data path, under [`INODE_DIR`], whose entry is durable at
//! once), and each name is an empty turmoil file that carries only the
//! directory entry, durable or not as turmoil's model says. Every data
//! operation through any name goes to the data path: one content, one
//! durability state. Which names survive a power loss is what the
//! directory fsyncs made durable ([`Inodes::power_lost`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The hidden directory that holds the bytes of linked inodes. The seam
/// leaves it out of the root's listing.
pub(super) const INODE_DIR: &str = "/.inodes";

/// Inode numbers by path, and the linked inodes.
#[derive(Debug, Default)]
pub(super) struct Inodes {
    by_path: BTreeMap<PathBuf, u64>,
    next: u64,
    /// Linked inodes: where their bytes live.
    shared: BTreeMap<u64, PathBuf>,
    /// The names of linked inodes whose directory entry is durable (as of
    /// the last fsync of their directory): what a power loss leaves.
    durable: BTreeMap<PathBuf, u64>,
}

impl Inodes {
    /// The inode `path` names, numbering it if it has none yet (a file
    /// created now, or one a power loss brought back).
    pub(super) fn at(&mut self, path: &Path, created: bool) -> u64 {
        if created || !self.by_path.contains_key(path) {
            self.next += 1;
            self.by_path.insert(path.to_path_buf(), self.next);
        }
        self.by_path[path]
    }

    /// True if `path` still names inode `ino`.
    pub(super) fn names(&self, path: &Path, ino: u64) -> bool {
        self.by_path.get(path) == Some(&ino)
    }

    /// `path` was unlinked.
    pub(super) fn removed(&mut self, path: &Path) {
        self.by_path.remove(path);
    }

    /// The inode at `from` is now at `to` (replacing what `to` named).
    /// Linked names under a renamed directory move with it.
    pub(super) fn renamed(&mut self, from: &Path, to: &Path) {
        if let Some(ino) = self.by_path.remove(from) {
            self.by_path.insert(to.to_path_buf(), ino);
        } else {
            self.by_path.remove(to);
        }
        let under: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(p, ino)| p.starts_with(from) && self.shared.contains_key(ino))
            .map(|(p, ino)| (p.clone(), *ino))
            .collect();
        for (p, ino) in under {
            if let Ok(rest) = p.strip_prefix(from) {
                self.by_path.remove(&p);
                self.by_path.insert(to.join(rest), ino);
            }
        }
    }

    /// Where the bytes of inode `ino` live, if it is linked.
    pub(super) fn data_path(&self, ino: u64) -> Option<&PathBuf> {
        self.shared.get(&ino)
    }

    /// Where the bytes of the file `path` names live, if it is linked.
    pub(super) fn data_path_of(&self, path: &Path) -> Option<&PathBuf> {
        self.by_path.get(path).and_then(|ino| self.shared.get(ino))
    }

    /// The hidden data path for inode `ino`, first linked under the name
    /// `original` (its file name is kept, so the file kind stays visible
    /// to the latency and fault bookkeeping).
    pub(super) fn data_path_for(ino: u64, original: &Path) -> PathBuf {
        let name = original
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file");
        Path::new(INODE_DIR).join(format!("{ino}-{name}"))
    }

    /// Inode `ino` is linked now; its bytes live at `data`. Its current
    /// names are durable as far as they already were, which the caller
    /// says with `durable_names`.
    pub(super) fn share(&mut self, ino: u64, data: PathBuf, durable_names: &[PathBuf]) {
        self.shared.insert(ino, data);
        for p in durable_names {
            self.durable.insert(p.clone(), ino);
        }
    }

    /// `link` names inode `ino` too (not durable until its directory is
    /// fsynced).
    pub(super) fn linked(&mut self, link: &Path, ino: u64) {
        self.by_path.insert(link.to_path_buf(), ino);
    }

    /// The entries of `dir` were made durable: the linked names in it are
    /// now the ones a power loss leaves.
    pub(super) fn dir_committed(&mut self, dir: &Path) {
        self.durable.retain(|p, _| p.parent() != Some(dir));
        for (p, ino) in &self.by_path {
            if p.parent() == Some(dir) && self.shared.contains_key(ino) {
                self.durable.insert(p.clone(), *ino);
            }
        }
    }

    /// A power loss: each linked name is back to its durable state (a
    /// link not yet fsynced into its directory is gone, an unlink not yet
    /// fsynced is undone).
    pub(super) fn power_lost(&mut self) {
        let shared = &self.shared;
        self.by_path.retain(|_, ino| !shared.contains_key(ino));
        for (p, ino) in &self.durable {
            self.by_path.insert(p.clone(), *ino);
        }
    }

    /// Linked inodes no name refers to, durably or not, except those in
    /// `open` (a descriptor keeps an inode alive): their bytes can go.
    pub(super) fn unreferenced(&self, open: &BTreeSet<u64>) -> Vec<(u64, PathBuf)> {
        let named: BTreeSet<u64> = self
            .by_path
            .values()
            .chain(self.durable.values())
            .copied()
            .collect();
        self.shared
            .iter()
            .filter(|(ino, _)| !named.contains(ino) && !open.contains(ino))
            .map(|(ino, p)| (*ino, p.clone()))
            .collect()
    }

    /// Inode `ino`'s bytes were deleted.
    pub(super) fn forget(&mut self, ino: u64) {
        self.shared.remove(&ino);
    }
}
