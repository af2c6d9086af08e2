//! ballast-chaos: fault scenarios against the real `ballast` binary, with
//! checked client histories and a report per run.
//!
//! - [`proxy`]: the fault proxy on the peer links (partitions, one-way
//!   cuts, delay), no root needed.
//! - [`cluster`]: a fresh 3-node cluster of `ballast` processes per run:
//!   ports, configs, start, SIGKILL, SIGSTOP/SIGCONT, restart, `/status`.
//! - [`workload`]: concurrent RESP clients recording every invocation and
//!   completion into a [`ballast_history::History`].
//! - [`scenario`]: the named scenarios and the fault timeline they drive.
//! - [`check`]: what is checked after every run.
//! - [`report`]: the summary, the history and timeline as JSON, the picture.
//! - [`run`]: one run of one scenario, start to verdict.
#![forbid(unsafe_code)]

pub mod check;
pub mod cluster;
pub mod proxy;
pub mod report;
pub mod run;
pub mod scenario;
pub mod workload;
