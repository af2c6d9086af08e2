//! The preset x fault kind matrix: runs, runs whose fault actually fired,
//! and runs with violations.

use crate::scenario::{FaultKind, Outcome};
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

/// Results by preset and fault kind.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    cells: BTreeMap<(usize, FaultKind), Cell>,
    /// Runs by the deepest level that held a table (index: level).
    deepest_levels: Vec<u64>,
    /// Runs with at least one write stall.
    stalled_runs: u64,
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
        if self.deepest_levels.len() <= o.deepest_level {
            self.deepest_levels.resize(o.deepest_level + 1, 0);
        }
        self.deepest_levels[o.deepest_level] += 1;
        self.stalled_runs += u64::from(o.stalls > 0);
        if o.refused {
            *self.refused.entry(o.scenario.fault).or_default() += 1;
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
        writeln!(
            f,
            "runs by deepest level: {}; runs with write stalls: {}",
            levels.join(", "),
            self.stalled_runs
        )?;
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
