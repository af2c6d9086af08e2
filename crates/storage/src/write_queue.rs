//! The queue of writers waiting for the group-commit leader, and the rules
//! that form a group from it (pure: no I/O, no waiting; `group_commit.rs`
//! drives it).
//!
//! Limits: at most `Options::write_queue_max` writers wait (a writer that
//! finds the queue full waits for room); a group takes at most
//! `group_commit_batches_max` batches and `group_commit_bytes_max` encoded
//! bytes, and never takes an exclusive waiter (a snapshot install) along
//! with others.

use crate::batch::WriteBatch;
use crate::error::Result;
use std::collections::VecDeque;
use tokio::sync::oneshot;

/// What the leader sends a waiting writer.
pub(crate) enum LeaderMsg {
    /// Your batch was committed in my group, with this outcome.
    Done(Result<()>),
    /// Leadership is yours: your batch is at the front of the queue.
    Lead,
}

/// A writer waiting in the queue.
pub(crate) struct Waiter {
    pub batch: WriteBatch,
    pub rotate: bool,
    /// Waits to lead alone (a snapshot install): never taken into another
    /// leader's group, and no group forms behind it while it leads.
    pub exclusive: bool,
    pub tx: Option<oneshot::Sender<LeaderMsg>>,
}

/// The writers waiting for the leader, in arrival order.
#[derive(Default)]
pub(crate) struct WriteQueue {
    pub leader_active: bool,
    pub waiters: VecDeque<Waiter>,
}

/// Where a writer stands after [`WriteQueue::enqueue`].
pub(crate) enum Turn {
    /// Nobody led or waited: this writer leads now, with its own batch.
    Lead(WriteBatch),
    /// Queued: the outcome (or leadership) comes on this channel.
    Wait(oneshot::Receiver<LeaderMsg>),
}

/// The batches one leader commits together, with whom to answer.
#[derive(Default)]
pub(crate) struct Group {
    pub batches: Vec<WriteBatch>,
    /// One per batch, in the same order; `None` for the leader's own.
    pub txs: Vec<Option<oneshot::Sender<LeaderMsg>>>,
    /// Some writer asked for the memtable to be frozen after the group.
    pub rotate: bool,
    /// Encoded bytes of `batches`.
    pub bytes: u64,
}

impl Group {
    fn push(&mut self, batch: WriteBatch, rotate: bool, tx: Option<oneshot::Sender<LeaderMsg>>) {
        self.bytes += batch.encoded_len() as u64;
        self.rotate |= rotate;
        self.batches.push(batch);
        self.txs.push(tx);
    }
}

impl WriteQueue {
    /// Takes leadership if nobody leads or waits; otherwise queues the
    /// batch if fewer than `waiters_max` writers wait; otherwise gives the
    /// batch back (`Err`): the queue is full.
    pub(crate) fn enqueue(
        &mut self,
        batch: WriteBatch,
        rotate: bool,
        exclusive: bool,
        waiters_max: u64,
    ) -> std::result::Result<Turn, WriteBatch> {
        if !self.leader_active && self.waiters.is_empty() {
            self.leader_active = true;
            Ok(Turn::Lead(batch))
        } else if (self.waiters.len() as u64) < waiters_max {
            let (tx, rx) = oneshot::channel();
            self.waiters.push_back(Waiter {
                batch,
                rotate,
                exclusive,
                tx: Some(tx),
            });
            Ok(Turn::Wait(rx))
        } else {
            Err(batch)
        }
    }

    /// Forms the leader's group: `own` is the leader's batch when it did
    /// not queue, otherwise its batch is at the front of the queue (its
    /// channel already used for the hand-off). Then takes waiters in order
    /// while the group stays within `batches_max` and `bytes_max` and the
    /// next waiter is not exclusive.
    pub(crate) fn take_group(
        &mut self,
        own: Option<(WriteBatch, bool)>,
        batches_max: u64,
        bytes_max: u64,
    ) -> Group {
        let mut group = Group::default();
        match own {
            Some((b, r)) => group.push(b, r, None),
            None => {
                if let Some(w) = self.waiters.pop_front() {
                    group.push(w.batch, w.rotate, None);
                }
            }
        }
        while let Some(w) = self.waiters.front() {
            let len = w.batch.encoded_len() as u64;
            if w.exclusive
                || group.batches.len() as u64 >= batches_max
                || group.bytes + len > bytes_max
            {
                break;
            }
            let Some(w) = self.waiters.pop_front() else {
                break;
            };
            group.push(w.batch, w.rotate, w.tx);
        }
        group
    }
}
