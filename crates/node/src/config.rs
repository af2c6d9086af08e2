//! A node's configuration: [`NodeConfig`], loadable from TOML.
//!
//! ```toml
//! id = 1
//! data_dir = "/var/lib/ballast/1"
//! raft_addr = "127.0.0.1:7001"     # peers
//! client_addr = "127.0.0.1:6001"   # RESP clients
//! admin_addr = "127.0.0.1:8001"    # admin HTTP
//! preset = "durable"               # durable | balanced | throughput
//! # secret = "..."                 # required when any address is not loopback
//!
//! [[initial_members]]              # only to bootstrap a new cluster
//! id = 1
//! raft_addr = "127.0.0.1:7001"
//! client_addr = "127.0.0.1:6001"
//! ```
//!
//! Every other field has a default (see [`NodeConfig::new`]). Command-line
//! flags override a loaded configuration by assigning its public fields;
//! call [`NodeConfig::validate`] afterwards ([`crate::Node::start`] does it
//! again anyway).

use ballast_raft::net::{TokioTransport, Transport};
use ballast_raft::NodeId;
use ballast_storage::Preset;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// A configuration value is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node config: {field}: {reason}")]
pub struct ConfigError {
    /// The field, as named in the TOML file.
    pub field: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

fn invalid<T>(field: &str, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        field: field.to_string(),
        reason: reason.into(),
    })
}

/// A member of the cluster to bootstrap.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its node id.
    pub id: NodeId,
    /// Its Raft RPC address.
    pub raft_addr: String,
    /// Its client (RESP) address.
    pub client_addr: String,
}

/// Everything a node needs to start.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node's id (at least 1), unique in the cluster.
    pub id: NodeId,
    /// Where peers reach this node's Raft RPC server.
    pub raft_addr: String,
    /// Where RESP clients connect.
    pub client_addr: String,
    /// Where the admin HTTP port listens.
    pub admin_addr: String,
    /// The node's directory: Raft log, engine, snapshot inbox.
    pub data_dir: PathBuf,
    /// The durability preset (see DESIGN.md, "Durability presets").
    pub preset: Preset,
    /// Largest key accepted, in bytes.
    pub key_bytes_max: u64,
    /// Largest value accepted, in bytes.
    pub value_bytes_max: u64,
    /// Largest RESP request frame accepted from a client, in bytes.
    pub client_frame_bytes_max: u64,
    /// Largest Raft RPC frame sent or accepted, in bytes.
    pub raft_frame_bytes_max: u32,
    /// Shared secret between peers; required when an address is not
    /// loopback.
    pub secret: Option<String>,
    /// Password RESP clients must AUTH with (user `default`); required
    /// when `client_addr` is not loopback.
    pub password: Option<String>,
    /// Leader heartbeat interval.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_after_entries: u64,
    /// Log entries kept behind a snapshot (so a slightly lagging follower
    /// catches up from the log rather than by snapshot).
    pub snapshot_keep_entries: u64,
    /// The largest snapshot this node accepts from a leader, in bytes.
    pub snapshot_bytes_max: u64,
    /// How long a request waits for an answer (forwarding included).
    pub request_timeout_ms: u64,
    /// How long a request waits for a leader to be known before failing
    /// with "no leader".
    pub leader_wait_ms: u64,
    /// On the leader, log entries of client writes proposed and not yet
    /// committed, at most. Writes that arrive meanwhile queue and leave
    /// together as one entry, so fewer in flight means bigger entries
    /// (1 measured best on 2 cores; see README "The cluster").
    pub entries_in_flight_max: u64,
    /// Writes one log entry carries, at most.
    pub writes_per_entry_max: u64,
    /// The members to bootstrap a new cluster with. Only used when this
    /// node has never been initialized; a restart resumes its cluster.
    pub initial_members: Vec<Member>,
    /// Planted bugs this node runs with (always empty without the
    /// `planted-bugs` feature; never read from the config file: the binary
    /// takes them from `BALLAST_PLANTED_BUGS`).
    pub planted: ballast_raft::planted::Planted,
    /// Balanced preset only: how often the Raft log is fsynced, in ms
    /// (`None`: the preset's 5 ms). The balanced contract's window.
    pub sync_interval_ms: Option<u64>,
    /// Size of the Raft log's WAL segments, overriding the preset's
    /// `wal_segment_bytes` (tests use small segments to roll often; not
    /// read from the config file).
    pub raft_log_segment_bytes: Option<u64>,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("id", &self.id)
            .field("raft_addr", &self.raft_addr)
            .field("client_addr", &self.client_addr)
            .field("admin_addr", &self.admin_addr)
            .field("data_dir", &self.data_dir)
            .field("preset", &self.preset)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("initial_members", &self.initial_members)
            .field("planted", &self.planted)
            .finish_non_exhaustive()
    }
}

