//! `ballast`: the command a person runs.
//!
//! * `ballast node --config FILE [flags]` runs one node: the replicated
//!   engine ([`ballast_node::Node`]), the RESP server on `client_addr` and
//!   the admin HTTP port on `admin_addr`, until SIGTERM or Ctrl-C, then
//!   shuts down gracefully (stops serving, fsyncs the Raft log, flushes the
//!   engine).
//! * `ballast cluster up | stop | status` runs the local 3-node cluster
//!   described by `cluster/*.toml` as background processes (see
//!   `cluster.rs`).
#![forbid(unsafe_code)]

mod cluster;

use anyhow::{Context, Result};
use ballast_node::resp::Limits;
use ballast_node::server::{RespServer, ServerConfig};
use ballast_node::{admin, Node, NodeConfig, NodeEnv};
use ballast_storage::fs::{StdFs, VolatileFs};
use ballast_storage::Preset;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// ballast: a replicated key-value node that speaks RESP2.
#[derive(Debug, Parser)]
#[command(name = "ballast", version)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run one node until SIGTERM or Ctrl-C.
    Node(NodeArgs),
    /// The local cluster on 127.0.0.1, one process per config in a
    /// directory (default `cluster/`).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
        /// The directory of node configs (`*.toml`); pids, logs and data go
        /// to its `data/`.
        #[arg(long, default_value = "cluster", global = true)]
        dir: PathBuf,
    },
}

/// Flags of `ballast node`; each overrides the config file's field of the
/// same name.
#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// The node's TOML config (see crates/node/src/config.rs). A relative
    /// `data_dir` in it is resolved against the file's directory.
    #[arg(long)]
    config: PathBuf,
    /// Node id.
    #[arg(long)]
    id: Option<u64>,
    /// Data directory (relative: to the current directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// RESP address, host:port.
    #[arg(long)]
    client_addr: Option<String>,
    /// Raft RPC address, host:port.
    #[arg(long)]
    raft_addr: Option<String>,
    /// Admin HTTP address, host:port.
    #[arg(long)]
    admin_addr: Option<String>,
    /// Durability preset: durable, balanced or throughput.
    #[arg(long)]
    preset: Option<String>,
    /// Keep every file write in this process's memory until its fsync, so
    /// that killing the process (SIGKILL) loses exactly what a power cut
    /// would. For power-loss tests of real processes; never in production.
    #[arg(long)]
    volatile_fs: bool,
}

