//! What the raft crate's integration tests share: entries to append, the
//! one polling helper ([`until`]), appending through openraft's API up to the
//! acknowledgement, and the gated file system ([`gated_fs`]). Each test
//! binary uses a part of it.
#![allow(dead_code)]

pub mod gated_fs;
mod poll;

pub use poll::until;

use ballast_raft::typ::{log_id, EntryPayload};
use ballast_raft::{Entry, LogStore, Proposal, Request, TypeConfig};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use std::ops::RangeInclusive;
use std::time::Duration;

/// A put of `value_bytes` bytes to `key-{index:04}`, proposed at 1 000 ms,
/// at log id `(term, node 1, index)`. Its encoded size depends on neither
/// the index (below 10 000) nor the term, so record offsets line up
/// between entries and their replacements.
pub fn put_entry(term: u64, index: u64, value_bytes: usize) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(Proposal::new(
            1_000,
            Request::Put {
                key: format!("key-{index:04}").into_bytes(),
                value: vec![b'v'; value_bytes],
                expire_at_ms: None,
            },
        )),
    }
}

/// [`put_entry`] for every index of `range`.
pub fn put_entries(term: u64, range: RangeInclusive<u64>, value_bytes: usize) -> Vec<Entry> {
    range.map(|i| put_entry(term, i, value_bytes)).collect()
}

/// Appends through openraft's API and waits up to `within` for the
/// `IOFlushed` callback, which must report the entries durable.
pub async fn append_acked(store: &mut LogStore, es: Vec<Entry>, within: Duration) {
    let (tx, rx) = TypeConfig::oneshot();
    store
        .append(es, IOFlushed::signal(tx))
        .await
        .expect("written");
    tokio::time::timeout(within, rx)
        .await
        .unwrap_or_else(|_| panic!("not acknowledged within {within:?}"))
        .expect("callback")
        .expect("durable");
}
