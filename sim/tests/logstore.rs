//! The Raft log store on the simulated disk, alone and with the state
//! machine's engine in replicated mode: fixed seeds under every fault kind
//! (each run twice, traces compared), and the planted node bugs they act
//! on, each caught within 1,000 seeds for its own reason.

use ballast_raft::planted::NodeBug;
use ballast_sim::logstore::{run, LogScenario};

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
        hunted, 6,
        "the log store and replicated mode act on six planted bugs"
    );
}
