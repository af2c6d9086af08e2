//! FLUSHALL on a 3-node cluster of real processes: one log entry
//! (`ballast_proposed_entries_total` moves by one whatever the data), the
//! keys written before it are gone on every node and a key written after
//! it stays, and a follower killed (SIGKILL) right after it and restarted
//! (replaying its log over an engine that may or may not have flushed the
//! range delete) reports the leader's state hash. Costs about 5 s.

mod support;

use std::time::Duration;

use support::eventually_blocking;
use support::process::{
    ballast, leader_of, pid_of, proposed_entries, redis_conn, sigkill, status, write_configs,
    Ports, StopOnDrop,
};

/// (applied index, state hash) of every node, once all three answer.
fn views(ports: &[Ports]) -> Option<Vec<(u64, String)>> {
    ports
        .iter()
        .map(|p| {
            let s = status(p.admin)?;
            Some((
                s["applied_index"].as_u64()?,
                s["state_hash"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn flushall_is_one_entry_and_a_restarted_follower_agrees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<Ports> = (0..3).map(|_| Ports::free()).collect();
    write_configs(dir.path(), &ports, "durable", "");
    let _stop = StopOnDrop(dir.path());
    let up = ballast(dir.path(), &["up"]);
    assert!(up.status.success(), "cluster up failed");
    let leader_id = leader_of(&up);
    let leader = &ports[leader_id as usize - 1];
    let mut c = redis_conn(leader.client).expect("connect to the leader");
    let mut fill = redis::pipe();
    for i in 0..500 {
        fill.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    let () = fill.query(&mut c).expect("fill");
    let before = proposed_entries(leader.admin);
    let () = redis::cmd("FLUSHALL").query(&mut c).expect("FLUSHALL");
    let after = proposed_entries(leader.admin);
    println!("FLUSHALL over 500 keys: ballast_proposed_entries_total {before} -> {after}");
    assert_eq!(after - before, 1, "FLUSHALL is one log entry");
    let () = redis::cmd("SET")
        .arg("after")
        .arg("v")
        .query(&mut c)
        .expect("SET");

    // Kill a follower (no shutdown, no flush) and bring it back.
    let follower = (1..=3).find(|id| *id != leader_id).expect("a follower");
    sigkill(pid_of(dir.path(), follower));
    let up = ballast(dir.path(), &["up"]);
    assert!(up.status.success(), "restart of node {follower} failed");
    let mut c = redis_conn(ports[leader_of(&up) as usize - 1].client).expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).expect("KEYS");
    assert_eq!(keys, ["after"]);

    let converged = eventually_blocking(
        "every node at the same applied index and state hash",
        Duration::from_secs(20),
        || {
            views(&ports)
                .filter(|v| v.iter().all(|x| *x == v[0]))
                .ok_or_else(|| format!("{:?}", views(&ports)))
        },
    );
    println!("after the follower's restart: {converged:?}");
    let _ = ballast(dir.path(), &["stop"]);
}
