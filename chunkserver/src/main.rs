//! `kfs-chunkserver`: stores chunks. Parses flags, sets up logging, runs until SIGTERM/SIGINT.
//!
//! Once it serves, it prints `listening on ADDR` on standard output; logs go to standard error.

use anyhow::Context as _;
use clap::Parser;
use kfs_chunkserver::ChunkserverConfig;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

/// KFS chunkserver: stores replicated, checksummed chunks and reports them to the master.
#[derive(Parser, Debug)]
#[command(name = "kfs-chunkserver", version)]
struct Args {
    /// TOML configuration file; flags given here override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the master.
    #[arg(long, value_name = "ADDR")]
    master: Option<SocketAddr>,
    /// Address to serve chunks on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Address to give the master for clients, if not the one listened on.
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,
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
    if !args.data.is_empty() {
        config.data = args.data;
    }
    if let Some(v) = args.scrub_bytes_per_sec {
        config.scrub_bytes_per_sec = v;
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
        let server = kfs_chunkserver::start(&config).await?;
        println!("listening on {}", server.local_addr());
        let signal = wait_for_signal().await?;
        tracing::info!(signal, "shutting down");
        server.shutdown().await;
        Ok(())
    })
}
