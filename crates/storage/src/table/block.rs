//! Key/value blocks (data and index blocks): the builder that writes the
//! prefix-compressed on-disk form, and [`Block`], the checked, decoded
//! in-memory form the reader searches and the block cache holds.
//!
//! On disk (FORMAT-table.md, "Key/value blocks"):
//!
//! ```text
//! entry*   : shared varint32 | unshared varint32 | value_len varint32
//!            | key_delta[unshared] | value[value_len]
//! restarts : u32 LE * num_restarts   (offsets of entries with shared == 0)
//! num_restarts : u32 LE              (>= 1)
//! ```
//!
//! In memory, a decoded [`Block`] holds every entry expanded (full key then
//! value, back to back) in one `Bytes`, plus a table of entry positions.
//! Lookups binary-search all entries (a finer search than over restart
//! points alone) and hand out `Bytes::slice`s: no allocation per read.

use crate::coding::{get_fixed32, get_varint32, put_fixed32, put_varint32};
use crate::key::{compare_internal, TRAILER_LEN};
use bytes::Bytes;
use std::cmp::Ordering;

/// Builds the on-disk form of one block.
#[derive(Debug)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    counter: usize,
    entries: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    /// A builder that starts a restart point every `restart_interval` entries
    /// (values below 1 are taken as 1).
    pub fn new(restart_interval: usize) -> Self {
        BlockBuilder {
            buf: Vec::new(),
            restarts: vec![0],
            restart_interval: restart_interval.max(1),
            counter: 0,
            entries: 0,
            last_key: Vec::new(),
        }
    }

    /// Appends an entry; keys must arrive in increasing order.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let mut shared = 0;
        if self.counter < self.restart_interval {
            shared = self
                .last_key
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count();
        } else {
            self.restarts.push(self.buf.len() as u32);
            self.counter = 0;
        }
        let unshared = key.len() - shared;
        put_varint32(&mut self.buf, shared as u32);
        put_varint32(&mut self.buf, unshared as u32);
        put_varint32(&mut self.buf, value.len() as u32);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(&key[shared..]);
        self.counter += 1;
        self.entries += 1;
    }

    /// Bytes the finished block will occupy (before compression).
    pub fn estimated_size(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    /// Number of entries added since the last reset.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// True if nothing was added since the last reset.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The last key added.
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Appends the restart array and returns the finished block contents.
    /// Call [`BlockBuilder::reset`] before reusing the builder.
    pub fn finish(&mut self) -> &[u8] {
        for r in &self.restarts {
            put_fixed32(&mut self.buf, *r);
        }
        put_fixed32(&mut self.buf, self.restarts.len() as u32);
        &self.buf
    }

    /// Empties the builder, keeping its allocations.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.restarts.clear();
        self.restarts.push(0);
        self.counter = 0;
        self.entries = 0;
        self.last_key.clear();
    }
}

/// Where one decoded entry lives inside [`Block::data`].
#[derive(Debug, Clone, Copy)]
struct EntryPos {
    key_start: u32,
    key_len: u32,
    value_len: u32,
}

/// A checked, decoded key/value block: every entry's full key and value lie
/// contiguously in one shared buffer. Keys are internal keys (at least
/// [`TRAILER_LEN`] bytes, checked at decode).
#[derive(Debug)]
pub struct Block {
    data: Bytes,
    entries: Box<[EntryPos]>,
    /// Length of the prefix shared by every user key of the block.
    prefix_len: usize,
    /// Per entry, the 8 user-key bytes after the shared prefix as a
    /// big-endian u64 (zero padded): a compact array that decides most
    /// comparisons of a binary search without touching the keys.
    norms: Box<[u64]>,
}

/// The first 8 bytes of `s` as a big-endian u64, zero padded.
#[inline]
fn norm(s: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = s.len().min(8);
    b[..n].copy_from_slice(&s[..n]);
    u64::from_be_bytes(b)
}

