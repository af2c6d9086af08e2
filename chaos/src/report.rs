//! A run's report: `summary.txt`, `history.json`, `faults.json` and
//! `report.svg` in the run's directory.
//!
//! The picture has two panels over the run's time: completed requests per
//! second (acknowledged in green, unknown outcomes in orange, refused in
//! grey), and the 50th and 99th percentile latency of acknowledged requests
//! (log scale). Each fault is a red band across both, labelled; the title
//! carries the verdict. Bins are 250 ms.

use crate::check::Checks;
use crate::scenario::FaultEvent;
use ballast_history::{History, Outcome};
use std::fmt::Write as _;
use std::path::Path;

const BIN_NS: u64 = 250_000_000;
const W: f64 = 960.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 60.0;
const PANEL: f64 = 150.0;
const GAP: f64 = 40.0;

/// What a run reports.
pub struct RunReport<'a> {
    /// Scenario name.
    pub scenario: &'a str,
    /// Preset.
    pub preset: &'a str,
    /// The seed.
    pub seed: u64,
    /// Planted bugs switched on, if any.
    pub planted: Option<&'a str>,
    /// The history.
    pub history: &'a History,
    /// The faults.
    pub faults: &'a [FaultEvent],
    /// The checks.
    pub checks: &'a Checks,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
}

