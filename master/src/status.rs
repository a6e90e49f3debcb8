//! The master's HTTP side: a status page (`/`), the same data as JSON (`/status.json`), and
//! Prometheus metrics (`/metrics`), served on `http` when it is configured.
//!
//! The page is one self-contained HTML document (inline CSS, no scripts, no external assets),
//! rendered here and reloading itself every 5 s, so it works offline and in any browser.
//! Everything on it comes from [`Status::gather`]: the namespace's counters (read lock, O(1)),
//! the chunk map's server table (its lock, for one pass over the replicas, as `kfs servers`),
//! and the workers' counters. Replication health (under-replicated, missing) is what the
//! healer's last round found, not a fresh walk of every chunk, so a page load or a scrape never
//! holds a lock for a walk of the namespace. The same [`Status`] sets the metrics' gauges at each
//! scrape.

use crate::chunks::ChunkMap;
use crate::committer::{CommitStats, SharedNamespace};
use crate::healer::HealerStats;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use kfs_common::metrics::{Refresh, Registry, RpcMetrics, catch_up, gauge_value, metrics_router};
use kfs_common::proto::master::ServerState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where the status comes from: shared with the RPC services.
#[derive(Clone)]
pub struct StatusSources {
    pub ns: SharedNamespace,
    pub chunks: Arc<Mutex<ChunkMap>>,
    pub commit: Arc<CommitStats>,
    pub healer: Arc<HealerStats>,
    pub started: Instant,
    pub addr: SocketAddr,
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
    pub servers: Vec<ServerRow>,
    pub workers: Workers,
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
    /// Chunks with fewer live replicas than their factor (`None` until a round has run outside
    /// safe mode).
    pub under_replicated: Option<u64>,
    /// Chunks with no readable replica.
    pub missing: Option<u64>,
    /// How long ago the healer's round that counted them ended.
    pub counted_ms_ago: Option<u64>,
    /// Replicas chunkservers reported corrupt.
    pub corrupt_replicas: u64,
    /// Repair copies in flight.
    pub copies_in_flight: u64,
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
}

#[derive(Clone, Debug, Serialize)]
pub struct Workers {
    pub committer: CommitterState,
    pub healer: HealerState,
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

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Alive => "alive",
        ServerState::Dead => "dead",
        ServerState::Draining => "draining",
        ServerState::Drained => "drained",
    }
}

impl Status {
    /// Reads the status from the master's live state.
    pub fn gather(from: &StatusSources) -> Status {
        let now = Instant::now();
        let counters = from.ns.read().expect("namespace lock").counters();
        let (infos, safe_mode, copies_in_flight) = {
            let mut chunks = from.chunks.lock().expect("chunk map lock");
            (
                chunks.servers(now),
                chunks.in_safe_mode(now),
                chunks.copies_in_flight() as u64,
            )
        };
        let mut summary = Summary {
            files: counters.files,
            dirs: counters.dirs,
            chunks: counters.chunks,
            bytes: counters.bytes,
            ..Summary::default()
        };
        let mut corrupt_replicas = 0;
        let servers: Vec<ServerRow> = infos
            .iter()
            .map(|s| {
                match s.state {
                    ServerState::Dead => summary.servers_dead += 1,
                    ServerState::Draining => summary.servers_draining += 1,
                    ServerState::Alive | ServerState::Drained => summary.servers_alive += 1,
                }
                if s.state != ServerState::Dead {
                    summary.capacity += s.space.capacity;
                    summary.used += s.space.used;
                    summary.available += s.space.available;
                }
                corrupt_replicas += s.corrupt;
                ServerRow {
                    id: s.server.to_string(),
                    addr: s.addr,
                    state: state_name(s.state),
                    capacity: s.space.capacity,
                    used: s.space.used,
                    available: s.space.available,
                    chunks: s.chunks,
                    corrupt: s.corrupt,
                    last_heartbeat_ms_ago: s.since_heartbeat_ms,
                }
            })
            .collect();
        let last = *from.healer.last.lock().expect("healer stats lock");
        let health = last.and_then(|(_, health)| health);
        let c = &from.commit;
        let h = &from.healer;
        Status {
            version: env!("CARGO_PKG_VERSION"),
            master: from.addr,
            uptime_secs: from.started.elapsed().as_secs(),
            summary,
            replication: Replication {
                safe_mode,
                under_replicated: health.map(|h| h.under_replicated),
                missing: health.map(|h| h.missing),
                counted_ms_ago: last
                    .filter(|(_, health)| health.is_some())
                    .map(|(at, _)| now.saturating_duration_since(at).as_millis() as u64),
                corrupt_replicas,
                copies_in_flight,
            },
            servers,
            workers: Workers {
                committer: CommitterState {
                    log: if c.log_broken.load(Ordering::Relaxed) {
                        "broken"
                    } else {
                        "ok"
                    },
                    ops: c.ops.load(Ordering::Relaxed),
                    batches: c.batches.load(Ordering::Relaxed),
                    last_seq: c.last_seq.load(Ordering::Relaxed),
                    checkpoints: c.checkpoints.load(Ordering::Relaxed),
                    checkpoint_seq: c.checkpoint_seq.load(Ordering::Relaxed),
                    checkpoint_unix_secs: c.checkpoint_unix_secs.load(Ordering::Relaxed),
                    checkpoint_failures: c.checkpoint_failures.load(Ordering::Relaxed),
                    checkpointing: c.checkpointing.load(Ordering::Relaxed),
                },
                healer: HealerState {
                    rounds: h.rounds.load(Ordering::Relaxed),
                    last_round_ms: h.last_round_us.load(Ordering::Relaxed) as f64 / 1000.0,
                    copies_started: h.copies_started.load(Ordering::Relaxed),
                    copies_done: h.copies_done.load(Ordering::Relaxed),
                    copies_failed: h.copies_failed.load(Ordering::Relaxed),
                },
            },
        }
    }
}

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

