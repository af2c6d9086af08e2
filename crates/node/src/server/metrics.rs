//! Counters the RESP server keeps: connections, commands processed, and a
//! latency histogram per command. Everything is a fixed array of atomics
//! indexed by [`super::table::COMMANDS`], so recording never allocates or
//! locks and memory does not grow with traffic.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::table::COMMANDS;

/// Upper bounds of the latency buckets, in microseconds (Prometheus `le`
/// labels are these in seconds). From 100 µs to 10 s; slower requests
/// land in `+Inf`.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Reads one counter of a command.
type CounterField = fn(&CommandSnapshot) -> u64;

/// Slots: one per served command, plus `unknown` for requests naming a
/// command this node does not serve and for frames that broke the protocol.
const SLOTS: usize = COMMANDS.len() + 1;
const UNKNOWN_SLOT: usize = COMMANDS.len();

#[derive(Debug, Default)]
struct CommandCounters {
    calls: AtomicU64,
    errors: AtomicU64,
    latency_us_sum: AtomicU64,
    /// Non-cumulative: `buckets[i]` counts latencies in
    /// `(LATENCY_BUCKETS_US[i-1], LATENCY_BUCKETS_US[i]]`; the last slot is
    /// above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
}

/// The RESP server's counters, shared with the admin port.
#[derive(Debug)]
pub struct Metrics {
    connections_current: AtomicU64,
    connections_total: AtomicU64,
    connections_rejected: AtomicU64,
    commands: [CommandCounters; SLOTS],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections_current: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            commands: std::array::from_fn(|_| CommandCounters::default()),
        }
    }
}

/// A point-in-time copy of one command's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSnapshot {
    /// Lowercase command name, `unknown` for commands not served.
    pub name: &'static str,
    /// Requests answered.
    pub calls: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Sum of latencies, microseconds.
    pub latency_us_sum: u64,
    /// Cumulative bucket counts, one per [`LATENCY_BUCKETS_US`] bound.
    pub latency_buckets_cumulative: Vec<u64>,
}

impl Metrics {
    /// Index of the counters for the command named `name`.
    pub(crate) fn slot(name: Option<&[u8]>) -> usize {
        name.and_then(super::table::lookup).unwrap_or(UNKNOWN_SLOT)
    }

