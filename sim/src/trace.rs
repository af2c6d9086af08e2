//! The event trace of one run: every event is hashed (FNV-1a, 64 bits) in
//! order, and optionally kept, so two runs of one seed can be compared and
//! the first difference shown.

/// An ordered record of a run's events.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    hash: u64,
    count: u64,
    lines: Option<Vec<String>>,
    echo: bool,
}

/// The FNV-1a 64-bit offset basis: the hash of nothing.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues the FNV-1a hash `hash` over `bytes`.
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

impl Trace {
    /// A trace that keeps its lines when `keep`, and logs each event through
    /// `tracing` when `echo`.
    pub fn new(keep: bool, echo: bool) -> Trace {
        Trace {
            hash: FNV_OFFSET,
            count: 0,
            lines: keep.then(Vec::new),
            echo,
        }
    }

    /// Records one event.
    pub fn event(&mut self, line: String) {
        self.hash = fnv1a(fnv1a(self.hash, line.as_bytes()), b"\n");
        self.count += 1;
        if self.echo {
            tracing::info!(target: "ballast_sim::trace", "{line}");
        }
        if let Some(l) = &mut self.lines {
            l.push(line);
        }
    }

    /// The hash of every event so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Events recorded.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The kept lines (empty unless kept).
    pub fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or(&[])
    }
}

/// The first line where two kept traces differ, as a readable message.
pub fn first_difference(a: &Trace, b: &Trace) -> Option<String> {
    let (la, lb) = (a.lines(), b.lines());
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i), lb.get(i));
        if x != y {
            return Some(format!(
                "event {i} differs:\n  first run:  {}\n  second run: {}",
                x.map_or("<end of trace>", String::as_str),
                y.map_or("<end of trace>", String::as_str)
            ));
        }
    }
    (a.hash != b.hash).then(|| "hashes differ but kept lines are equal".to_string())
}

/// The one-line command that replays `seed` of `scenario` (with `bug` on)
/// through the runner's `command` (`run`, `log`, ...).
pub fn repro_line(command: &str, scenario: &str, bug: Option<&str>, seed: u64) -> String {
    let bug = bug.map(|b| format!(" --bug {b}")).unwrap_or_default();
    format!(
        "cargo run -p ballast-sim --release -- {command} --scenario {scenario}{bug} --seed {seed}"
    )
}

/// How the runner reports a failing seed: its first violation and repro.
pub fn failure_line(scenario: &str, seed: u64, violations: &[String], repro: &str) -> String {
    format!(
        "FAIL {scenario} seed {seed}: {}\n  repro: {repro}",
        violations.first().map_or("", String::as_str)
    )
}

/// Prints a replayed seed's summary line and its violations (both runners'
/// one-seed replay).
pub fn print_replay(
    scenario: &str,
    seed: u64,
    cycles: u64,
    fired: u64,
    trace: &Trace,
    violations: &[String],
) {
    println!(
        "{scenario} seed {seed}: {cycles} cycles, fired {fired}, trace hash {:016x} ({} events)",
        trace.hash(),
        trace.len()
    );
    for v in violations {
        println!("  violation: {v}");
    }
}
