//! What every connection of a RESP server shares: the API, the
//! configuration, the counters, the SCAN cursor table, the open clients
//! (for CLIENT LIST) and the start time.
//! Its own module so that the connection and command modules depend on it,
//! and the server module on them, one way.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::config::ServerConfig;
use super::cursors::Cursors;
use super::metrics::Metrics;

/// What every connection shares.
pub(crate) struct Shared<A> {
    pub(super) api: Arc<A>,
    pub(super) config: ServerConfig,
    pub(super) metrics: Arc<Metrics>,
    cursors: Mutex<Cursors>,
    /// One entry per open connection (so bounded by `connections_max`),
    /// by id: CLIENT LIST prints them in id order, as Redis does.
    clients: Mutex<BTreeMap<u64, ClientEntry>>,
    pub(super) started: tokio::time::Instant,
}

/// What CLIENT INFO and CLIENT LIST say about one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientEntry {
    /// The peer's address, `ip:port`.
    pub(super) addr: String,
    /// The local address it connected to.
    pub(super) local_addr: String,
    /// CLIENT SETNAME / HELLO SETNAME.
    pub(super) name: Option<Bytes>,
    /// CLIENT SETINFO LIB-NAME.
    pub(super) lib_name: Option<Bytes>,
    /// CLIENT SETINFO LIB-VER.
    pub(super) lib_ver: Option<Bytes>,
    /// 2 or 3.
    pub(super) resp: i64,
}

impl ClientEntry {
    /// Redis's `field=value` line (the fields ballast has), without the
    /// line break. Names hold no spaces (CLIENT SETNAME refuses them), so
    /// the line splits cleanly.
    pub(super) fn line(&self, id: u64) -> String {
        let text = |value: &Option<Bytes>| {
            value
                .as_ref()
                .map(|value| String::from_utf8_lossy(value).into_owned())
                .unwrap_or_default()
        };
        let mut line = String::new();
        let _ = write!(
            line,
            "id={id} addr={} laddr={} name={} db=0 multi=-1 resp={} lib-name={} lib-ver={}",
            self.addr,
            self.local_addr,
            text(&self.name),
            self.resp,
            text(&self.lib_name),
            text(&self.lib_ver),
        );
        line
    }
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
            clients: Mutex::new(BTreeMap::new()),
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

    /// The open connections, by id.
    pub(super) fn clients(&self) -> MutexGuard<'_, BTreeMap<u64, ClientEntry>> {
        // Each update is one insert or remove; a panic cannot leave the
        // map half-updated.
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
