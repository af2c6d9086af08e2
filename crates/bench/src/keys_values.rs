//! What the benchmarks write and read: fixed-width keys that sort in
//! numeric order, values that compress to about half (db_bench's), and
//! the order in which each writer visits its keys.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// Writes key number `i` into `buf`: zero padding, then `i` as a big-endian
/// u64, so that keys are fixed-width and sort in numeric order. `buf` must
/// be at least 8 bytes and its padding must already be zero.
#[inline]
pub fn encode_key(buf: &mut [u8], i: u64) {
    let n = buf.len();
    buf[n - 8..].copy_from_slice(&i.to_be_bytes());
}

/// A fresh zeroed key buffer.
pub fn key_buf(key_bytes: usize) -> Vec<u8> {
    vec![0u8; key_bytes]
}

/// Pseudo-random values that compress to about half their size (as
/// db_bench's `RandomGenerator`): every 100-byte fragment is 50 random
/// printable bytes, then the same bytes again.
#[derive(Debug)]
pub struct ValueGen {
    data: Vec<u8>,
    len: usize,
}

impl ValueGen {
    /// A generator of `len`-byte values from `seed`.
    pub fn new(seed: u64, len: usize) -> ValueGen {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7661_6c75_6573);
        let total = (1usize << 20).max(len * 4);
        let mut data = Vec::with_capacity(total + 100);
        while data.len() < total {
            let piece: Vec<u8> = (0..50).map(|_| rng.gen_range(b' '..=b'~')).collect();
            data.extend_from_slice(&piece);
            data.extend_from_slice(&piece);
        }
        ValueGen { data, len }
    }

    /// The next value; `pos` is the caller's cursor (give each writer its own).
    #[inline]
    pub fn next(&self, pos: &mut usize) -> &[u8] {
        if *pos + self.len > self.data.len() {
            *pos = 0;
        }
        let v = &self.data[*pos..*pos + self.len];
        // Step by an odd amount so consecutive values differ in alignment.
        *pos += self.len.max(1) + 7;
        v
    }
}

/// One writer's keys.
pub enum KeyOrder {
    Range(u64, u64),
    Slice(Arc<Vec<u64>>, usize, usize),
    Random { rng: Box<StdRng>, n: u64, left: u64 },
}

impl Iterator for KeyOrder {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        match self {
            KeyOrder::Range(lo, hi) => (*lo < *hi).then(|| {
                *lo += 1;
                *lo - 1
            }),
            KeyOrder::Slice(v, lo, hi) => (*lo < *hi).then(|| {
                *lo += 1;
                v[*lo - 1]
            }),
            KeyOrder::Random { rng, n, left } => (*left > 0).then(|| {
                *left -= 1;
                rng.gen_range(0..*n)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numerically() {
        let mut a = key_buf(16);
        let mut b = key_buf(16);
        encode_key(&mut a, 255);
        encode_key(&mut b, 256);
        assert!(a < b);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn values_have_the_asked_length() {
        let g = ValueGen::new(1, 100);
        let mut pos = 0;
        for _ in 0..100_000 {
            assert_eq!(g.next(&mut pos).len(), 100);
        }
    }
}
