//! The chunkserver process: opens the store, serves the chunk service, keeps the link to the
//! master and runs the scrubber; [`ChunkserverHandle::shutdown`] stops all of it.
//!
//! [`ChunkServer`] is the state every call shares (store, write sequencer, peer pool, this
//! server's own location); what it answers is in `chunk_service.rs`.

use crate::config::{ChunkserverConfig, ConfigError};
use crate::master_link::{self, LinkStats};
use crate::metrics::IoCounters;
use crate::scrubber::{self, ScrubStats};
use crate::sequencer::Sequencer;
use crate::store::io::FileIo;
use crate::store::{ChunkStore, StoreError};
use futures::StreamExt;
use kfs_common::metrics::{HttpServer, Metered, metrics_router, with_workers};
use kfs_common::proto::chunk::{ChunkPool, ChunkService};
use kfs_common::proto::master::ReplicaLocation;
use kfs_common::rpc::{self, Service};
use kfs_common::worker::{Loop, WorkerStatus, Workers};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tarpc::server::{BaseChannel, Channel};

mod capabilities;
mod chunk_service;
mod volume_service;

/// Why the chunkserver could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Security(#[from] kfs_common::security::SecurityError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The chunk service; cheap to clone (one per call).
#[derive(Clone)]
pub struct ChunkServer {
    store: Arc<ChunkStore>,
    seq: Arc<Sequencer>,
    /// Connections to the next replicas of chains.
    peers: ChunkPool,
    /// This server, as replicas and writers know it.
    me: ReplicaLocation,
    io: IoCounters,
    /// Who this connection's certificate names, and which certificate it is; `None` on an
    /// insecure server. Shared: the server is cloned for every call.
    peer: Option<Arc<kfs_common::security::Peer>>,
    /// The master's capability keys (kept by the master link).
    keys: Arc<kfs_common::security::capability::Verifier>,
}

/// How long a write waits for the writes numbered before it.
const WRITE_ORDER_WAIT: Duration = Duration::from_secs(10);
/// Write numberings idle this long are forgotten (well past any lease).
const SEQUENCE_IDLE: Duration = Duration::from_secs(600);

