//! Concurrent RESP clients whose every request goes into one history.
//!
//! Each client holds one connection to one node (any node: followers
//! forward writes and linearizable reads) and runs GET, SET, DEL, INCR,
//! CAS and MSET on a bounded key set. Keys come in generations: a slot's
//! key is renamed after `ops_per_key` operations, so each key's history
//! stays small enough for the linearizability search (see
//! `ballast-history`'s costs) however long the run.
//!
//! How a reply is recorded:
//! - a reply: `Ok` with what it said (INCR's "not an integer" error is a
//!   reply too: it saw a value that is not a number);
//! - `TIMEOUT`, `UNKNOWN`, or a broken connection or client timeout after
//!   the request was sent: `Unknown` for a write (it may still happen);
//! - any other error code (`TRYAGAIN`, `UNAVAILABLE`, `SHUTDOWN`, `ERR`):
//!   `Failed`, nothing happened, as the README's error table promises;
//! - a read that got no value: `Failed` (it observed nothing).
//!
//! Clients pace themselves with a short random pause between requests, a
//! workload shape (a few hundred requests a second in all), not a
//! synchronisation.

use ballast_history::{History, Op, Outcome, Ret};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The client id of the final reads after the faults.
pub use ballast_history::judge::FINAL_READER;

/// The workload's shape.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Concurrent clients.
    pub clients: usize,
    /// Key slots in use at once.
    pub slots: usize,
    /// Operations on one key before its slot moves to a new key.
    pub ops_per_key: u64,
    /// Pause between a client's requests, milliseconds, drawn uniformly.
    pub pause_ms: (u64, u64),
    /// A client's wait for a reply before it counts the request unknown.
    pub reply_timeout: Duration,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            clients: 6,
            slots: 8,
            ops_per_key: 150,
            pause_ms: (2, 12),
            reply_timeout: Duration::from_secs(4),
        }
    }
}

/// Shared by the clients: the history, the clock, the stop flag.
pub struct Recorder {
    history: Mutex<History>,
    started: Instant,
    stop: AtomicBool,
    slot_ops: Vec<AtomicU64>,
    shape: Shape,
}

impl Recorder {
    /// A recorder whose times count from now.
    pub fn new(shape: Shape) -> Arc<Recorder> {
        Arc::new(Recorder {
            history: Mutex::new(History::new()),
            started: Instant::now(),
            stop: AtomicBool::new(false),
            slot_ops: (0..shape.slots).map(|_| AtomicU64::new(0)).collect(),
            shape,
        })
    }

