//! The one polling helper of the raft crate's tests, shared by the
//! integration tests (through `support`) and the log store's unit tests
//! (included by path), so that every "wait until" fails the same way.

use std::time::Duration;

/// Polls `cond` every 5 ms (tokio time) until it holds; fails the test,
/// naming `what`, if it still does not after `within`.
pub async fn until(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
