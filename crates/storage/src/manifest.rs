//! The manifest: a log of version edits (in the WAL's record format, one
//! edit per record), and CURRENT, which names the live manifest.
//!
//! Every open writes a fresh manifest holding a snapshot of the recovered
//! state and switches CURRENT to it (write CURRENT.tmp, fsync, rename,
//! fsync the directory); a manifest that grows past
//! `Options::manifest_bytes_max` is replaced the same way. An edit takes effect
//! only after its record is fsynced (and, when it adds tables, after the
//! directory holding them is fsynced).
//!
//! This module makes an edit durable (encode, write, fsync) and keeps the
//! values the manifest records; installing the new version for readers is
//! the engine's ([`crate::engine::Engine::log_and_apply`]).

use crate::error::{Error, Result};
use crate::filename::{self, current_path, current_temp_path, manifest_file_name, table_path};
use crate::fs::{self, DynFs, FileSystem, IoOp, OpenMode};
use crate::key::SeqNo;
use crate::table::{BlockCache, Table};
use crate::version::{FileDesc, FileMeta, Version, VersionEdit, MANIFEST_FORMAT_VERSION};
use crate::wal::{read_log, LogFile};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Magic bytes at the start of every manifest file.
pub const MANIFEST_MAGIC: &[u8; 8] = b"BLSTMAN\0";
pub use crate::options::MANIFEST_BYTES_MAX;

/// The state found in the manifest at open.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recovered {
    pub version: Version,
    pub next_file_number: u64,
    pub last_seq: SeqNo,
    pub flushed_seq: SeqNo,
    pub wal_min_segment: u64,
    pub applied_marker: Option<Vec<u8>>,
}

/// Reads CURRENT and the manifest it names, and opens every live table.
pub(crate) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    cache: &Arc<BlockCache>,
    graveyard: &Arc<Mutex<Vec<u64>>>,
) -> Result<Recovered> {
    let current = current_path(dir);
    if !fs.exists(&current).map_err(|e| Error::io(&current, e))? {
        // A new engine (or one whose first open died before CURRENT was
        // switched in, when nothing else was written yet).
        return Ok(Recovered {
            next_file_number: 1,
            wal_min_segment: 1,
            ..Recovered::default()
        });
    }
    let text = fs::read_file(fs, &current).map_err(|e| Error::io(&current, e))?;
    let name = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.strip_suffix('\n'))
        .filter(|n| filename::is_valid_manifest_name(n))
        .ok_or_else(|| Error::corruption(&current, 0, "CURRENT does not name a manifest"))?
        .to_string();
    let path = dir.join(&name);
    // CURRENT is switched only to a manifest made durable first, so a name
    // that is not there means CURRENT (or the directory) is damaged: a
    // flipped digit names another manifest (the simulation's bit-rot
    // scenario). That is corruption, not a transient I/O error.
    let data = fs::read_file(fs, &path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::corruption(
            &current,
            0,
            format!("CURRENT does not name a manifest that exists ({name} is missing)"),
        ),
        _ => Error::io(&path, e),
    })?;
    let contents = read_log(&path, Bytes::from(data), MANIFEST_MAGIC)?;
    if let Some(torn) = &contents.torn {
        // An edit that never became durable was never acted upon.
        tracing::warn!(path = %path.display(), offset = torn.offset, "manifest ends in a torn record; ignoring it");
    }
    let mut files: BTreeMap<u64, FileDesc> = BTreeMap::new();
    let mut r = Recovered {
        next_file_number: 1,
        wal_min_segment: 1,
        ..Recovered::default()
    };
    let mut saw_version = false;
    let mut floors = Vec::new();
    for (i, rec) in contents.records.iter().enumerate() {
        let edit = VersionEdit::decode(rec, &path, i as u64)?;
        // Any version up to this build's (newer ones are refused by the
        // decode): version 1 manifests simply have no range floors.
        saw_version |= edit.format_version.is_some();
        for (_, number) in &edit.deleted {
            files.remove(number);
        }
        for f in edit.added {
            files.insert(f.number, f);
        }
        if let Some(v) = edit.next_file_number {
            r.next_file_number = r.next_file_number.max(v);
        }
        if let Some(v) = edit.last_seq {
            r.last_seq = r.last_seq.max(v);
        }
        if let Some(v) = edit.flushed_seq {
            r.flushed_seq = r.flushed_seq.max(v);
        }
        if let Some(v) = edit.wal_min_segment {
            r.wal_min_segment = r.wal_min_segment.max(v);
        }
        if edit.applied_marker.is_some() {
            r.applied_marker = edit.applied_marker;
        }
        if let Some(f) = edit.range_floors {
            floors = f;
        }
    }
    if !saw_version {
        return Err(Error::corruption(
            &path,
            0,
            "manifest has no format version record",
        ));
    }
    let mut added = Vec::with_capacity(files.len());
    for (number, desc) in files {
        r.next_file_number = r.next_file_number.max(number + 1);
        let tpath = table_path(dir, number);
        // A table the manifest names is deleted only after an edit removing
        // it is durable: missing, it means the manifest lost edits (a
        // damaged last record reads as a torn one) or the table was removed
        // by hand. Either way the state is damaged.
        let file = fs
            .open(&tpath, OpenMode::Read)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::corruption(
                    &path,
                    0,
                    format!(
                        "the manifest names table {number} but {} is missing",
                        tpath.display()
                    ),
                ),
                _ => Error::io(&tpath, e),
            })?;
        let table = Table::open(file, tpath, number, desc.size, cache.clone())?;
        added.push(FileMeta::new(desc, table, graveyard.clone()));
    }
    r.last_seq = r.last_seq.max(r.flushed_seq);
    r.version = Version::default().apply(&[], added);
    r.version.floors = floors;
    if let Err(e) = r.version.check_invariants() {
        return Err(Error::corruption(
            &path,
            0,
            format!("manifest describes overlapping tables: {e}"),
        ));
    }
    Ok(r)
}

