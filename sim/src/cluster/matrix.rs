//! The cluster matrix: preset x fault kind, each cell
//! runs/fired/violations/not-linearizable.

use super::scenario::{ClusterFault, ClusterOutcome};
use ballast_storage::Preset;
use std::collections::BTreeMap;
use std::fmt;

/// Counts for one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cell {
    /// Seeds run.
    pub runs: u64,
    /// Seeds where at least one fault took effect.
    pub fired: u64,
    /// Seeds with any violation.
    pub violations: u64,
    /// Seeds whose history was not linearizable under the contract.
    pub not_linearizable: u64,
    /// Client operations checked.
    pub operations: u64,
}

/// Results by preset and fault kind.
#[derive(Debug, Clone, Default)]
pub struct ClusterMatrix {
    cells: BTreeMap<(usize, ClusterFault), Cell>,
}

fn preset_index(p: Preset) -> usize {
    Preset::ALL.iter().position(|q| *q == p).unwrap_or(0)
}

impl ClusterMatrix {
    /// Adds one outcome.
    pub fn add(&mut self, o: &ClusterOutcome) {
        let c = self
            .cells
            .entry((preset_index(o.scenario.preset), o.scenario.fault))
            .or_default();
        c.runs += 1;
        c.fired += u64::from(o.fired > 0);
        c.violations += u64::from(!o.violations.is_empty());
        c.not_linearizable += u64::from(!o.linearizable);
        c.operations += o.operations as u64;
    }

    /// The cell of `preset` x `fault`.
    pub fn cell(&self, preset: Preset, fault: ClusterFault) -> Cell {
        self.cells
            .get(&(preset_index(preset), fault))
            .copied()
            .unwrap_or_default()
    }

    /// Every cell with runs.
    pub fn cells(&self) -> impl Iterator<Item = (Preset, ClusterFault, Cell)> + '_ {
        self.cells
            .iter()
            .map(|(&(p, f), &c)| (Preset::ALL[p], f, c))
    }

    /// Seeds run in all.
    pub fn runs(&self) -> u64 {
        self.cells.values().map(|c| c.runs).sum()
    }

    /// Client operations checked in all.
    pub fn operations(&self) -> u64 {
        self.cells.values().map(|c| c.operations).sum()
    }
}

impl fmt::Display for ClusterMatrix {
    /// One row per fault kind, one column per preset (19 kinds do not fit
    /// across a terminal).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<18}", "fault")?;
        for p in Preset::ALL {
            write!(f, " {:>14}", p.name())?;
        }
        writeln!(f, "   (each cell: runs/fired/violations/not-linearizable)")?;
        for k in ClusterFault::ALL {
            if Preset::ALL.iter().all(|&p| self.cell(p, k).runs == 0) {
                continue;
            }
            write!(f, "{:<18}", k.name())?;
            for p in Preset::ALL {
                let c = self.cell(p, k);
                write!(
                    f,
                    " {:>14}",
                    format!(
                        "{}/{}/{}/{}",
                        c.runs, c.fired, c.violations, c.not_linearizable
                    )
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
