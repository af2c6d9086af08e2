//! Cluster simulation tests: seeds over every preset and fault kind, each
//! run twice with equal trace hashes; the seeds of the bugs the simulation
//! found, kept as regressions; and the planted bugs the oracles catch.

use ballast_raft::planted::NodeBug;
use ballast_sim::cluster::{
    self, ClusterConfig, ClusterFault, ClusterMatrix, ClusterOutcome, ClusterScenario,
};
use ballast_storage::planted::PlantedBug;
use ballast_storage::Preset;

/// Runs `seed` twice and fails with the first difference if the traces
/// differ (every simulation test runs its seeds twice).
fn run_twice(s: ClusterScenario, seed: u64) -> ClusterOutcome {
    let cfg = ClusterConfig::default();
    let a = cluster::run(s, seed, cfg);
    let b = cluster::run(s, seed, cfg);
    if a.trace.hash() != b.trace.hash() {
        let err = cluster::check_determinism(s, seed, cfg).err();
        panic!(
            "{} seed {seed}: trace hashes differ ({:016x} vs {:016x}): {}",
            s.name(),
            a.trace.hash(),
            b.trace.hash(),
            err.unwrap_or_default()
        );
    }
    a
}

fn scenario(preset: Preset, fault: ClusterFault) -> ClusterScenario {
    ClusterScenario {
        preset,
        fault,
        bug: None,
    }
}

/// Seeds per preset x fault cell in the default test run; the cells are
/// split over two tests so that they run on both cores.
const SEEDS_PER_CELL: u64 = 4;

fn sweep(presets: &[Preset]) {
    let mut m = ClusterMatrix::default();
    let mut unexpected = Vec::new();
    for &p in presets {
        for f in ClusterFault::ALL {
            for seed in 0..SEEDS_PER_CELL {
                let o = run_twice(scenario(p, f), seed);
                if !o.violations.is_empty() {
                    unexpected.push(format!("{}: {}", o.repro(), o.violations.join("; ")));
                }
                m.add(&o);
            }
        }
    }
    println!("{m}");
    for (p, k, c) in m.cells() {
        assert!(
            c.fired > 0,
            "{p} x {k}: no fault took effect in {} runs",
            c.runs
        );
    }
    assert!(
        unexpected.is_empty(),
        "violations:\n{}",
        unexpected.join("\n")
    );
}

#[test]
fn durable_seeds_keep_the_cluster_contract_under_every_fault_kind() {
    sweep(&[Preset::Durable]);
}

#[test]
fn relaxed_seeds_keep_the_cluster_contract_under_every_fault_kind() {
    sweep(&[Preset::Balanced, Preset::Throughput]);
}

/// Planted node bugs, each at the first seed that catches it in its
/// scenario (found by `ballast-sim cluster-planted`), with the violation it
/// must cause; the same seed without the switch passes.
#[test]
fn planted_bugs_are_caught_and_their_seeds_pass_without_them() {
    let cases = [
        (
            NodeBug::LeaderRestoreUnpersistedCommit,
            3,
            "not linearizable",
        ),
        (NodeBug::AckBeforeLogFsync, 0, "not linearizable"),
        // The same seed, seen by the node-level oracle: the logs came back
        // without entries they had told openraft were durable.
        (
            NodeBug::AckBeforeLogFsync,
            0,
            "lost what it acknowledged as durable",
        ),
        (NodeBug::ReadWithoutReadIndex, 1, "not linearizable"),
        // A node that expires keys by its own (skewed) clock drops keys the
        // others keep: the state hashes differ.
        (NodeBug::ExpireByLocalClock, 10, "did not converge"),
        // The node with the smaller value limit refuses to apply what the
        // log holds.
        (NodeBug::ApplyChecksLocalLimits, 0, "did not converge"),
        // The renamed meta file lost its unsynced content in the power cut.
        (NodeBug::VoteNotFsynced, 0, "meta file is 0 bytes"),
        // Where the meta file survived, it held an older vote: the node
        // came back able to vote again in a term it had voted in.
        (NodeBug::VoteNotFsynced, 5, "came back with"),
        // The entries a truncation removed came back: segment 1 ends past
        // where the next segment's link record says it ended (WAL format
        // 2; before it, a hole after the entries appended since).
        (
            NodeBug::TruncationNotDurable,
            43,
            "link record says it ended",
        ),
        // A peer's batch no log may hold gets in; the leader stops reading
        // it back.
        (NodeBug::SkipRequestValidation, 0, "Raft stopped"),
        // A snapshot copied through corrupting reads (node 2's disk has no
        // hard links) became the node's own; every restart fails to finish
        // installing it.
        (NodeBug::SnapshotLinkUnverified, 6, "did not converge"),
        // The node restarted after a power loss and was caught up by a
        // snapshot; the received tables, linked into the engine unsynced,
        // went with the next power loss.
        (NodeBug::SnapshotInstallWithoutFsync, 0, "file ends inside"),
        // The restarted follower voted before it was caught up: with the
        // lagging one it elected a leader without acknowledged entries.
        (NodeBug::UncleanNodeVotes, 20, "not linearizable"),
        // The wiped follower came back with an empty log and voted for the
        // lagging one, which lacked entries the wiped one had acknowledged.
        (NodeBug::WipedNodeRebootstraps, 1, "not linearizable"),
        // n1's engine flushed entries 446-449 while its Raft log held them
        // only in the page cache; the power cut took the log's tail, and
        // the node refuses to start with its state ahead of its log.
        (NodeBug::FlushBarrierSkipped, 6, "ahead of its Raft log"),
    ];
    for (bug, seed, violation) in cases {
        let mut s = cluster::cli::scenario_for(bug).expect("a cluster scenario");
        let caught = run_twice(s, seed);
        assert!(
            caught.violations.iter().any(|v| v.contains(violation)),
            "{} seed {seed}: the planted {} did not cause \"{violation}\": {:?}",
            s.name(),
            bug.name(),
            caught.violations
        );
        s.bug = None;
        let clean = run_twice(s, seed);
        assert!(
            clean.violations.is_empty(),
            "{}: {:?}",
            clean.repro(),
            clean.violations
        );
    }
}

