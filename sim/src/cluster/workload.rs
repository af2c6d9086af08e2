//! The client hosts: each sends GET, SET, DEL, INCR, CAS and MSET over RESP
//! to one node at a time (moving to another when its connection breaks),
//! and records every invocation and completion (ok, failed, unknown) with
//! simulated times in the shared history.

use super::node_host::{host_name, RESP_PORT, SMALL_VALUE_BYTES_MAX};
use super::resp::{Reply, RespClient};
use super::world::World;
use ballast_history::judge::{op_text, outcome_text};
use ballast_history::{Op, Outcome, Ret};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Key slots the clients share (each slot is a key, renamed every
/// `OPS_PER_KEY_GENERATION` operations).
pub const SLOTS: u32 = 6;
/// A client gives up on a reply after this long and counts the outcome
/// unknown; longer than the node's own deadline (`request_timeout_ms`
/// plus `leader_wait_ms`), so a node that answers is heard.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The password the nodes require.
pub const PASSWORD: &[u8] = b"simulated-password";
/// The time to live of the workload's expiring writes: longer than a run,
/// so without skew nothing expires, and shorter than the clock skews of
/// `ClusterFault::ClockSkew` (up to 300 s either way), so that a node
/// expiring keys by its own clock instead of the log's would drop keys
/// the others keep.
const TTL_MS: &[u8] = b"60000";

/// What a reply means for the history.
fn outcome_of(
    reply: &std::io::Result<Reply>,
    read_only: bool,
    ok: impl Fn(&Reply) -> Option<Ret>,
) -> (Outcome, bool) {
    match reply {
        Ok(Reply::Error(e)) => {
            let code = e.split_whitespace().next().unwrap_or("");
            // Node errors that leave a write's outcome open.
            if !read_only && matches!(code, "TIMEOUT" | "UNKNOWN") {
                (Outcome::Unknown, false)
            } else {
                (Outcome::Failed, false)
            }
        }
        Ok(r) => match ok(r) {
            Some(ret) => (Outcome::Ok(ret), false),
            // A reply of the wrong shape: the stream is out of step.
            None => (
                if read_only {
                    Outcome::Failed
                } else {
                    Outcome::Unknown
                },
                true,
            ),
        },
        // Broken connection or our timeout: a write may have happened.
        Err(_) => (
            if read_only {
                Outcome::Failed
            } else {
                Outcome::Unknown
            },
            true,
        ),
    }
}

async fn call(conn: &mut RespClient, args: &[&[u8]]) -> std::io::Result<Reply> {
    match tokio::time::timeout(CLIENT_TIMEOUT, conn.call(args)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// A connection to a node, and the boot of the node it was opened to.
struct Session {
    conn: RespClient,
    node: u64,
    boot: u64,
}

/// Liveness: a request sent after the heal to a node that has not
/// restarted since the connection opened must be answered (with a value
/// or an error) before the client's own timeout.
fn check_answered(
    world: &World,
    c: u64,
    s: &Session,
    invoked: std::time::Duration,
    r: &std::io::Result<Reply>,
) {
    let timed_out = matches!(r, Err(e) if e.kind() == std::io::ErrorKind::TimedOut);
    let after_heal = world.healed().is_some_and(|h| invoked >= h);
    if timed_out && after_heal && world.boot_of(s.node) == s.boot {
        world.0.borrow_mut().unanswered.push(format!(
            "client {c}: a request sent to n{} at {:.3}s got no answer within {} s",
            s.node,
            invoked.as_secs_f64(),
            CLIENT_TIMEOUT.as_secs()
        ));
    }
}

/// Connects to node `id` and authenticates.
async fn connect(world: &World, id: u64) -> Option<Session> {
    let boot = world.boot_of(id);
    let addr = format!("{}:{RESP_PORT}", host_name(id));
    let mut conn = tokio::time::timeout(Duration::from_secs(1), RespClient::connect(&addr))
        .await
        .ok()?
        .ok()?;
    match call(&mut conn, &[b"AUTH", PASSWORD]).await {
        Ok(Reply::Status(_)) => Some(Session {
            conn,
            node: id,
            boot,
        }),
        _ => None,
    }
}

/// Sends one command on `s`, checking that it is answered (see
/// [`check_answered`]).
async fn ask(world: &World, c: u64, s: &mut Session, args: &[&[u8]]) -> std::io::Result<Reply> {
    let invoked = super::world::now();
    let r = call(&mut s.conn, args).await;
    check_answered(world, c, s, invoked, &r);
    r
}

/// One client host's loop, until the driver stops the clients.
pub async fn client(c: u64, nodes: Vec<u64>, world: World, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (c + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut at = rng.gen_range(0..nodes.len());
    let mut conn: Option<Session> = None;
    let mut seq = 0u64;
    let mut last_seen: Vec<Option<Vec<u8>>> = vec![None; SLOTS as usize];
    world.0.borrow_mut().clients_running += 1;
    while !world.stopping() {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1..=15))).await;
        let Some(con) = conn.as_mut() else {
            at = (at + 1) % nodes.len();
            conn = connect(&world, nodes[at]).await;
            continue;
        };
        let slot = rng.gen_range(0..SLOTS);
        seq += 1;
        let mut value = format!("c{c}-{seq}").into_bytes();
        if rng.gen_range(0..20) == 0 {
            // Above one node's value limit (see `SMALL_LIMITS_NODE`).
            value.resize(SMALL_VALUE_BYTES_MAX as usize + 512, b'.');
        }
        let key = world.key_for(slot);
        let broke = match rng.gen_range(0..100) {
            0..=39 => {
                let id = world.invoke(c, key.clone(), Op::Read);
                let r = ask(&world, c, con, &[b"GET", &key]).await;
                let (o, broke) = outcome_of(&r, true, |r| match r {
                    Reply::Bulk(v) => Some(Ret::Read(v.clone())),
                    _ => None,
                });
                if let Outcome::Ok(Ret::Read(v)) = &o {
                    last_seen[slot as usize] = v.clone();
                }
                finish(&world, c, id, &key, &Op::Read, o);
                broke
            }
            40..=59 => {
                let op = Op::Write(value.clone());
                let id = world.invoke(c, key.clone(), op.clone());
                let r = ask(&world, c, con, &[b"SET", &key, &value]).await;
                let (o, broke) = outcome_of(&r, false, |r| {
                    matches!(r, Reply::Status(_)).then_some(Ret::Written)
                });
                finish(&world, c, id, &key, &op, o);
                broke
            }
            60..=64 => {
                let id = world.invoke(c, key.clone(), Op::Delete);
                let r = ask(&world, c, con, &[b"DEL", &key]).await;
                let (o, broke) = outcome_of(&r, false, |r| match r {
                    Reply::Int(n) => Some(Ret::Deleted(*n > 0)),
                    _ => None,
                });
                finish(&world, c, id, &key, &Op::Delete, o);
                broke
            }
            65..=79 => {
                let id = world.invoke(c, key.clone(), Op::Incr(1));
                let r = ask(&world, c, con, &[b"INCR", &key]).await;
                let r = match r {
                    Ok(Reply::Error(e)) if e.contains("not an integer") => Ok(Reply::Array(None)),
                    other => other,
                };
                let (o, broke) = outcome_of(&r, false, |r| match r {
                    Reply::Int(n) => Some(Ret::Incr(Some(*n))),
                    Reply::Array(None) => Some(Ret::Incr(None)),
                    _ => None,
                });
                finish(&world, c, id, &key, &Op::Incr(1), o);
                broke
            }
            80..=91 => {
                let expected = last_seen[slot as usize]
                    .clone()
                    .unwrap_or_else(|| b"none".to_vec());
                let op = Op::Cas {
                    expected: expected.clone(),
                    new: value.clone(),
                };
                let id = world.invoke(c, key.clone(), op.clone());
                let r = ask(&world, c, con, &[b"CAS", &key, &expected, &value]).await;
                let (o, broke) = outcome_of(&r, false, |r| match r {
                    Reply::Int(n) => Some(Ret::Cas(*n == 1)),
                    _ => None,
                });
                finish(&world, c, id, &key, &op, o);
                broke
            }
            92..=95 => {
                // A write with a time to live, on a key the register
                // history does not track (under skewed clocks it may expire
                // by the log's time within the run): its expiry follows the
                // log's clock, so replicas must keep it alike whatever their
                // own clocks say (the convergence oracle compares state
                // hashes, which cover expiries).
                let ttl_key = format!("ttl-{slot}").into_bytes();
                let r = ask(&world, c, con, &[b"SET", &ttl_key, &value, b"PX", TTL_MS]).await;
                world.event(format!(
                    "c{c} ttl-{slot} SET PX -> {}",
                    match &r {
                        Ok(Reply::Status(_)) => "ok",
                        Ok(_) => "refused",
                        Err(_) => "no reply",
                    }
                ));
                r.is_err()
            }
            _ => {
                // MSET of this slot's key and the next slot's: one write
                // per key in the history, same interval.
                let k2 = world.key_for((slot + 1) % SLOTS);
                let v2 = format!("c{c}-{seq}b").into_bytes();
                let (op1, op2) = (Op::Write(value.clone()), Op::Write(v2.clone()));
                let id1 = world.invoke(c, key.clone(), op1.clone());
                let id2 = world.invoke(c, k2.clone(), op2.clone());
                let r = ask(&world, c, con, &[b"MSET", &key, &value, &k2, &v2]).await;
                let (o, broke) = outcome_of(&r, false, |r| {
                    matches!(r, Reply::Status(_)).then_some(Ret::Written)
                });
                finish(&world, c, id1, &key, &op1, o.clone());
                finish(&world, c, id2, &k2, &op2, o);
                broke
            }
        };
        if broke {
            conn = None;
        }
    }
    world.0.borrow_mut().clients_running -= 1;
}

fn finish(world: &World, c: u64, id: usize, key: &[u8], op: &Op, o: Outcome) {
    world.event(format!(
        "c{c} {} {} -> {}",
        String::from_utf8_lossy(key),
        op_text(op),
        outcome_text(&o)
    ));
    world.complete(id, o);
}

/// After the faults: one linearizable GET of every key the workload used,
/// through any node that answers, recorded as the final reader. Returns
/// the keys that could not be read within `deadline`.
pub async fn final_reads(nodes: Vec<u64>, world: World, deadline: Duration) -> usize {
    let keys: Vec<Vec<u8>> = world.0.borrow().keys.iter().cloned().collect();
    let give_up = tokio::time::Instant::now() + deadline;
    let mut unread = 0;
    let mut at = 0;
    let mut conn: Option<Session> = None;
    let reader = ballast_history::judge::FINAL_READER;
    for key in keys {
        let mut done = false;
        while !done && tokio::time::Instant::now() < give_up {
            let Some(con) = conn.as_mut() else {
                at = (at + 1) % nodes.len();
                conn = connect(&world, nodes[at]).await;
                if conn.is_none() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            };
            let id = world.invoke(ballast_history::judge::FINAL_READER, key.clone(), Op::Read);
            let r = ask(&world, reader, con, &[b"GET", &key]).await;
            let (o, broke) = outcome_of(&r, true, |r| match r {
                Reply::Bulk(v) => Some(Ret::Read(v.clone())),
                _ => None,
            });
            done = matches!(o, Outcome::Ok(_));
            finish(
                &world,
                ballast_history::judge::FINAL_READER,
                id,
                &key,
                &Op::Read,
                o,
            );
            if broke {
                conn = None;
            } else if !done {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        unread += usize::from(!done);
    }
    unread
}