impl RunReport<'_> {
    /// One paragraph for the terminal and `summary.txt`.
    pub fn summary(&self) -> String {
        let c = self.checks;
        let verdict = if c.passed() { "PASS" } else { "FAIL" };
        let mut s = format!(
            "{verdict} {} preset {} seed {}{}: {} operations ({} unknown) on {} keys, {} faults, {:.1} s\n",
            self.scenario,
            self.preset,
            self.seed,
            self.planted.map(|p| format!(" planted {p}")).unwrap_or_default(),
            c.operations,
            c.unknown,
            c.keys,
            self.faults.len(),
            self.seconds
        );
        let _ = writeln!(
            s,
            "  linearizable: {}; leader after repair: {}; converged: {}; panics: {}",
            if c.violations.is_empty() && c.gave_up.is_empty() {
                "yes"
            } else {
                "NO"
            },
            c.leader_after_s
                .map_or("NONE within 10 s".to_string(), |t| format!("{t:.2} s")),
            if c.converged { "yes" } else { "NO" },
            c.panics.len()
        );
        if c.loss_windows > 0 {
            let _ = writeln!(
                s,
                "  the preset may lose recent writes at a power cut: {} windows, {} operations judged as unknown",
                c.loss_windows, c.relaxed
            );
        }
        if c.rollback_cuts > 0 {
            let _ = writeln!(
                s,
                "  the preset may roll back to an earlier state at a power cut: judged per epoch between {} cuts",
                c.rollback_cuts
            );
        }
        for f in c.failures() {
            let _ = writeln!(s, "  {f}");
        }
        s
    }

    /// Writes the four files into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join("summary.txt"), self.summary())?;
        let history =
            serde_json::to_string(self.history.operations()).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("history.json"), history)?;
        let faults = serde_json::to_string_pretty(&serde_json::json!({
            "scenario": self.scenario,
            "preset": self.preset,
            "seed": self.seed,
            "faults": self.faults,
            "checks": self.checks,
        }))
        .map_err(std::io::Error::other)?;
        std::fs::write(dir.join("faults.json"), faults)?;
        std::fs::write(dir.join("report.svg"), self.svg())
    }

    /// The picture.
    pub fn svg(&self) -> String {
        let ops = self.history.operations();
        let end_ns = ops
            .iter()
            .map(|o| o.completed.unwrap_or(o.invoked))
            .chain(self.faults.iter().map(|f| f.end_ns))
            .max()
            .unwrap_or(0)
            .max(BIN_NS);
        let bins = end_ns.div_ceil(BIN_NS) as usize;
        let mut ok = vec![0u32; bins];
        let mut unknown = vec![0u32; bins];
        let mut failed = vec![0u32; bins];
        let mut lat: Vec<Vec<u64>> = vec![Vec::new(); bins];
        for o in ops {
            let Some(done) = o.completed else { continue };
            let b = ((done / BIN_NS) as usize).min(bins - 1);
            match o.outcome {
                Outcome::Ok(_) => {
                    ok[b] += 1;
                    lat[b].push(done - o.invoked);
                }
                Outcome::Unknown => unknown[b] += 1,
                Outcome::Failed => failed[b] += 1,
            }
        }
        let per_s = |n: u32| f64::from(n) * 1e9 / BIN_NS as f64;
        let rate_max = ok
            .iter()
            .zip(&unknown)
            .zip(&failed)
            .map(|((a, b), c)| per_s(a + b + c))
            .fold(1.0, f64::max);
        let pct = |v: &mut Vec<u64>, p: f64| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            v.sort_unstable();
            let i = ((v.len() as f64 - 1.0) * p).round() as usize;
            Some(v[i] as f64 / 1e6)
        };
        let mut p50 = Vec::with_capacity(bins);
        let mut p99 = Vec::with_capacity(bins);
        for v in lat.iter_mut() {
            p50.push(pct(v, 0.5));
            p99.push(pct(v, 0.99));
        }
        let plot_w = W - LEFT - RIGHT;
        let x = |ns: u64| LEFT + plot_w * ns as f64 / end_ns as f64;
        let top2 = TOP + PANEL + GAP;
        let h = top2 + PANEL + 56.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
        let c = self.checks;
        let verdict = if c.passed() {
            "PASS: linearizable, converged, leader after repair".to_string()
        } else {
            format!(
                "FAIL: {}",
                c.failures().first().cloned().unwrap_or_default()
            )
        };
        let verdict: String = verdict.chars().take(120).collect();
        let colour = if c.passed() { "#1a7f37" } else { "#cf222e" };
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">ballast chaos: {} ({}), seed {}{}</text>"#,
            esc(self.scenario),
            esc(self.preset),
            self.seed,
            self.planted
                .map(|p| format!(", planted {}", esc(p)))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="38" fill="{colour}">{}</text>"#,
            esc(&verdict)
        );
        // Fault bands.
        for (i, f) in self.faults.iter().enumerate() {
            let (x0, x1) = (x(f.start_ns), x(f.end_ns).max(x(f.start_ns) + 2.0));
            let _ = writeln!(
                s,
                r##"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#cf222e" fill-opacity="0.15"/>"##,
                x1 - x0,
                top2 + PANEL - TOP
            );
            let ly = TOP - 4.0 - 10.0 * (i % 2) as f64;
            let _ = writeln!(
                s,
                r##"<text x="{x0:.1}" y="{ly}" fill="#cf222e" font-size="9">{}</text>"##,
                esc(&f.what)
            );
        }
        // Panels and axes.
        for (top, label) in [
            (TOP, format!("requests/s (max {rate_max:.0})")),
            (
                top2,
                "latency of acknowledged requests, ms (log)".to_string(),
            ),
        ] {
            let _ = writeln!(
                s,
                r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
            );
            let _ = writeln!(
                s,
                r#"<text x="{LEFT}" y="{}" >{}</text>"#,
                top + PANEL + 14.0,
                esc(&label)
            );
        }
        let secs = end_ns as f64 / 1e9;
        let step = if secs > 60.0 { 10.0 } else { 5.0 };
        let mut t = 0.0;
        while t <= secs {
            let xx = x((t * 1e9) as u64);
            let _ = writeln!(
                s,
                r##"<text x="{xx:.1}" y="{}" text-anchor="middle" fill="#555">{t:.0}s</text>"##,
                top2 + PANEL + 28.0
            );
            t += step;
        }
        // Throughput, stacked: acknowledged, unknown, refused.
        let y_rate = |v: f64| TOP + PANEL - PANEL * v / rate_max;
        let bw = plot_w / bins as f64;
        for b in 0..bins {
            let x0 = LEFT + bw * b as f64;
            let mut base = 0.0;
            for (n, fill) in [
                (ok[b], "#1a7f37"),
                (unknown[b], "#d4761c"),
                (failed[b], "#999"),
            ] {
                if n == 0 {
                    continue;
                }
                let v = per_s(n);
                let (y1, y0) = (y_rate(base + v), y_rate(base));
                let _ = writeln!(
                    s,
                    r#"<rect x="{x0:.1}" y="{y1:.1}" width="{bw:.1}" height="{:.1}" fill="{fill}"/>"#,
                    y0 - y1
                );
                base += v;
            }
        }
        // Latency, log scale from 0.1 ms to the largest p99.
        let lat_max = p99.iter().flatten().fold(1.0f64, |a, &b| a.max(b));
        let (lo, hi) = (0.1f64.log10(), lat_max.log10().max(0.0) + 0.1);
        let y_lat = |ms: f64| top2 + PANEL - PANEL * (ms.max(0.1).log10() - lo) / (hi - lo);
        for (series, colour, name) in [(&p50, "#0969da", "p50"), (&p99, "#8250df", "p99")] {
            let mut path = String::new();
            for (b, v) in series.iter().enumerate() {
                if let Some(ms) = v {
                    let cmd = if path.is_empty() { 'M' } else { 'L' };
                    let _ = write!(
                        path,
                        "{cmd}{:.1},{:.1} ",
                        LEFT + bw * (b as f64 + 0.5),
                        y_lat(*ms)
                    );
                }
            }
            let _ = writeln!(
                s,
                r#"<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.2"/>"#
            );
            let ly = if name == "p50" {
                top2 + 12.0
            } else {
                top2 + 24.0
            };
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{ly}" fill="{colour}">{name}</text>"#,
                W - RIGHT - 30.0
            );
        }
        for ms in [1.0, 10.0, 100.0, 1000.0, 10000.0] {
            if ms <= lat_max * 1.3 {
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555">{ms}</text>"##,
                    LEFT - 4.0,
                    y_lat(ms) + 3.0
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{rate_max:.0}</text>"##,
            LEFT - 4.0,
            TOP + 8.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{}" fill="#555">green: acknowledged; orange: outcome unknown; grey: refused (nothing applied). Red bands: faults.</text>"##,
            h - 4.0
        );
        s.push_str("</svg>\n");
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
