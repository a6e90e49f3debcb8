//! The gateway's reports to the master: what it serves, where, and which build, at start and then
//! every interval the master asks for, so the master's status page lists the cluster's gateways.
//! Soft state at the master; a failed report is logged at debug and retried at the next interval,
//! never stopping the gateway.

use kfs_client::{Client, GatewayReport};
use std::time::Duration;

/// The interval used until the master names one (and after a failed report).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The reporting task; dropping it stops the reports.
pub struct Reporter(tokio::task::JoinHandle<()>);

impl Drop for Reporter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reports `report` to the master through `client` until the [`Reporter`] is dropped.
pub fn spawn(client: Client, report: GatewayReport) -> Reporter {
    Reporter(tokio::spawn(async move {
        loop {
            let pause = match client.report_gateway(report.clone()).await {
                Ok(reply) => Duration::from_millis(reply.interval_ms.max(100)),
                Err(e) => {
                    tracing::debug!(error = %e, "could not report this gateway to the master");
                    DEFAULT_INTERVAL
                }
            };
            tokio::time::sleep(pause).await;
        }
    }))
}
