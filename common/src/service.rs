//! What the server binaries (`kfs-master`, `kfs-chunkserver`) share about running as a service:
//! logging to standard error (the journal under systemd), waiting for SIGTERM or SIGINT, and
//! telling systemd (`Type=notify` units) when they serve and when they stop.
//!
//! Invariants: `READY=1` is sent only after the server's socket is bound and its RPC loop runs,
//! so `systemctl start` returns when clients can connect; `STOPPING=1` is sent before the
//! graceful shutdown starts. Without `NOTIFY_SOCKET` (not under systemd) notifications are
//! no-ops. A notification that cannot be delivered is logged, never fatal: the server is fine,
//! only its supervisor is not listening.

use anyhow::Context as _;
use std::io::IsTerminal;
use std::net::SocketAddr;

/// Sends logs to standard error, filtered by `RUST_LOG` (default `info`), colored only on a
/// terminal.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Waits for SIGTERM (what systemd sends) or SIGINT (Ctrl-C); returns which one came.
pub async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Announces that the server serves on `addr`: `listening on ADDR` on standard output (scripts
/// and tests read the real port from it) and `READY=1` to systemd.
pub fn announce_ready(what: &str, addr: SocketAddr) {
    println!("listening on {addr}");
    let status = format!("{what} serving on {addr}");
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
}

/// Tells systemd the server is stopping (sent before a graceful shutdown).
pub fn announce_stopping(signal: &str) {
    let status = format!("stopping on {signal}");
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status(&status),
    ]);
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "could not notify the service manager (NOTIFY_SOCKET)");
    }
}
