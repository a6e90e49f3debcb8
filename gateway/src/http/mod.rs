//! The gateway's HTTP API: KFS over plain HTTP, for serving files (a photo site's images, a media
//! archive) straight from the file system, and uploading to it.
//!
//! - `GET`/`HEAD` of a file: the bytes, streamed (a file is never held in memory whole), with
//!   `Range` (one range: 206; several: the whole file), `ETag`/`Last-Modified`, conditional
//!   requests (`If-None-Match`, `If-Modified-Since`, `If-Range`: 304), `Content-Type` from the
//!   extension ([`read`]).
//! - `GET` of a directory: a JSON listing, a page at a time (`?after=NAME&limit=N`) ([`read`]).
//! - `PUT` (upload, atomic: written to a temporary name, synced, then renamed over the target)
//!   and `DELETE`, only with a write token configured and sent as `Authorization: Bearer`
//!   ([`write`](mod@write)). Without a token the gateway is read-only.
//! - Limits: a body size for uploads (413); streams admitted by the bytes they hold and their
//!   number, past either waiting in a bounded queue for a while before any 503 ([`admission`]);
//!   a client that stops reading its response is cut off (the listener's write-stall timeout).
//! - URL paths are decoded and checked once ([`path`]); bad ones get 400.
//! - A short-lived metadata cache ([`cache`]) keeps small-file GETs off the master.
//! - Metrics in Prometheus text format on a separate listener (`--metrics ADDR`, `/metrics`),
//!   so that no KFS file is shadowed by a name the gateway would reserve.
//!
//! Invariant: a request only ever touches paths under the gateway's root.

pub mod admission;
pub mod cache;
pub mod path;
pub mod read;
pub mod write;

use crate::config_error;
use admission::Admission;
pub use admission::StreamPermit;
use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cache::{CacheCounters, MetaCache};
use kfs_client::Client;
use kfs_common::KfsError;
use kfs_common::metrics::{HttpServer, Registry, latency_histogram, metrics_router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the HTTP gateway is set up (from `kfs gateway`'s flags: [`crate::GatewayOptions`]).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Serve `/metrics` here.
    pub metrics: Option<SocketAddr>,
    /// The KFS directory served as `/`.
    pub root: String,
    /// Bearer token that allows PUT and DELETE; `None`: read-only.
    pub write_token: Option<String>,
    /// Largest upload body, bytes.
    pub max_body: u64,
    /// Requests streaming a body (either way) at once; more wait (`admission.rs`).
    pub max_streams: usize,
    /// Bytes the streams in flight may hold buffered at once; more wait.
    pub max_stream_bytes: u64,
    /// Requests waiting for a stream, at most; more get 503 at once.
    pub max_queued: usize,
    /// How long a request waits for a stream before its 503.
    pub queue_timeout: Duration,
    /// A client that reads nothing of its response for this long is cut off.
    pub stall_timeout: Duration,
    /// How long metadata is reused without asking the master; zero turns the cache off.
    pub cache_ttl: Duration,
    pub cache_entries: usize,
    /// Entries per page of a directory listing, at most.
    pub list_limit: u32,
    /// Replication factor of uploaded files (`None`: the cluster's default).
    pub replication: Option<u8>,
    /// HTTPS: the listener's TLS configuration (`--tls-cert/--tls-key`); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics: None,
            root: "/".into(),
            write_token: None,
            max_body: 1 << 30,
            max_streams: 4096,
            max_stream_bytes: 1 << 30,
            max_queued: 10_000,
            queue_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(1),
            cache_entries: 100_000,
            list_limit: 1000,
            replication: None,
            tls: None,
        }
    }
}

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    status: u16,
}

/// The gateway's metrics.
#[derive(Clone)]
pub struct GatewayMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub sent_bytes: Counter,
    pub received_bytes: Counter,
    pub open_streams: Gauge,
    pub queued_streams: Gauge,
    pub cache: CacheCounters,
}

