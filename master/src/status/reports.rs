//! What chunkservers and gateways say of themselves, for the operator's views: a chunkserver's
//! build, HTTP address, data dirs, scrub progress and data byte counters (`describe`, with each
//! heartbeat), a gateway's kind, addresses and build (`report_gateway`, every
//! [`GATEWAY_INTERVAL`]).
//!
//! Soft state, like chunk locations: never logged, rebuilt within a heartbeat of a restart, and
//! nothing in it steers placement or repair.
//!
//! Invariants:
//! - one entry per chunkserver id and one per gateway listen address; the newest report replaces
//!   the last;
//! - the data byte totals only grow: a report adds what its counters grew by since the server's
//!   last report, and a chunkserver that restarted (its counters began again) adds its new count;
//!   a server's first report is a baseline and adds nothing (after a master restart, bytes moved
//!   before it are not shown as one interval's traffic);
//! - a gateway silent for [`FORGET_GATEWAY_AFTER`] is forgotten.

use kfs_common::ServerId;
use kfs_common::proto::cluster::DescribeRequest;
use kfs_common::proto::master::GatewayReport;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often gateways report.
pub const GATEWAY_INTERVAL: Duration = Duration::from_secs(10);

/// A gateway not heard from for this long is listed as silent.
pub const GATEWAY_SILENT_AFTER: Duration = Duration::from_secs(30);

/// A gateway not heard from for this long is no longer listed.
pub const FORGET_GATEWAY_AFTER: Duration = Duration::from_secs(3600);

/// A gateway as the status page lists it.
#[derive(Clone, Debug, Serialize)]
pub struct GatewayRow {
    pub kind: String,
    pub listen: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub version: String,
    pub root: String,
    pub last_report_ms_ago: u64,
    /// Not heard from for [`GATEWAY_SILENT_AFTER`]: stopped, or cut off from the master.
    pub silent: bool,
}

#[derive(Default)]
struct Inner {
    servers: HashMap<ServerId, DescribeRequest>,
    gateways: BTreeMap<SocketAddr, (GatewayReport, Instant)>,
    read_bytes: u64,
    written_bytes: u64,
}

/// The reports; shared by the cluster and namespace services and the status page.
#[derive(Default)]
pub struct Reports {
    inner: Mutex<Inner>,
}

/// What a counter grew by from `old` to `new`; a counter that began again counts from 0.
fn growth(old: u64, new: u64) -> u64 {
    if new >= old { new - old } else { new }
}

impl Reports {
    /// Records a chunkserver's description.
    pub fn note_server(&self, report: DescribeRequest) {
        let mut inner = self.inner.lock().expect("reports lock");
        if let Some((read, written)) = inner
            .servers
            .get(&report.server)
            .map(|last| (last.read_bytes, last.written_bytes))
        {
            inner.read_bytes += growth(read, report.read_bytes);
            inner.written_bytes += growth(written, report.written_bytes);
        }
        inner.servers.insert(report.server, report);
    }

    /// Records a gateway's report at `now`; forgets gateways long silent.
    pub fn note_gateway(&self, report: GatewayReport, now: Instant) {
        let mut inner = self.inner.lock().expect("reports lock");
        inner
            .gateways
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < FORGET_GATEWAY_AFTER);
        inner.gateways.insert(report.listen, (report, now));
    }

    /// The last description of every chunkserver that has sent one.
    pub fn servers(&self) -> HashMap<ServerId, DescribeRequest> {
        self.inner.lock().expect("reports lock").servers.clone()
    }

    /// The gateways heard from within [`FORGET_GATEWAY_AFTER`] of `now`, by address.
    pub fn gateways(&self, now: Instant) -> Vec<GatewayRow> {
        let inner = self.inner.lock().expect("reports lock");
        inner
            .gateways
            .values()
            .filter_map(|(g, at)| {
                let ago = now.saturating_duration_since(*at);
                (ago < FORGET_GATEWAY_AFTER).then(|| GatewayRow {
                    kind: g.kind.clone(),
                    listen: g.listen,
                    metrics: g.metrics,
                    version: g.version.clone(),
                    root: g.root.clone(),
                    last_report_ms_ago: ago.as_millis() as u64,
                    silent: ago >= GATEWAY_SILENT_AFTER,
                })
            })
            .collect()
    }

    /// Bytes of chunk data chunkservers have reported read and written, in all.
    pub fn data_totals(&self) -> (u64, u64) {
        let inner = self.inner.lock().expect("reports lock");
        (inner.read_bytes, inner.written_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kfs_common::proto::cluster::ScrubReport;

    fn described(server: u128, read: u64, written: u64) -> DescribeRequest {
        DescribeRequest {
            server: ServerId(server),
            session: 1,
            version: "0.1.0".into(),
            http: None,
            dirs: Vec::new(),
            scrub: ScrubReport::default(),
            read_bytes: read,
            written_bytes: written,
        }
    }

    #[test]
    fn data_totals_grow_from_a_baseline_and_survive_a_restarted_counter() {
        let r = Reports::default();
        // First reports are baselines.
        r.note_server(described(1, 100, 10));
        r.note_server(described(2, 5, 0));
        assert_eq!(r.data_totals(), (0, 0));
        r.note_server(described(1, 150, 30));
        r.note_server(described(2, 9, 0));
        assert_eq!(r.data_totals(), (54, 20));
        // Server 1 restarted: its counters began again.
        r.note_server(described(1, 7, 1));
        assert_eq!(r.data_totals(), (61, 21));
        assert_eq!(r.servers()[&ServerId(1)].read_bytes, 7);
    }

    #[test]
    fn gateways_go_silent_then_are_forgotten() {
        let r = Reports::default();
        let t0 = Instant::now();
        let report = |port: u16| GatewayReport {
            kind: "http".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            metrics: None,
            version: "0.1.0".into(),
            root: "/".into(),
        };
        r.note_gateway(report(80), t0);
        r.note_gateway(report(81), t0 + GATEWAY_SILENT_AFTER);
        let rows = r.gateways(t0 + GATEWAY_SILENT_AFTER);
        assert_eq!(rows.len(), 2);
        assert!(rows[0].silent && !rows[1].silent);
        let later = t0 + FORGET_GATEWAY_AFTER + Duration::from_secs(1);
        assert_eq!(r.gateways(later).len(), 1);
        r.note_gateway(report(81), later);
        assert_eq!(
            r.gateways(later).len(),
            1,
            "the long-silent gateway is forgotten"
        );
    }
}
