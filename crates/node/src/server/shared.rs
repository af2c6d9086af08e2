//! What every connection of a RESP server shares: the API, the
//! configuration, the counters, the SCAN cursor table and the start time.
//! Its own module so that the connection and command modules depend on it,
//! and the server module on them, one way.

use std::sync::{Arc, Mutex, MutexGuard};

use super::config::ServerConfig;
use super::cursors::Cursors;
use super::metrics::Metrics;

/// What every connection shares.
pub(crate) struct Shared<A> {
    pub(super) api: Arc<A>,
    pub(super) config: ServerConfig,
    pub(super) metrics: Arc<Metrics>,
    cursors: Mutex<Cursors>,
    pub(super) started: tokio::time::Instant,
}

impl<A> Shared<A> {
    /// The state of a new server for `api` with a validated `config`.
    pub(super) fn new(api: Arc<A>, config: ServerConfig) -> Shared<A> {
        Shared {
            api,
            cursors: Mutex::new(Cursors::new(
                config.scan_cursors_max,
                config.scan_cursor_bytes_max,
            )),
            config,
            metrics: Arc::new(Metrics::default()),
            started: tokio::time::Instant::now(),
        }
    }

    pub(super) fn cursors(&self) -> MutexGuard<'_, Cursors> {
        // The table is consistent after every statement; a panic elsewhere
        // while it was held cannot leave it half-updated.
        self.cursors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