fn count_or_dash(n: Option<u64>) -> String {
    n.map_or_else(|| "–".to_string(), |n| n.to_string())
}

/// The status page: one HTML document, no scripts, no external assets.
pub fn render_html(s: &Status) -> String {
    let mut h = String::new();
    let problem = s.replication.missing.unwrap_or(0) > 0;
    let degraded = s.replication.under_replicated.unwrap_or(0) > 0
        || s.summary.servers_dead > 0
        || s.replication.corrupt_replicas > 0;
    let verdict = if problem {
        ("bad", "MISSING CHUNKS: some data cannot be read")
    } else if s.replication.safe_mode {
        ("warn", "safe mode: waiting for chunkservers to report")
    } else if degraded {
        ("warn", "degraded: repairing")
    } else {
        ("ok", "healthy")
    };
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>KFS master {master}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.4em; margin: 0 0 .2em; }} h2 {{ font-size: 1.1em; margin: 1.4em 0 .4em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: right; }}
th {{ background: #f4f4f4; }} td:first-child, th:first-child {{ text-align: left; }}
.ok {{ color: #186a1e; }} .warn {{ color: #9a6700; }} .bad {{ color: #b00020; font-weight: bold; }}
tr.dead td {{ color: #b00020; }} tr.draining td, tr.drained td {{ color: #9a6700; }}
.verdict {{ font-size: 1.2em; }} .muted {{ color: #777; }}
</style></head><body>
<h1>KFS master {master}</h1>
<p class="muted">version {version}, up {uptime}s; this page reloads every 5 s; <a href="status.json">JSON</a>, <a href="metrics">metrics</a></p>
<p class="verdict {vclass}" id="verdict">{vtext}</p>
<h2>Cluster</h2>
<table id="summary">
<tr><th>files</th><td id="files">{files}</td></tr>
<tr><th>directories</th><td id="dirs">{dirs}</td></tr>
<tr><th>chunks</th><td id="chunks">{chunks}</td></tr>
<tr><th>bytes in files</th><td>{bytes}</td></tr>
<tr><th>capacity</th><td>{capacity}</td></tr>
<tr><th>used (all replicas)</th><td>{used}</td></tr>
<tr><th>available</th><td>{available}</td></tr>
<tr><th>chunkservers</th><td id="servers-summary">{alive} alive, {dead} dead, {draining} draining</td></tr>
</table>
<h2>Replication</h2>
<table id="replication">
<tr><th>safe mode</th><td>{safe}</td></tr>
<tr><th>under-replicated chunks</th><td id="under">{under}</td></tr>
<tr><th>missing chunks</th><td id="missing">{missing}</td></tr>
<tr><th>corrupt replicas</th><td>{corrupt}</td></tr>
<tr><th>repair copies in flight</th><td>{copies}</td></tr>
</table>
<p class="muted">Under-replicated and missing as the healer's last round counted them{counted}.</p>
"#,
        master = esc(&s.master.to_string()),
        version = esc(s.version),
        uptime = s.uptime_secs,
        vclass = verdict.0,
        vtext = verdict.1,
        files = s.summary.files,
        dirs = s.summary.dirs,
        chunks = s.summary.chunks,
        bytes = size(s.summary.bytes),
        capacity = size(s.summary.capacity),
        used = size(s.summary.used),
        available = size(s.summary.available),
        alive = s.summary.servers_alive,
        dead = s.summary.servers_dead,
        draining = s.summary.servers_draining,
        safe = if s.replication.safe_mode { "on" } else { "off" },
        under = count_or_dash(s.replication.under_replicated),
        missing = count_or_dash(s.replication.missing),
        corrupt = s.replication.corrupt_replicas,
        copies = s.replication.copies_in_flight,
        counted = s
            .replication
            .counted_ms_ago
            .map_or_else(String::new, |ms| format!(", {ms} ms ago")),
    );
    h.push_str(
        "<h2>Chunkservers</h2>\n<table id=\"servers\">\n<tr><th>server</th><th>address</th>\
         <th>state</th><th>capacity</th><th>used</th><th>available</th><th>chunks</th>\
         <th>corrupt</th><th>last heartbeat</th></tr>\n",
    );
    for r in &s.servers {
        let _ = writeln!(
            h,
            "<tr class=\"server {state}\"><td>{id}</td><td>{addr}</td><td class=\"state\">{state}</td>\
             <td>{capacity}</td><td>{used}</td><td>{available}</td><td>{chunks}</td><td>{corrupt}</td>\
             <td>{hb:.1} s ago</td></tr>",
            state = r.state,
            id = esc(&r.id),
            addr = esc(&r.addr.to_string()),
            capacity = size(r.capacity),
            used = size(r.used),
            available = size(r.available),
            chunks = r.chunks,
            corrupt = r.corrupt,
            hb = r.last_heartbeat_ms_ago as f64 / 1000.0,
        );
    }
    if s.servers.is_empty() {
        h.push_str("<tr><td colspan=\"9\">no chunkserver has registered</td></tr>\n");
    }
    let c = &s.workers.committer;
    let hl = &s.workers.healer;
    let _ = write!(
        h,
        r#"</table>
<h2>Background workers</h2>
<table id="workers">
<tr><th>operation log</th><td class="{logclass}">{log}: {ops} ops in {batches} group commits, last record {last_seq}</td></tr>
<tr><th>checkpoints</th><td>{checkpoints} written by this process, newest at record {checkpoint_seq}{writing}{failures}</td></tr>
<tr><th>healer</th><td>{rounds} rounds, last took {round_ms:.1} ms; copies {started} started, {done} done, {failed} failed</td></tr>
</table>
</body></html>
"#,
        logclass = if c.log == "ok" { "ok" } else { "bad" },
        log = c.log,
        ops = c.ops,
        batches = c.batches,
        last_seq = c.last_seq,
        checkpoints = c.checkpoints,
        checkpoint_seq = c.checkpoint_seq,
        writing = if c.checkpointing {
            "; writing one now"
        } else {
            ""
        },
        failures = if c.checkpoint_failures > 0 {
            format!("; {} failed", c.checkpoint_failures)
        } else {
            String::new()
        },
        rounds = hl.rounds,
        round_ms = hl.last_round_ms,
        started = hl.copies_started,
        done = hl.copies_done,
        failed = hl.copies_failed,
    );
    h
}

/// Labels of the chunkserver count gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Labels of the repair copy counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The master's metrics beyond per-RPC ones: set from a [`Status`] at each scrape.
#[derive(Default)]
struct StateGauges {
    files: Gauge,
    dirs: Gauge,
    chunks: Gauge,
    bytes: Gauge,
    capacity: Gauge,
    used: Gauge,
    available: Gauge,
    servers: Family<StateLabels, Gauge>,
    under_replicated: Gauge,
    missing: Gauge,
    health_known: Gauge,
    corrupt: Gauge,
    copies_in_flight: Gauge,
    safe_mode: Gauge,
    log_seq: Gauge,
    checkpoint_seq: Gauge,
    log_ops: Counter,
    checkpoints: Counter,
    copies: Family<OutcomeLabels, Counter>,
    healer_rounds: Counter,
}

impl StateGauges {
    fn register(registry: &mut Registry, commit: &CommitStats) -> StateGauges {
        let g = StateGauges::default();
        let r = registry;
        r.register(
            "kfs_files",
            "Regular files in the namespace",
            g.files.clone(),
        );
        r.register("kfs_dirs", "Directories in the namespace", g.dirs.clone());
        r.register("kfs_chunks", "Chunks referenced by files", g.chunks.clone());
        r.register("kfs_file_bytes", "Sum of file lengths", g.bytes.clone());
        r.register(
            "kfs_capacity_bytes",
            "Size of the live chunkservers' file systems",
            g.capacity.clone(),
        );
        r.register(
            "kfs_used_bytes",
            "Bytes of chunk files on live chunkservers",
            g.used.clone(),
        );
        r.register(
            "kfs_available_bytes",
            "Bytes free on the live chunkservers",
            g.available.clone(),
        );
        r.register(
            "kfs_chunkservers",
            "Chunkservers by state",
            g.servers.clone(),
        );
        r.register(
            "kfs_under_replicated_chunks",
            "Chunks with fewer live replicas than their factor (the healer's last round)",
            g.under_replicated.clone(),
        );
        r.register(
            "kfs_missing_chunks",
            "Chunks with no readable replica (the healer's last round)",
            g.missing.clone(),
        );
        r.register(
            "kfs_replication_counted",
            "1 when the two gauges above hold a repair round's count; 0 in safe mode and before the first round (they then read 0 and mean nothing)",
            g.health_known.clone(),
        );
        r.register(
            "kfs_corrupt_replicas",
            "Replicas chunkservers reported corrupt",
            g.corrupt.clone(),
        );
        r.register(
            "kfs_repair_copies_in_flight",
            "Re-replication copies in flight",
            g.copies_in_flight.clone(),
        );
        r.register(
            "kfs_safe_mode",
            "1 while the master is in safe mode",
            g.safe_mode.clone(),
        );
        r.register(
            "kfs_log_last_seq",
            "Sequence number of the newest durable log record",
            g.log_seq.clone(),
        );
        r.register(
            "kfs_checkpoint_seq",
            "Log record the newest checkpoint covers",
            g.checkpoint_seq.clone(),
        );
        r.register(
            "kfs_log_ops",
            "Ops made durable in the operation log",
            g.log_ops.clone(),
        );
        r.register(
            "kfs_checkpoints",
            "Checkpoints written by this process",
            g.checkpoints.clone(),
        );
        r.register(
            "kfs_repair_copies",
            "Re-replication copies by outcome",
            g.copies.clone(),
        );
        r.register(
            "kfs_repair_rounds",
            "Repair rounds the healer ran",
            g.healer_rounds.clone(),
        );
        r.register(
            "kfs_log_commit_seconds",
            "Time to write and fdatasync one group commit",
            commit.commit_seconds.clone(),
        );
        r.register(
            "kfs_log_batch_ops",
            "Ops in one group commit (one fdatasync)",
            commit.batch_ops.clone(),
        );
        g
    }

    fn set(&self, s: &Status) {
        self.files.set(gauge_value(s.summary.files));
        self.dirs.set(gauge_value(s.summary.dirs));
        self.chunks.set(gauge_value(s.summary.chunks));
        self.bytes.set(gauge_value(s.summary.bytes));
        self.capacity.set(gauge_value(s.summary.capacity));
        self.used.set(gauge_value(s.summary.used));
        self.available.set(gauge_value(s.summary.available));
        for state in ["alive", "dead", "draining", "drained"] {
            let n = s.servers.iter().filter(|r| r.state == state).count();
            self.servers
                .get_or_create(&StateLabels { state })
                .set(n as i64);
        }
        self.under_replicated
            .set(gauge_value(s.replication.under_replicated.unwrap_or(0)));
        self.missing
            .set(gauge_value(s.replication.missing.unwrap_or(0)));
        self.health_known
            .set(s.replication.under_replicated.is_some() as i64);
        self.corrupt
            .set(gauge_value(s.replication.corrupt_replicas));
        self.copies_in_flight
            .set(gauge_value(s.replication.copies_in_flight));
        self.safe_mode.set(s.replication.safe_mode as i64);
        let c = &s.workers.committer;
        self.log_seq.set(gauge_value(c.last_seq));
        self.checkpoint_seq.set(gauge_value(c.checkpoint_seq));
        catch_up(&self.log_ops, c.ops);
        catch_up(&self.checkpoints, c.checkpoints);
        let h = &s.workers.healer;
        catch_up(&self.healer_rounds, h.rounds);
        for (outcome, total) in [("done", h.copies_done), ("failed", h.copies_failed)] {
            catch_up(
                &self.copies.get_or_create(&OutcomeLabels { outcome }),
                total,
            );
        }
    }
}

/// The master's metrics registry: per-RPC metrics (returned, for the services to record into)
/// and the state gauges, refreshed from `sources` at each scrape.
pub fn metrics(sources: &StatusSources) -> (Arc<Registry>, RpcMetrics, Refresh) {
    let mut registry = Registry::default();
    let rpc = RpcMetrics::register(&mut registry);
    let gauges = StateGauges::register(&mut registry, &sources.commit);
    let sources = sources.clone();
    // One refresh at a time, so mirrored counters are never moved twice.
    let gauges = Mutex::new(gauges);
    let refresh: Refresh = Arc::new(move || {
        let status = Status::gather(&sources);
        gauges.lock().expect("gauges lock").set(&status);
    });
    (Arc::new(registry), rpc, refresh)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_servers_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