/// A running chunkserver.
pub struct ChunkserverHandle {
    addr: SocketAddr,
    /// `/metrics`, when configured.
    http: Option<HttpServer>,
    store: Arc<ChunkStore>,
    link: Arc<LinkStats>,
    scrub: Arc<ScrubStats>,
    /// The transport's limits and counters.
    rpc: rpc::RpcServer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The master link, the scrubber and the sequence sweep.
    workers: Workers,
    stop_accepting: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Opens the data dirs and serves them, with the operating system's I/O.
pub async fn start(config: &ChunkserverConfig) -> Result<ChunkserverHandle, StartError> {
    start_with_io(config, Arc::new(crate::store::io::RealIo)).await
}

/// [`start`] with the given file I/O (tests inject faults this way).
pub async fn start_with_io(
    config: &ChunkserverConfig,
    io: Arc<dyn FileIo>,
) -> Result<ChunkserverHandle, StartError> {
    config.validate()?;
    let dirs = config.data.clone();
    let store = tokio::task::spawn_blocking(move || ChunkStore::open(&dirs, io))
        .await
        .expect("opening the store does not panic")?;
    store.set_space_limits(config.capacity_bytes, config.reserve_bytes);
    let security = config.security(store.server_id())?;
    let store = Arc::new(store);
    let (chunks, corrupt) = store.report();
    tracing::info!(
        server = %store.server_id(),
        replicas = chunks.len(),
        corrupt = corrupt.len(),
        failed_dirs = store.failed_dirs().len(),
        "chunk store open"
    );

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let advertise = config.advertise.unwrap_or(addr);

    let link = Arc::new(LinkStats::default());
    let scrub = Arc::new(ScrubStats::default());
    let (registry, rpc_metrics, io, refresh) =
        crate::metrics::registry(store.clone(), link.clone(), scrub.clone());
    let workers = Workers::new();
    let http = HttpServer::start_if(config.http, || {
        with_workers(metrics_router(registry, Some(refresh)), workers.clone())
    })
    .await
    .map_err(|(addr, source)| StartError::Bind { addr, source })?;
    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    let seq = Arc::new(Sequencer::new(WRITE_ORDER_WAIT));
    let io_for_link = io.clone();
    let keys = Arc::new(kfs_common::security::capability::Verifier::default());
    let server = ChunkServer {
        store: store.clone(),
        seq: seq.clone(),
        peers: ChunkPool::new(security.clone()),
        me: ReplicaLocation {
            server: store.server_id(),
            addr: advertise,
        },
        io,
        peer: None,
        keys: keys.clone(),
    };
    let rpc_server = rpc::RpcServer::new(config.rpc_limits()?, security.clone());
    let accept = tokio::spawn(rpc::accept_loop(
        listener,
        rpc_server.clone(),
        async {
            let _ = stopped.await;
        },
        move |incoming: rpc::Incoming| {
            let server = ChunkServer {
                peer: incoming.peer_certificate().cloned().map(Arc::new),
                ..server.clone()
            };
            let rpc_metrics = rpc_metrics.clone();
            async move {
                let service = incoming.service();
                if service != Service::Chunk {
                    tracing::warn!(
                        ?service,
                        "a connection asked a chunkserver for another service; closed"
                    );
                    return;
                }
                BaseChannel::with_defaults(incoming.transport())
                    .execute(Metered::new(server.serve(), rpc_metrics))
                    .for_each(|call| async move {
                        tokio::spawn(call);
                    })
                    .await;
            }
        },
    ));
    {
        let (store, master, link) = (store.clone(), config.master, link.clone());
        let about = master_link::About {
            // An HTTP side bound to every address is reached at the advertised one's.
            http: http.as_ref().map(|h| {
                let mut at = h.local_addr();
                if at.ip().is_unspecified() {
                    at.set_ip(advertise.ip());
                }
                at
            }),
            scrub: scrub.clone(),
            io: io_for_link,
            security: security.clone(),
            keys,
        };
        workers.spawn(Loop::new("master link", move |status| {
            master_link::run(store, master, advertise, about, link, status)
        }));
    }
    {
        let (store, rate, scrub) = (store.clone(), config.scrub_bytes_per_sec, scrub.clone());
        let pause = Duration::from_secs(config.scrub_pause_secs);
        workers.spawn(Loop::new("scrubber", move |status| {
            scrubber::run(store, rate, pause, scrub, status)
        }));
    }
    workers.spawn(Loop::new(
        "sequence sweep",
        move |status: WorkerStatus| async move {
            let mut ticks = tokio::time::interval(SEQUENCE_IDLE / 4);
            loop {
                ticks.tick().await;
                seq.sweep(SEQUENCE_IDLE);
                status.round("swept idle write sequences");
            }
        },
    ));
    tracing::info!(%addr, %advertise, master = %config.master, "serving");
    Ok(ChunkserverHandle {
        addr,
        http,
        store,
        link,
        scrub,
        rpc: rpc_server,
        tasks: vec![accept],
        workers,
        stop_accepting: Some(stop_accepting),
    })
}

impl ChunkserverHandle {
    /// The transport's limits and counters (connections, buffered bytes, refusals).
    pub fn rpc(&self) -> &rpc::RpcServer {
        &self.rpc
    }

    /// The address the chunk service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of `/metrics`, when configured.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// The store, for in-process tools and tests.
    pub fn store(&self) -> &Arc<ChunkStore> {
        &self.store
    }

    pub fn link_stats(&self) -> &LinkStats {
        &self.link
    }

    pub fn scrub_stats(&self) -> &ScrubStats {
        &self.scrub
    }

    /// Stops serving, the master link and the scrubber; the store's I/O threads finish their
    /// queued work and end when the last reference to the store goes.
    pub async fn shutdown(mut self) {
        if let Some(http) = self.http.take() {
            http.shutdown(Duration::from_secs(1)).await;
        }
        if let Some(stop) = self.stop_accepting.take() {
            let _ = stop.send(());
        }
        for accept in std::mem::take(&mut self.tasks) {
            let _ = accept.await;
        }
        self.workers.shutdown().await;
        tracing::info!(addr = %self.addr, "stopped");
    }
}

impl Drop for ChunkserverHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.workers.cancel();
    }
}
