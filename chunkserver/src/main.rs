//! `kfs-chunkserver`: stores chunks. Parses flags, sets up logging, runs until SIGTERM/SIGINT.
//!
//! Once it serves, it prints `listening on ADDR` on standard output (after `http on ADDR` when
//! metrics are served); logs go to standard error. Under systemd
//! (`Type=notify`) it sends `READY=1` at that moment and `STOPPING=1` on SIGTERM, then shuts
//! down gracefully. `--check-config FILE` checks a configuration and exits.

use anyhow::Context as _;
use clap::Parser;
use kfs_chunkserver::ChunkserverConfig;
use kfs_common::service::{EX_CONFIG, finish};
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
    /// Address of the master.
    #[arg(long, value_name = "ADDR")]
    master: Option<SocketAddr>,
    /// Address to serve chunks on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Address to give the master for clients, if not the one listened on.
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// Serve Prometheus metrics on /metrics here, e.g. 127.0.0.1:21080.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// A data directory; give one per disk (replaces the config file's list).
    #[arg(long = "data", value_name = "DIR")]
    data: Vec<PathBuf>,
    /// Background verification rate in bytes per second (0 turns it off).
    #[arg(long, value_name = "BYTES")]
    scrub_bytes_per_sec: Option<u64>,
}

fn config_from(args: Args) -> anyhow::Result<ChunkserverConfig> {
    let mut config = match &args.config {
        Some(path) => ChunkserverConfig::from_file(path)?,
        None => ChunkserverConfig::default(),
    };
    if let Some(v) = args.master {
        config.master = v;
    }
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if args.advertise.is_some() {
        config.advertise = args.advertise;
    }
    if let Some(v) = args.http {
        config.http = Some(v);
    }
    if !args.data.is_empty() {
        config.data = args.data;
    }
    if let Some(v) = args.scrub_bytes_per_sec {
        config.scrub_bytes_per_sec = v;
    }
    config.validate()?;
    Ok(config)
}

/// `--check-config FILE`: everything `--config FILE` would check, and the directories.
fn check_config(path: &Path) -> anyhow::Result<()> {
    let config = ChunkserverConfig::from_file(path)?;
    config
        .validate()
        .and_then(|()| config.check_dirs())
        .with_context(|| path.display().to_string())?;
    Ok(())
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
    finish("kfs-chunkserver", outcome.map(|()| None), 1)
}
