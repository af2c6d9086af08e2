//! The preset x fault kind matrix: runs, runs whose fault actually fired,
//! and runs with violations.

use crate::scenario::{FaultKind, Outcome, TreeCounts};
use ballast_storage::Preset;
use std::collections::BTreeMap;
use std::fmt;

/// Counts for one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cell {
    /// Seeds run.
    pub runs: u64,
    /// Seeds whose fault fired at least once.
    pub fired: u64,
    /// Seeds with at least one violation.
    pub violations: u64,
    /// Crash/recover cycles.
    pub cycles: u64,
}

/// What happened to the tree, for one preset: runs, and for each kind of
/// tree work the runs that saw it and how often it happened in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeCell {
    /// Runs counted (runs the engine ended early by refusing to open
    /// after damage at rest are left out: they may stop before any tree
    /// work).
    pub runs: u64,
    /// Per [`TREE_WORK`] kind: runs in which it happened.
    pub runs_with: [u64; 5],
    /// Per [`TREE_WORK`] kind: how often it happened in all (for
    /// `level>=2`: the sum of the runs' deepest levels).
    pub total: [u64; 5],
}

impl TreeCell {
    fn add(&mut self, t: &TreeCounts) {
        self.runs += 1;
        for (i, (seen, n)) in tree_work(t).into_iter().enumerate() {
            self.runs_with[i] += u64::from(seen);
            self.total[i] += n;
        }
    }
}

/// The kinds of tree work the matrix counts, in [`TreeCell`] order.
pub const TREE_WORK: [&str; 5] = [
    "level>=2",
    "score-compaction",
    "trivial-move",
    "manifest-rotation",
    "write-stall",
];

/// Per kind: whether the run saw it, and how much of it.
fn tree_work(t: &TreeCounts) -> [(bool, u64); 5] {
    let n = |v: u64| (v > 0, v);
    [
        (t.deepest_level >= 2, t.deepest_level as u64),
        n(t.score_compactions),
        n(t.trivial_moves),
        n(t.manifest_rotations),
        n(t.stalls),
    ]
}

/// Results by preset and fault kind.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    cells: BTreeMap<(usize, FaultKind), Cell>,
    /// Runs by the deepest level that held a table (index: level).
    deepest_levels: Vec<u64>,
    /// Runs with a checkpoint restored and checked, and with one installed.
    checkpoint_runs: u64,
    install_runs: u64,
    /// Tree work by preset: over whole runs, and under the faults only.
    tree: BTreeMap<usize, TreeCell>,
    tree_faulted: BTreeMap<usize, TreeCell>,
    /// Runs the engine ended by refusing, with a named corruption error,
    /// to open or serve after damage at rest, by fault kind.
    refused: BTreeMap<FaultKind, u64>,
}

fn preset_index(p: Preset) -> usize {
    Preset::ALL.iter().position(|q| *q == p).unwrap_or(0)
}

impl Matrix {
    /// Adds one outcome.
    pub fn add(&mut self, o: &Outcome) {
        let c = self
            .cells
            .entry((preset_index(o.scenario.preset), o.scenario.fault))
            .or_default();
        c.runs += 1;
        c.fired += u64::from(o.fired);
        c.violations += u64::from(!o.violations.is_empty());
        c.cycles += u64::from(o.cycles);
        self.checkpoint_runs += u64::from(o.checkpoints > 0);
        self.install_runs += u64::from(o.installs > 0);
        let deepest = o.tree.deepest_level;
        if self.deepest_levels.len() <= deepest {
            self.deepest_levels.resize(deepest + 1, 0);
        }
        self.deepest_levels[deepest] += 1;
        if o.refused {
            *self.refused.entry(o.scenario.fault).or_default() += 1;
        } else {
            let p = preset_index(o.scenario.preset);
            self.tree.entry(p).or_default().add(&o.tree);
            self.tree_faulted.entry(p).or_default().add(&o.tree_faulted);
        }
    }

    /// The cell of `preset` x `fault`.
    pub fn cell(&self, preset: Preset, fault: FaultKind) -> Cell {
        self.cells
            .get(&(preset_index(preset), fault))
            .copied()
            .unwrap_or_default()
    }

    /// Every cell with runs.
    pub fn cells(&self) -> impl Iterator<Item = (Preset, FaultKind, Cell)> + '_ {
        self.cells
            .iter()
            .map(|(&(p, f), &c)| (Preset::ALL[p], f, c))
    }

    /// Tree work by preset over whole runs (presets with runs).
    pub fn tree_cells(&self) -> impl Iterator<Item = (Preset, TreeCell)> + '_ {
        self.tree.iter().map(|(&p, &c)| (Preset::ALL[p], c))
    }

    /// Tree work by preset done under the faults (the boots' workloads).
    pub fn tree_cells_faulted(&self) -> impl Iterator<Item = (Preset, TreeCell)> + '_ {
        self.tree_faulted.iter().map(|(&p, &c)| (Preset::ALL[p], c))
    }

    /// Total crash/recover cycles.
    pub fn cycles(&self) -> u64 {
        self.cells.values().map(|c| c.cycles).sum()
    }
}

impl fmt::Display for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<12}", "preset")?;
        for k in FaultKind::ALL {
            write!(f, " {:>15}", k.name())?;
        }
        writeln!(f)?;
        writeln!(f, "{:<12} (each cell: runs/fired/violations)", "")?;
        for p in Preset::ALL {
            write!(f, "{:<12}", p.name())?;
            for k in FaultKind::ALL {
                let c = self.cell(p, k);
                write!(
                    f,
                    " {:>15}",
                    format!("{}/{}/{}", c.runs, c.fired, c.violations)
                )?;
            }
            writeln!(f)?;
        }
        let levels: Vec<String> = self
            .deepest_levels
            .iter()
            .enumerate()
            .map(|(l, n)| format!("L{l}: {n}"))
            .collect();
        writeln!(f, "runs by deepest level: {}", levels.join(", "))?;
        writeln!(
            f,
            "runs with a checkpoint taken under the faults, restored and checked: {}; with one installed at a boot: {}",
            self.checkpoint_runs, self.install_runs
        )?;
        write!(f, "{:<19}", "tree work")?;
        for w in TREE_WORK {
            write!(f, " {w:>19}")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<19} (each cell: runs with it/runs, mean per run; level>=2: mean deepest level;\n{:<19}  faulted: done under the faults, not in recovery or the fault-free preload)",
            "", ""
        )?;
        for (rows, label) in [(&self.tree, ""), (&self.tree_faulted, " faulted")] {
            for (&p, t) in rows {
                write!(f, "{:<19}", format!("{}{label}", Preset::ALL[p].name()))?;
                for i in 0..TREE_WORK.len() {
                    let mean = t.total[i] as f64 / t.runs.max(1) as f64;
                    let cell = format!("{}/{} {mean:.1}", t.runs_with[i], t.runs);
                    write!(f, " {cell:>19}")?;
                }
                writeln!(f)?;
            }
        }
        if !self.refused.is_empty() {
            let refused: Vec<String> = self
                .refused
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            writeln!(
                f,
                "runs ended by a named corruption error after damage at rest: {}",
                refused.join(", ")
            )?;
        }
        Ok(())
    }
}
