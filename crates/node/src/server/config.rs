//! The RESP server's configuration: every limit of a connection and of
//! the server, named with its unit, and the check that they can work
//! together.

use crate::api::Consistency;
use crate::error::Error;
use crate::resp::Limits;

/// Configuration of the RESP server. Names carry units.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Frame limits of the decoder.
    pub limits: Limits,
    /// When set, clients must AUTH (or HELLO 2 AUTH) with this password as
    /// the `default` user before any other command.
    pub password: Option<String>,
    /// Most open client connections (Redis's `maxclients` default).
    pub connections_max: usize,
    /// Most requests of one connection read but not yet answered on the
    /// wire.
    pub pending_replies_max: usize,
    /// Unwritten reply bytes of one connection above which it stops
    /// reading requests.
    pub reply_buffer_bytes_max: usize,
    /// Largest MGET reply, in value bytes; a larger one is refused with an
    /// error instead of being buffered.
    pub reply_bytes_max: usize,
    /// Close a connection with nothing pending after this long (0: never).
    pub idle_timeout_ms: u64,
    /// Close a connection whose replies or whose half-received request
    /// make no progress for this long.
    pub stall_timeout_ms: u64,
    /// Longest key accepted for writes (the engine's limit).
    pub key_bytes_max: usize,
    /// Longest value accepted for writes (the engine's limit).
    pub value_bytes_max: usize,
    /// Largest SCAN COUNT honoured; larger counts are cut to it.
    pub scan_count_max: usize,
    /// Most SCAN cursors kept, server-wide.
    pub scan_cursors_max: usize,
    /// Most bytes of resume keys kept for SCAN cursors, server-wide.
    pub scan_cursor_bytes_max: usize,
    /// Consistency of GET, MGET, EXISTS, TTL, SCAN and DBSIZE.
    pub read_consistency: Consistency,
    /// How long shutdown waits for connections to finish.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            password: None,
            connections_max: 10_000,
            pending_replies_max: 1024,
            reply_buffer_bytes_max: 4 * 1024 * 1024,
            reply_bytes_max: 64 * 1024 * 1024,
            idle_timeout_ms: 0,
            stall_timeout_ms: 30_000,
            key_bytes_max: 64 * 1024,
            value_bytes_max: 16 * 1024 * 1024,
            scan_count_max: 1000,
            scan_cursors_max: 10_000,
            scan_cursor_bytes_max: 16 * 1024 * 1024,
            read_consistency: Consistency::Linearizable,
            shutdown_grace_ms: 5_000,
        }
    }
}

impl ServerConfig {
    /// Checks that the configuration can work; the error names the field.
    pub fn validate(&self) -> Result<(), Error> {
        self.limits.validate()?;
        let at_least_one = [
            ("connections_max", self.connections_max as u64),
            ("pending_replies_max", self.pending_replies_max as u64),
            ("reply_buffer_bytes_max", self.reply_buffer_bytes_max as u64),
            ("reply_bytes_max", self.reply_bytes_max as u64),
            ("stall_timeout_ms", self.stall_timeout_ms),
            ("key_bytes_max", self.key_bytes_max as u64),
            ("value_bytes_max", self.value_bytes_max as u64),
            ("scan_count_max", self.scan_count_max as u64),
            ("scan_cursors_max", self.scan_cursors_max as u64),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return Err(Error::InvalidLimits(format!("{name} must be at least 1")));
            }
        }
        if self.scan_cursor_bytes_max < self.key_bytes_max {
            return Err(Error::InvalidLimits(
                "scan_cursor_bytes_max must be at least key_bytes_max".to_string(),
            ));
        }
        Ok(())
    }
}
