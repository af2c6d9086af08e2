//! One node host: the production node (Raft log on the WAL segments, the
//! engine as the state machine, snapshots, the RPC layer, the RESP server)
//! booted on a simulated host with the simulation's seams, and a reporter
//! that publishes its status to the driver.

use super::copying_fs::CopyingFs;
use super::transport::TurmoilTransport;
use super::world::{NodeReport, World};
use crate::fs::{SimIo, TurmoilFs};
use ballast_node::config::Member;
use ballast_node::server::{RespServer, ServerConfig};
use ballast_node::{KvApi, Node, NodeConfig, NodeEnv};
use ballast_raft::net::NonceSource;
use ballast_raft::planted::Planted;
use ballast_raft::runtime::BallastRuntime;
use ballast_storage::fs::FileSystem;
use ballast_storage::{Background, Clock, Preset};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Raft RPC port of every node host.
pub const RAFT_PORT: u16 = 7000;
/// The RESP port of every node host.
pub const RESP_PORT: u16 = 6379;
/// Wall-clock time at simulated time zero (2023-11-14T22:13:20Z).
const EPOCH_MS: u64 = 1_700_000_000_000;
/// The secret the nodes' peers authenticate with.
pub const SECRET: &str = "simulated-cluster-secret";
/// The node configured with [`SMALL_VALUE_BYTES_MAX`].
pub const SMALL_LIMITS_NODE: u64 = 3;
/// Its value limit; the workload writes some values above it.
pub const SMALL_VALUE_BYTES_MAX: u64 = 1024;
/// The node whose disk has no hard links (see [`super::copying_fs`]).
pub const NO_LINKS_NODE: u64 = 2;
/// How often a node publishes its status to the driver.
pub const REPORT_EVERY: Duration = Duration::from_millis(50);

/// The host name of node `id`.
pub fn host_name(id: u64) -> String {
    format!("n{id}")
}

/// A node host's clock: simulated time plus a skew the driver sets.
#[derive(Debug, Default)]
pub struct SkewedClock {
    skew_ms: AtomicI64,
}

impl SkewedClock {
    /// Sets the skew, in milliseconds (negative: behind).
    pub fn set_skew_ms(&self, skew_ms: i64) {
        self.skew_ms.store(skew_ms, Ordering::SeqCst);
    }

    /// The current skew.
    pub fn skew_ms(&self) -> i64 {
        self.skew_ms.load(Ordering::SeqCst)
    }
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> u64 {
        let t = turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64;
        (EPOCH_MS + t).saturating_add_signed(self.skew_ms())
    }
}

/// Handshake nonces and identities from a seed.
#[derive(Debug)]
struct SeededNonces(Mutex<StdRng>);

impl NonceSource for SeededNonces {
    fn nonce(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fill_bytes(&mut b);
        b
    }
}

/// A nonce source drawing from `seed`.
pub fn seeded_nonces(seed: u64) -> Arc<dyn NonceSource> {
    Arc::new(SeededNonces(Mutex::new(StdRng::seed_from_u64(seed))))
}

/// What a node host is given for every boot.
#[derive(Clone)]
pub struct NodeHost {
    /// Node id (1..=3 for the founders).
    pub id: u64,
    /// The ids of the founding voters.
    pub founders: Vec<u64>,
    /// The preset.
    pub preset: Preset,
    /// Planted bugs switched on.
    pub planted: Planted,
    /// The host's disk state (latencies, injectors, what fired).
    pub io: Arc<Mutex<SimIo>>,
    /// The host's clock.
    pub clock: Arc<SkewedClock>,
    /// The run's seed.
    pub seed: u64,
}

impl NodeHost {
    /// The node's configuration: small timeouts and frequent snapshots, so
    /// that elections, snapshot transfers and log purges happen within a
    /// few simulated seconds.
    pub fn config(&self) -> NodeConfig {
        let mut c = NodeConfig::new(self.id, format!("/data/{}", host_name(self.id)));
        let me = host_name(self.id);
        c.raft_addr = format!("{me}:{RAFT_PORT}");
        c.client_addr = format!("{me}:{RESP_PORT}");
        c.admin_addr = format!("{me}:8000");
        c.preset = self.preset;
        // The simulated hosts are separate machines: peers authenticate.
        c.secret = Some(SECRET.into());
        c.password = Some("simulated-password".into());
        c.heartbeat_interval_ms = 50;
        c.election_timeout_min_ms = 300;
        c.election_timeout_max_ms = 600;
        c.request_timeout_ms = 2_000;
        c.leader_wait_ms = 1_000;
        c.snapshot_after_entries = 150;
        c.snapshot_keep_entries = 20;
        c.raft_log_segment_bytes = Some(64 << 10);
        // Small values: the workload's are tiny, and the default 16 MiB
        // would need a longer request timeout to replicate (config check).
        c.value_bytes_max = 1 << 20;
        // One node runs a smaller value limit (a configuration change
        // rolling through the cluster): it refuses larger values from its
        // own clients, but must apply whatever the log holds.
        if self.id == SMALL_LIMITS_NODE {
            c.value_bytes_max = SMALL_VALUE_BYTES_MAX;
        }
        c.planted = self.planted;
        c.initial_members = self
            .founders
            .iter()
            .map(|&id| Member {
                id,
                raft_addr: format!("{}:{RAFT_PORT}", host_name(id)),
                client_addr: format!("{}:{RESP_PORT}", host_name(id)),
            })
            .collect();
        c
    }