impl GatewayMetrics {
    fn register(registry: &mut Registry) -> GatewayMetrics {
        let m = GatewayMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            sent_bytes: Counter::default(),
            received_bytes: Counter::default(),
            open_streams: Gauge::default(),
            queued_streams: Gauge::default(),
            cache: CacheCounters::default(),
        };
        registry.register(
            "kfs_gateway_requests",
            "HTTP requests answered, by method and status",
            m.requests.clone(),
        );
        registry.register(
            "kfs_gateway_response_seconds",
            "Time from a request to its response's headers, by method and status",
            m.latency.clone(),
        );
        registry.register(
            "kfs_gateway_sent_bytes",
            "Bytes of file data sent",
            m.sent_bytes.clone(),
        );
        registry.register(
            "kfs_gateway_received_bytes",
            "Bytes of uploads received",
            m.received_bytes.clone(),
        );
        registry.register(
            "kfs_gateway_queued_streams",
            "Requests waiting for a stream (at the --max-streams or --max-stream-bytes limit)",
            m.queued_streams.clone(),
        );
        registry.register(
            "kfs_gateway_open_streams",
            "Responses or uploads streaming now",
            m.open_streams.clone(),
        );
        registry.register(
            "kfs_gateway_cache_hits",
            "Metadata lookups answered by the cache",
            m.cache.hits.clone(),
        );
        registry.register(
            "kfs_gateway_cache_misses",
            "Metadata lookups that asked the master",
            m.cache.misses.clone(),
        );
        // The client's own RPCs are the master's and chunkservers' to count.
        m
    }
}

/// State every request shares.
pub struct Gateway {
    pub client: Client,
    pub config: GatewayConfig,
    pub cache: MetaCache,
    pub admission: Admission,
    pub metrics: GatewayMetrics,
}

/// A running gateway.
pub struct GatewayHandle {
    http: HttpServer,
    metrics: Option<HttpServer>,
    /// Reports this gateway to the master (`report.rs`) until the handle goes.
    _reporter: crate::report::Reporter,
}

impl GatewayHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(HttpServer::local_addr)
    }

    /// Stops accepting; requests in flight get `grace` to finish.
    pub async fn shutdown(self, grace: Duration) {
        let metrics = async {
            if let Some(m) = self.metrics {
                m.shutdown(grace).await;
            }
        };
        tokio::join!(self.http.shutdown(grace), metrics);
    }
}

/// Starts serving `client`'s cluster as configured.
pub async fn start(client: Client, config: GatewayConfig) -> anyhow::Result<GatewayHandle> {
    kfs_common::path::validate(&config.root)
        .map_err(|e| config_error(format!("--root {}: {e}", config.root)))?;
    match client.stat(&config.root).await {
        Ok(attr) if attr.kind == kfs_common::FileKind::Dir => {}
        Ok(_) => {
            return Err(config_error(format!(
                "--root {}: not a directory",
                config.root
            )));
        }
        Err(e @ (KfsError::NotFound { .. } | KfsError::NotADirectory { .. })) => {
            return Err(config_error(format!("--root {}: {e}", config.root)));
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("--root {}", config.root))),
    }
    let mut registry = Registry::default();
    let metrics = GatewayMetrics::register(&mut registry);
    let cache = MetaCache::new(
        client.clone(),
        config.cache_ttl,
        config.cache_entries,
        metrics.cache.clone(),
    );
    let admission = Admission::new(
        config.max_streams,
        config.max_stream_bytes,
        config.max_queued,
        config.queue_timeout,
        metrics.open_streams.clone(),
        metrics.queued_streams.clone(),
    );
    let gateway_client = client.clone();
    let gateway = Arc::new(Gateway {
        client,
        admission,
        cache,
        metrics,
        config: config.clone(),
    });
    let router = Router::new().fallback(handle).with_state(gateway);
    let limits = kfs_common::metrics::HttpLimits {
        write_stall_timeout: config.stall_timeout,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let http = HttpServer::serve_tls(listener, router, limits, config.tls.clone());
    let metrics = match config.metrics {
        Some(addr) => Some(
            HttpServer::start(addr, metrics_router(Arc::new(registry), None))
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?,
        ),
        None => None,
    };
    let reporter = crate::report::spawn(
        gateway_client,
        kfs_client::GatewayReport {
            kind: "http".into(),
            listen: http.local_addr(),
            metrics: metrics.as_ref().map(HttpServer::local_addr),
            version: env!("CARGO_PKG_VERSION").into(),
            root: config.root.clone(),
        },
    );
    Ok(GatewayHandle {
        http,
        metrics,
        _reporter: reporter,
    })
}

