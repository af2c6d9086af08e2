//! The names of the engine's files, in one place (as LevelDB's filename.cc):
//! tables, the WAL directory, manifests, CURRENT, the lock file and
//! temporary files.
//!
//! Everything here is pure: names and paths, no I/O. Recovery decides what
//! a file is (live, orphan, temporary) by these names alone, so a name
//! written in one place and parsed in another must come from here. The WAL's
//! segment names live with the WAL ([`crate::wal::segment_file_name`]),
//! which the Raft log shares.

use std::path::{Path, PathBuf};

/// The lock file every open engine holds.
pub const LOCK: &str = "LOCK";
/// The file naming the live manifest (one line: its file name).
pub const CURRENT: &str = "CURRENT";
/// A file being written before it is renamed into place; recovery deletes
/// any it finds.
pub const TEMP_SUFFIX: &str = ".tmp";
/// The WAL's directory, inside the engine's directory.
pub const WAL_DIR: &str = "wal";

const TABLE_SUFFIX: &str = ".sst";
const MANIFEST_PREFIX: &str = "MANIFEST-";

/// The file name of SSTable `number`: at least six decimal digits and
/// `.sst` (`000042.sst`).
pub fn table_file_name(number: u64) -> String {
    format!("{number:06}{TABLE_SUFFIX}")
}

/// The table number of a file name ending in `.sst`; other names give `None`.
pub fn parse_table_file_name(name: &str) -> Option<u64> {
    name.strip_suffix(TABLE_SUFFIX)?.parse().ok()
}

/// Whether `name` is a table's file name by its suffix alone.
pub fn is_table_file_name(name: &str) -> bool {
    name.ends_with(TABLE_SUFFIX)
}

/// The path of SSTable `number` in `dir`.
pub fn table_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(table_file_name(number))
}

/// The WAL directory of an engine in `dir`.
pub fn wal_dir(dir: &Path) -> PathBuf {
    dir.join(WAL_DIR)
}

/// The file name of manifest `number` (`MANIFEST-000007`).
pub fn manifest_file_name(number: u64) -> String {
    format!("{MANIFEST_PREFIX}{number:06}")
}

/// Whether `name` starts like a manifest's file name (live or old).
pub fn is_manifest_file_name(name: &str) -> bool {
    name.starts_with(MANIFEST_PREFIX)
}

/// Whether `name` is what CURRENT may hold: `MANIFEST-` and at least one
/// decimal digit, nothing else.
pub fn is_valid_manifest_name(name: &str) -> bool {
    name.strip_prefix(MANIFEST_PREFIX)
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is a temporary file's (see [`TEMP_SUFFIX`]).
pub fn is_temp_file_name(name: &str) -> bool {
    name.ends_with(TEMP_SUFFIX)
}

/// The path of CURRENT in `dir`.
pub fn current_path(dir: &Path) -> PathBuf {
    dir.join(CURRENT)
}

/// The temporary file CURRENT is written to before it is renamed into place.
pub fn current_temp_path(dir: &Path) -> PathBuf {
    dir.join(format!("{CURRENT}{TEMP_SUFFIX}"))
}

/// The path of the lock file in `dir`.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join(LOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_round_trip_and_pad_to_six_digits() {
        assert_eq!(table_file_name(42), "000042.sst");
        assert_eq!(table_file_name(1_234_567), "1234567.sst");
        assert_eq!(parse_table_file_name("000042.sst"), Some(42));
        assert_eq!(parse_table_file_name("1234567.sst"), Some(1_234_567));
        assert_eq!(parse_table_file_name("x.sst"), None);
        assert_eq!(parse_table_file_name("000042.sst.tmp"), None);
    }

    #[test]
    fn current_accepts_only_manifest_names() {
        assert_eq!(manifest_file_name(7), "MANIFEST-000007");
        assert!(is_valid_manifest_name("MANIFEST-000007"));
        assert!(!is_valid_manifest_name("MANIFEST-"));
        assert!(!is_valid_manifest_name("MANIFEST-00x"));
        assert!(!is_valid_manifest_name("000007"));
        assert_eq!(
            current_temp_path(Path::new("d")),
            Path::new("d/CURRENT.tmp")
        );
    }
}