    /// Boots the node (boot number `boot`) and serves until the host is
    /// crashed. Start failures are reported to the driver, then the host
    /// idles (a real process would exit; the driver restarts it).
    pub async fn run(self, world: World, boot: u64) {
        let id = self.id;
        let seed = self.seed ^ id.wrapping_mul(0x9e37_79b9) ^ boot.wrapping_mul(0x85eb_ca6b);
        let fs: ballast_storage::fs::DynFs = TurmoilFs::new(self.io.clone());
        let env = NodeEnv {
            fs: if id == NO_LINKS_NODE {
                CopyingFs::shared(fs)
            } else {
                fs
            },
            clock: self.clock.clone(),
            nonces: Arc::new(SeededNonces(Mutex::new(StdRng::seed_from_u64(seed)))),
            transport: TurmoilTransport::shared(&host_name(id)),
            background: Background::Tasks,
            links: None,
        };
        let mut config = self.config();
        if world.is_replaced(id) {
            // A new member: added by the leader, never bootstrapping.
            config.initial_members.clear();
        }
        let server_config = ServerConfig {
            password: config.password.clone(),
            ..ServerConfig::default()
        };
        let data_dir = config.data_dir.clone();
        BallastRuntime::seeded(seed, async move {
            world.event(format!("n{id} boot {boot}"));
            if world.take_wipe(id) {
                match empty_tree(&*env.fs, &data_dir) {
                    Ok(()) => world.event(format!("n{id} data directory wiped")),
                    Err(e) => world.node_failed(id, format!("wipe: {e}")),
                }
            }
            let node = match Node::start_with(config, env.clone()).await {
                Ok(node) => Arc::new(node),
                Err(e) => {
                    world.node_failed(id, format!("start (boot {boot}): {e}"));
                    std::future::pending::<()>().await;
                    return;
                }
            };
            world.event(format!("n{id} started"));
            world.started(id, boot, &node);
            let listener = match env
                .transport
                .bind(&format!("{}:{RESP_PORT}", host_name(id)))
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    world.node_failed(id, format!("RESP bind: {e}"));
                    std::future::pending::<()>().await;
                    return;
                }
            };
            let server = match RespServer::new(node.clone(), server_config) {
                Ok(s) => s,
                Err(e) => {
                    world.node_failed(id, format!("RESP server: {e}"));
                    std::future::pending::<()>().await;
                    return;
                }
            };
            let report = async {
                loop {
                    let s = if world.wants_hash() {
                        node.status_with_hash()
                    } else {
                        node.status()
                    };
                    world.report(id, NodeReport::from_status(&s, boot));
                    if let Some(req) = world.take_membership_request(id) {
                        let r = req.run(&*node).await;
                        world.membership_done(id, r);
                    }
                    tokio::time::sleep(REPORT_EVERY).await;
                }
            };
            let serve = server.serve(listener, std::future::pending());
            tokio::select! {
                biased;
                r = serve => world.node_failed(id, format!("RESP server stopped: {r:?}")),
                () = report => {}
            }
        })
        .await;
    }
}

/// Removes everything under `dir`, durably (a disk replaced by an empty
/// one; `dir` itself stays, empty). The seam has no file-type query: a
/// name that cannot be removed as a file is a directory.
fn empty_tree(fs: &dyn FileSystem, dir: &Path) -> std::io::Result<()> {
    let what = |e: std::io::Error, p: &Path| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    for name in fs.list_dir(dir).map_err(|e| what(e, dir))? {
        let path = dir.join(name);
        if fs.remove_file(&path).is_err() {
            empty_tree(fs, &path)?;
            fs.remove_dir(&path).map_err(|e| what(e, &path))?;
        }
    }
    fs.sync_dir(dir).map_err(|e| what(e, dir))
}
