//! When appended entries become durable, by preset ([`FsyncPolicy`]; see
//! [`super`]'s module docs): the durable preset's flusher (appends queued
//! while an fsync runs share the next one), the relaxed presets' timer, the
//! [`LogSyncer`] that makes the log durable on demand, and the task that
//! prepares the next WAL segment off the lock. Every one of them runs its
//! fsync without the store's lock.
//!
//! Limits: at most [`FLUSHES_QUEUED_MAX`] appends wait for the flusher.

use super::applied::Acked;
use super::state::{sync_ticket, Shared};
use crate::error::{Error, Result};
use crate::typ::TypeConfig;
use ballast_storage::fs::{self, IoOp};
use ballast_storage::wal::{prepare_segment, SyncTicket};
use ballast_storage::FsyncPolicy;
use openraft::storage::IOFlushed;
use std::fmt::{self, Debug};
use std::io;
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// An append waiting for its fsync: the sync to run (`None` if the bytes
/// were durable already), whom to tell, and what to record once it is
/// durable (the truncation epoch it was made in and its last index).
pub(super) type Flush = (Option<SyncTicket>, IOFlushed<TypeConfig>, Acked);

/// Appends waiting for the flusher at most; openraft waits beyond that.
pub(super) const FLUSHES_QUEUED_MAX: usize = 1024;

/// Makes the log durable on demand (clean shutdown, or before the state
/// machine makes applied state durable). Shares the log with its store.
#[derive(Clone)]
pub struct LogSyncer {
    pub(super) shared: Arc<Shared>,
}

impl Debug for LogSyncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSyncer")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl LogSyncer {
    /// Writes buffered entries to the OS and fsyncs them: every entry
    /// appended before this call is durable when it returns `Ok`.
    pub async fn sync(&self) -> Result<()> {
        self.shared.sync_now().await
    }
}

/// In replicated mode the engine flushes a memtable only once the log is
/// durable up to it: the node gives this syncer to the engine as its
/// [`ballast_storage::FlushBarrier`], so an applied marker that a flush
/// makes durable never covers entries a power loss could still take away
/// (which matters for the relaxed presets; under durable the entries are
/// fsynced before they are applied).
impl ballast_storage::FlushBarrier for LogSyncer {
    fn before_flush(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<()>> + Send + '_>> {
        Box::pin(async move {
            self.sync()
                .await
                .map_err(|e| io::Error::other(e.to_string()))
        })
    }
}

/// The relaxed policies' timer: balanced fsyncs unsynced entries, throughput
/// hands buffered ones to the OS, every `period`. Both go through the same
/// unlocked paths as appends (the fsync runs without the store's lock, so
/// readers and appends go on meanwhile). Ends when the store is dropped or
/// stops after a failure.
pub(super) async fn sync_timer(shared: std::sync::Weak<Shared>, period: std::time::Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match shared.lock() {
            Ok(inner) if inner.check().is_ok() => {}
            _ => return,
        }
        let r = if matches!(shared.policy, FsyncPolicy::WriteBack { .. }) {
            fs::pause(&*shared.fs, IoOp::Write).await;
            shared.write_to_os().await
        } else {
            shared.sync_now().await
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "Raft log: timed write or fsync failed; the log stopped");
            return;
        }
    }
}

/// Makes the next WAL segment ready while the current one fills (file
/// created under a temporary name, zero-filled if preallocating, fsynced),
/// without the store's lock, so that a roll inside an append only switches
/// files. Sleeps until a roll, truncation or drop wakes it; holds the store
/// only to look and to install. If it falls behind (segments smaller than
/// one append), the roll creates the segment itself, as before.
pub(super) async fn preparer(shared: std::sync::Weak<Shared>, wake: Arc<Notify>) {
    let mut tag = 0u64;
    loop {
        let (fs, dir, options, number) = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let Ok(inner) = shared.lock() else {
                return;
            };
            if inner.check().is_err() {
                return;
            }
            (
                shared.fs.clone(),
                shared.wal_dir.clone(),
                shared.wal_options,
                inner.wal.segment_to_prepare(),
            )
        };
        let Some(number) = number else {
            wake.notified().await;
            continue;
        };
        tag += 1;
        let prepared = match prepare_segment(&*fs, &dir, number, tag, &options).await {
            Ok(p) => p,
            Err(e) => {
                // The roll will create the segment itself and report the
                // failure where it matters; try again after the next one.
                tracing::warn!(error = %e, segment = number, "Raft log: preparing the next segment failed");
                wake.notified().await;
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else {
            prepared.discard(&*fs);
            return;
        };
        let refused = match shared.lock() {
            Ok(mut inner) => inner.wal.install_prepared(prepared).err(),
            Err(_) => return,
        };
        if let Some(p) = refused {
            p.discard(&*fs);
        }
    }
}

/// Fsyncs what appends wrote and calls their callbacks, in append order.
/// Everything queued when a sync starts shares it: the last ticket covers
/// the earlier ones (same segment file: written before it; an earlier one:
/// sealed with an fsync before the WAL wrote past it, the seal being part
/// of the last ticket's sync if it had not run yet). Ends when the store
/// is dropped; it holds the store only while it syncs, so that dropping
/// the store releases the directory at once.
pub(super) async fn flusher(shared: std::sync::Weak<Shared>, mut rx: mpsc::Receiver<Flush>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while let Ok(next) = rx.try_recv() {
            group.push(next);
        }
        let ticket = group.iter_mut().rev().find_map(|(t, _, _)| t.take());
        let outcome = match ticket {
            None => Ok(()),
            Some(ticket) => match shared.upgrade() {
                Some(shared) => sync_ticket(&shared, ticket).await,
                None => Err(Error::Stopped("the log store was closed".into())),
            },
        };
        for (_, callback, acked) in group {
            if let (Ok(()), Some((acks, epoch, index))) = (&outcome, acked) {
                acks.acknowledged(epoch, index);
            }
            callback.io_completed(
                outcome
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| io::Error::other(e.to_string())),
            );
        }
    }
}
