//! The Raft log store on the simulated disk, alone (durable and
//! throughput presets) and with the state machine's engine in replicated
//! mode: fixed seeds under every fault kind (each run twice, traces
//! compared), and the planted node bugs they act on, each caught within
//! 1,000 seeds for its own reason.

use ballast_raft::planted::NodeBug;
use ballast_sim::logstore::{run, LogFault, LogScenario};

#[test]
fn fixed_seeds_hold_the_log_store_contract_under_every_fault_kind() {
    const SEEDS: u64 = 40;
    let mut failures = Vec::new();
    for s in LogScenario::all() {
        let mut fired = 0;
        for seed in 0..SEEDS {
            let a = run(s, seed, false, false);
            let b = run(s, seed, false, false);
            assert_eq!(
                a.trace.hash(),
                b.trace.hash(),
                "{}: two runs of one seed differ",
                a.repro()
            );
            fired += u64::from(a.fired);
            if let Some(v) = a.violations.first() {
                failures.push(format!("{}: {v}", a.repro()));
            }
        }
        println!("{}: {SEEDS} seeds, fired in {fired}", s.name());
        assert!(fired > 0, "{}: the fault never fired", s.name());
    }
    assert!(failures.is_empty(), "violations:\n{}", failures.join("\n"));
}

/// What the first violation of each planted bug must say.
fn expected(bug: NodeBug) -> &'static [&'static str] {
    match bug {
        NodeBug::VoteNotFsynced => &["the vote went back"],
        // The removed entries come back in front of the new ones: the
        // store refuses the hole they leave, or the cut segment's length
        // disagrees with the next segment's link record (WAL format 2), or
        // they read as resurrected.
        NodeBug::TruncationNotDurable => &[
            "hole in the Raft log",
            "link record says it ended at",
            "a truncated entry came back",
        ],
        NodeBug::SyncTicketBySegment | NodeBug::AckBeforeLogFsync => &["acknowledged append lost"],
        // Acknowledged from the write-back buffer, which the stopped
        // store never hands to the OS: a later process crash takes them.
        NodeBug::StopLeavesBuffer => &["acknowledged append lost"],
        NodeBug::TruncateBelowApplied => &["below the applied index", "was accepted"],
        // Replicated mode: a flush records applied entries the log has not
        // made durable, and a power loss takes them from the log.
        NodeBug::FlushBarrierSkipped => &["applied state is durable ahead of the durable log"],
        _ => &[],
    }
}

#[test]
fn planted_log_store_bugs_are_caught_within_1000_seeds() {
    let mut hunted = 0;
    for bug in NodeBug::ALL {
        let Some(s) = LogScenario::for_bug(bug) else {
            continue;
        };
        hunted += 1;
        let caught = (0..1000u64)
            .map(|seed| run(s, seed, false, false))
            .find(|o| !o.violations.is_empty())
            .unwrap_or_else(|| panic!("{} not caught by {} in 1000 seeds", bug.name(), s.name()));
        let first = &caught.violations[0];
        assert!(
            expected(bug).iter().any(|e| first.contains(e)),
            "{} caught for another reason: {first} ({})",
            bug.name(),
            caught.repro()
        );
        println!("{}: caught at seed {}: {first}", bug.name(), caught.seed);
    }
    assert_eq!(
        hunted, 7,
        "the log store and replicated mode act on seven planted bugs"
    );
}

/// The throughput log's bound is not vacuous: process crashes do take
/// appends acknowledged (from memory) within the bound, so the scenario
/// reaches the write-back buffer, while everything older survives (the
/// fixed-seed test above checks that part).
#[test]
fn throughput_log_crashes_lose_only_appends_within_the_bound() {
    let s = LogScenario {
        fault: LogFault::ProcessCrash,
        replicated: false,
        write_back: true,
        bug: None,
    };
    let (mut lost, mut failures) = (0, Vec::new());
    for seed in 0..40 {
        let o = run(s, seed, false, false);
        lost += o.lost_within_bound;
        failures.extend(o.violations.first().map(|v| format!("{}: {v}", o.repro())));
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        lost > 0,
        "no crash took an acknowledged append from the buffer"
    );
}

/// The simulator's own bug that `replicated-power-loss` seed 568 found:
/// turmoil applied a removed segment's unsynced bytes to the segment
/// recreated at its name, and a truncated entry came back behind the new
/// ones. The seam now flushes a file's pending writes into it before
/// removing it (`fs_tests.rs` checks the seam itself).
#[test]
fn a_segment_recreated_after_a_truncation_never_shows_the_old_bytes() {
    let s = LogScenario {
        fault: LogFault::PowerLoss,
        replicated: true,
        write_back: false,
        bug: None,
    };
    let o = run(s, 568, false, false);
    assert!(o.violations.is_empty(), "{}: {:?}", o.repro(), o.violations);
}
