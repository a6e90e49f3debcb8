//! `kfs-chunkserver`: stores chunks. Parses flags, sets up logging, runs until SIGTERM/SIGINT.
//!
//! Once it serves, it prints `listening on ADDR` on standard output (after `http on ADDR` when
//! metrics are served); logs go to standard error. Under systemd
//! (`Type=notify`) it sends `READY=1` at that moment and `STOPPING=1` on SIGTERM, then shuts
//! down gracefully. `--check-config FILE` checks a configuration and exits.

use clap::Parser;
use kfs_chunkserver::ChunkserverConfig;
use kfs_common::service::{EX_CONFIG, finish};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// KFS chunkserver: stores replicated, checksummed chunks and reports them to the master.
#[derive(Parser, Debug)]
#[command(name = "kfs-chunkserver", version)]
struct Args {
    /// TOML configuration file; flags given here override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check a configuration file (keys, values, addresses, directories), print what is wrong
    /// or `ok`, and exit without starting.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    #[command(flatten)]
    flags: Flags,
}

/// The flags that set configuration keys (each named as its key), over the file's.
#[derive(clap::Args, Debug, Serialize)]
struct Flags {
    /// Address of the master.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    master: Option<SocketAddr>,
    /// Address to serve chunks on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Address to give the master for clients, if not the one listened on.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise: Option<SocketAddr>,
    /// Serve Prometheus metrics on /metrics here, e.g. 127.0.0.1:21080.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<SocketAddr>,
    /// A data directory; give one per disk (replaces the config file's list).
    #[arg(long = "data", value_name = "DIR")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    data: Vec<PathBuf>,
    /// Background verification rate in bytes per second (0 turns it off).
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    scrub_bytes_per_sec: Option<u64>,
    /// The cluster's secrets directory (made by `kfs init-cluster DIR`); default $KFS_SECRETS.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    secrets: Option<PathBuf>,
    /// Plain TCP, no authentication: anyone who reaches the port reads and writes every
    /// chunk. For throwaway tests only.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
}

fn config_from(args: Args) -> anyhow::Result<ChunkserverConfig> {
    Ok(kfs_common::config::load_valid(
        args.config.as_deref(),
        &args.flags,
    )?)
}

/// `--check-config FILE`: everything `--config FILE` would check, and the directories.
fn check_config(path: &Path) -> anyhow::Result<()> {
    Ok(kfs_common::config::check_file::<ChunkserverConfig>(path)?)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.check_config {
        let outcome = check_config(path).map(|()| Some(format!("{}: ok", path.display())));
        return finish("kfs-chunkserver", outcome, EX_CONFIG);
    }
    kfs_common::service::init_logging();
    let config = match config_from(args) {
        Ok(config) => config,
        Err(e) => return finish("kfs-chunkserver", Err(e), EX_CONFIG),
    };
    let outcome = kfs_common::service::serve(
        "kfs-chunkserver",
        async { Ok(kfs_chunkserver::start(&config).await?) },
        |server| (server.local_addr(), server.http_addr()),
        |server| server.shutdown(),
    );
    // Missing or readable secrets are a setting that cannot work: EX_CONFIG, not restarted.
    let failure = match &outcome {
        Err(e)
            if matches!(
                e.downcast_ref(),
                Some(kfs_chunkserver::StartError::Security(_))
            ) =>
        {
            EX_CONFIG
        }
        _ => 1,
    };
    finish("kfs-chunkserver", outcome.map(|()| None), failure)
}
