//! Keys, values and formatting helpers.

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

/// A latency histogram in nanoseconds (1 ns to 1 hour, 3 significant figures).
pub fn histogram() -> Histogram<u64> {
    // Invariant: constant, valid bounds.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// `n` with thousands separators.
pub fn commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in nanoseconds, in the unit that reads best.
pub fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e6 {
        format!("{:.1} us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A byte count in MiB or GiB.
pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

/// Parses a count: `1000000`, `1,000,000`, `1_000_000`, `1M`, `20k`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let t: String = s.chars().filter(|c| *c != ',' && *c != '_').collect();
    let (digits, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000),
        Some('g' | 'G') => (&t[..t.len() - 1], 1_000_000_000),
        _ => (&t[..], 1),
    };
    digits
        .parse::<u64>()
        .map(|n| n * mult)
        .map_err(|e| format!("`{s}` is not a count: {e}"))
}

/// Parses a byte size: a count, or with a `KiB`/`MiB`/`GiB` suffix.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    for (suffix, mult) in [("kib", 1u64 << 10), ("mib", 1 << 20), ("gib", 1 << 30)] {
        if let Some(d) = lower.strip_suffix(suffix) {
            return parse_count(d.trim()).map(|n| n * mult);
        }
    }
    parse_count(s)
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
    fn counts_and_sizes_parse() {
        assert_eq!(parse_count("1,000,000"), Ok(1_000_000));
        assert_eq!(parse_count("20k"), Ok(20_000));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert!(parse_count("x").is_err());
        assert_eq!(commas(1234567), "1,234,567");
        assert_eq!(commas(123), "123");
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
