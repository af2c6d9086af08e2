//! openraft's side of a log-store run: appends pipelined through
//! `RaftLogStorage::append` (each callback awaited by its own task),
//! votes, truncations after a conflict, commits (applied to the state
//! machine's engine in replicated mode), purges, and a truncation below the
//! applied index that the store must refuse.

use super::machine;
use super::shared::{Sh, OPS_PER_BOOT};
use ballast_raft::log_store::AppliedIndex;
use ballast_raft::typ::{log_id, Entry, EntryPayload, Proposal, Request, TypeConfig, Vote};
use ballast_raft::{Error, LogStore};
use ballast_storage::Db;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use rand::rngs::StdRng;
use rand::Rng;
use std::time::Duration;

use super::model::Slot;

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        // A value of some size, so that segments roll every few appends.
        payload: EntryPayload::Normal(Proposal::new(
            index,
            Request::Put {
                key: format!("k{index}").into_bytes(),
                value: vec![b'v'; 64 + (index as usize * 37) % 300],
                expire_at_ms: None,
            },
        )),
    }
}

/// The log id of index `i` as the model knows it.
fn model_log_id(sh: &Sh, i: u64) -> Option<ballast_raft::typ::LogId> {
    sh.borrow().model.log.get(&i).map(|s| log_id(s.term, 1, i))
}

/// The state machine's side of the workload.
pub(super) struct Machine<'a> {
    /// Replicated mode's engine.
    pub(super) db: Option<&'a Db>,
    /// The applied index the store refuses to truncate below.
    pub(super) applied: &'a AppliedIndex,
    /// The last applied index.
    pub(super) applied_to: u64,
    /// An acknowledged append survives this run's crashes.
    pub(super) acks_durable: bool,
    /// Throughput: acknowledgements are recorded with their time.
    pub(super) write_back: bool,
}

fn stopped(e: ballast_storage::Error) -> Error {
    Error::Stopped(format!("the state machine's engine failed: {e}"))
}

