//! The chunkserver process: opens the store, serves the chunk service, keeps the link to the
//! master and runs the scrubber; [`ChunkserverHandle::shutdown`] stops all of it.

use crate::config::{ChunkserverConfig, ConfigError};
use crate::master_link::{self, LinkStats};
use crate::metrics::IoCounters;
use crate::scrubber::{self, ScrubStats};
use crate::sequencer::Sequencer;
use crate::store::io::FileIo;
use crate::store::{ChunkStore, StoreError};
use futures::StreamExt;
use kfs_common::metrics::{HttpServer, Metered, metrics_router, with_workers};
use kfs_common::proto::Payload;
use kfs_common::proto::chunk::{
    ChunkPool, ChunkService, ChunkserverStatus, MAX_READ_LEN, MAX_WRITE_LEN, WriteRequest,
};
use kfs_common::proto::master::ReplicaLocation;
use kfs_common::rpc::{self, Service};
use kfs_common::worker::{Loop, WorkerStatus, Workers};
use kfs_common::{ChunkId, ChunkVersion, KfsError, KfsResult};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tracing::instrument;

/// Why the chunkserver could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
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
}

/// How long a write waits for the writes numbered before it.
const WRITE_ORDER_WAIT: Duration = Duration::from_secs(10);
/// Forwarding a write or sync down the chain may take this long.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
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
    let server = ChunkServer {
        store: store.clone(),
        seq: seq.clone(),
        peers: ChunkPool::new(),
        me: ReplicaLocation {
            server: store.server_id(),
            addr: advertise,
        },
        io,
    };
    let rpc_server = rpc::RpcServer::new(config.rpc_limits()?);
    let accept = tokio::spawn(rpc::accept_loop(
        listener,
        rpc_server.clone(),
        async {
            let _ = stopped.await;
        },
        move |incoming: rpc::Incoming| {
            let server = server.clone();
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
        workers.spawn(Loop::new("master link", move |status| {
            master_link::run(store, master, advertise, link, status)
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

impl ChunkServer {
    /// What a write or sync at `version` that failed here answers: the version moved under it
    /// (the master moved this replica on while the request was on its way), or the writes at
    /// this version can no longer be ordered (see the sequencer), both as they are, with no
    /// replica to blame; or a failure of this replica, as the chain reports it.
    fn local_failure(&self, chunk: ChunkId, version: ChunkVersion, error: KfsError) -> KfsError {
        if error.is_version_moved() || error.is_order_lost() {
            return error;
        }
        // A replica renamed to its new version between the check and the file's opening reads
        // as missing: it is a version move too.
        if let KfsError::NoSuchChunk { .. } = error
            && let Some((found, _)) = self.store.replica(chunk)
            && found > version
        {
            return KfsError::StaleVersion {
                chunk,
                expected: version,
                found,
            };
        }
        self.failed_here(chunk, error)
    }

    /// A failure of this replica, as the chain reports it.
    fn failed_here(&self, chunk: ChunkId, error: KfsError) -> KfsError {
        KfsError::WriteFailed {
            chunk,
            server: self.me.server,
            addr: self.me.addr.to_string(),
            reason: error.to_string(),
        }
    }

    /// Sends `call` to the first replica of `chain` and turns its failure into a `WriteFailed`
    /// naming the replica that failed. A reply that the version moved, or that the writes at it
    /// can no longer be ordered, is passed on as it is: it is no replica's failure (the writer
    /// must get a new lease), and reporting the replica that said it would drop a healthy
    /// replica of the chunk.
    async fn forward<F, Fut>(
        &self,
        chunk: ChunkId,
        chain: &[ReplicaLocation],
        call: F,
    ) -> KfsResult<()>
    where
        F: FnOnce(kfs_common::proto::chunk::ChunkServiceClient, Vec<ReplicaLocation>) -> Fut,
        Fut: std::future::Future<Output = Result<KfsResult<()>, tarpc::client::RpcError>>,
    {
        let Some((next, rest)) = chain.split_first() else {
            return Ok(());
        };
        let failed = |reason: String| KfsError::WriteFailed {
            chunk,
            server: next.server,
            addr: next.addr.to_string(),
            reason,
        };
        let client = self
            .peers
            .get(next.addr)
            .await
            .map_err(|e| failed(format!("unreachable: {e}")))?;
        match call(client, rest.to_vec()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e @ KfsError::WriteFailed { .. })) => Err(e),
            Ok(Err(e)) if e.is_version_moved() || e.is_order_lost() => Err(e),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(e) => {
                self.peers.forget(next.addr);
                Err(failed(format!("unreachable: {e}")))
            }
        }
    }
}

/// Bytes a replication copies per read.
const COPY_PIECE: u32 = 4 << 20;

/// The version of a replica while it is being copied in.
const COPYING: ChunkVersion = ChunkVersion(0);

impl ChunkServer {
    /// Length and crc32c of all the data of a local replica, every block verified on the way.
    async fn local_digest(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<(u64, u32)> {
        let (_, length) = self
            .store
            .replica(chunk)
            .ok_or(KfsError::NoSuchChunk { chunk })?;
        let mut crc = 0u32;
        let mut at = 0u64;
        while at < length {
            let piece = self
                .store
                .read(chunk, version, at, u64::from(COPY_PIECE))
                .await?;
            if piece.is_empty() {
                break;
            }
            crc = crc32c::crc32c_append(crc, &piece);
            at += piece.len() as u64;
        }
        Ok((at, crc))
    }

    /// Copies a replica from `source` and checks it end to end.
    async fn copy_from(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        source: &ReplicaLocation,
    ) -> KfsResult<u64> {
        let unreachable =
            |e: String| KfsError::Unavailable(format!("source {} of {chunk}: {e}", source.addr));
        let from = self
            .peers
            .get(source.addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // Whatever replica of the chunk is here is stale or damaged: it is replaced. The copy is
        // made at version 0 (older than any real version), so a copy cut short by a crash is a
        // stale replica, never a short one at the current version.
        self.store.delete(chunk).await?;
        self.seq.forget(chunk);
        self.store.create(chunk, COPYING).await?;
        let mut at = 0u64;
        loop {
            let piece = match from
                .read(
                    rpc::context(FORWARD_TIMEOUT),
                    chunk,
                    version,
                    at,
                    COPY_PIECE,
                )
                .await
            {
                Ok(piece) => piece?,
                Err(e) => {
                    self.peers.forget(source.addr);
                    return Err(unreachable(e.to_string()));
                }
            };
            let n = piece.len() as u64;
            self.io.copied_bytes.inc_by(n);
            if n > 0 {
                self.store.write(chunk, COPYING, at, piece).await?;
            }
            at += n;
            if n < u64::from(COPY_PIECE) {
                break;
            }
        }
        let theirs = match from
            .digest(rpc::context(FORWARD_TIMEOUT), chunk, version)
            .await
        {
            Ok(d) => d?,
            Err(e) => return Err(unreachable(e.to_string())),
        };
        self.store.sync(chunk, COPYING).await?;
        let ours = self.local_digest(chunk, COPYING).await?;
        if ours != theirs {
            return Err(KfsError::CorruptReplica {
                chunk,
                reason: format!(
                    "the copy from {} has digest {ours:?}, the source {theirs:?}",
                    source.addr
                ),
            });
        }
        self.store.set_version(chunk, COPYING, version).await?;
        tracing::info!(%chunk, %version, bytes = at, source = %source.addr, "replica copied");
        Ok(at)
    }
}

impl ChunkService for ChunkServer {
    #[instrument(level = "debug", skip_all, fields(%chunk, %version, offset, len))]
    async fn read(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        len: u32,
    ) -> KfsResult<Payload> {
        if len > MAX_READ_LEN {
            return Err(KfsError::invalid_argument(format!(
                "a read of {len} bytes is more than {MAX_READ_LEN} at once"
            )));
        }
        let data = self
            .store
            .read(chunk, version, offset, u64::from(len))
            .await?;
        self.io.read_bytes.inc_by(data.len() as u64);
        Ok(Payload::from_buffer(data))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %req.chunk, version = %req.version, offset = req.offset, len = req.data.len(), serial = ?req.serial))]
    async fn write(self, _: Context, req: WriteRequest) -> KfsResult<u64> {
        let WriteRequest {
            chunk,
            version,
            offset,
            data,
            serial,
            chain,
        } = req;
        if data.len() > MAX_WRITE_LEN {
            return Err(KfsError::invalid_argument(format!(
                "a write of {} bytes is more than {MAX_WRITE_LEN} at once",
                data.len()
            )));
        }
        let serial = match serial {
            Some(serial) => serial,
            None => {
                // This is the primary: the writer's lease must be current here. A replica moved
                // past the lease is a version move (the writer gets the new lease); a missing or
                // older one is this replica's own failure, reported as such.
                match self.store.replica(chunk) {
                    None => {
                        let missing = KfsError::NoSuchChunk { chunk };
                        return Err(self.local_failure(chunk, version, missing));
                    }
                    Some((found, _)) if found != version => {
                        let stale = KfsError::StaleVersion {
                            chunk,
                            expected: version,
                            found,
                        };
                        return Err(self.local_failure(chunk, version, stale));
                    }
                    Some(_) => self.seq.assign(chunk, version)?,
                }
            }
        };
        let local = async {
            let turn = self.seq.turn(chunk, version, serial).await?;
            let written = self.store.write(chunk, version, offset, data.clone()).await;
            turn.finish();
            written
        };
        let forward = self.forward(chunk, &chain, |next, rest| {
            let request = WriteRequest {
                chunk,
                version,
                offset,
                data: data.clone(),
                serial: Some(serial),
                chain: rest,
            };
            async move {
                next.write(rpc::context(FORWARD_TIMEOUT), request)
                    .await
                    .map(|r| r.map(drop))
            }
        });
        let (local, forwarded) = tokio::join!(local, forward);
        // This replica's own answer first: its failure, or the version moved here (then the
        // write is moot at this version whatever the rest of the chain said).
        let length = local.map_err(|e| self.local_failure(chunk, version, e))?;
        self.io.written_bytes.inc_by(data.len() as u64);
        forwarded?;
        Ok(length)
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn sync(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        chain: Vec<ReplicaLocation>,
    ) -> KfsResult<()> {
        let local = self.store.sync(chunk, version);
        let forward = self.forward(chunk, &chain, |next, rest| async move {
            next.sync(rpc::context(FORWARD_TIMEOUT), chunk, version, rest)
                .await
        });
        let (local, forwarded) = tokio::join!(local, forward);
        local.map_err(|e| self.local_failure(chunk, version, e))?;
        forwarded
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn create(self, _: Context, chunk: ChunkId, version: ChunkVersion) -> KfsResult<()> {
        match self.store.create(chunk, version).await {
            Err(KfsError::AlreadyExists { .. })
                if self.store.replica(chunk) == Some((version, 0)) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %from, %to))]
    async fn set_version(
        self,
        _: Context,
        chunk: ChunkId,
        from: ChunkVersion,
        to: ChunkVersion,
    ) -> KfsResult<()> {
        if self.store.replica(chunk).map(|(v, _)| v) == Some(to) {
            return Ok(());
        }
        self.store.set_version(chunk, from, to).await
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version, source = %source.addr))]
    async fn replicate(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        source: ReplicaLocation,
    ) -> KfsResult<u64> {
        let _copy = self.store.begin_copy_in(chunk)?;
        let copied = self.copy_from(chunk, version, &source).await;
        if copied.is_err() && self.store.replica(chunk).is_some_and(|(v, _)| v == COPYING) {
            // Leave nothing half-copied behind (the staging replica is this copy's own).
            let _ = self.store.delete(chunk).await;
        }
        copied
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn digest(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
    ) -> KfsResult<(u64, u32)> {
        self.local_digest(chunk, version).await
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn length(self, _: Context, chunk: ChunkId, version: ChunkVersion) -> KfsResult<u64> {
        match self.store.replica(chunk) {
            Some((found, length)) if found == version => Ok(length),
            Some((found, _)) => Err(KfsError::StaleVersion {
                chunk,
                expected: version,
                found,
            }),
            None => Err(KfsError::NoSuchChunk { chunk }),
        }
    }

    #[instrument(level = "debug", skip_all)]
    async fn status(self, _: Context) -> KfsResult<ChunkserverStatus> {
        Ok(ChunkserverStatus {
            server: self.store.server_id(),
            chunks: self.store.chunk_count(),
            corrupt: self.store.corrupt(),
            failed_dirs: self
                .store
                .failed_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect(),
        })
    }
}
