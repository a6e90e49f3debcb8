//! Prometheus metrics: per-RPC counts, latencies and errors, and the HTTP server that exposes
//! them (`/metrics`, Prometheus text format 0.0.4).
//!
//! Each process builds one [`Registry`] at start; metrics are registered once and afterwards only
//! updated, so serving a scrape never waits on a request. [`Metered`] wraps a tarpc service and
//! records every call (by service and method), its latency, and the [`KfsError`] kind of a failed
//! reply, without touching the service's methods. Gauges that describe state (chunk counts,
//! queues) are set by a refresh callback that runs at each scrape, so they are as fresh as it.
//!
//! Names follow Prometheus' conventions: a `kfs_` prefix, base units (seconds, bytes), and
//! `_total` on counters (added by the encoder).

use crate::error::KfsError;
pub use crate::http_serve::HttpLimits;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
pub use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tarpc::RequestName;
use tarpc::server::Serve;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A latency histogram in seconds: buckets from 25 µs doubling up to about 13 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(25e-6, 2.0, 20))
}

/// A histogram of counts (batch sizes and the like): 1, 2, 4 ... 8,192.
pub fn count_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

/// Moves `counter` up to `total`: a counter mirrored from an atomic a component keeps (the
/// caller refreshes one at a time, so it is never moved twice).
pub fn catch_up(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// A `u64` as a gauge's value (gauges are `i64`; larger values stay at `i64::MAX`).
pub fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Labels of a call: `service="MasterService", method="mkdir"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub service: String,
    pub method: String,
}

/// Labels of a failed call: its method and the error's kind (`not_found`, `no_space`...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub service: String,
    pub method: String,
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What every RPC service of a process records: calls, latency, errors by kind.
#[derive(Clone)]
pub struct RpcMetrics {
    calls: Family<MethodLabels, Counter>,
    latency: HistogramFamily<MethodLabels>,
    errors: Family<ErrorLabels, Counter>,
}

impl RpcMetrics {
    /// Registers the RPC metrics in `registry` (once per process; every service shares them).
    pub fn register(registry: &mut Registry) -> RpcMetrics {
        let metrics = RpcMetrics {
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
        };
        registry.register(
            "kfs_rpc_calls",
            "RPC calls served, by service and method",
            metrics.calls.clone(),
        );
        registry.register(
            "kfs_rpc_latency_seconds",
            "Time to serve an RPC, from the request read to the reply ready",
            metrics.latency.clone(),
        );
        registry.register(
            "kfs_rpc_errors",
            "RPC calls answered with an error, by method and kind of error",
            metrics.errors.clone(),
        );
        metrics
    }

    /// Records one call of `name` (tarpc's `Service.method`).
    pub fn observe(&self, name: &str, elapsed: Duration, error: Option<&'static str>) {
        let (service, method) = name.split_once('.').unwrap_or(("", name));
        let labels = MethodLabels {
            service: service.to_string(),
            method: method.to_string(),
        };
        self.calls.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = error {
            let labels = ErrorLabels {
                service: labels.service,
                method: labels.method,
                kind: kind.to_string(),
            };
            self.errors.get_or_create(&labels).inc();
        }
    }
}

/// A reply of a KFS service: every method answers `Result<_, KfsError>`.
pub trait ReplyError {
    /// The kind of the error this reply carries, if it is one.
    fn error_kind(&self) -> Option<&'static str>;
}

/// Implements [`ReplyError`] for a tarpc response enum, listing every method's variant (a method
/// added to the service and not listed here fails to compile).
macro_rules! reply_error {
    ($response:ident { $($variant:ident),* $(,)? }) => {
        impl ReplyError for $response {
            fn error_kind(&self) -> Option<&'static str> {
                match self {
                    $( $response::$variant(reply) => reply.as_ref().err().map(KfsError::kind), )*
                }
            }
        }
    };
}

use crate::proto::chunk::ChunkServiceResponse;
use crate::proto::cluster::ClusterServiceResponse;
use crate::proto::master::MasterServiceResponse;

reply_error!(MasterServiceResponse {
    Handshake,
    Mkdir,
    Create,
    Stat,
    Readdir,
    Rename,
    Remove,
    Rmdir,
    RemoveRecursive,
    SetReplication,
    SetAttr,
    SetXattr,
    GetXattr,
    ListXattrs,
    RemoveXattr,
    Counters,
    FileChunks,
    Chunkservers,
    StatFid,
    Locate,
    Lease,
    RenewLease,
    ReportFailure,
    Fsck,
    Decommission,
    ExtendLength,
    Open,
    Workers,
    VolumeLease,
    SealVolume,
    SetExtent,
    OpenLayout,
    Layout,
    LeaseUnpacking,
    Truncate,
    SafeMode,
    Checkpoint,
    OpenFiles,
    FsckPath,
    ReportGateway,
    AddUser,
    RemoveUser,
    Users,
    Whoami,
    LocateSigned,
    LayoutSigned,
    OpenLayoutSigned,
    LeaseSigned,
    ReportFailureSigned,
    VolumeLeaseSigned,
    FileChunksSigned,
    SetDurability,
    SyncNamespace,
    Symlink,
    Readlink,
    Mknod,
    Link,
    ChangeNames,
});
reply_error!(ClusterServiceResponse {
    Hello,
    Heartbeat,
    Describe,
    CapabilityKeys
});
reply_error!(ChunkServiceResponse {
    Read,
    Status,
    Write,
    Sync,
    Create,
    SetVersion,
    Replicate,
    Digest,
    Length,
    CreateVolume,
    Append,
    ReadRecord,
    ReadVolume,
    ReplicateVolume,
    Checksum,
    ReadWith,
    WriteWith,
    SyncWith,
    AppendWith,
    ReadRecordWith,
    ChecksumWith,
    LengthWith,
});

/// A tarpc service that records each call in [`RpcMetrics`]: wrap the generated server, e.g.
/// `Metered::new(server.serve(), metrics)`.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S> Metered<S> {
    pub fn new(inner: S, metrics: RpcMetrics) -> Metered<S> {
        Metered { inner, metrics }
    }
}

impl<S> Serve for Metered<S>
where
    S: Serve,
    S::Resp: ReplyError,
{
    type Req = S::Req;
    type Resp = S::Resp;

    async fn serve(
        self,
        ctx: tarpc::context::Context,
        req: S::Req,
    ) -> Result<S::Resp, tarpc::ServerError> {
        let name = req.name().to_string();
        let started = Instant::now();
        let reply = self.inner.serve(ctx, req).await;
        let error = match &reply {
            Ok(reply) => reply.error_kind(),
            Err(_) => Some("server_error"),
        };
        self.metrics.observe(&name, started.elapsed(), error);
        reply
    }
}

/// Sets gauges from current state just before a scrape is encoded.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// The registry encoded in Prometheus' text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
        .expect("writing to a String does not fail");
    text
}

/// A router serving `GET /metrics` from `registry`, calling `refresh` first.
/// `router` with `GET /workers.json`: the server's background workers (`kfs_common::worker`).
pub fn with_workers(router: Router, workers: crate::worker::Workers) -> Router {
    router.route(
        "/workers.json",
        get(move || {
            let workers = workers.clone();
            async move { axum::Json(workers.list()) }
        }),
    )
}

pub fn metrics_router(registry: Arc<Registry>, refresh: Option<Refresh>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let (registry, refresh) = (registry.clone(), refresh.clone());
            async move {
                if let Some(refresh) = refresh {
                    refresh();
                }
                ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], encode(&registry)).into_response()
            }
        }),
    )
}

/// An HTTP server running in the background (status pages, `/metrics`).
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port) and serves `router` there until
    /// [`HttpServer::shutdown`] or drop, with the default [`HttpLimits`].
    pub async fn start(addr: SocketAddr, router: Router) -> std::io::Result<HttpServer> {
        Self::start_with(addr, router, HttpLimits::default()).await
    }

    /// [`HttpServer::start`] with the given limits.
    pub async fn start_with(
        addr: SocketAddr,
        router: Router,
        limits: HttpLimits,
    ) -> std::io::Result<HttpServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Self::serve_with(listener, router, limits))
    }

    /// [`HttpServer::start`] when `addr` is configured; the error names the address.
    pub async fn start_if(
        addr: Option<SocketAddr>,
        router: impl FnOnce() -> Router,
    ) -> Result<Option<HttpServer>, (SocketAddr, std::io::Error)> {
        match addr {
            None => Ok(None),
            Some(addr) => HttpServer::start(addr, router())
                .await
                .map(Some)
                .map_err(|e| (addr, e)),
        }
    }

    /// Serves `router` on a bound listener, with the default [`HttpLimits`].
    pub fn serve(listener: tokio::net::TcpListener, router: Router) -> HttpServer {
        Self::serve_with(listener, router, HttpLimits::default())
    }

    /// Serves `router` on a bound listener: header-read timeout and connection limit as
    /// `limits` say (`crate::http_serve`).
    pub fn serve_with(
        listener: tokio::net::TcpListener,
        router: Router,
        limits: HttpLimits,
    ) -> HttpServer {
        Self::serve_tls(listener, router, limits, None)
    }

    /// [`HttpServer::serve_with`], over TLS (HTTPS) when `tls` is given.
    pub fn serve_tls(
        listener: tokio::net::TcpListener,
        router: Router,
        limits: HttpLimits,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> HttpServer {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            crate::http_serve::serve(listener, router, limits, tls, shutdown).await;
        });
        tracing::info!(%addr, scheme, "serving");
        HttpServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits (at most `grace`) for requests in progress.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(grace, &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_latencies_and_error_kinds_are_encoded() {
        let mut registry = Registry::default();
        let rpc = RpcMetrics::register(&mut registry);
        rpc.observe("MasterService.stat", Duration::from_micros(40), None);
        rpc.observe(
            "MasterService.stat",
            Duration::from_micros(90),
            Some(KfsError::not_found("/a").kind()),
        );
        let text = encode(&registry);
        assert!(
            text.contains(r#"kfs_rpc_calls_total{service="MasterService",method="stat"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kfs_rpc_errors_total{service="MasterService",method="stat",kind="not_found"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kfs_rpc_latency_seconds_count{service="MasterService",method="stat"} 2"#
            ),
            "{text}"
        );
    }
}