/// The TOML shape of [`NodeConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeConfigFile {
    id: NodeId,
    data_dir: PathBuf,
    raft_addr: Option<String>,
    client_addr: Option<String>,
    admin_addr: Option<String>,
    preset: Option<String>,
    key_bytes_max: Option<u64>,
    value_bytes_max: Option<u64>,
    client_frame_bytes_max: Option<u64>,
    raft_frame_bytes_max: Option<u32>,
    secret: Option<String>,
    password: Option<String>,
    heartbeat_interval_ms: Option<u64>,
    election_timeout_min_ms: Option<u64>,
    election_timeout_max_ms: Option<u64>,
    snapshot_after_entries: Option<u64>,
    snapshot_keep_entries: Option<u64>,
    snapshot_bytes_max: Option<u64>,
    request_timeout_ms: Option<u64>,
    leader_wait_ms: Option<u64>,
    entries_in_flight_max: Option<u64>,
    writes_per_entry_max: Option<u64>,
    sync_interval_ms: Option<u64>,
    #[serde(default)]
    initial_members: Vec<Member>,
}

impl NodeConfig {
    /// Defaults for node `id` in `data_dir`: loopback addresses on the
    /// usual ports, the durable preset, the engine's key and value limits.
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>) -> NodeConfig {
        let engine = ballast_storage::Options::preset(Preset::Durable);
        NodeConfig {
            id,
            raft_addr: "127.0.0.1:7379".into(),
            client_addr: "127.0.0.1:6379".into(),
            admin_addr: "127.0.0.1:8379".into(),
            data_dir: data_dir.into(),
            preset: Preset::Durable,
            key_bytes_max: engine.key_bytes_max,
            value_bytes_max: engine.value_bytes_max,
            client_frame_bytes_max: 64 << 20,
            raft_frame_bytes_max: 64 << 20,
            secret: None,
            password: None,
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_after_entries: 10_000,
            snapshot_keep_entries: 1_000,
            snapshot_bytes_max: 8 << 30,
            request_timeout_ms: 5_000,
            leader_wait_ms: 3_000,
            entries_in_flight_max: 1,
            writes_per_entry_max: 1024,
            initial_members: Vec::new(),
            planted: ballast_raft::planted::Planted::NONE,
            sync_interval_ms: None,
            raft_log_segment_bytes: None,
        }
    }

    /// Parses and validates a TOML configuration; errors name the field.
    ///
    /// ```
    /// use ballast_node::NodeConfig;
    /// let c = NodeConfig::from_toml("id = 2\ndata_dir = \"/tmp/b2\"\npreset = \"balanced\"\n").unwrap();
    /// assert_eq!(c.id, 2);
    /// let err = NodeConfig::from_toml("id = 2\ndata_dir = \"d\"\nheartbeat_interval_ms = \"x\"\n").unwrap_err();
    /// assert_eq!(err.field, "heartbeat_interval_ms");
    /// ```
    pub fn from_toml(text: &str) -> Result<NodeConfig, ConfigError> {
        let f: NodeConfigFile = toml::from_str(text).map_err(|e| ConfigError {
            field: field_of(text, &e),
            reason: e.message().to_string(),
        })?;
        let mut c = NodeConfig::new(f.id, f.data_dir);
        if let Some(p) = f.preset {
            c.preset = Preset::parse(&p).map_err(|_| ConfigError {
                field: "preset".into(),
                reason: format!("`{p}` is not one of durable, balanced, throughput"),
            })?;
        }
        macro_rules! take {
            ($($name:ident),*) => { $( if let Some(v) = f.$name { c.$name = v; } )* };
        }
        take!(
            raft_addr,
            client_addr,
            admin_addr,
            key_bytes_max,
            value_bytes_max,
            client_frame_bytes_max,
            raft_frame_bytes_max,
            heartbeat_interval_ms,
            election_timeout_min_ms,
            election_timeout_max_ms,
            snapshot_after_entries,
            snapshot_keep_entries,
            snapshot_bytes_max,
            request_timeout_ms,
            leader_wait_ms,
            entries_in_flight_max,
            writes_per_entry_max
        );
        c.secret = f.secret;
        c.password = f.password;
        c.sync_interval_ms = f.sync_interval_ms;
        c.initial_members = f.initial_members;
        c.validate()?;
        Ok(c)
    }

    /// Checks every field and their relations; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_for(&TokioTransport)
    }

    /// [`NodeConfig::validate`], for a node on `transport`, which says
    /// which addresses stay on this machine (a simulated network's hosts
    /// are not TCP loopback addresses).
    pub fn validate_for(&self, transport: &dyn Transport) -> Result<(), ConfigError> {
        let is_loopback = |addr: &str| transport.is_loopback(addr);
        if self.id == 0 {
            return invalid("id", "must be at least 1");
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty");
        }
        let needs_secret = [
            ("raft_addr", &self.raft_addr),
            ("client_addr", &self.client_addr),
            ("admin_addr", &self.admin_addr),
        ]
        .into_iter()
        .chain(
            self.initial_members
                .iter()
                .map(|m| ("initial_members.raft_addr", &m.raft_addr)),
        )
        .find(|(_, a)| !is_loopback(a.as_str()));
        if let Some((field, addr)) = needs_secret {
            if self.secret.as_deref().is_none_or(str::is_empty) {
                return invalid(
                    field,
                    format!("{addr} is not a loopback address: set `secret` (shared by every node) to bind or talk beyond this machine"),
                );
            }
        }
        if !is_loopback(&self.client_addr) && self.password.as_deref().is_none_or(str::is_empty) {
            return invalid(
                "client_addr",
                format!(
                    "{} is not a loopback address: set `password` so that clients must AUTH",
                    self.client_addr
                ),
            );
        }
        for (field, addr) in [
            ("raft_addr", &self.raft_addr),
            ("client_addr", &self.client_addr),
            ("admin_addr", &self.admin_addr),
        ] {
            if !addr.contains(':') {
                return invalid(field, format!("`{addr}` is not host:port"));
            }
        }
        if self.secret.as_deref().is_some_and(|s| s.len() < 16) {
            return invalid("secret", "must be at least 16 bytes");
        }
        if self.key_bytes_max == 0 || self.value_bytes_max == 0 {
            return invalid("key_bytes_max", "key and value limits must be above 0");
        }
        let raft_min = u64::from(ballast_raft::net::FRAME_BYTES_MAX_FLOOR) + (1 << 20) + 1024;
        if u64::from(self.raft_frame_bytes_max) < raft_min {
            return invalid(
                "raft_frame_bytes_max",
                format!("must be at least {raft_min} (one 1 MiB snapshot chunk and headers)"),
            );
        }
        let entry_max = self.key_bytes_max + self.value_bytes_max + 4096;
        if u64::from(self.raft_frame_bytes_max) < entry_max {
            return invalid(
                "raft_frame_bytes_max",
                format!(
                    "must hold one largest entry: key_bytes_max + value_bytes_max + 4096 = {entry_max}"
                ),
            );
        }
        if self.client_frame_bytes_max < entry_max {
            return invalid(
                "client_frame_bytes_max",
                format!("must hold one largest SET: at least {entry_max}"),
            );
        }
        // A value the node accepts must be one it can replicate within the
        // time it gives a request: an entry is given its bytes at the
        // network's slowest planned rate, plus a second for the rest.
        let transfer_ms =
            entry_max.saturating_mul(1000) / ballast_raft::net::TRANSFER_BYTES_PER_SEC_MIN;
        if self.request_timeout_ms < transfer_ms + 1000 {
            return invalid(
                "value_bytes_max",
                format!(
                    "a value of {} bytes needs about {transfer_ms} ms to replicate at {} MiB/s, \
                     more than request_timeout_ms ({}) leaves: lower value_bytes_max or raise \
                     request_timeout_ms to at least {}",
                    self.value_bytes_max,
                    ballast_raft::net::TRANSFER_BYTES_PER_SEC_MIN >> 20,
                    self.request_timeout_ms,
                    transfer_ms + 1000
                ),
            );
        }
        if self.heartbeat_interval_ms == 0 {
            return invalid("heartbeat_interval_ms", "must be above 0");
        }
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms {
            return invalid(
                "election_timeout_min_ms",
                "must be above heartbeat_interval_ms",
            );
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return invalid(
                "election_timeout_max_ms",
                "must be above election_timeout_min_ms",
            );
        }
        if self.snapshot_after_entries == 0 {
            return invalid("snapshot_after_entries", "must be above 0");
        }
        if self.snapshot_bytes_max == 0 {
            return invalid("snapshot_bytes_max", "must be above 0");
        }
        if self.request_timeout_ms == 0 || self.leader_wait_ms == 0 {
            return invalid(
                "request_timeout_ms",
                "request_timeout_ms and leader_wait_ms must be above 0",
            );
        }
        if !(1..=1024).contains(&self.entries_in_flight_max) {
            return invalid("entries_in_flight_max", "must be 1 to 1024");
        }
        if !(1..=65_536).contains(&self.writes_per_entry_max) {
            return invalid("writes_per_entry_max", "must be 1 to 65536");
        }
        if let Some(ms) = self.sync_interval_ms {
            if self.preset != Preset::Balanced {
                return invalid(
                    "sync_interval_ms",
                    format!(
                        "only the balanced preset fsyncs on an interval (this node runs {})",
                        self.preset.name()
                    ),
                );
            }
            if !(1..=60_000).contains(&ms) {
                return invalid("sync_interval_ms", "must be 1 to 60000");
            }
        }
        let mut ids = BTreeSet::new();
        for m in &self.initial_members {
            if m.id == 0 || !ids.insert(m.id) {
                return invalid(
                    "initial_members",
                    format!("member id {} is 0 or listed twice", m.id),
                );
            }
            if !m.raft_addr.contains(':') || !m.client_addr.contains(':') {
                return invalid(
                    "initial_members",
                    format!("member {}: addresses must be host:port", m.id),
                );
            }
        }
        if !self.initial_members.is_empty() && !ids.contains(&self.id) {
            return invalid(
                "initial_members",
                format!("does not list this node (id {})", self.id),
            );
        }
        Ok(())
    }

    /// The storage engine's options for this node.
    pub fn engine_options(&self) -> ballast_storage::Options {
        let mut o = ballast_storage::Options::preset(self.preset);
        o.key_bytes_max = self.key_bytes_max;
        o.value_bytes_max = self.value_bytes_max;
        if let Some(sync_interval_ms) = self.sync_interval_ms {
            o.fsync = ballast_storage::FsyncPolicy::Interval { sync_interval_ms };
        }
        o
    }
}

