//! `ballast`: the command a person runs.
//!
//! Only `ballast cluster up` exists so far, and it says plainly that the
//! local cluster is not here yet and fails, so that the README's
//! quickstart command is real and never pretends to have started
//! anything. The node server arrives with the replication work.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ballast: a replicated key-value node that speaks RESP2.
#[derive(Debug, Parser)]
#[command(name = "ballast", version)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// The 3-node local cluster on 127.0.0.1.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterAction {
    /// Start the 3-node local cluster (not yet: arrives with the replication work).
    Up,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Commands::Cluster {
            action: ClusterAction::Up,
        } => {
            // Exit status 1: scripts that run the quickstart must not
            // believe a cluster is up when none is.
            eprintln!(
                "ballast cluster up: coming. The 3-node local cluster arrives with the \
                 replication work (crates/raft and the RESP server); nothing was started.\n\
                 Today: the storage engine is usable as an embedded library \
                 (crate ballast-storage), and `cargo test --workspace` runs the tests."
            );
            ExitCode::FAILURE
        }
    }
}
