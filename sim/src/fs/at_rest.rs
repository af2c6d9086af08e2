//! Bit rot at rest: a byte flipped in a file on the disk, durable, so it
//! persists across reopen (unlike `corrupt-read`, which damages one read
//! in flight).

use super::pause::{tag_of, Tag};
use super::{lock, SimIo};
use rand::Rng;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use turmoil::fs::shim::std::fs as tfs;

/// One non-empty regular file under `dirs` (the lock excepted) and an
/// offset in it, chosen with the disk's seeded RNG.
fn pick(io: &Mutex<SimIo>, dirs: &[&Path]) -> io::Result<Option<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for dir in dirs {
        if !tfs::exists(dir) {
            continue;
        }
        let mut names = Vec::new();
        for e in tfs::read_dir(dir)? {
            if let Some(n) = e?.file_name().to_str() {
                names.push(n.to_string());
            }
        }
        // The choice must not depend on the listing's order.
        names.sort();
        for n in names {
            let path = dir.join(&n);
            if n == "LOCK" || !tfs::metadata(&path)?.is_file() {
                continue;
            }
            // A linked name's bytes live at its inode's data path.
            let data = lock(io).inodes.data_path_of(&path).cloned();
            let len = tfs::metadata(data.as_ref().unwrap_or(&path))?.len();
            if len > 0 {
                files.push((data.unwrap_or(path), len));
            }
        }
    }
    let mut g = lock(io);
    if files.is_empty() {
        return Ok(None);
    }
    let (path, len) = files[g.rng.gen_range(0..files.len())].clone();
    // A quarter of the picks land in the first bytes, where a flip changes
    // how recovery reads the whole file (a WAL segment's header and link
    // record, a manifest's header and first edit), not one value: spread
    // evenly, they are a few hundredths of a percent of the bytes, and the
    // header paths went unreached for hundreds of seeds.
    let at = if g.rng.gen_bool(HEAD_PICK_PROBABILITY) {
        g.rng.gen_range(0..len.min(HEAD_BYTES))
    } else {
        g.rng.gen_range(0..len)
    };
    Ok(Some((path, at)))
}

/// How many leading bytes of a file count as its head for [`pick`].
const HEAD_BYTES: u64 = 64;

/// Probability that [`pick`] chooses a byte of the file's head.
const HEAD_PICK_PROBABILITY: f64 = 0.25;

/// Flips one byte of one file under `dirs` and makes the flip durable.
/// Must run on the host whose disk this is, before the engine opens and
/// after a power loss (nothing else is pending then, so the fsync makes
/// only the flip durable). Returns the file and offset flipped, if any
/// file was there.
pub fn rot_at_rest(io: &Mutex<SimIo>, dirs: &[&Path]) -> io::Result<Option<(PathBuf, u64)>> {
    let Some((path, at)) = pick(io, dirs)? else {
        return Ok(None);
    };
    let mut g = lock(io);
    let flip: u8 = g.rng.gen_range(1..=255);
    let file = tfs::OpenOptions::new().read(true).write(true).open(&path)?;
    let mut b = [0u8; 1];
    file.read_at(&mut b, at)?;
    b[0] ^= flip;
    file.write_all_at(&b, at)?;
    file.sync_data()?;
    g.fired.rotted_files += 1;
    g.fired.wal_damage += u64::from(tag_of(&path) == Tag::Wal);
    let done: io::Result<()> = Ok(());
    g.record("rot", &path, at, u64::from(flip), &done);
    Ok(Some((path, at)))
}

/// A sector of one file under `dirs` goes bad at rest: the next read of
/// it (recovery's, most likely) fails, and so does every later one until
/// it is rewritten or repaired. Must run on the host whose disk this is.
pub fn bad_sector_at_rest(io: &Mutex<SimIo>, dirs: &[&Path]) -> io::Result<Option<(PathBuf, u64)>> {
    let Some((path, at)) = pick(io, dirs)? else {
        return Ok(None);
    };
    let mut g = lock(io);
    g.bad.add(&path, at, 1);
    let done: io::Result<()> = Ok(());
    g.record("bad-sector", &path, at, 1, &done);
    Ok(Some((path, at)))
}
