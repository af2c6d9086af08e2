//! MULTI/EXEC on real node processes: a transaction of 100 commands is ONE
//! log entry (the leader's `ballast_proposed_entries_total` on /metrics
//! moves by one), and a cluster whose nodes lose power (SIGKILL with
//! `--volatile-fs`, which keeps unsynced writes in process memory) around
//! a large transaction comes back with all of it or none of it: a cut
//! before the entry can commit (its followers gone; the two come back
//! first and elect a leader that never had it) leaves none, a cut after
//! EXEC answered leaves all, and a cut while EXEC runs either. Costs about
//! 25 s (three cluster starts, four power-cut rounds).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use support::eventually_blocking;
use support::process::{
    ballast, ballast_env, leader_of, pid_of, proposed_entries, redis_conn, sigkill, status,
    write_configs, Ports, StopOnDrop,
};

/// Runs a MULTI/EXEC of 100 commands on a fresh cluster whose nodes run
/// with `env`, and returns how many log entries the leader proposed for it.
fn entries_for_a_100_command_transaction(env: &[(&str, &str)]) -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<Ports> = (0..3).map(|_| Ports::free()).collect();
    write_configs(dir.path(), &ports, "durable", "");
    let _stop = StopOnDrop(dir.path());
    let up = ballast_env(dir.path(), &["up"], env);
    assert!(up.status.success(), "cluster up failed");
    let leader = &ports[leader_of(&up) as usize - 1];
    let mut c = redis_conn(leader.client).expect("connect to the leader");
    // One write first, so the leader's first entries are behind us.
    let () = redis::cmd("SET")
        .arg("warm")
        .arg(1)
        .query(&mut c)
        .expect("SET");
    let before = proposed_entries(leader.admin);
    let mut tx = redis::pipe();
    tx.atomic();
    for i in 0..50 {
        tx.cmd("SET").arg(format!("tx:{i}")).arg(i);
        tx.cmd("INCR").arg("tx:count");
    }
    let replies: Vec<redis::Value> = tx.query(&mut c).expect("EXEC");
    let after = proposed_entries(leader.admin);
    assert_eq!(replies.len(), 100, "one reply per command");
    assert_eq!(replies[99], redis::Value::Int(50));
    println!("MULTI/EXEC of 100 commands: ballast_proposed_entries_total {before} -> {after}");
    after - before
}

#[test]
fn a_multi_exec_of_100_commands_is_one_log_entry() {
    assert_eq!(
        entries_for_a_100_command_transaction(&[]),
        1,
        "the transaction is one log entry"
    );
}

/// The planted `ExecProposesEach` (each command its own entry) is seen.
#[test]
fn the_planted_exec_proposes_each_switch_is_caught() {
    let entries =
        entries_for_a_100_command_transaction(&[("BALLAST_PLANTED_BUGS", "exec-proposes-each")]);
    assert!(
        entries > 1,
        "the entry count did not see the split transaction"
    );
}

/// Keys and value size of the large transaction: about 512 KiB of writes.
const TX_KEYS: usize = 1000;
const TX_VALUE_BYTES: usize = 512;

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// When the cluster loses power, relative to the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Before its entry can commit: both followers are killed first, the
    /// leader proposes the entry (seen on its
    /// `ballast_proposed_entries_total`) with no majority to commit it,
    /// then loses power; the two followers restart first (the leader's
    /// config hidden from `up`) and elect one of them, which never had the
    /// entry, before the old leader rejoins.
    BeforeCommit,
    /// As soon as every command is queued: EXEC is being proposed,
    /// replicated or applied.
    WhileExecRuns,
    /// Once EXEC answered: everything must be there.
    AfterExecAnswered,
}