/// Query parameters of a directory listing.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// Every request: the path checked once, then by method.
async fn handle(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = match path::to_kfs_path(&gw.config.root, request.uri().path()) {
        Err(bad) => error_text(StatusCode::BAD_REQUEST, &format!("bad path: {bad}")),
        Ok(path) => match method {
            Method::GET | Method::HEAD => {
                read::get(&gw, &path, &method, request.uri(), request.headers()).await
            }
            Method::PUT => write::put(&gw, &path, request).await,
            Method::DELETE => write::delete(&gw, &path, request.headers()).await,
            _ => {
                let mut r = error_text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("{method} is not served"),
                );
                r.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, PUT, DELETE"),
                );
                r
            }
        },
    };
    // A fixed set of method labels: any token is a valid HTTP method, and each label value
    // would be a new series for good.
    let method = match method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "other",
    };
    let labels = RequestLabels {
        method: method.to_string(),
        status: response.status().as_u16(),
    };
    gw.metrics.requests.get_or_create(&labels).inc();
    gw.metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The listing query (`?after=NAME&limit=N`) of a directory GET.
pub fn list_query(uri: &axum::http::Uri) -> Result<ListQuery, String> {
    match uri.query() {
        None => Ok(ListQuery::default()),
        Some(_) => Query::<ListQuery>::try_from_uri(uri)
            .map(|Query(q)| q)
            .map_err(|e| e.to_string()),
    }
}

/// A KFS path as the URL names it (without the gateway's root), for messages.
pub fn shown<'a>(gw: &Gateway, path: &'a str) -> &'a str {
    let root = gw.config.root.trim_end_matches('/');
    match path.strip_prefix(root) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// A plain-text error response: one line naming what failed.
pub fn error_text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from(format!("{message}\n")),
    )
        .into_response()
}

/// The HTTP answer to a KFS error about `path` while doing `what`.
/// The paths in a message as URLs name them: the gateway's root taken off.
fn without_root(gw: &Gateway, text: &str) -> String {
    let root = gw.config.root.trim_end_matches('/');
    if root.is_empty() {
        return text.to_string();
    }
    text.replace(&format!("{root}/"), "/")
        .replace(&format!("'{root}'"), "'/'")
}

pub fn kfs_error(gw: &Gateway, what: &str, e: &KfsError) -> Response {
    let status = match e {
        KfsError::NotFound { .. } => StatusCode::NOT_FOUND,
        KfsError::InvalidPath { .. } | KfsError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        KfsError::AlreadyExists { .. }
        | KfsError::NotADirectory { .. }
        | KfsError::IsADirectory { .. }
        | KfsError::DirectoryNotEmpty { .. } => StatusCode::CONFLICT,
        KfsError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
        // The gateway's user may not do this (docs/security.md, "Users").
        KfsError::PermissionDenied(_) => StatusCode::FORBIDDEN,
        KfsError::Unavailable(_)
        | KfsError::ChunkUnavailable { .. }
        | KfsError::LeaseExpired { .. }
        | KfsError::WriteFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "{what}");
    }
    error_text(status, &without_root(gw, &format!("cannot {what}: {e}")))
}

/// A permit to stream a body that may hold `cost` bytes at once, after a wait if the gateway
/// is at its limits, or the 503 that says it stayed there (`admission.rs`).
pub async fn stream_permit(gw: &Gateway, cost: u64) -> Result<StreamPermit, Box<Response>> {
    gw.admission.admit(cost).await
}