/// The key on the line where toml located the error, so that the message
/// names the field even when the value is what is wrong.
fn field_of(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return "config".to_string();
    };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    match line.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() => key.trim().to_string(),
        _ => "config".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "id = 1\ndata_dir = \"/tmp/x\"\n";

    fn err(extra: &str) -> ConfigError {
        NodeConfig::from_toml(&format!("{BASE}{extra}")).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err("preset = \"fast\"\n").field, "preset");
        assert_eq!(
            err("heartbeat_interval_ms = 0\n").field,
            "heartbeat_interval_ms"
        );
        assert_eq!(
            err("election_timeout_min_ms = 50\n").field,
            "election_timeout_min_ms"
        );
        assert_eq!(err("bogus = 1\n").field, "bogus");
        assert_eq!(
            err("raft_frame_bytes_max = 10\n").field,
            "raft_frame_bytes_max"
        );
        assert_eq!(err("secret = \"short\"\n").field, "secret");
        assert_eq!(
            err("entries_in_flight_max = 0\n").field,
            "entries_in_flight_max"
        );
        assert_eq!(
            err("writes_per_entry_max = 100000\n").field,
            "writes_per_entry_max"
        );
        let e = err("[[initial_members]]\nid = 2\nraft_addr = \"127.0.0.1:1\"\nclient_addr = \"127.0.0.1:2\"\n");
        assert_eq!(e.field, "initial_members");
        assert!(e.reason.contains("does not list this node"), "{e}");
    }

    #[test]
    fn a_value_the_node_accepts_can_replicate_within_the_request_timeout() {
        let e = err("request_timeout_ms = 2000\n");
        assert_eq!(e.field, "value_bytes_max");
        assert!(e.reason.contains("request_timeout_ms"), "{e}");
        let c = NodeConfig::from_toml(&format!(
            "{BASE}request_timeout_ms = 2000\nvalue_bytes_max = 1048576\n"
        ))
        .expect("a smaller value limit fits");
        assert_eq!(c.value_bytes_max, 1 << 20);
    }

    #[test]
    fn non_loopback_addresses_need_a_secret() {
        let e = err("raft_addr = \"0.0.0.0:7000\"\n");
        assert_eq!(e.field, "raft_addr");
        assert!(e.reason.contains("secret"), "{e}");
        assert_eq!(
            err("client_addr = \"db.example.com:6379\"\n").field,
            "client_addr"
        );
        let c = NodeConfig::from_toml(&format!(
            "{BASE}raft_addr = \"0.0.0.0:7000\"\nsecret = \"0123456789abcdef\"\n"
        ))
        .expect("with a secret");
        assert_eq!(c.raft_addr, "0.0.0.0:7000");
        assert!(NodeConfig::from_toml(&format!("{BASE}raft_addr = \"localhost:7000\"\n")).is_ok());
        assert!(NodeConfig::from_toml(&format!("{BASE}raft_addr = \"[::1]:7000\"\n")).is_ok());
    }

    #[test]
    fn a_full_file_loads() {
        let c = NodeConfig::from_toml(&format!(
            "{BASE}preset = \"throughput\"\nsnapshot_after_entries = 7\nentries_in_flight_max = 3\n\
             [[initial_members]]\nid = 1\nraft_addr = \"127.0.0.1:7001\"\nclient_addr = \"127.0.0.1:6001\"\n"
        ))
        .expect("valid");
        assert_eq!(c.preset, Preset::Throughput);
        assert_eq!(c.snapshot_after_entries, 7);
        assert_eq!(c.entries_in_flight_max, 3);
        assert_eq!(c.initial_members.len(), 1);
        assert_eq!(c.engine_options().preset, Preset::Throughput);
    }
}
