//! The meta file: the vote and the last purged log id, in one small file
//! replaced atomically (write a temporary file, fsync it, rename it over the
//! old one, fsync the directory) before the change takes effect. Byte layout
//! in `FORMAT-raftlog.md`.

use crate::byte_reader::{ByteReader, DecodeError};
use crate::error::{Error, Result};
use crate::typ::{log_id, LeaderId, LogId, Vote};
use ballast_storage::fs::{self, FileSystem, IoOp, OpenMode};
use openraft::vote::RaftVote;
use std::io;
use std::path::{Path, PathBuf};

/// File name of the meta file in the log store's directory.
pub const META_FILE: &str = "raft-meta";
/// File name of the meta file's replacement while it is being written.
pub const META_TMP_FILE: &str = "raft-meta.tmp";
/// First bytes of the meta file.
pub const META_MAGIC: [u8; 8] = *b"BLSTRMT\0";
/// Meta format version this build writes and the newest it reads.
pub const META_FORMAT_VERSION: u32 = 1;
/// Encoded length of the meta file.
pub const META_LEN: usize = 57;

const FLAG_VOTE: u8 = 1;
const FLAG_VOTE_COMMITTED: u8 = 2;
const FLAG_PURGED: u8 = 4;

/// What the meta file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    /// The last saved vote.
    pub vote: Option<Vote>,
    /// Every entry at or below this log id is purged.
    pub last_purged: Option<LogId>,
}

impl Meta {
    /// The file's bytes.
    pub fn encode(&self) -> [u8; META_LEN] {
        let mut b = [0u8; META_LEN];
        b[0..8].copy_from_slice(&META_MAGIC);
        b[8..12].copy_from_slice(&META_FORMAT_VERSION.to_le_bytes());
        let mut flags = 0;
        if let Some(v) = &self.vote {
            flags |= FLAG_VOTE;
            if v.is_committed() {
                flags |= FLAG_VOTE_COMMITTED;
            }
            b[13..21].copy_from_slice(&v.leader_id.term.to_le_bytes());
            b[21..29].copy_from_slice(&v.leader_id.node_id.to_le_bytes());
        }
        if let Some(p) = &self.last_purged {
            flags |= FLAG_PURGED;
            b[29..37].copy_from_slice(&p.leader_id.term.to_le_bytes());
            b[37..45].copy_from_slice(&p.leader_id.node_id.to_le_bytes());
            b[45..53].copy_from_slice(&p.index.to_le_bytes());
        }
        b[12] = flags;
        let crc = crc32fast::hash(&b[..53]);
        b[53..57].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses the file's bytes; `path` is for error messages.
    pub fn decode(path: &Path, b: &[u8]) -> Result<Meta> {
        if b.len() != META_LEN {
            return Err(Error::corrupt(
                path,
                format!("meta file is {} bytes, expected {META_LEN}", b.len()),
            ));
        }
        if b[0..8] != META_MAGIC {
            return Err(Error::corrupt(
                path,
                "bad magic: not a ballast Raft meta file",
            ));
        }
        // The length is checked above, so no read below runs short (one
        // that did would be refused as corruption, not a panic).
        let field = |e: DecodeError| Error::corrupt(path, format!("{e:?}"));
        let (body, crc) = b.split_at(53);
        let crc = ByteReader::new(crc).u32("meta CRC").map_err(field)?;
        if crc != crc32fast::hash(body) {
            return Err(Error::corrupt(path, "checksum mismatch"));
        }
        let mut r = ByteReader::new(&body[8..]);
        let version = r.u32("meta version").map_err(field)?;
        if version == 0 || version > META_FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                found: version,
                supported: META_FORMAT_VERSION,
            });
        }
        let flags = r.u8("meta flags").map_err(field)?;
        if flags & !(FLAG_VOTE | FLAG_VOTE_COMMITTED | FLAG_PURGED) != 0 {
            return Err(Error::corrupt(path, format!("unknown flags {flags:#x}")));
        }
        let mut u64_of = |what: &str| r.u64(what).map_err(field);
        let (vote_term, vote_node_id) = (u64_of("vote term")?, u64_of("vote node id")?);
        let (purged_term, purged_node_id) = (u64_of("purged term")?, u64_of("purged node id")?);
        let purged_index = u64_of("purged index")?;
        let vote = (flags & FLAG_VOTE != 0).then(|| {
            Vote::from_leader_id(
                LeaderId {
                    term: vote_term,
                    node_id: vote_node_id,
                },
                flags & FLAG_VOTE_COMMITTED != 0,
            )
        });
        let last_purged =
            (flags & FLAG_PURGED != 0).then(|| log_id(purged_term, purged_node_id, purged_index));
        Ok(Meta { vote, last_purged })
    }
}

/// Reads the meta file in `dir`; a missing file is an empty [`Meta`] (a new
/// store). A leftover temporary file is a replacement that never took
/// effect (the crash came before its rename) and is ignored.
pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Meta> {
    let path = dir.join(META_FILE);
    match fs::read_file(fs, &path) {
        Ok(bytes) => Meta::decode(&path, &bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Meta::default()),
        Err(source) => Err(Error::Io { path, source }),
    }
}

/// Replaces the meta file in `dir` with `meta` durably: temporary file
/// written and fsynced, renamed over the old one, directory fsynced. Only
/// when this returns is the new content what a restart will read.
pub async fn store(fs: &dyn FileSystem, dir: &Path, meta: &Meta) -> Result<()> {
    store_with(fs, dir, meta, true).await
}

/// [`store`], with the two fsyncs only when `durable` (false only for the
/// planted bug `VoteNotFsynced`: the rename then may not survive a power
/// loss, and the file it names may be empty).
pub(crate) async fn store_with(
    fs: &dyn FileSystem,
    dir: &Path,
    meta: &Meta,
    durable: bool,
) -> Result<()> {
    let tmp = dir.join(META_TMP_FILE);
    let path = dir.join(META_FILE);
    let io_err = |path: &PathBuf| {
        let path = path.clone();
        move |source| Error::Io { path, source }
    };
    fs::pause(fs, IoOp::Write).await;
    let file = fs
        .open(&tmp, OpenMode::CreateTruncate)
        .map_err(io_err(&tmp))?;
    file.write_all_at(&meta.encode(), 0).map_err(io_err(&tmp))?;
    if durable {
        fs::pause(fs, IoOp::Sync).await;
        file.sync_data().map_err(io_err(&tmp))?;
    }
    drop(file);
    fs::pause(fs, IoOp::Metadata).await;
    fs.rename(&tmp, &path).map_err(io_err(&path))?;
    if durable {
        fs::pause(fs, IoOp::SyncDir).await;
        fs.sync_dir(dir).map_err(io_err(&dir.to_path_buf()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_damage_is_refused() {
        let metas = [
            Meta::default(),
            Meta {
                vote: Some(Vote::from_leader_id(
                    LeaderId {
                        term: 7,
                        node_id: 3,
                    },
                    true,
                )),
                last_purged: Some(log_id(5, 1, 99)),
            },
        ];
        let p = Path::new("raft-meta");
        for m in metas {
            let b = m.encode();
            assert_eq!(Meta::decode(p, &b).expect("decodes"), m);
            for i in 0..META_LEN {
                let mut bad = b;
                bad[i] ^= 0x10;
                assert!(Meta::decode(p, &bad).is_err(), "flip at {i} accepted");
            }
            assert!(Meta::decode(p, &b[..META_LEN - 1]).is_err());
        }
    }
}
