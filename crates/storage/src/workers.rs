//! The background workers: flush, compaction and (balanced and throughput
//! presets) the WAL timer, as tokio tasks or as threads with their own
//! runtime (`Options::background`), started at open and awaited at close.

use crate::compaction;
use crate::engine::{Engine, WorkerHandle};
use crate::flush;
use crate::lock::lock;
use crate::options::{Background, FsyncPolicy};
use crate::wal_sync::wal_timer;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::oneshot;

impl Engine {
    /// Starts the flush and compaction workers and, unless every group is
    /// fsynced as it commits, the WAL timer.
    pub(crate) fn start_workers(self: &Arc<Self>) {
        let mut handles = lock(&self.workers);
        let spawn =
            |name: &'static str,
             fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
                match self.opts.background {
                    Background::Tasks => WorkerHandle::Task(tokio::spawn(fut)),
                    Background::Thread => {
                        let (done_tx, done_rx) = oneshot::channel();
                        let h = std::thread::Builder::new().name(name.to_string()).spawn(move || {
                        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                            Ok(rt) => rt.block_on(fut),
                            Err(e) => tracing::error!(error = %e, "could not start a background runtime"),
                        }
                        let _ = done_tx.send(());
                    });
                        match h {
                            Ok(_detached) => WorkerHandle::Thread(done_rx),
                            Err(e) => {
                                tracing::error!(error = %e, "could not start a background thread; using a task");
                                WorkerHandle::Task(tokio::spawn(async {}))
                            }
                        }
                    }
                }
            };
        handles.push(spawn(
            "ballast-flush",
            Box::pin(flush::flush_worker(self.clone())),
        ));
        handles.push(spawn(
            "ballast-compact",
            Box::pin(compaction::compaction_worker(self.clone())),
        ));
        if self.opts.wal && self.opts.fsync != FsyncPolicy::Group {
            handles.push(spawn(
                "ballast-wal-timer",
                Box::pin(wal_timer(self.clone())),
            ));
        }
    }

    /// Wakes every worker and every writer waiting for room.
    pub(crate) fn wake_workers(&self) {
        self.flush_wanted.notify_one();
        self.compaction_wanted.notify_one();
        self.timer_wake.notify_one();
        self.state_changed.notify_waiters();
    }

    /// Tells the workers to stop and waits until they have.
    pub(crate) async fn stop_workers(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.wake_workers();
        let handles: Vec<WorkerHandle> = std::mem::take(&mut *lock(&self.workers));
        for h in handles {
            match h {
                WorkerHandle::Task(t) => {
                    let _ = t.await;
                }
                WorkerHandle::Thread(done) => {
                    let _ = done.await;
                }
            }
        }
    }
}
