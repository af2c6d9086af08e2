//! The hash of a replica's state ([`state_hash`]), so replicas can be
//! compared from outside.

use crate::error::Result;
use ballast_storage::Db;

/// A hash of a replica's state: every live key, its value and its expiry
/// (deadline), in key order, as of the engine's expiry horizon (the time
/// of the last applied entry), which is the same on every replica that
/// applied the same entries, whatever their clocks, flushes and
/// compactions. Replicas that applied the same log report the same hash;
/// compare them from outside through `/status`. Sha-256 over a canonical
/// encoding (per key: u32 key length, key, u32 value length, value, then
/// 0, or 1 and the u64 deadline; little-endian), streamed: memory stays
/// bounded by one key and value. Shown as its first 16 bytes in hex.
///
/// It reads the whole key space: a cost in proportion to the data, paid by
/// each call.
pub fn state_hash(db: &Db) -> Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for item in db.scan_with_expiry_as_of(db.expiry_horizon_ms())? {
        let (key, value, at) = item?;
        h.update((key.len() as u32).to_le_bytes());
        h.update(&key);
        h.update((value.len() as u32).to_le_bytes());
        h.update(&value);
        match at {
            None => h.update([0u8]),
            Some(at) => {
                h.update([1u8]);
                h.update(at.to_le_bytes());
            }
        }
    }
    let digest = h.finalize();
    Ok(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}
