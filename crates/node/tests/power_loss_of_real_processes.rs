//! Power loss of the whole cluster, on real processes: `ballast cluster up
//! --volatile-fs` runs every node with its file writes held in memory until
//! their fsync, so SIGKILL of all three drops exactly what a cluster-wide
//! power cut would.
//!
//! Durable: every acknowledged SET survives. Balanced with a long sync
//! interval: the writes since the last fsync are gone, which shows that the
//! mode really drops unsynced data (the same run without it keeps them all,
//! as a process crash keeps the page cache), and what survives is a prefix.

mod support;

use std::path::Path;
use std::time::Duration;
use support::eventually_blocking;
use support::process::{
    ballast, leader_of, pid_of, redis_conn, sigkill, write_configs, Ports, StopOnDrop,
};

const KEYS: usize = 40;

/// Starts a cluster in `dir` with `preset` and `extra` config lines, sets
/// keys 0..KEYS in order through the leader, SIGKILLs every node, starts
/// them again and returns which keys survived.
fn write_kill_all_restart(dir: &Path, preset: &str, extra: &str, volatile: bool) -> Vec<bool> {
    let ports: Vec<Ports> = (0..3).map(|_| Ports::free()).collect();
    write_configs(dir, &ports, preset, extra);
    let up_args: &[&str] = if volatile {
        &["up", "--volatile-fs"]
    } else {
        &["up"]
    };
    let up = ballast(dir, up_args);
    assert!(up.status.success(), "cluster up failed");
    let leader = leader_of(&up);
    let mut c = redis_conn(ports[leader as usize - 1].client).expect("connect to the leader");
    for i in 0..KEYS {
        let () = redis::cmd("SET")
            .arg(format!("key{i}"))
            .arg(i)
            .query(&mut c)
            .expect("acknowledged SET");
    }
    for id in 1..=3 {
        sigkill(pid_of(dir, id));
    }
    let up = ballast(dir, up_args);
    assert!(up.status.success(), "cluster up after the power cut failed");
    let leader = leader_of(&up);
    let values = eventually_blocking("reads after the restart", Duration::from_secs(20), || {
        let got: redis::RedisResult<Vec<Option<u64>>> =
            redis_conn(ports[leader as usize - 1].client).and_then(|mut c| {
                redis::cmd("MGET")
                    .arg((0..KEYS).map(|i| format!("key{i}")).collect::<Vec<_>>())
                    .query(&mut c)
            });
        got.map_err(|e| e.to_string())
    });
    values.iter().map(Option::is_some).collect()
}

#[test]
fn durable_keeps_every_acknowledged_write_through_a_cluster_wide_power_cut() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _stop = StopOnDrop(tmp.path());
    let survived = write_kill_all_restart(tmp.path(), "durable", "", true);
    let lost: Vec<usize> = (0..KEYS).filter(|i| !survived[*i]).collect();
    assert!(lost.is_empty(), "acknowledged keys lost: {lost:?}");
}

#[test]
fn volatile_fs_drops_what_was_not_fsynced_and_a_plain_kill_does_not() {
    // Balanced fsyncs its log once a minute here: everything after the
    // bootstrap is unsynced when the nodes die.
    let extra = "sync_interval_ms = 60000\n";
    let tmp = tempfile::tempdir().expect("tempdir");
    let _stop = StopOnDrop(tmp.path());
    let survived = write_kill_all_restart(tmp.path(), "balanced", extra, true);
    let kept = survived.iter().take_while(|s| **s).count();
    assert!(
        survived[kept..].iter().all(|s| !s),
        "a hole in history: {survived:?}"
    );
    assert!(
        kept < KEYS,
        "a power cut kept writes that were never fsynced"
    );
    println!("power cut: the first {kept} of {KEYS} keys survived");

    let tmp = tempfile::tempdir().expect("tempdir");
    let _stop = StopOnDrop(tmp.path());
    let survived = write_kill_all_restart(tmp.path(), "balanced", extra, false);
    assert!(
        survived.iter().all(|s| *s),
        "a process crash lost writes the OS had: {survived:?}"
    );
}