impl Block {
    /// Decodes and checks the on-disk contents of a block. Any structural
    /// problem (restart array out of range or not on entry boundaries, an
    /// entry running past the entry area, a shared prefix longer than the
    /// previous key, a key shorter than an internal key trailer) is an error
    /// whose text says what failed; this never panics on any input.
    pub fn decode(raw: &[u8]) -> Result<Block, String> {
        if raw.len() < 4 {
            return Err(format!("block of {} bytes has no restart count", raw.len()));
        }
        let num_restarts = get_fixed32(&raw[raw.len() - 4..]) as usize;
        let max_restarts = (raw.len() - 4) / 4;
        if num_restarts == 0 || num_restarts > max_restarts {
            return Err(format!(
                "restart count {num_restarts} out of range for a {}-byte block",
                raw.len()
            ));
        }
        let entries_end = raw.len() - 4 - 4 * num_restarts;
        let restarts = &raw[entries_end..raw.len() - 4];
        let restart = |i: usize| get_fixed32(&restarts[4 * i..]) as usize;

        let mut out: Vec<u8> = Vec::with_capacity(raw.len() + raw.len() / 4);
        let mut entries = Vec::new();
        let mut prev_start = 0usize;
        let mut prev_len = 0usize;
        let mut next_restart = 0usize;
        let mut pos = 0usize;
        while pos < entries_end {
            let is_restart = if next_restart < num_restarts {
                let r = restart(next_restart);
                if r < pos {
                    return Err(format!(
                        "restart point {next_restart} ({r}) is not on an entry boundary"
                    ));
                }
                r == pos
            } else {
                false
            };
            if pos == 0 && !is_restart {
                return Err("first restart point is not at offset 0".to_string());
            }
            let area = &raw[pos..entries_end];
            let mut p = 0usize;
            let mut varint = |what: &str| -> Result<usize, String> {
                let (v, n) = get_varint32(&area[p..])
                    .ok_or_else(|| format!("bad {what} varint in entry at {pos}"))?;
                p += n;
                Ok(v as usize)
            };
            let shared = varint("shared")?;
            let unshared = varint("unshared")?;
            let value_len = varint("value length")?;
            if is_restart && shared != 0 {
                return Err(format!("entry at restart offset {pos} shares a prefix"));
            }
            if shared > prev_len {
                return Err(format!(
                    "entry at {pos} shares {shared} bytes of a {prev_len}-byte key"
                ));
            }
            let body = unshared
                .checked_add(value_len)
                .filter(|&b| b <= area.len() - p)
                .ok_or_else(|| format!("entry at {pos} runs past the entry area"))?;
            let key_len = shared + unshared;
            if key_len < TRAILER_LEN {
                return Err(format!("key of {key_len} bytes at {pos} is too short"));
            }
            let key_start = out.len();
            out.extend_from_within(prev_start..prev_start + shared);
            out.extend_from_slice(&area[p..p + body]);
            if out.len() > u32::MAX as usize {
                return Err("decoded block exceeds 4 GiB".to_string());
            }
            entries.push(EntryPos {
                key_start: key_start as u32,
                key_len: key_len as u32,
                value_len: value_len as u32,
            });
            prev_start = key_start;
            prev_len = key_len;
            if is_restart {
                next_restart += 1;
            }
            pos += p + body;
        }
        // An empty block carries the single restart offset 0.
        let empty_ok = entries_end == 0 && num_restarts == 1 && restart(0) == 0;
        if next_restart != num_restarts && !empty_ok {
            return Err(format!(
                "restart point {next_restart} ({}) is beyond the last entry",
                restart(next_restart.min(num_restarts - 1))
            ));
        }
        let mut block = Block {
            data: Bytes::from(out),
            entries: entries.into_boxed_slice(),
            prefix_len: 0,
            norms: Box::default(),
        };
        block.index_keys();
        Ok(block)
    }