/// The live manifest and the engine-wide values recorded in it.
pub(crate) struct VersionSet {
    fs: DynFs,
    dir: std::path::PathBuf,
    log: LogFile,
    number: u64,
    flushed_seq: SeqNo,
    wal_min_segment: u64,
    applied_marker: Option<Vec<u8>>,
}

impl VersionSet {
    /// Writes a new manifest `number` holding `r`'s state and switches CURRENT to it.
    pub(crate) async fn create(
        fs: DynFs,
        dir: &Path,
        r: &Recovered,
        number: u64,
    ) -> Result<VersionSet> {
        let mut vs = VersionSet {
            log: start_manifest(&fs, dir, number, &snapshot_edit(r, &r.version, number + 1))
                .await?,
            fs,
            dir: dir.to_path_buf(),
            number,
            flushed_seq: r.flushed_seq,
            wal_min_segment: r.wal_min_segment,
            applied_marker: r.applied_marker.clone(),
        };
        vs.number = number;
        Ok(vs)
    }

    /// The newest durable applied marker. An empty marker (what an
    /// install of a table set without one records) reads as none.
    pub(crate) fn applied_marker(&self) -> Option<Vec<u8>> {
        self.applied_marker.clone().filter(|m| !m.is_empty())
    }

    /// Every entry at or below this sequence number is in a table.
    pub(crate) fn flushed_seq(&self) -> SeqNo {
        self.flushed_seq
    }