    pub(crate) fn record(&self, slot: usize, latency_us: u64, error: bool) {
        let counters = &self.commands[slot.min(UNKNOWN_SLOT)];
        counters.calls.fetch_add(1, Ordering::Relaxed);
        if error {
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        counters
            .latency_us_sum
            .fetch_add(latency_us, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&bound| latency_us <= bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        counters.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        self.connections_current.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_current.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_rejected(&self) {
        self.connections_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn connections_current(&self) -> u64 {
        self.connections_current.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn connections_total(&self) -> u64 {
        self.connections_total.load(Ordering::Relaxed)
    }

    /// Connections refused because `connections_max` were open.
    pub fn connections_rejected(&self) -> u64 {
        self.connections_rejected.load(Ordering::Relaxed)
    }

    /// Requests answered since start, all commands together.
    pub fn commands_processed(&self) -> u64 {
        self.commands
            .iter()
            .map(|counters| counters.calls.load(Ordering::Relaxed))
            .sum()
    }

    /// Every command's counters (served commands, then `unknown`).
    pub fn commands(&self) -> Vec<CommandSnapshot> {
        self.commands
            .iter()
            .enumerate()
            .map(|(slot, counters)| {
                let mut running = 0;
                let latency_buckets_cumulative = LATENCY_BUCKETS_US
                    .iter()
                    .enumerate()
                    .map(|(bucket, _)| {
                        running += counters.buckets[bucket].load(Ordering::Relaxed);
                        running
                    })
                    .collect();
                CommandSnapshot {
                    name: COMMANDS.get(slot).map_or("unknown", |spec| spec.name),
                    calls: counters.calls.load(Ordering::Relaxed),
                    errors: counters.errors.load(Ordering::Relaxed),
                    latency_us_sum: counters.latency_us_sum.load(Ordering::Relaxed),
                    latency_buckets_cumulative,
                }
            })
            .collect()
    }

    /// Appends the RESP metrics in Prometheus text format 0.0.4.
    pub fn write_prometheus(&self, out: &mut String) {
        let gauges = [
            (
                "ballast_resp_connections",
                "gauge",
                "RESP client connections open now.",
                self.connections_current(),
            ),
            (
                "ballast_resp_connections_total",
                "counter",
                "RESP client connections accepted.",
                self.connections_total(),
            ),
            (
                "ballast_resp_connections_rejected_total",
                "counter",
                "RESP client connections refused at the connection limit.",
                self.connections_rejected(),
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let commands = self.commands();
        let counters: [(&str, &str, CounterField); 2] = [
            (
                "ballast_resp_commands_total",
                "RESP requests answered, by command.",
                |c| c.calls,
            ),
            (
                "ballast_resp_command_errors_total",
                "RESP requests answered with an error, by command.",
                |c| c.errors,
            ),
        ];
        for (name, help, field) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for c in &commands {
                let _ = writeln!(out, "{name}{{command=\"{}\"}} {}", c.name, field(c));
            }
        }
        let name = "ballast_resp_command_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from receiving a RESP request to its reply being ready, by command.\n\
             # TYPE {name} histogram"
        );
        for c in commands.iter().filter(|c| c.calls > 0) {
            for (bound_us, count) in LATENCY_BUCKETS_US.iter().zip(&c.latency_buckets_cumulative) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{command=\"{}\",le=\"{}\"}} {count}",
                    c.name,
                    seconds(*bound_us)
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{command=\"{}\",le=\"+Inf\"}} {}",
                c.name, c.calls
            );
            let _ = writeln!(
                out,
                "{name}_sum{{command=\"{}\"}} {}",
                c.name,
                seconds(c.latency_us_sum)
            );
            let _ = writeln!(out, "{name}_count{{command=\"{}\"}} {}", c.name, c.calls);
        }
    }
}

/// Microseconds as a decimal number of seconds, exactly (no float
/// rounding in the `le` labels).
pub(crate) fn seconds(us: u64) -> String {
    let fraction = us % 1_000_000;
    if fraction == 0 {
        format!("{}", us / 1_000_000)
    } else {
        let digits = format!("{fraction:06}");
        format!("{}.{}", us / 1_000_000, digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_bucket_and_buckets_are_cumulative() {
        let metrics = Metrics::default();
        let get = Metrics::slot(Some(b"GET"));
        metrics.record(get, 100, false);
        metrics.record(get, 101, true);
        metrics.record(get, 20_000_000, false);
        let snapshot = metrics
            .commands()
            .into_iter()
            .find(|c| c.name == "get")
            .unwrap();
        assert_eq!(snapshot.calls, 3);
        assert_eq!(snapshot.errors, 1);
        assert_eq!(snapshot.latency_buckets_cumulative[0], 1);
        assert_eq!(snapshot.latency_buckets_cumulative[1], 2);
        assert_eq!(*snapshot.latency_buckets_cumulative.last().unwrap(), 2);
        assert_eq!(metrics.commands_processed(), 3);
        let mut text = String::new();
        metrics.write_prometheus(&mut text);
        assert!(text.contains(
            "ballast_resp_command_duration_seconds_bucket{command=\"get\",le=\"0.0001\"} 1"
        ));
        assert!(text.contains(
            "ballast_resp_command_duration_seconds_bucket{command=\"get\",le=\"+Inf\"} 3"
        ));
        assert!(
            text.contains("ballast_resp_command_duration_seconds_sum{command=\"get\"} 20.000201")
        );
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(100), "0.0001");
        assert_eq!(seconds(2_500_000), "2.5");
        assert_eq!(seconds(10_000_000), "10");
        assert_eq!(seconds(0), "0");
    }
}
