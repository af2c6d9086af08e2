//! Which file a path names now. turmoil keys files by path, but a POSIX
//! file descriptor names an inode: after an unlink (or a rename over it)
//! the old descriptor still works on the old inode, and a new file at the
//! same path is another inode. The seam gives every file an inode number
//! and every handle the number it opened, so an operation through the
//! handle of an unlinked file never touches the new file at that path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Inode numbers by path.
#[derive(Debug, Default)]
pub(super) struct Inodes {
    by_path: BTreeMap<PathBuf, u64>,
    next: u64,
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
    pub(super) fn renamed(&mut self, from: &Path, to: &Path) {
        if let Some(ino) = self.by_path.remove(from) {
            self.by_path.insert(to.to_path_buf(), ino);
        } else {
            self.by_path.remove(to);
        }
    }
}