/// openraft's side: appends (callbacks awaited by their own tasks),
/// votes, truncations after a new term, commits, purges.
pub(super) async fn workload(
    store: &mut LogStore,
    machine: Machine<'_>,
    sh: &Sh,
    mut rng: StdRng,
    epoch: u32,
) -> Result<(), Error> {
    let Machine {
        db,
        applied,
        mut applied_to,
        acks_durable,
        write_back,
    } = machine;
    let mut term = {
        let s = sh.borrow();
        let last = s.model.log.values().next_back().map_or(0, |e| e.term);
        s.model.vote.unwrap_or(0).max(last).max(1)
    };
    for _ in 0..OPS_PER_BOOT {
        if rng.gen_bool(0.3) {
            tokio::time::sleep(Duration::from_micros(rng.gen_range(100..3_000))).await;
        }
        sh.borrow_mut().ops += 1;
        let roll = rng.gen_range(0..100);
        let (first, last) = {
            let s = sh.borrow();
            let last = s.model.log.keys().next_back().copied();
            (s.model.purged.unwrap_or(0), last)
        };
        if roll < 50 || last.is_none() {
            let at = sh.borrow().model.next_index();
            let n = rng.gen_range(1..=4u64);
            let es: Vec<Entry> = (at..at + n).map(|i| entry(term, i)).collect();
            {
                let mut s = sh.borrow_mut();
                for i in at..at + n {
                    s.model.log.insert(i, Slot { term, acked: false });
                }
                s.event(format!("append {at}..{} term {term}", at + n - 1));
            }
            let (tx, rx) = TypeConfig::oneshot();
            store
                .append(es, IOFlushed::signal(tx))
                .await
                .map_err(|e| Error::Stopped(e.to_string()))?;
            let sh = sh.clone();
            tokio::task::spawn_local(async move {
                let ok = matches!(rx.await, Ok(Ok(())));
                let mut s = sh.borrow_mut();
                if ok && acks_durable {
                    for i in at..at + n {
                        if let Some(slot) = s.model.log.get_mut(&i).filter(|e| e.term == term) {
                            slot.acked = true;
                        }
                    }
                }
                if ok && write_back {
                    let now = turmoil::sim_elapsed().unwrap_or_default();
                    for i in at..at + n {
                        s.acked_at.insert((i, term), now);
                    }
                }
                s.event(format!(
                    "append {at}..{} term {term} acked {ok}",
                    at + n - 1
                ));
            });
            continue;
        }
        let last = last.unwrap_or(0);
        match roll {
            50..=59 => {
                term += 1;
                sh.borrow_mut().model.voting = Some(term);
                store.save_vote_durably(&Vote::new(term, 1)).await?;
                let mut s = sh.borrow_mut();
                s.model.vote = Some(term);
                s.model.voting = None;
                s.event(format!("vote term {term} saved"));
            }
            60..=69 => {
                // A new leader's entries conflict after `k`.
                let lo = applied_to.max(first + 1);
                if lo > last {
                    continue;
                }
                let k = rng.gen_range(lo..=last);
                let Some(after) = model_log_id(sh, k) else {
                    continue;
                };
                {
                    let mut s = sh.borrow_mut();
                    let old = s
                        .model
                        .log
                        .range(k + 1..)
                        .map(|(&i, e)| (i, e.term))
                        .collect();
                    s.model.truncating = Some((k, old));
                }
                store.truncate_after_durably(Some(after)).await?;
                term += 1;
                let mut s = sh.borrow_mut();
                s.model.log.retain(|&i, _| i <= k);
                s.model.truncating = None;
                s.event(format!("truncated after {k}; term now {term}"));
            }
            70..=84 => {
                let c = rng.gen_range(applied_to.max(first)..=last);
                let Some(id) = model_log_id(sh, c) else {
                    continue;
                };
                // The log alone: only acknowledged (durable) entries are
                // committed. With the state machine, any entry this log
                // holds may be (a quorum of others made it durable).
                // (Throughput: acknowledged from memory counts.)
                let acked = {
                    let s = sh.borrow();
                    s.model
                        .log
                        .get(&c)
                        .is_some_and(|e| e.acked || s.acked_at.contains_key(&(c, e.term)))
                };
                if !acked && db.is_none() {
                    continue;
                }
                store.save_committed_log_id(Some(id)).await?;
                if let Some(db) = db {
                    for i in applied_to + 1..=c {
                        let term = sh.borrow().model.log.get(&i).map(|e| e.term);
                        let Some(term) = term else {
                            continue;
                        };
                        machine::apply(db, i, term).await.map_err(stopped)?;
                        sh.borrow_mut().applied.insert(i, term);
                    }
                }
                applied.set(c);
                applied_to = c;
                sh.borrow_mut().event(format!("committed and applied {c}"));
            }
            85..=94 => {
                // With the state machine, purge only what a flush made
                // durable there (the node purges below its snapshots).
                let mut upto = applied_to;
                if let Some(db) = db {
                    db.flush().await.map_err(stopped)?;
                    upto = machine::marker(db).await;
                    sh.borrow_mut().event(format!("engine flushed to {upto}"));
                }
                if upto <= first {
                    continue;
                }
                let p = rng.gen_range(first + 1..=upto);
                let Some(id) = model_log_id(sh, p) else {
                    continue;
                };
                sh.borrow_mut().model.purging = Some(p);
                store.purge_durably(id).await?;
                let mut s = sh.borrow_mut();
                s.model.purged = Some(p);
                s.model.purging = None;
                s.model.log.retain(|&i, _| i > p);
                s.event(format!("purged up to {p}"));
            }
            _ => {
                // A truncation below the applied index must be refused.
                if applied_to <= first + 1 {
                    continue;
                }
                let k = rng.gen_range(first + 1..applied_to);
                let Some(id) = model_log_id(sh, k) else {
                    continue;
                };
                match store.truncate_after_durably(Some(id)).await {
                    Err(Error::TruncateBelowApplied { .. }) => {
                        sh.borrow_mut().event(format!(
                            "truncation after {k} below applied {applied_to} refused"
                        ));
                        // The store stopped, as it must (after making what
                        // it acknowledged durable: the crash bound holds).
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                    Ok(()) => {
                        sh.borrow_mut().violation(format!(
                            "boot {epoch}: a truncation after {k}, below the applied index {applied_to}, was accepted"
                        ));
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}
