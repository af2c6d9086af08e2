//! The WAL sync policy: when an appended group reaches the OS and the disk.
//!
//! * Durable (`FsyncPolicy::Group`): the leader writes and fsyncs every
//!   group before acknowledging it (on the blocking pool when writers wait,
//!   inline when it is alone).
//! * Balanced (`FsyncPolicy::Interval`): every group is written to the OS at
//!   once; [`wal_timer`] fsyncs every `sync_interval_ms`.
//! * Throughput (`FsyncPolicy::WriteBack`): groups collect in the write-back
//!   buffer until it holds `buffer_bytes`; [`wal_timer`] hands it to the OS
//!   every `flush_interval_ms`.
//!
//! [`Engine::sync_wal`] makes everything durable now whatever the policy
//! (`Db::sync`, close). A failed write or fsync stops writes for good.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fs::{self, IoOp};
use crate::lock::lock;
use crate::options::{Background, FsyncPolicy};
use crate::stats::add;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Engine {
    /// Appends one group's record and, as the policy says, writes it to the
    /// OS and fsyncs it before the group is acknowledged.
    pub(crate) async fn append_to_wal(&self, payload: &[u8]) -> Result<()> {
        let policy = self.opts.fsync;
        {
            let mut g = lock(&self.wal);
            let wal = g.as_mut().ok_or(Error::Closed)?;
            wal.add_record(payload)
                .map_err(|e| self.stop_on("write", e))?;
            let write_now = match policy {
                FsyncPolicy::Group | FsyncPolicy::Interval { .. } => true,
                FsyncPolicy::WriteBack { buffer_bytes, .. } => {
                    wal.pending_bytes() as u64 >= buffer_bytes
                }
            };
            if write_now {
                wal.write_pending().map_err(|e| self.stop_on("write", e))?;
            }
        }
        add(&self.stats.wal_bytes, payload.len() as u64);
        if policy == FsyncPolicy::Group
            && crate::planted::active(crate::planted::PlantedBug::AckBeforeGroupFsync)
        {
            // The bug: acknowledge now, fsync later in the background.
            if let Some(engine) = self.me.upgrade() {
                tokio::spawn(async move {
                    fs::pause(&*engine.fs, IoOp::Sync).await;
                    if let Some(w) = lock(&engine.wal).as_mut() {
                        let _ = w.sync();
                    }
                });
            }
            return Ok(());
        }
        if policy == FsyncPolicy::Group {
            fs::pause(&*self.fs, IoOp::Sync).await;
            let contended = !lock(&self.queue).waiters.is_empty();
            let synced = match (self.opts.background, self.me.upgrade()) {
                // With writers waiting, fsync on the blocking pool so that
                // both async workers keep running them (and they queue up
                // for the next group) while the disk works. A lone writer
                // fsyncs inline: the thread hand-off would only add latency.
                (Background::Thread, Some(engine)) if contended => {
                    tokio::task::spawn_blocking(move || engine.sync_wal_now())
                        .await
                        .unwrap_or_else(|e| {
                            Err(Error::WritesStopped {
                                op: "fsync",
                                reason: format!("the fsync task failed: {e}"),
                            })
                        })
                }
                _ => self.sync_wal_now(),
            };
            synced.map_err(|e| self.stop_on("fsync", e))?;
        }
        Ok(())
    }

    fn sync_wal_now(&self) -> Result<()> {
        let mut g = lock(&self.wal);
        g.as_mut().ok_or(Error::Closed)?.sync()
    }

    /// Writes and fsyncs everything appended so far (no-op without a WAL).
    pub(crate) async fn sync_wal(&self) -> Result<()> {
        if !self.opts.wal {
            return Ok(());
        }
        fs::pause(&*self.fs, IoOp::Sync).await;
        let mut g = lock(&self.wal);
        let Some(wal) = g.as_mut() else {
            return Ok(());
        };
        wal.write_pending().map_err(|e| self.stop_on("write", e))?;
        wal.sync().map_err(|e| self.stop_on("fsync", e))?;
        Ok(())
    }
}

/// Balanced: fsync the WAL every `sync_interval_ms`. Throughput: hand the
/// write-back buffer to the OS every `flush_interval_ms`.
pub(crate) async fn wal_timer(engine: Arc<Engine>) {
    let interval_ms = match engine.opts.fsync {
        FsyncPolicy::Group => return,
        FsyncPolicy::Interval { sync_interval_ms } => sync_interval_ms,
        FsyncPolicy::WriteBack {
            flush_interval_ms, ..
        } => flush_interval_ms,
    };
    let period = std::time::Duration::from_millis(interval_ms);
    loop {
        tokio::select! {
            // Fixed polling order: an unbiased select! draws from tokio's
            // runtime RNG, which only `--cfg tokio_unstable` can seed.
            biased;
            _ = tokio::time::sleep(period) => {}
            _ = engine.timer_wake.notified() => {}
        }
        if engine.shutdown.load(Ordering::SeqCst) || engine.stopped_error().is_some() {
            return;
        }
        match engine.opts.fsync {
            FsyncPolicy::Interval { .. } => {
                fs::pause(&*engine.fs, IoOp::Sync).await;
                let mut g = lock(&engine.wal);
                if let Some(w) = g.as_mut() {
                    if !w.is_synced()
                        && !crate::planted::active(crate::planted::PlantedBug::SkipIntervalSync)
                    {
                        if let Err(e) = w.sync() {
                            engine.stop_writes("fsync", &e);
                        }
                    }
                }
            }
            FsyncPolicy::WriteBack { .. } => {
                if crate::planted::active(crate::planted::PlantedBug::SkipWriteBackTimer) {
                    continue;
                }
                let mut g = lock(&engine.wal);
                if let Some(w) = g.as_mut() {
                    if let Err(e) = w.write_pending() {
                        engine.stop_writes("write", &e);
                    }
                }
            }
            FsyncPolicy::Group => return,
        }
    }
}
