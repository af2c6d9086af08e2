//! Reads served from a node's engine: the same code answers a local
//! (stale) read and a read forwarded to the leader. Each read runs on one
//! engine snapshot, so a multi-key read sees one point in time. Expired
//! keys are absent (the engine hides them by its clock); values come with
//! their expiry.

use super::message::{ReadAnswer, ReadRequest};
use ballast_storage::{Db, Result};

/// The most keys one [`ReadRequest::Scan`] returns, whatever it asks for:
/// one page must fit in one frame.
pub const SCAN_LIMIT_MAX: u32 = 10_000;

/// Serves `req` from `db`.
pub fn execute(db: &Db, req: &ReadRequest) -> Result<ReadAnswer> {
    let view = db.snapshot();
    match req {
        ReadRequest::GetMany(keys) => {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(db.get_entry_at(&view, k)?.map(|(v, at)| (v.to_vec(), at)));
            }
            Ok(ReadAnswer::Values(out))
        }
        ReadRequest::Scan { start, limit } => {
            let limit = (*limit).min(SCAN_LIMIT_MAX) as usize;
            let mut keys = Vec::new();
            let mut next = None;
            for kv in db.scan_at(&view, start.as_slice()..)? {
                let (k, _) = kv?;
                if keys.len() == limit {
                    next = Some(k.to_vec());
                    break;
                }
                keys.push(k.to_vec());
            }
            Ok(ReadAnswer::Keys { keys, next })
        }
        ReadRequest::Count => {
            let mut n = 0u64;
            for kv in db.scan_at::<&[u8]>(&view, ..)? {
                kv?;
                n += 1;
            }
            Ok(ReadAnswer::Count(n))
        }
    }
}