/// Sends MULTI, `TX_KEYS` SETs of `round:i` and EXEC in one write, cuts
/// the power of every node at `cut`, boots the cluster and returns how
/// many of the keys are there.
fn cut_power_during_a_transaction(dir: &Path, ports: &[Ports], round: &str, cut: Cut) -> usize {
    let up = ballast(dir, &["up", "--volatile-fs"]);
    assert!(up.status.success(), "cluster up failed");
    let leader_id = leader_of(&up);
    let leader = &ports[leader_id as usize - 1];
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader_id).collect();
    let proposed_before = proposed_entries(leader.admin);
    if cut == Cut::BeforeCommit {
        for id in &followers {
            sigkill(pid_of(dir, *id));
        }
    }
    let mut stream = TcpStream::connect(("127.0.0.1", leader.client)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let value = vec![b'v'; TX_VALUE_BYTES];
    let mut pipeline = command(&[b"MULTI"]);
    for i in 0..TX_KEYS {
        pipeline.extend(command(&[
            b"SET",
            format!("{round}:{i}").as_bytes(),
            &value,
        ]));
    }
    pipeline.extend(command(&[b"EXEC"]));
    stream.write_all(&pipeline).expect("send the transaction");
    // +OK, then one +QUEUED per SET; the EXEC reply follows them.
    let queued_bytes = b"+OK\r\n".len() + TX_KEYS * b"+QUEUED\r\n".len();
    let wanted = match cut {
        Cut::BeforeCommit | Cut::WhileExecRuns => queued_bytes,
        // The EXEC array header and its first +OK at least.
        Cut::AfterExecAnswered => queued_bytes + format!("*{TX_KEYS}\r\n+OK\r\n").len(),
    };
    let mut got = vec![0u8; wanted];
    stream
        .read_exact(&mut got)
        .expect("the replies before the cut");
    assert!(
        got.starts_with(b"+OK\r\n+QUEUED\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got[..32])
    );
    if cut == Cut::BeforeCommit {
        // EXEC was read after every queued command; wait until the leader
        // has proposed its entry, which nobody can acknowledge.
        eventually_blocking(
            "the leader to propose the transaction's entry",
            Duration::from_secs(20),
            || proposed_entries(leader.admin) > proposed_before,
        );
        sigkill(pid_of(dir, leader_id));
        let config = dir.join(format!("node{leader_id}.toml"));
        let hidden = dir.join(format!("node{leader_id}.off"));
        std::fs::rename(&config, &hidden).expect("hide the old leader's config");
        let up = ballast(dir, &["up", "--volatile-fs"]);
        std::fs::rename(&hidden, &config).expect("restore the old leader's config");
        assert!(up.status.success(), "the two followers did not start");
        // Right after a restart a node reports the leader of its saved
        // vote (the old one): wait for the two to elect one of them.
        eventually_blocking(
            "the two followers to elect one of them",
            Duration::from_secs(20),
            || {
                let leaders: Vec<Option<u64>> = followers
                    .iter()
                    .map(|id| {
                        status(ports[*id as usize - 1].admin)
                            .and_then(|s| s["leader"]["id"].as_u64())
                    })
                    .collect();
                leaders
                    .iter()
                    .all(|l| l.is_some_and(|l| l != leader_id) && *l == leaders[0])
            },
        );
    } else {
        for id in 1..=3 {
            sigkill(pid_of(dir, id));
        }
    }
    let up = ballast(dir, &["up", "--volatile-fs"]);
    assert!(up.status.success(), "cluster up after the power cut failed");
    let leader = &ports[leader_of(&up) as usize - 1];
    let keys: Vec<String> = (0..TX_KEYS).map(|i| format!("{round}:{i}")).collect();
    let present = eventually_blocking("reads after the restart", Duration::from_secs(20), || {
        let values: redis::RedisResult<Vec<Option<Vec<u8>>>> =
            redis_conn(leader.client).and_then(|mut c| redis::cmd("MGET").arg(&keys).query(&mut c));
        values.map_err(|e| e.to_string())
    });
    let _ = ballast(dir, &["stop"]);
    for v in present.iter().flatten() {
        assert_eq!(v, &value, "a value of the transaction came back damaged");
    }
    present.iter().filter(|v| v.is_some()).count()
}

#[test]
fn a_power_cut_during_exec_leaves_all_of_the_transaction_or_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<Ports> = (0..3).map(|_| Ports::free()).collect();
    write_configs(dir.path(), &ports, "durable", "");
    let _stop = StopOnDrop(dir.path());
    let mut outcomes = Vec::new();
    for (round, cut) in [
        ("before", Cut::BeforeCommit),
        ("during", Cut::WhileExecRuns),
        ("after", Cut::AfterExecAnswered),
    ] {
        let present = cut_power_during_a_transaction(dir.path(), &ports, round, cut);
        println!("power cut {cut:?}: {present} of {TX_KEYS} keys after recovery");
        assert!(
            present == 0 || present == TX_KEYS,
            "a transaction came back in part ({cut:?}): {present} of {TX_KEYS} keys"
        );
        outcomes.push((cut, present));
    }
    // The entry never reached a majority: the leader elected without it
    // overwrote it.
    assert_eq!(outcomes[0], (Cut::BeforeCommit, 0), "none, before commit");
    assert_eq!(
        outcomes[2],
        (Cut::AfterExecAnswered, TX_KEYS),
        "an acknowledged transaction was lost (durable preset)"
    );
    let seen: std::collections::BTreeSet<usize> = outcomes.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        seen,
        [0, TX_KEYS].into(),
        "both outcomes, all and none, were exercised"
    );
}