    /// Computes the shared user-key prefix and the per-entry normalized keys.
    fn index_keys(&mut self) {
        let n = self.entries.len();
        if n == 0 {
            return;
        }
        // Keys are at least TRAILER_LEN long (checked by decode). In a
        // sorted block every user key lies between the first and the last,
        // so it shares their common prefix.
        let first = user_part(self.key(0));
        let last = user_part(self.key(n - 1));
        self.prefix_len = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        let l = self.prefix_len;
        self.norms = (0..n)
            .map(|i| norm(user_part(self.key(i)).get(l..).unwrap_or(&[])))
            .collect();
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the block has no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Memory charged for this block in the block cache.
    pub fn charge(&self) -> u64 {
        let per_entry = std::mem::size_of::<EntryPos>() + std::mem::size_of::<u64>();
        (self.data.len() + self.entries.len() * per_entry + 64) as u64
    }

    #[inline]
    fn ranges(&self, i: usize) -> (usize, usize, usize) {
        let e = self.entries[i];
        let ks = e.key_start as usize;
        let ke = ks + e.key_len as usize;
        (ks, ke, ke + e.value_len as usize)
    }

    /// The key of entry `i` (`i < len()`).
    #[inline]
    pub fn key(&self, i: usize) -> &[u8] {
        let (s, e, _) = self.ranges(i);
        &self.data[s..e]
    }

    /// The value of entry `i` (`i < len()`).
    #[inline]
    pub fn value(&self, i: usize) -> &[u8] {
        let (_, s, e) = self.ranges(i);
        &self.data[s..e]
    }

    /// The key of entry `i` as a shared handle (no copy).
    #[inline]
    pub fn key_bytes(&self, i: usize) -> Bytes {
        let (s, e, _) = self.ranges(i);
        self.data.slice(s..e)
    }

    /// The value of entry `i` as a shared handle (no copy).
    #[inline]
    pub fn value_bytes(&self, i: usize) -> Bytes {
        let (_, s, e) = self.ranges(i);
        self.data.slice(s..e)
    }

    /// Index of the first entry whose internal key is >= `target` (`len()`
    /// if none), by binary search.
    #[inline]
    pub fn seek(&self, target: &[u8]) -> usize {
        let n = self.entries.len();
        if n == 0 {
            return 0;
        }
        let tu = user_part(target);
        let prefix = &self.data[..self.prefix_len.min(self.data.len())];
        if target.len() < TRAILER_LEN || self.norms.len() != n || !tu.starts_with(prefix) {
            return self.seek_slow(target);
        }
        // A strict inequality of the normalized keys is the same strict
        // inequality of the user keys (and so of the internal keys); only
        // equal ones need the full comparison.
        let tn = norm(&tu[self.prefix_len..]);
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let less = match self.norms[mid].cmp(&tn) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => compare_internal(self.key(mid), target) == Ordering::Less,
            };
            if less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// [`Block::seek`] comparing whole keys.
    fn seek_slow(&self, target: &[u8]) -> usize {
        let (mut lo, mut hi) = (0usize, self.entries.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if compare_ikey(self.key(mid), target) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// The user-key part of an internal key (all of it if shorter than a trailer).
#[inline]
fn user_part(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len().saturating_sub(TRAILER_LEN)]
}

/// [`compare_internal`] that tolerates a key shorter than the trailer (a
/// caller bug): such a key is taken as a bare user key sorting before every
/// version of itself. Keys from disk are always long enough (checked at decode).
#[inline]
pub(crate) fn compare_ikey(a: &[u8], b: &[u8]) -> Ordering {
    if a.len() >= TRAILER_LEN && b.len() >= TRAILER_LEN {
        compare_internal(a, b)
    } else {
        debug_assert!(
            a.len() >= TRAILER_LEN && b.len() >= TRAILER_LEN,
            "internal key shorter than its trailer"
        );
        let user = |k: &[u8]| -> usize {
            if k.len() >= TRAILER_LEN {
                k.len() - TRAILER_LEN
            } else {
                k.len()
            }
        };
        let (ua, ub) = (&a[..user(a)], &b[..user(b)]);
        ua.cmp(ub)
            .then_with(|| match (a.len() < TRAILER_LEN, b.len() < TRAILER_LEN) {
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (true, true) => Ordering::Equal,
                (false, false) => compare_internal(a, b),
            })
    }
}
