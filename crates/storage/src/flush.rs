//! Memtable flush: the oldest frozen memtable becomes an L0 SSTable, the
//! manifest records it, and the WAL segments it covered are deleted.

use crate::compaction::{write_tables, EntryFilter};
use crate::db::{lock, Inner};
use crate::error::Result;
use crate::manifest::{log_and_apply, Memtables};
use crate::stats::add;
use crate::version::VersionEdit;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Flushes frozen memtables whenever woken, oldest first.
pub(crate) async fn flush_worker(inner: Arc<Inner>) {
    loop {
        if inner.shutdown.load(Ordering::SeqCst) {
            return;
        }
        while !inner.shutdown.load(Ordering::SeqCst) && inner.stopped_error().is_none() {
            if lock(&inner.state).imms.is_empty() {
                break;
            }
            if let Err(e) = flush_oldest(&inner).await {
                inner.stop_writes("memtable flush", &e);
                break;
            }
        }
        inner.flush_wanted.notified().await;
    }
}

/// Flushes the oldest frozen memtable to an L0 table.
pub(crate) async fn flush_oldest(inner: &Arc<Inner>) -> Result<()> {
    // A snapshot install holds this lock to replace the memtables, so a
    // flush never records a memtable the install already dropped.
    let _flushing = inner.flush_lock.lock().await;
    let (imm, next_segment) = {
        let st = lock(&inner.state);
        let Some(imm) = st.imms.front().cloned() else {
            return Ok(());
        };
        let next = st
            .imms
            .get(1)
            .map_or(st.mem.first_wal_segment, |m| m.first_wal_segment);
        (imm, next)
    };
    if crate::planted::active(crate::planted::PlantedBug::TruncateWalBeforeFlushDurable)
        && inner.opts.wal
    {
        if let Some(w) = lock(&inner.wal).as_mut() {
            w.remove_segments_below(next_segment)?;
        }
    }
    let mut added = Vec::new();
    if !imm.is_empty() {
        let mut filter = EntryFilter::new(inner.oldest_snapshot(), inner.expiry_drop_ms(), None);
        let mut iter = imm.iter();
        let outputs = write_tables(inner, 0, &mut iter, &mut filter, None).await?;
        for f in &outputs {
            add(&inner.stats.flush_bytes, f.desc.size);
        }
        added = outputs;
    }
    if let Some(barrier) = &inner.opts.flush_barrier {
        barrier
            .before_flush()
            .await
            .map_err(|e| crate::error::Error::io(&inner.dir, e))?;
    }
    let edit = VersionEdit {
        added: added.iter().map(|f| f.desc.clone()).collect(),
        flushed_seq: (imm.max_seq() > 0).then(|| imm.max_seq()),
        wal_min_segment: inner.opts.wal.then_some(next_segment),
        applied_marker: imm.applied_marker(),
        ..VersionEdit::default()
    };
    log_and_apply(inner, edit, added, Memtables::PopFlushed).await?;
    add(&inner.stats.flushes, 1);
    if inner.opts.wal {
        let mut g = lock(&inner.wal);
        if let Some(w) = g.as_mut() {
            w.remove_segments_below(next_segment)?;
        }
    }
    inner.compaction_wanted.notify_one();
    Ok(())
}
