//! `kfs-master`: the metadata server. Parses flags, sets up logging, runs until SIGTERM/SIGINT.
//!
//! Once it serves, it prints `listening on ADDR` on standard output (the real port when started
//! with port 0), after `http on ADDR` when the status page is served; logs go to standard error. Under systemd
//! (`Type=notify`) it sends `READY=1` at that moment and `STOPPING=1` on SIGTERM, then shuts
//! down gracefully. `--check-config FILE` checks a configuration and exits; `--verify-meta DIR` checks a
//! metadata directory (a backup) and exits.

use clap::Parser;
use kfs_common::service::{EX_CONFIG, finish};
use kfs_master::MasterConfig;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// KFS master: holds the namespace and makes every change durable in its operation log.
#[derive(Parser, Debug)]
#[command(name = "kfs-master", version)]
struct Args {
    /// TOML configuration file; flags given here override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check a configuration file (keys, values, addresses, directories), print what is wrong
    /// or `ok`, and exit without starting.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Recover a metadata directory (a backup, or a stopped master's) as start-up would, check
    /// it, print what it holds, and exit. Refused while a master uses the directory.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "check_config"])]
    verify_meta: Option<PathBuf>,
    #[command(flatten)]
    flags: Flags,
}

/// The flags that set configuration keys (each named as its key), over the file's.
#[derive(clap::Args, Debug, Serialize)]
struct Flags {
    /// Address to serve on, e.g. 127.0.0.1:20000 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Serve the status page, its JSON and /metrics over HTTP here, e.g. 127.0.0.1:20080.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<SocketAddr>,
    /// Directory of the operation log and checkpoints (created if missing).
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    meta_dir: Option<PathBuf>,
    /// Replication factor of files created without one.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    default_replication: Option<u8>,
    /// Write a checkpoint after this many logged ops.
    #[arg(long, value_name = "OPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint_every_ops: Option<u64>,
    /// Write a checkpoint after this many seconds if anything changed.
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint_interval_secs: Option<u64>,
    /// How often chunkservers send heartbeats, in milliseconds.
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat_interval_ms: Option<u64>,
    /// Declare a chunkserver dead after this many silent milliseconds.
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    chunkserver_timeout_ms: Option<u64>,
    /// The cluster's secrets directory (made by `kfs init-cluster DIR`); default $KFS_SECRETS.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    secrets: Option<PathBuf>,
    /// Plain TCP, no authentication: anyone who reaches the port owns the cluster. For
    /// throwaway tests only.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
}

fn config_from(args: Args) -> anyhow::Result<MasterConfig> {
    Ok(kfs_common::config::load_valid(
        args.config.as_deref(),
        &args.flags,
    )?)
}

/// `--check-config FILE`: everything `--config FILE` would check, and the directories.
fn check_config(path: &Path) -> anyhow::Result<()> {
    Ok(kfs_common::config::check_file::<MasterConfig>(path)?)
}

/// `--verify-meta DIR`: a summary of what the directory holds, or why it cannot be used.
fn verify_meta(dir: &Path) -> anyhow::Result<String> {
    let v = kfs_master::storage::verify::verify(dir)?;
    let mut summary = format!(
        "{}: ok: ops up to {} ({} from {}, {} replayed from the log): {} files, {} directories, \
         {} chunks, {} bytes",
        dir.display(),
        v.last_seq,
        v.checkpoint_seq,
        v.checkpoint.display(),
        v.replayed,
        v.counters.files,
        v.counters.dirs,
        v.counters.chunks,
        v.counters.bytes,
    );
    if let Some(torn) = &v.torn_tail {
        summary.push_str(&format!("\n  {torn}"));
    }
    for skipped in &v.skipped_checkpoints {
        summary.push_str(&format!("\n  skipped an unreadable checkpoint: {skipped}"));
    }
    Ok(summary)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.verify_meta {
        return finish("kfs-master", verify_meta(dir).map(Some), 1);
    }
    if let Some(path) = &args.check_config {
        let outcome = check_config(path).map(|()| Some(format!("{}: ok", path.display())));
        return finish("kfs-master", outcome, EX_CONFIG);
    }
    kfs_common::service::init_logging();
    let config = match config_from(args) {
        Ok(config) => config,
        Err(e) => return finish("kfs-master", Err(e), EX_CONFIG),
    };
    let outcome = kfs_common::service::serve(
        "kfs-master",
        async { Ok(kfs_master::start(&config).await?) },
        |server| (server.local_addr(), server.http_addr()),
        |server| server.shutdown(),
    );
    // Missing or readable secrets are a setting that cannot work: EX_CONFIG, not restarted.
    let failure = match &outcome {
        Err(e) if matches!(e.downcast_ref(), Some(kfs_master::StartError::Security(_))) => {
            EX_CONFIG
        }
        _ => 1,
    };
    finish("kfs-master", outcome.map(|()| None), failure)
}
