//! The table's bloom filter over user keys, and the stable 64-bit hash it
//! is built on. Both are part of the on-disk format (FORMAT-table.md,
//! "Filter block") and must never change for format version 1.

use bytes::Bytes;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The filter hash: FNV-1a 64 over the bytes, then the murmur3 `fmix64`
/// finalizer so that every output bit depends on every input bit.
/// On-disk format: this function must never change.
#[inline]
pub fn bloom_hash(key: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    fmix64(h)
}

/// The murmur3 64-bit finalizer.
#[inline]
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Number of probes for `bits_per_key`: round(bits_per_key * ln 2) clamped
/// to 1..=30.
pub fn probes_for(bits_per_key: u32) -> u8 {
    let k = (f64::from(bits_per_key) * std::f64::consts::LN_2).round();
    k.clamp(1.0, 30.0) as u8
}

/// The bit positions probed for `hash` in a filter of `bits` bits: double
/// hashing `a, a + d, a + 2d, ...` (wrapping u64) with `a = hash` and
/// `d = hash.rotate_left(32) | 1`, each taken modulo `bits`.
#[inline]
fn probe(hash: u64, bits: u64, k: u8, mut f: impl FnMut(u64) -> bool) -> bool {
    let mut a = hash;
    let d = hash.rotate_left(32) | 1;
    for _ in 0..k {
        if !f(a % bits) {
            return false;
        }
        a = a.wrapping_add(d);
    }
    true
}

/// Collects key hashes and writes the filter block.
#[derive(Debug)]
pub struct BloomBuilder {
    bits_per_key: u32,
    hashes: Vec<u64>,
}

impl BloomBuilder {
    /// A builder for `bits_per_key` bits per distinct key (must be > 0).
    pub fn new(bits_per_key: u32) -> Self {
        BloomBuilder {
            bits_per_key: bits_per_key.max(1),
            hashes: Vec::new(),
        }
    }

    /// Adds a user key (callers skip repeats of the previous key).
    pub fn add(&mut self, user_key: &[u8]) {
        self.hashes.push(bloom_hash(user_key));
    }

    /// The filter block contents: the bit array (`max(64, n * bits_per_key)`
    /// bits rounded up to whole bytes; bit `i` is bit `i % 8` of byte
    /// `i / 8`) followed by one byte holding the probe count.
    pub fn finish(&self) -> Vec<u8> {
        let n = self.hashes.len() as u64;
        let bits = n.saturating_mul(u64::from(self.bits_per_key)).max(64);
        let bytes = bits.div_ceil(8);
        let bits = bytes * 8;
        // The bit array is at most 64 bits * keys; a table never holds
        // more keys than fit in memory, so the length fits usize.
        let mut out = vec![0u8; bytes as usize + 1];
        let k = probes_for(self.bits_per_key);
        for &h in &self.hashes {
            probe(h, bits, k, |bit| {
                out[(bit / 8) as usize] |= 1 << (bit % 8);
                true
            });
        }
        out[bytes as usize] = k;
        out
    }
}

/// A bloom filter read back from a filter block.
#[derive(Debug, Clone)]
pub struct BloomFilter {
    bits: Bytes,
    k: u8,
}

impl BloomFilter {
    /// Wraps filter block contents; `None` if they are malformed (empty
    /// bit array or a probe count outside 1..=30).
    pub fn new(block: Bytes) -> Option<BloomFilter> {
        let (&k, bits) = block.split_last()?;
        if bits.is_empty() || !(1..=30).contains(&k) {
            return None;
        }
        let len = bits.len();
        Some(BloomFilter {
            bits: block.slice(..len),
            k,
        })
    }

    /// False if `user_key` is certainly absent from the table.
    #[inline]
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.may_contain_hash(bloom_hash(user_key))
    }

    /// [`BloomFilter::may_contain`] for a precomputed [`bloom_hash`].
    #[inline]
    pub fn may_contain_hash(&self, hash: u64) -> bool {
        let bits = self.bits.len() as u64 * 8;
        probe(hash, bits, self.k, |bit| {
            self.bits
                .get((bit / 8) as usize)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        })
    }

    /// Bytes of the bit array.
    pub fn len_bytes(&self) -> usize {
        self.bits.len()
    }
}
