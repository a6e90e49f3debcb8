//! The KFS gateway: KFS for programs that speak HTTP rather than KFS's RPC. A daemon of its own
//! (the unit `kfs-gateway.service`), started by `kfs gateway`, which only parses its flags
//! ([`GatewayOptions`]) and calls [`run`].
//!
//! - [`http`]: KFS over plain HTTP: files by path (GET/HEAD with ranges and validators, PUT,
//!   DELETE), directory listings as JSON, the metadata cache, the gateway's metrics.
//! - An S3 API goes in `s3/`, beside [`http`], configured from the same [`GatewayOptions`].
//! - [`report`]: the gateway's reports to the master, for its status page.
//! - [`options`]: the daemon's flags (a `clap::Args` the shell flattens into `kfs gateway`),
//!   turned into an [`http::GatewayConfig`].
//!
//! The crate takes nothing from the shell: it depends on `kfs-client` and `kfs-common` only, and
//! the shell depends on it.

pub mod http;
pub mod options;
pub mod report;

pub use options::GatewayOptions;

use anyhow::Context as _;
use kfs_client::Client;
use std::time::Duration;

/// A setting that cannot work (a bad `--root`, an unreadable token file): `kfs gateway` exits
/// with 78 (`EX_CONFIG`), which kfs-gateway.service does not restart on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A [`ConfigError`] as the `anyhow::Error` that [`run`] returns.
pub(crate) fn config_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(ConfigError(e.to_string()))
}

/// `kfs gateway`: serves the cluster whose master is at `master` until Ctrl-C or SIGTERM.
/// An error that is a [`ConfigError`] is a setting that cannot work.
pub async fn run(master: &str, options: GatewayOptions) -> anyhow::Result<()> {
    let config = options.config()?;
    let mut client_options = kfs_client::ClientOptions::default();
    if let Some(file) = &options.credentials {
        let context = kfs_common::security::files::load_credentials(file)
            .map_err(|e| config_error(format!("--credentials: {e}")))?;
        client_options = client_options.with_security(kfs_common::security::Security::Tls(
            std::sync::Arc::new(context),
        ));
    }
    let client = Client::connect_with(master, client_options)
        .await
        .with_context(|| format!("cannot reach the master at {master}"))?;
    let writes = if config.write_token.is_some() {
        "PUT and DELETE allowed with the bearer token"
    } else {
        "read-only"
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let handle = http::start(client, config).await?;
    println!(
        "kfs gateway: serving {} of {master} on {scheme}://{} ({writes})",
        options.root,
        handle.local_addr()
    );
    if let Some(m) = handle.metrics_addr() {
        println!("kfs gateway: metrics on http://{m}/metrics");
    }
    // `listening on ADDR`, and READY=1 under systemd (kfs-gateway.service is Type=notify), once
    // a signal is a graceful stop.
    let mut signals = kfs_common::service::Signals::install()?;
    kfs_common::service::announce_ready("kfs gateway", handle.local_addr());
    let signal = signals.wait().await;
    kfs_common::service::announce_stopping(signal);
    handle.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