    /// Makes `edit` durable: the directory entries of the tables it adds
    /// first, then its record (written and fsynced), then the engine-wide
    /// values it carries are folded into this set.
    pub(crate) async fn log_edit(&mut self, edit: &VersionEdit) -> Result<()> {
        if !edit.added.is_empty() {
            // New tables' directory entries must be durable before the manifest
            // refers to them.
            fs::pause(&*self.fs, IoOp::SyncDir).await;
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| Error::io(&self.dir, e))?;
        }
        let record = edit.encode();
        debug_assert_decodes_to(&record, edit);
        self.log.add_record(&record)?;
        self.log.write_pending()?;
        fs::pause(&*self.fs, IoOp::Sync).await;
        self.log.sync()?;
        if let Some(s) = edit.flushed_seq {
            self.flushed_seq = self.flushed_seq.max(s);
        }
        if let Some(s) = edit.wal_min_segment {
            self.wal_min_segment = self.wal_min_segment.max(s);
        }
        if edit.applied_marker.is_some() {
            self.applied_marker = edit.applied_marker.clone();
        }
        Ok(())
    }

    /// True once the manifest has grown past `bytes_max`
    /// (`Options::manifest_bytes_max`).
    pub(crate) fn wants_new_manifest(&self, bytes_max: u64) -> bool {
        self.log.len() > bytes_max
    }

    /// Replaces the manifest with a new one, `number`, holding `version`
    /// and this set's values, and removes the old one.
    pub(crate) async fn start_new_manifest(
        &mut self,
        number: u64,
        next_file_number: u64,
        last_seq: SeqNo,
        version: &Version,
    ) -> Result<()> {
        let r = Recovered {
            version: Version::default(),
            next_file_number,
            last_seq,
            flushed_seq: self.flushed_seq,
            wal_min_segment: self.wal_min_segment,
            applied_marker: self.applied_marker.clone(),
        };
        let first = snapshot_edit(&r, version, r.next_file_number);
        let old = self.dir.join(self.manifest_name());
        self.log = start_manifest(&self.fs, &self.dir, number, &first).await?;
        self.number = number;
        if let Err(e) = self.fs.remove_file(&old) {
            tracing::warn!(path = %old.display(), error = %e, "could not remove the old manifest");
        }
        Ok(())
    }

    /// The file name of the live manifest.
    pub(crate) fn manifest_name(&self) -> String {
        manifest_file_name(self.number)
    }
}

fn snapshot_edit(r: &Recovered, version: &Version, next_file_number: u64) -> VersionEdit {
    VersionEdit {
        format_version: Some(MANIFEST_FORMAT_VERSION),
        wal_min_segment: Some(r.wal_min_segment),
        next_file_number: Some(next_file_number.max(r.next_file_number)),
        flushed_seq: Some(r.flushed_seq),
        last_seq: Some(r.last_seq),
        deleted: Vec::new(),
        added: version.descs(),
        applied_marker: r.applied_marker.clone(),
        range_floors: (!version.floors.is_empty()).then(|| version.floors.clone()),
    }
}

/// Creates manifest `number` with `first` as its only edit, makes it
/// durable, and points CURRENT at it.
async fn start_manifest(
    fs: &DynFs,
    dir: &Path,
    number: u64,
    first: &VersionEdit,
) -> Result<LogFile> {
    let path = dir.join(manifest_file_name(number));
    let mut log = LogFile::create(fs.clone(), &path, MANIFEST_MAGIC, number, 0)?;
    let record = first.encode();
    debug_assert_decodes_to(&record, first);
    log.add_record(&record)?;
    log.write_pending()?;
    fs::pause(&**fs, IoOp::Sync).await;
    log.sync()?;
    let tmp = current_temp_path(dir);
    let current = current_path(dir);
    let contents = format!("{}\n", manifest_file_name(number));
    if crate::planted::active(crate::planted::PlantedBug::SkipManifestDirSync) {
        let f = fs
            .open(&tmp, OpenMode::CreateTruncate)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all_at(contents.as_bytes(), 0)
            .map_err(|e| Error::io(&tmp, e))?;
    } else {
        fs::write_file_durably(&**fs, &tmp, contents.as_bytes()).map_err(|e| Error::io(&tmp, e))?;
    }
    fs::pause(&**fs, IoOp::Metadata).await;
    fs.rename(&tmp, &current)
        .map_err(|e| Error::io(&current, e))?;
    fs::pause(&**fs, IoOp::SyncDir).await;
    if !crate::planted::active(crate::planted::PlantedBug::SkipManifestDirSync) {
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(log)
}

/// The write side of the pair with `recover`'s decode: a record must read
/// back as the edit it was encoded from (debug builds only).
fn debug_assert_decodes_to(record: &[u8], edit: &VersionEdit) {
    if cfg!(debug_assertions) {
        let decoded = VersionEdit::decode(record, Path::new("<encoded edit>"), 0);
        debug_assert!(
            decoded.as_ref().is_ok_and(|d| d == edit),
            "a manifest edit does not decode to itself: {decoded:?} vs {edit:?}"
        );
    }
}
