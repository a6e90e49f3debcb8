//! `kfs-master`: the metadata server. Parses flags, sets up logging, runs until SIGTERM/SIGINT.
//!
//! Once it serves, it prints `listening on ADDR` on standard output (the real port when started
//! with port 0); logs go to standard error.

use anyhow::Context as _;
use clap::Parser;
use kfs_master::MasterConfig;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

/// KFS master: holds the namespace and makes every change durable in its operation log.
#[derive(Parser, Debug)]
#[command(name = "kfs-master", version)]
struct Args {
    /// TOML configuration file; flags given here override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to serve on, e.g. 127.0.0.1:20000 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Directory of the operation log and checkpoints (created if missing).
    #[arg(long, value_name = "DIR")]
    meta_dir: Option<PathBuf>,
    /// Replication factor of files created without one.
    #[arg(long, value_name = "N")]
    default_replication: Option<u8>,
    /// Write a checkpoint after this many logged ops.
    #[arg(long, value_name = "OPS")]
    checkpoint_every_ops: Option<u64>,
    /// Write a checkpoint after this many seconds if anything changed.
    #[arg(long, value_name = "SECS")]
    checkpoint_interval_secs: Option<u64>,
    /// How often chunkservers send heartbeats, in milliseconds.
    #[arg(long, value_name = "MS")]
    heartbeat_interval_ms: Option<u64>,
    /// Declare a chunkserver dead after this many silent milliseconds.
    #[arg(long, value_name = "MS")]
    chunkserver_timeout_ms: Option<u64>,
}

fn config_from(args: Args) -> anyhow::Result<MasterConfig> {
    let mut config = match &args.config {
        Some(path) => MasterConfig::from_file(path)?,
        None => MasterConfig::default(),
    };
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.meta_dir {
        config.meta_dir = v;
    }
    if let Some(v) = args.default_replication {
        config.default_replication = v;
    }
    if let Some(v) = args.checkpoint_every_ops {
        config.checkpoint_every_ops = v;
    }
    if let Some(v) = args.checkpoint_interval_secs {
        config.checkpoint_interval_secs = v;
    }
    if let Some(v) = args.heartbeat_interval_ms {
        config.heartbeat_interval_ms = v;
    }
    if let Some(v) = args.chunkserver_timeout_ms {
        config.chunkserver_timeout_ms = v;
    }
    config.validate()?;
    Ok(config)
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = config_from(Args::parse())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let master = kfs_master::start(&config).await?;
        println!("listening on {}", master.local_addr());
        let signal = wait_for_signal().await?;
        tracing::info!(signal, "shutting down");
        master.shutdown().await;
        Ok(())
    })
}
