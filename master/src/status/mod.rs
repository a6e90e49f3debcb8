//! The master's HTTP side: a status page (`/`), the same data as JSON (`/status.json`), and
//! Prometheus metrics (`/metrics`), served on `http` when it is configured.
//!
//! All three show one [`Status`], read fresh from the master's live state by [`Status::gather`]
//! for each page load, JSON request or scrape (`gather.rs`). That read takes only O(1) counters
//! and one pass over the chunkserver table (and one over the volumes of small files, not their
//! files): replication health is what the healer's last round
//! found, so a page load or a scrape never holds a lock for a walk of the namespace.
//!
//! This file holds the public surface: [`StatusSources`], [`Status`] and its parts (also the JSON
//! schema of `/status.json`), and the [`router`]. [`render_html`] (`page.rs`) draws the page;
//! [`metrics`] (`gauges.rs`) builds the registry whose state gauges are set from a `Status` at
//! each scrape.

mod gather;
mod gauges;
mod history;
mod page;
mod page_servers;
mod reports;

pub use gauges::metrics;
pub use history::{History, Rates, Sampler};
pub use page::render_html;
pub use reports::{GATEWAY_INTERVAL, GatewayRow, Reports};

use crate::chunks::ChunkMap;
use crate::committer::{CommitStats, SharedNamespace};
use crate::healer::HealerStats;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use kfs_common::metrics::{Refresh, Registry, metrics_router};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where the status comes from: shared with the RPC services.
#[derive(Clone)]
pub struct StatusSources {
    pub ns: SharedNamespace,
    pub chunks: Arc<Mutex<ChunkMap>>,
    pub commit: Arc<CommitStats>,
    pub healer: Arc<HealerStats>,
    pub compaction: Arc<crate::server::CompactionStats>,
    pub workers: kfs_common::worker::Workers,
    pub started: Instant,
    pub addr: SocketAddr,
    /// The last hour of activity, sampled (`history.rs`).
    pub history: Arc<History>,
    /// Files open for write: `(being written, writer gone quiet)`.
    pub open_files: Arc<dyn Fn() -> (u64, u64) + Send + Sync>,
    /// What chunkservers and gateways say of themselves (`reports.rs`).
    pub reports: Arc<Reports>,
}

/// The cluster as the master sees it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    /// The address clients and chunkservers use.
    pub master: SocketAddr,
    pub uptime_secs: u64,
    pub summary: Summary,
    pub replication: Replication,
    pub small_files: SmallFiles,
    pub servers: Vec<ServerRow>,
    /// Gateways heard from in the last hour.
    pub gateways: Vec<GatewayRow>,
    pub workers: Workers,
    /// Files open for write.
    pub open_files: OpenFiles,
    /// Rates over the last hour, oldest first.
    pub history: Rates,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct OpenFiles {
    /// A writer holds a lease on one of their chunks.
    pub writing: u64,
    /// Their writer is gone quiet; the master finishes them (`kfs fsck --open-files`).
    pub writer_gone: u64,
    /// Write leases held on chunks now.
    pub leases: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub chunks: u64,
    /// Sum of file lengths.
    pub bytes: u64,
    /// Of the live chunkservers' file systems.
    pub capacity: u64,
    /// Bytes held by chunk files on live chunkservers (every replica).
    pub used: u64,
    pub available: u64,
    pub servers_alive: u64,
    pub servers_dead: u64,
    pub servers_draining: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Replication {
    /// Just restarted: no repair or deletion until chunkservers have reported.
    pub safe_mode: bool,
    /// In safe mode: chunks reported, of all, the fraction that ends it, time left at most.
    pub safe_mode_reported: u64,
    pub safe_mode_total: u64,
    pub safe_mode_threshold: f64,
    pub safe_mode_remaining_ms: u64,
    /// Chunks with fewer live replicas than their factor (`None` until a round has run outside
    /// safe mode).
    pub under_replicated: Option<u64>,
    /// Chunks with no readable replica.
    pub missing: Option<u64>,
    /// Under-replicated chunks whose repair waits for a write lease to run out or a copy.
    pub waiting: Option<u64>,
    /// Under-replicated chunks that cannot be repaired: fewer live chunkservers than their
    /// factor.
    pub short_of_servers: Option<u64>,
    /// How long ago the healer's round that counted them ended.
    pub counted_ms_ago: Option<u64>,
    /// Replicas chunkservers reported corrupt.
    pub corrupt_replicas: u64,
    /// Repair copies in flight.
    pub copies_in_flight: u64,
}

/// Small files packed into volumes, and what compaction gave back.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SmallFiles {
    pub volumes: u64,
    /// Files whose data is a record in a volume.
    pub packed_files: u64,
    pub packed_bytes: u64,
    /// Since this master started: volumes compacted, and the records and bytes moved.
    pub compacted_volumes: u64,
    pub moved_records: u64,
    pub moved_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerRow {
    pub id: String,
    pub addr: SocketAddr,
    /// `alive`, `dead`, `draining` or `drained`.
    pub state: &'static str,
    pub capacity: u64,
    pub used: u64,
    pub available: u64,
    pub chunks: u64,
    pub corrupt: u64,
    pub last_heartbeat_ms_ago: u64,
    /// What the server said of itself (`None` before its first description, or from a
    /// chunkserver older than cluster protocol 3): its build, its `/metrics`, its data dirs and
    /// its scrubber.
    pub version: Option<String>,
    pub http: Option<SocketAddr>,
    pub dirs: Vec<kfs_common::proto::cluster::DirReport>,
    pub scrub: Option<kfs_common::proto::cluster::ScrubReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Workers {
    pub committer: CommitterState,
    pub healer: HealerState,
    /// Every background loop, as `kfs admin workers` lists them.
    pub loops: Vec<kfs_common::proto::master::WorkerInfo>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CommitterState {
    /// `ok`, or `broken` (a failed fsync: mutations are refused until restart).
    pub log: &'static str,
    pub ops: u64,
    pub batches: u64,
    pub last_seq: u64,
    pub checkpoints: u64,
    pub checkpoint_seq: u64,
    /// When this process last wrote a checkpoint (Unix seconds; 0: not yet).
    pub checkpoint_unix_secs: u64,
    pub checkpoint_failures: u64,
    pub checkpointing: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct HealerState {
    pub rounds: u64,
    pub last_round_ms: f64,
    pub copies_started: u64,
    pub copies_done: u64,
    pub copies_failed: u64,
}

/// The routes of the master's HTTP server: `/`, `/status.json`, `/metrics`.
pub fn router(sources: StatusSources, registry: Arc<Registry>, refresh: Refresh) -> Router {
    let page = sources.clone();
    let json = sources;
    Router::new()
        .route(
            "/",
            get(move || {
                let page = page.clone();
                async move { Html(render_html(&Status::gather(&page))) }
            }),
        )
        .route(
            "/status.json",
            get(move || {
                let json = json.clone();
                async move {
                    let body = serde_json::to_string_pretty(&Status::gather(&json))
                        .expect("the status serializes");
                    ([(CONTENT_TYPE, "application/json")], body).into_response()
                }
            }),
        )
        .merge(metrics_router(registry, Some(refresh)))
}