    /// Nanoseconds since the recorder started.
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// When the recorder started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Asks the clients to stop after their current request.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Operations recorded so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True before the first request.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// A copy of the history so far.
    pub fn history(&self) -> History {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key_for(&self, slot: usize) -> String {
        let n = self.slot_ops[slot].fetch_add(1, Ordering::Relaxed);
        format!("s{slot}-g{}", n / self.shape.ops_per_key)
    }

    /// Every key the history names.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self
            .lock()
            .operations()
            .iter()
            .map(|o| o.key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Starts `shape.clients` client threads against `addrs`; they run until
/// [`Recorder::stop`].
pub fn start(
    addrs: Vec<String>,
    rec: &Arc<Recorder>,
    seed: u64,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..rec.shape.clients)
        .map(|c| {
            let addrs = addrs.clone();
            let rec = rec.clone();
            std::thread::spawn(move || client(c as u64, &addrs, &rec, seed))
        })
        .collect()
}

fn connect(addr: &str, timeout: Duration) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let conn = client.get_connection_with_timeout(timeout).ok()?;
    conn.set_read_timeout(Some(timeout)).ok()?;
    conn.set_write_timeout(Some(timeout)).ok()?;
    Some(conn)
}

/// What a write's error means for the history.
fn write_error(e: &redis::RedisError) -> Outcome {
    match e.code() {
        Some("TIMEOUT") | Some("UNKNOWN") => Outcome::Unknown,
        Some(_) => Outcome::Failed,
        // No error code: the connection broke or the client timed out
        // after sending.
        None => Outcome::Unknown,
    }
}

fn client(c: u64, addrs: &[String], rec: &Recorder, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (c + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut node = rng.gen_range(0..addrs.len());
    let mut conn: Option<redis::Connection> = None;
    let mut seq = 0u64;
    let mut last_seen: Vec<Option<Vec<u8>>> = vec![None; rec.shape.slots];
    while !rec.stop.load(Ordering::SeqCst) {
        let pause = rng.gen_range(rec.shape.pause_ms.0..=rec.shape.pause_ms.1);
        std::thread::sleep(Duration::from_millis(pause));
        let Some(con) = conn.as_mut() else {
            node = (node + 1) % addrs.len();
            conn = connect(&addrs[node], Duration::from_millis(500));
            continue;
        };
        let slot = rng.gen_range(0..rec.shape.slots);
        seq += 1;
        let value = format!("c{c}-{seq}").into_bytes();
        let broke = match rng.gen_range(0..100) {
            0..=39 => {
                let key = rec.key_for(slot);
                let id = rec.lock().invoke(c, key.clone(), Op::Read, rec.now());
                let got: redis::RedisResult<Option<Vec<u8>>> =
                    redis::cmd("GET").arg(&key).query(con);
                let (outcome, broke) = match got {
                    Ok(v) => {
                        last_seen[slot] = v.clone();
                        (Outcome::Ok(Ret::Read(v)), false)
                    }
                    Err(e) => (Outcome::Failed, e.code().is_none()),
                };
                rec.lock().complete(id, outcome, rec.now());
                broke
            }
            40..=59 => {
                let key = rec.key_for(slot);
                let id = rec
                    .lock()
                    .invoke(c, key.clone(), Op::Write(value.clone()), rec.now());
                let got: redis::RedisResult<()> =
                    redis::cmd("SET").arg(&key).arg(&value).query(con);
                finish(
                    rec,
                    id,
                    got.map(|_| Ret::Written),
                    &mut last_seen[slot],
                    Some(value),
                )
            }
            60..=64 => {
                let key = rec.key_for(slot);
                let id = rec.lock().invoke(c, key.clone(), Op::Delete, rec.now());
                let got: redis::RedisResult<i64> = redis::cmd("DEL").arg(&key).query(con);
                finish(
                    rec,
                    id,
                    got.map(|n| Ret::Deleted(n > 0)),
                    &mut last_seen[slot],
                    None,
                )
            }
            65..=79 => {
                let key = rec.key_for(slot);
                let id = rec.lock().invoke(c, key.clone(), Op::Incr(1), rec.now());
                let got: redis::RedisResult<i64> = redis::cmd("INCR").arg(&key).query(con);
                let got = match got {
                    Err(e)
                        if e.code() == Some("ERR") && e.to_string().contains("not an integer") =>
                    {
                        Ok(Ret::Incr(None))
                    }
                    other => other.map(|n| Ret::Incr(Some(n))),
                };
                let mut ignore = None;
                finish(rec, id, got, &mut ignore, None)
            }
            80..=91 => {
                let key = rec.key_for(slot);
                let expected = last_seen[slot].clone().unwrap_or_else(|| b"none".to_vec());
                let op = Op::Cas {
                    expected: expected.clone(),
                    new: value.clone(),
                };
                let id = rec.lock().invoke(c, key.clone(), op, rec.now());
                let got: redis::RedisResult<i64> = redis::cmd("CAS")
                    .arg(&key)
                    .arg(&expected)
                    .arg(&value)
                    .query(con);
                let mut ignore = None;
                finish(rec, id, got.map(|n| Ret::Cas(n == 1)), &mut ignore, None)
            }
            _ => {
                // MSET of this slot's key and the next slot's: one write
                // per key in the history, same interval.
                let other = (slot + 1) % rec.shape.slots;
                let (k1, k2) = (rec.key_for(slot), rec.key_for(other));
                let v2 = format!("c{c}-{seq}b").into_bytes();
                let now = rec.now();
                let (id1, id2) = {
                    let mut h = rec.lock();
                    (
                        h.invoke(c, k1.clone(), Op::Write(value.clone()), now),
                        h.invoke(c, k2.clone(), Op::Write(v2.clone()), now),
                    )
                };
                let got: redis::RedisResult<()> = redis::cmd("MSET")
                    .arg(&k1)
                    .arg(&value)
                    .arg(&k2)
                    .arg(&v2)
                    .query(con);
                let outcome = match &got {
                    Ok(()) => Outcome::Ok(Ret::Written),
                    Err(e) => write_error(e),
                };
                let done = rec.now();
                let mut h = rec.lock();
                h.complete(id1, outcome.clone(), done);
                h.complete(id2, outcome, done);
                matches!(&got, Err(e) if e.code().is_none())
            }
        };
        if broke {
            conn = None;
        }
    }
}

/// Records a write's completion; true when the connection broke.
fn finish(
    rec: &Recorder,
    id: usize,
    got: redis::RedisResult<Ret>,
    seen: &mut Option<Vec<u8>>,
    wrote: Option<Vec<u8>>,
) -> bool {
    let (outcome, broke) = match got {
        Ok(r) => {
            if matches!(r, Ret::Written | Ret::Deleted(_)) {
                *seen = wrote;
            }
            (Outcome::Ok(r), false)
        }
        Err(e) => (write_error(&e), e.code().is_none()),
    };
    rec.lock().complete(id, outcome, rec.now());
    broke
}

/// After the faults: one linearizable GET of every key through `addr`,
/// recorded like any other read, so a lost acknowledged write shows as a
/// read the checker cannot place. Returns how many keys could not be read.
pub fn final_reads(addr: &str, rec: &Recorder) -> usize {
    let mut unread = 0;
    let Some(mut con) = connect(addr, Duration::from_secs(2)) else {
        return rec.keys().len();
    };
    for key in rec.keys() {
        let id = rec
            .lock()
            .invoke(u64::MAX, key.clone(), Op::Read, rec.now());
        let got: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("GET").arg(&key).query(&mut con);
        let outcome = match got {
            Ok(v) => Outcome::Ok(Ret::Read(v)),
            Err(_) => {
                unread += 1;
                Outcome::Failed
            }
        };
        rec.lock().complete(id, outcome, rec.now());
    }
    unread
}