/// The real bug the cluster simulation found: after a process crash under
/// throughput, the Raft log recovered entries from the page cache and
/// appended after them in a new segment without making them durable; a
/// later power loss left a hole and the node could not start. `Wal::open`
/// now fsyncs the segments recovery read (the engine simulation found the
/// same hole in the engine's WAL; one fix serves both). The seed that
/// showed it passes; with the storage switch that skips that fsync it
/// fails as it did.
#[test]
fn recovered_log_tail_is_made_durable_before_new_entries() {
    // The seed that found it was `cluster-throughput-mixed` 5; the workload
    // has changed since (expiring writes, values above node 3's limit), and
    // this seed shows the same hole with the switch today.
    const HOLE_SEED: u64 = 38;
    let s = ClusterScenario::parse("cluster-balanced-mixed").expect("scenario");
    let fixed = run_twice(s, HOLE_SEED);
    assert!(
        fixed.violations.is_empty(),
        "{}: {:?}",
        fixed.repro(),
        fixed.violations
    );
    ballast_storage::planted::set(Some(PlantedBug::SkipRecoveryWalSync));
    let planted = cluster::run(s, HOLE_SEED, ClusterConfig::default());
    ballast_storage::planted::set(None);
    // The hole is now named where it starts: the next segment's link
    // record (WAL format 2) says segment 1 ended later than it does.
    assert!(
        planted
            .violations
            .iter()
            .any(|v| v.contains("records at the end of segment")),
        "{} with skip-recovery-wal-sync: {:?}",
        planted.repro(),
        planted.violations
    );
}

/// A real bug the cluster simulation found: two nodes SIGKILLed under
/// throughput came back ahead of the third, which a partition had left
/// behind.
/// The two waited to be caught up and voted only for the clean node, whose
/// log Raft then found less up to date than theirs: no leader, for good.
/// Waiting nodes ahead of every clean voter now stand (`rejoin::decide`).
#[test]
fn waiting_nodes_ahead_of_the_clean_one_stand_for_election() {
    let s = ClusterScenario::parse("cluster-throughput-mixed").expect("scenario");
    let o = run_twice(s, 326);
    assert!(o.violations.is_empty(), "{}: {:?}", o.repro(), o.violations);
}

/// An oracle that judged too strictly: under throughput n3 lost power,
/// n1 (the leader) was SIGKILLed, then n2 lost power, before any of them
/// was caught up; writes acknowledged from the write-back buffers were
/// then on no node, which the throughput contract allows (a prefix is
/// kept), and the next reads showed the older values. A process crash
/// under throughput now joins a rolling loss as a power loss does.
#[test]
fn a_throughput_process_crash_joins_a_rolling_loss() {
    let s = ClusterScenario::parse("cluster-throughput-mixed").expect("scenario");
    let o = run_twice(s, 5013);
    assert!(o.violations.is_empty(), "{}: {:?}", o.repro(), o.violations);
}

/// The rolling-loss bookkeeping moved a cut's restart, so the epoch
/// before the cut took in operations the restarted cluster answered after
/// it: a planned power loss of a node still off counted as a loss (seed
/// 9002), and a loss after the roll had hit every founder stretched it
/// (seed 9015: n3 lost power again 0.45 s after the cut's restart).
#[test]
fn a_cut_ends_at_its_restart_whatever_comes_after() {
    let s = ClusterScenario::parse("cluster-throughput-mixed").expect("scenario");
    for seed in [9002, 9015] {
        let o = run_twice(s, seed);
        assert!(o.violations.is_empty(), "{}: {:?}", o.repro(), o.violations);
    }
}

/// A simulator bug: turmoil kept the unlinks inside a removed directory
/// pending after its removal was made durable, so a power loss brought
/// the files back, and the replaced node's first snapshot install, into a
/// snapshot directory of the same name, failed with "file already exists"
/// (its Raft stopped). The seam now commits them at the rmdir
/// (`a_removed_directory_does_not_bring_its_files_back_after_a_power_loss`).
#[test]
fn a_replaced_node_installs_its_first_snapshot() {
    let s = ClusterScenario::parse("cluster-throughput-disk-wipe").expect("scenario");
    let o = run_twice(s, 9007);
    assert!(o.violations.is_empty(), "{}: {:?}", o.repro(), o.violations);
}

#[test]
#[ignore = "a diagnostic: repeats one seed and prints its trace hashes"]
fn repeat_one_seed() {
    let name =
        std::env::var("SIM_SCENARIO").unwrap_or_else(|_| "cluster-balanced-corrupt-read".into());
    let seed: u64 = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut s = ClusterScenario::parse(&name).expect("scenario");
    s.bug = std::env::var("SIM_BUG")
        .ok()
        .map(|b| NodeBug::parse(&b).expect("a node bug"));
    let cfg = ClusterConfig {
        keep_trace: true,
        ..ClusterConfig::default()
    };
    let first = cluster::run(s, seed, cfg);
    println!("{}: {:?}", first.repro(), first.violations);
    for i in 1..6 {
        let o = cluster::run(s, seed, cfg);
        println!(
            "run {i}: {:016x} vs first {:016x}",
            o.trace.hash(),
            first.trace.hash()
        );
        if let Some(d) = ballast_sim::trace::first_difference(&first.trace, &o.trace) {
            println!("{d}");
        }
    }
}
