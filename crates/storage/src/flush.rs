//! Memtable flush: the oldest frozen memtable becomes an L0 SSTable, the
//! manifest records it, and the WAL segments it covered are deleted. Each
//! flush runs in a `flush` span recording its size in and out and its
//! duration.

use crate::compaction::{in_span_recording_output, write_tables, EntryFilter, TablesWritten};
use crate::engine::{Engine, Memtables};
use crate::error::Result;
use crate::lock::lock;
use crate::memtable::MemTable;
use crate::stats::add;
use crate::version::VersionEdit;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Flushes frozen memtables whenever woken, oldest first.
pub(crate) async fn flush_worker(engine: Arc<Engine>) {
    loop {
        if engine.shutdown.load(Ordering::SeqCst) {
            return;
        }
        while !engine.shutdown.load(Ordering::SeqCst) && engine.stopped_error().is_none() {
            if lock(&engine.writer_view).imms.is_empty() {
                break;
            }
            if let Err(e) = flush_oldest(&engine).await {
                engine.stop_writes("memtable flush", &e);
                break;
            }
        }
        engine.flush_wanted.notified().await;
    }
}

/// Flushes the oldest frozen memtable to an L0 table.
pub(crate) async fn flush_oldest(engine: &Arc<Engine>) -> Result<()> {
    // A snapshot install holds this lock to replace the memtables, so a
    // flush never records a memtable the install already dropped.
    let _flushing = engine.flush_lock.lock().await;
    let (imm, next_segment) = {
        let st = lock(&engine.writer_view);
        let Some(imm) = st.imms.front().cloned() else {
            return Ok(());
        };
        let next = st
            .imms
            .get(1)
            .map_or(st.mem.first_wal_segment, |m| m.first_wal_segment);
        (imm, next)
    };
    let span = tracing::debug_span!(
        "flush",
        entries_in = imm.len(),
        bytes_in = imm.approx_bytes(),
        files_out = tracing::field::Empty,
        bytes_out = tracing::field::Empty,
        duration_us = tracing::field::Empty,
    );
    in_span_recording_output(span, write_and_record(engine, imm, next_segment)).await
}

/// Writes `imm` to L0 tables, records them (and the WAL segments no longer
/// needed, from `next_segment` on) in the manifest, and deletes those
/// segments; returns the tables and bytes written.
async fn write_and_record(
    engine: &Arc<Engine>,
    imm: Arc<MemTable>,
    next_segment: u64,
) -> Result<TablesWritten> {
    if crate::planted::active(crate::planted::PlantedBug::TruncateWalBeforeFlushDurable)
        && engine.opts.wal
    {
        if let Some(w) = lock(&engine.wal).as_mut() {
            w.remove_segments_below(next_segment)?;
        }
    }
    let mut added = Vec::new();
    // The flushed range deletes and this memtable's own: a floor in a
    // later memtable is not durable with this flush (in replicated mode
    // its log entry may not be), so the entries it covers stay until then.
    let version_floors = lock(&engine.writer_view).version.floors.clone();
    let floors = crate::range_floor::merge(&version_floors, &imm.range_floors());
    if !imm.is_empty() {
        let mut filter = EntryFilter::new(engine.oldest_snapshot(), engine.expiry_drop_ms(), None)
            .with_floors(engine, floors.clone());
        let mut iter = imm.iter();
        let outputs = write_tables(engine, 0, &mut iter, &mut filter, None).await?;
        for f in &outputs {
            add(&engine.stats.flush_bytes, f.desc.size);
        }
        added = outputs;
    }
    let files_out = added.len() as u64;
    let bytes_out: u64 = added.iter().map(|f| f.desc.size).sum();
    if let Some(barrier) = &engine.opts.flush_barrier {
        barrier
            .before_flush()
            .await
            .map_err(|e| crate::error::Error::io(&engine.dir, e))?;
    }
    let edit = VersionEdit {
        added: added.iter().map(|f| f.desc.clone()).collect(),
        flushed_seq: (imm.max_seq() > 0).then(|| imm.max_seq()),
        wal_min_segment: engine.opts.wal.then_some(next_segment),
        applied_marker: imm.applied_marker(),
        // With its tables and applied marker, in one edit: in replicated
        // mode a floor is durable only with a flush covering every entry
        // up to it (FORMAT.md, "Range deletes").
        range_floors: Some(floors),
        ..VersionEdit::default()
    };
    engine
        .log_and_apply(edit, added, Memtables::PopFlushed)
        .await?;
    add(&engine.stats.flushes, 1);
    if engine.opts.wal {
        let mut g = lock(&engine.wal);
        if let Some(w) = g.as_mut() {
            w.remove_segments_below(next_segment)?;
        }
    }
    engine.compaction_wanted.notify_one();
    Ok(TablesWritten {
        files: files_out,
        bytes: bytes_out,
    })
}
