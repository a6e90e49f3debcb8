//! What the server binaries (`kfs-master`, `kfs-chunkserver`) share about running as a service:
//! logging to standard error (the journal under systemd), waiting for SIGTERM or SIGINT, telling
//! systemd (`Type=notify` units) when they serve and when they stop ([`serve`]), and how `main`
//! ends ([`finish`]: exit 78, `EX_CONFIG`, for configuration errors, which the units do not
//! restart on).
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

/// SIGTERM (what systemd sends) and SIGINT (Ctrl-C), caught from the moment this is made: a
/// server makes it before it announces that it is ready, so a signal sent right after the
/// announcement is a graceful stop, never the default action (death by the signal).
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (within a Tokio runtime).
    pub fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// Waits for one of them; returns which came.
    pub async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
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

/// Tells systemd the service is ready, with `status` (for a service that does not listen on
/// an address: `kfs mount`).
pub fn announce_ready_status(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
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

/// Exit status of a configuration error (sysexits' `EX_CONFIG`); the units do not restart on it.
pub const EX_CONFIG: u8 = 78;

/// How a server binary's `main` ends: `Ok(Some(text))` prints the text on standard output and
/// exits 0; an error prints `program: error` on standard error and exits with `failure`.
pub fn finish(
    program: &str,
    outcome: anyhow::Result<Option<String>>,
    failure: u8,
) -> std::process::ExitCode {
    match outcome {
        Ok(text) => {
            if let Some(text) = text {
                println!("{text}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: {e:#}");
            std::process::ExitCode::from(failure)
        }
    }
}

/// Runs a server until SIGTERM/SIGINT: starts it with `start`, announces it ready on the address
/// `addrs` gives (after `http on ADDR` when it also serves HTTP), waits for a signal, announces
/// stopping, and stops it with `stop`.
pub fn serve<H, Start, Stop>(
    program: &str,
    start: Start,
    addrs: impl FnOnce(&H) -> (SocketAddr, Option<SocketAddr>),
    stop: impl FnOnce(H) -> Stop,
) -> anyhow::Result<()>
where
    Start: std::future::Future<Output = anyhow::Result<H>>,
    Stop: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let mut signals = Signals::install()?;
        let server = start.await?;
        let (addr, http) = addrs(&server);
        if let Some(http) = http {
            println!("http on {http}");
        }
        announce_ready(program, addr);
        let signal = signals.wait().await;
        tracing::info!(signal, "shutting down");
        announce_stopping(signal);
        stop(server).await;
        tracing::info!("stopped");
        Ok(())
    })
}
