//! The seed runner's `log` command: runs seeds of the log-store scenarios
//! (or replays one), or hunts the planted node bugs the log store acts on.
//! `sim/src/main.rs` parses the arguments.

use super::{run, LogOutcome, LogScenario};
use ballast_raft::planted::NodeBug;
use std::time::Instant;

/// The scenarios `name` selects (`all` or `log-{fault}`), with `bug` on.
pub fn scenarios(name: &str, bug: Option<&str>) -> Result<Vec<LogScenario>, String> {
    let bug = match bug {
        None => None,
        Some(b) => Some(NodeBug::parse(b).ok_or_else(|| format!("unknown node bug `{b}`"))?),
    };
    let mut v = if name == "all" {
        LogScenario::all()
    } else {
        vec![LogScenario::parse(name).ok_or_else(|| {
            format!("unknown log scenario `{name}`: use {{log,log-throughput,replicated}}-{{process-crash,power-loss,fsync-error}} or all")
        })?]
    };
    for s in &mut v {
        s.bug = bug;
    }
    Ok(v)
}

fn report(o: &LogOutcome) {
    let line = crate::trace::failure_line(&o.scenario.name(), o.seed, &o.violations, &o.repro());
    println!("{line}");
}

/// Replays `seed` of each scenario with its trace; true if all passed.
pub fn replay(list: &[LogScenario], seed: u64) -> bool {
    let mut ok = true;
    for &s in list {
        let o = run(s, seed, true, true);
        crate::trace::print_replay(
            &s.name(),
            seed,
            o.cycles as u64,
            o.fired as u64,
            &o.trace,
            &o.violations,
        );
        ok &= o.violations.is_empty();
    }
    ok
}

/// Runs `seeds` seeds from `start` of each scenario and prints
/// runs/fired/violations per scenario; true if none failed.
pub fn run_seeds(list: &[LogScenario], start: u64, seeds: u64) -> bool {
    let started = Instant::now();
    let (mut cycles, mut failing) = (0u64, 0u64);
    for &s in list {
        let (mut fired, mut bad, mut lost_within_bound) = (0, 0, 0);
        for seed in start..start + seeds {
            let o = run(s, seed, false, false);
            fired += u64::from(o.fired);
            lost_within_bound += o.lost_within_bound;
            cycles += u64::from(o.cycles);
            if !o.violations.is_empty() {
                bad += 1;
                report(&o);
            }
        }
        let window = if s.write_back && !s.replicated {
            format!(", {lost_within_bound} acknowledged appends lost within the bound")
        } else {
            String::new()
        };
        println!(
            "{:<28} {seeds}/{fired}/{bad} (runs/fired/violations){window}",
            s.name()
        );
        failing += bad;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} seeds, {cycles} crash-recover cycles in {secs:.2}s: {:.0} cycles/s, {failing} failing seeds",
        seeds * list.len() as u64,
        cycles as f64 / secs
    );
    failing == 0
}

/// Hunts each planted node bug the log store acts on in its scenario;
/// true if every one was caught within `max_seeds`.
pub fn planted(max_seeds: u64) -> bool {
    let mut all = true;
    for bug in NodeBug::ALL {
        let Some(s) = LogScenario::for_bug(bug) else {
            continue;
        };
        let caught = (0..max_seeds)
            .map(|seed| run(s, seed, false, false))
            .find(|o| !o.violations.is_empty());
        match caught {
            Some(o) => println!(
                "{:<28} caught by {} after {} seeds: {}",
                bug.name(),
                s.name(),
                o.seed + 1,
                o.violations[0]
            ),
            None => {
                all = false;
                println!(
                    "{:<28} NOT caught by {} in {max_seeds} seeds",
                    bug.name(),
                    s.name()
                );
            }
        }
    }
    all
}