#[derive(Debug, Subcommand)]
enum ClusterAction {
    /// Start every node that is not running, wait for an elected leader,
    /// print the addresses. A restart resumes the cluster with its data.
    Up {
        /// Run the nodes with this preset instead of their configs'.
        #[arg(long)]
        preset: Option<String>,
        /// Start the nodes with `--volatile-fs` (power-loss tests).
        #[arg(long)]
        volatile_fs: bool,
    },
    /// Stop every running node gracefully (SIGTERM, then SIGKILL after 20 s).
    Stop,
    /// Show each node's role, term, leader and indexes.
    Status,
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Commands::Node(args) => run_node(args),
        Commands::Cluster { action, dir } => {
            cluster::Cluster::load(&dir).and_then(|c| match action {
                ClusterAction::Up {
                    preset,
                    volatile_fs,
                } => {
                    let mut args: Vec<String> = preset
                        .map(|p| vec!["--preset".to_string(), p])
                        .unwrap_or_default();
                    if volatile_fs {
                        args.push("--volatile-fs".to_string());
                    }
                    c.up(&args)
                }
                ClusterAction::Stop => c.stop(),
                ClusterAction::Status => c.status(),
            })
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ballast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the config file and applies the flags.
fn node_config(args: &NodeArgs) -> Result<NodeConfig> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let mut c = NodeConfig::from_toml(&text).with_context(|| args.config.display().to_string())?;
    if c.data_dir.is_relative() {
        let base = args.config.parent().unwrap_or(Path::new("."));
        c.data_dir = base.join(&c.data_dir);
    }
    if let Some(id) = args.id {
        c.id = id;
    }
    // Planted bugs exist only in builds with the `planted-bugs` feature
    // (chaos runs); a normal build ignores the variable.
    c.planted = ballast_raft::planted::Planted::from_env().map_err(anyhow::Error::msg)?;
    if c.planted != ballast_raft::planted::Planted::NONE {
        eprintln!("ballast: running with planted bugs {:?}", c.planted);
    }
    if let Some(d) = &args.data_dir {
        c.data_dir = d.clone();
    }
    for (flag, field) in [
        (&args.client_addr, &mut c.client_addr),
        (&args.raft_addr, &mut c.raft_addr),
        (&args.admin_addr, &mut c.admin_addr),
    ] {
        if let Some(v) = flag {
            *field = v.clone();
        }
    }
    if let Some(p) = &args.preset {
        c.preset = Preset::parse(p).map_err(|_| {
            anyhow::anyhow!("--preset: `{p}` is not one of durable, balanced, throughput")
        })?;
    }
    c.validate()?;
    Ok(c)
}

fn run_node(args: NodeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let config = node_config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ballast-node")
        .build()
        .context("starting the tokio runtime")?;
    let env = if args.volatile_fs {
        eprintln!("ballast: --volatile-fs: file writes stay in memory until fsynced (a kill is a power loss)");
        NodeEnv::with_fs(Arc::new(VolatileFs::new(Arc::new(StdFs))))
    } else {
        NodeEnv::production()
    };
    runtime.block_on(serve(config, env))
}

async fn serve(config: NodeConfig, env: NodeEnv) -> Result<()> {
    // Bind the client-facing ports first: a port in use fails the start
    // before the node joins the cluster.
    let client = TcpListener::bind(&config.client_addr)
        .await
        .with_context(|| format!("binding client_addr {}", config.client_addr))?;
    let admin_listener = TcpListener::bind(&config.admin_addr)
        .await
        .with_context(|| format!("binding admin_addr {}", config.admin_addr))?;
    let server_config = ServerConfig {
        limits: Limits {
            bulk_bytes_max: usize::try_from(config.value_bytes_max.max(config.key_bytes_max))?,
            frame_bytes_max: usize::try_from(config.client_frame_bytes_max)?,
            ..Limits::default()
        },
        key_bytes_max: usize::try_from(config.key_bytes_max)?,
        value_bytes_max: usize::try_from(config.value_bytes_max)?,
        password: config.password.clone(),
        ..ServerConfig::default()
    };
    let node = Arc::new(Node::start_with(config.clone(), env).await?);
    let resp = RespServer::new(node.clone(), server_config)?;
    let metrics = resp.metrics();

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let resp_task = tokio::spawn({
        let stop = stopped(stop_rx.clone());
        async move { resp.serve(client, stop).await }
    });
    let admin_task = tokio::spawn(admin::serve(
        node.clone(),
        metrics,
        admin_listener,
        stopped(stop_rx),
    ));
    println!(
        "ballast node {}: RESP {} (redis-cli -p {}), admin http://{}, raft {}, preset {}, data {}",
        config.id,
        config.client_addr,
        config.client_addr.rsplit(':').next().unwrap_or("?"),
        config.admin_addr,
        node.raft_addr(),
        config.preset.name(),
        config.data_dir.display()
    );

    wait_for_stop_signal().await?;
    tracing::info!("stop signal received: shutting down");
    let _ = stop_tx.send(true);
    // Clients first (requests in flight are answered), then the node.
    for (what, task) in [("RESP server", resp_task), ("admin port", admin_task)] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "{what} ended with an error"),
            Err(e) => tracing::warn!(error = %e, "{what} task failed"),
        }
    }
    node.shutdown().await?;
    println!("ballast node {}: stopped", config.id);
    Ok(())
}

async fn wait_for_stop_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
    }
    Ok(())
}
