//! What the node tests share, one module per kind of test; each test file
//! declares `mod support;` once and uses the parts it needs:
//!
//! - `backend` / `server` / `resp` / `http`: a RESP server and admin port
//!   over the real engine without Raft (`server::TestNode`), and raw
//!   clients for exact wire checks;
//! - `cluster`: in-process clusters of real `Node`s on 127.0.0.1;
//! - `process`: clusters of real `ballast` processes (`ballast cluster`).
//!
//! Here: free ports, and the one way a test waits for something to
//! happen, [`eventually`] (async) and its synchronous twin
//! [`eventually_blocking`] for the tests that drive a server from plain
//! threads (the RESP server tests own their runtime; the process tests
//! talk to other processes).
#![allow(dead_code)] // each test binary uses its own part

pub mod backend;
pub mod cluster;
pub mod http;
pub mod process;
pub mod resp;
pub mod server;

use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

/// How long a test waits for something by default. Generous: the test
/// machine is shared and slow.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often [`eventually`] and [`eventually_blocking`] look again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What a polled condition answers: done (with a value), or not yet (and
/// why, for the failure message).
pub trait Ready {
    /// The value a done condition gives.
    type Output;
    /// `Ok` when done; `Err` with what was seen, if anything, when not.
    fn ready(self) -> Result<Self::Output, Option<String>>;
}

impl Ready for bool {
    type Output = ();
    fn ready(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T> Ready for Result<T, String> {
    type Output = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(Some)
    }
}

/// Polls `cond` every [`POLL_INTERVAL`] until it is ready, failing the
/// test with `what` (and what the last poll saw) after `deadline`.
pub async fn eventually<R, F, Fut>(what: &str, deadline: Duration, mut cond: F) -> R::Output
where
    R: Ready,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        let seen = match cond().await.ready() {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= end {
            timed_out(what, deadline, seen);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`eventually`] for a caller on a plain thread (no runtime to await on).
pub fn eventually_blocking<R: Ready>(
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> R,
) -> R::Output {
    let end = std::time::Instant::now() + deadline;
    loop {
        let seen = match cond().ready() {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if std::time::Instant::now() >= end {
            timed_out(what, deadline, seen);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn timed_out(what: &str, deadline: Duration, seen: Option<String>) -> ! {
    match seen {
        Some(seen) => panic!("timed out after {deadline:?} waiting for: {what}; last seen: {seen}"),
        None => panic!("timed out after {deadline:?} waiting for: {what}"),
    }
}

/// A loopback port nobody listens on right now, below the kernel's
/// ephemeral range.
///
/// Not port 0's choice: that is an ephemeral port, and a client that keeps
/// reconnecting to it while its node is down (a peer, or a test's client)
/// can be given that very port as its own source port (a TCP self-connect
/// on loopback), which then keeps the restarted node from binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % 200) as u16 * 100;
    for _ in 0..20_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000 + (base + n) % 22_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below 32000")
}
