//! The master process: recovery at start, the namespace RPC service, and shutdown.
//!
//! [`start`] locks the metadata directory, recovers the namespace, starts the committer and
//! serves [`MasterService`] on a TCP listener; [`MasterHandle::shutdown`] stops accepting, closes
//! connections, commits what was already sent and waits for a checkpoint being written.
//!
//! Each RPC is a `debug` span (tarpc adds an `RPC` span with the trace id). Reads take the
//! namespace's read lock; mutations are checked against the current state first (so a request
//! that cannot succeed, or changes nothing, costs no log write) and then go through the
//! [`Committer`], which answers after the op is durable and applied.

use crate::chunks::leases::{LeaseConfig, LeaseContext, Leases, OpLog};
use crate::chunks::{ChunkMap, ChunkTiming};
use crate::committer::{CommitStats, Committer, CommitterConfig, SharedNamespace};
use crate::config::{ConfigError, MasterConfig};
use crate::healer::HealerStats;
use crate::namespace::op::{Applied, Op, Prepared, Reply};
use crate::namespace::{DEFAULT_DIR_MODE, DEFAULT_FILE_MODE};
use crate::status::StatusSources;
use crate::storage::log::LogWriter;
use crate::storage::recovery::recover;
use crate::storage::{MetaDirLock, StorageError, lock_meta_dir};
use futures::StreamExt;
use futures::future::BoxFuture;
use kfs_common::clock::Clock;
use kfs_common::metrics::{HttpServer, Metered};
use kfs_common::proto::cluster::{
    ClusterService, HeartbeatReply, HeartbeatRequest, HelloReply, HelloRequest,
};
use kfs_common::proto::master::{
    ChunkLocation, ChunkserverInfo, CreateOptions, DirPage, FileAttr, FsckReport, MasterInfo,
    MasterService, MkdirOptions, NamespaceCounters, RemoveSummary, SetAttr, WorkerInfo, WriteLease,
};
use kfs_common::proto::{CLIENT_PROTOCOL_VERSION, OLDEST_CLIENT_PROTOCOL, now};
use kfs_common::rpc::Service;
use kfs_common::worker::{CancellationToken, Worker, WorkerStatus, Workers};
use kfs_common::{ChunkId, ChunkVersion, FileId, KfsError, KfsResult, ServerId, path, rpc};
use serde_bytes::ByteBuf;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tracing::instrument;

/// Why the master could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// State shared by every connection.
struct MasterState {
    ns: SharedNamespace,
    /// Where chunks are; updated by the committer (applied ops) and by chunkservers' reports.
    chunks: Arc<Mutex<ChunkMap>>,
    committer: Committer,
    leases: Leases,
    /// Next file id to hand out; ahead of (or equal to) the namespace's own counter, since ids
    /// are chosen before the op is logged.
    next_fid: AtomicU64,
    default_replication: u8,
    /// What lease, heartbeat-timeout and safe-mode decisions are measured by.
    clock: Clock,
    /// The background loops (healer, heartbeat timeouts, checkpointer).
    workers: Workers,
}

/// The namespace service for clients; cheap to clone (one per call).
#[derive(Clone)]
pub struct MasterServer {
    state: Arc<MasterState>,
}

/// The cluster service for chunkservers; cheap to clone (one per call).
#[derive(Clone)]
pub struct ClusterServer {
    state: Arc<MasterState>,
}

/// A running master.
pub struct MasterHandle {
    addr: SocketAddr,
    /// The status page and metrics, when configured.
    http: Option<HttpServer>,
    state: Arc<MasterState>,
    /// The transport's limits and counters.
    rpc: rpc::RpcServer,
    stop_accepting: Option<tokio::sync::oneshot::Sender<()>>,
    accept_task: Option<tokio::task::JoinHandle<()>>,
    _lock: MetaDirLock,
}

/// The chunk map follows every op the log thread applies (new chunks, freed ones), so the map
/// needs nothing of the log thread itself.
impl crate::committer::Observer for Mutex<ChunkMap> {
    fn applied(&self, op: &Op, result: &KfsResult<Applied>) {
        self.lock().expect("chunk map lock").applied(op, result);
    }
}

/// The lease desk logs its ops through the committer, which it knows only as an [`OpLog`] (so
/// `chunks/` never imports the log thread).
impl OpLog for Committer {
    fn commit(&self, op: Op) -> BoxFuture<'_, KfsResult<Applied>> {
        Box::pin(Committer::commit(self, op))
    }
}

/// Recovers the namespace in `config.meta_dir` and serves it on `config.listen`.
pub async fn start(config: &MasterConfig) -> Result<MasterHandle, StartError> {
    start_with_clock(config, Clock::system()).await
}

/// [`start`], with every lease, heartbeat-timeout and safe-mode decision measured by `clock`
/// (tests drive a manual one).
pub async fn start_with_clock(
    config: &MasterConfig,
    clock: Clock,
) -> Result<MasterHandle, StartError> {
    config.validate()?;
    let dir = config.meta_dir.clone();
    let lock = lock_meta_dir(&dir)?;
    let segment_bytes = config.log_segment_bytes;
    let (recovered, writer) = tokio::task::spawn_blocking(move || {
        let recovered = recover(&dir, now())?;
        let writer = LogWriter::create(&dir, recovered.last_seq + 1, segment_bytes)?;
        Ok::<_, StorageError>((recovered, writer))
    })
    .await
    .expect("recovery does not panic")?;
    for skipped in &recovered.skipped_checkpoints {
        tracing::warn!(error = %skipped, "skipped an unreadable checkpoint; recovered from an older one");
    }
    if let Some(torn) = &recovered.torn_tail {
        tracing::warn!(what = %torn, "the log ended in a torn write (a crash while writing unacknowledged ops)");
    }
    let counters = recovered.ns.counters();
    tracing::info!(
        meta_dir = %config.meta_dir.display(),
        formatted = recovered.formatted,
        checkpoint_seq = recovered.checkpoint_seq,
        replayed = recovered.replayed,
        last_seq = recovered.last_seq,
        files = counters.files,
        dirs = counters.dirs,
        ms = recovered.elapsed.as_millis() as u64,
        "namespace recovered"
    );

    let next_fid = AtomicU64::new(recovered.ns.next_fid().0);
    let started = clock.now();
    let leases = Leases::new(
        LeaseConfig {
            duration: Duration::from_millis(config.lease_ms),
            chunk_size: config.chunk_size,
            min_write_replicas: config.min_write_replicas as usize,
            // A restarted master may have granted leases it no longer knows: wait them out.
            restarted_at: (!recovered.formatted).then_some(started),
            clock: clock.clone(),
        },
        recovered.ns.next_chunk_id(),
    );
    let (timing, repair) = (config.timing(), config.repair());
    // A restarted master knows chunks no server has reported yet: safe mode until they have.
    let chunks = Arc::new(Mutex::new(ChunkMap::with_repair(
        &recovered.ns,
        timing,
        session_base(),
        repair,
        (!recovered.formatted).then_some(started),
    )));
    let ns: SharedNamespace = Arc::new(RwLock::new(recovered.ns));
    let workers = Workers::new();
    let committer = Committer::start(
        ns.clone(),
        writer,
        CommitterConfig {
            meta_dir: config.meta_dir.clone(),
            checkpoint_every_ops: config.checkpoint_every_ops,
            checkpoint_interval: Duration::from_secs(config.checkpoint_interval_secs),
            keep_checkpoints: config.keep_checkpoints,
            checkpointer: workers.register("checkpointer"),
        },
        chunks.clone(),
    );
    let state = Arc::new(MasterState {
        ns,
        chunks,
        committer,
        leases,
        next_fid,
        default_replication: config.default_replication,
        clock: clock.clone(),
        workers,
    });

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
    let healer_stats = Arc::new(HealerStats::default());
    let sources = StatusSources {
        ns: state.ns.clone(),
        chunks: state.chunks.clone(),
        commit: state.committer.shared_stats(),
        healer: healer_stats.clone(),
        workers: state.workers.clone(),
        started,
        addr,
    };
    let (registry, rpc_metrics, refresh) = crate::status::metrics(&sources);
    let http = HttpServer::start_if(config.http, || {
        crate::status::router(sources, registry, refresh)
    })
    .await
    .map_err(|(addr, source)| StartError::Bind { addr, source })?;
    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    state.workers.spawn(HeartbeatTimeouts {
        chunks: state.chunks.clone(),
        timing,
        clock: clock.clone(),
    });
    state.workers.spawn(crate::healer::Healer {
        ns: state.ns.clone(),
        chunks: state.chunks.clone(),
        interval: Duration::from_millis(config.heal_interval_ms),
        stats: healer_stats,
        clock: clock.clone(),
    });
    let master = MasterServer {
        state: state.clone(),
    };
    let cluster = ClusterServer {
        state: state.clone(),
    };
    let rpc_server = rpc::RpcServer::new(config.rpc_limits()?);
    let accept_task = tokio::spawn(rpc::accept_loop(
        listener,
        rpc_server.clone(),
        async {
            let _ = stopped.await;
        },
        move |incoming: rpc::Incoming| {
            let (master, cluster) = (master.clone(), cluster.clone());
            let rpc_metrics = rpc_metrics.clone();
            // Each call is its own task, so one connection's calls use every core.
            async move {
                match incoming.service() {
                    Service::Master => {
                        BaseChannel::with_defaults(incoming.transport())
                            .execute(Metered::new(master.serve(), rpc_metrics))
                            .for_each(|call| async move {
                                tokio::spawn(call);
                            })
                            .await
                    }
                    Service::Cluster => {
                        BaseChannel::with_defaults(incoming.transport())
                            .execute(Metered::new(cluster.serve(), rpc_metrics))
                            .for_each(|call| async move {
                                tokio::spawn(call);
                            })
                            .await
                    }
                    Service::Chunk => {
                        tracing::warn!(
                            "a connection asked the master for the chunk service; closed"
                        );
                    }
                }
            }
        },
    ));
    tracing::info!(%addr, "serving");
    Ok(MasterHandle {
        addr,
        http,
        state,
        rpc: rpc_server,
        stop_accepting: Some(stop_accepting),
        accept_task: Some(accept_task),
        _lock: lock,
    })
}

impl MasterHandle {
    /// The transport's limits and counters (connections, buffered bytes, refusals).
    pub fn rpc(&self) -> &rpc::RpcServer {
        &self.rpc
    }

    /// The address the master serves on (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the status page and `/metrics`, when configured.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// The live namespace, for in-process tools and tests.
    pub fn namespace(&self) -> SharedNamespace {
        self.state.ns.clone()
    }

    pub fn commit_stats(&self) -> &CommitStats {
        self.state.committer.stats()
    }

    /// Logs and applies an op, as an RPC would (for in-process tools and tests).
    pub async fn commit(&self, op: Op) -> KfsResult<Applied> {
        self.state.committer.commit(op).await
    }

    /// Checks the namespace's invariants and the chunk map against it.
    pub fn check_invariants(&self) -> Result<(), String> {
        let ns = self.state.ns.read().expect("namespace lock");
        ns.check_invariants()?;
        self.state
            .chunks
            .lock()
            .expect("chunk map lock")
            .check_invariants(&ns)
    }

    /// Stops accepting, closes every connection, commits what was already sent, waits for a
    /// checkpoint being written, and releases the metadata directory.
    pub async fn shutdown(mut self) {
        if let Some(http) = self.http.take() {
            http.shutdown(Duration::from_secs(1)).await;
        }
        if let Some(stop) = self.stop_accepting.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
        self.state.workers.shutdown().await;
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.committer.stop()).await;
        tracing::info!(addr = %self.addr, "stopped");
    }
}

impl Drop for MasterHandle {
    /// A handle dropped without [`MasterHandle::shutdown`] still stops the committer before the
    /// metadata directory's lock is released, so no other master can open the directory while
    /// this one might write to it.
    fn drop(&mut self) {
        if let Some(stop) = self.stop_accepting.take() {
            let _ = stop.send(());
            self.state.workers.cancel();
            self.state.committer.stop();
        }
    }
}

impl MasterServer {
    fn read<T>(
        &self,
        f: impl FnOnce(&crate::namespace::Namespace) -> KfsResult<T>,
    ) -> KfsResult<T> {
        f(&self.state.ns.read().expect("namespace lock"))
    }

    /// Checks `op`; logs and applies it if it changes anything.
    async fn mutate(&self, op: Op) -> KfsResult<Reply> {
        if let Prepared::Unchanged(reply) = self.read(|ns| ns.prepare(&op))? {
            return Ok(reply);
        }
        self.state
            .committer
            .commit(op)
            .await
            .map(|applied| applied.reply)
    }

    fn lease_context(&self) -> LeaseContext<'_> {
        LeaseContext {
            ns: &self.state.ns,
            chunks: &self.state.chunks,
            log: &self.state.committer,
        }
    }

    /// Where `chunks` (`(offset, chunk, version)`) are; for a reader (`for_reading`), a chunk no
    /// server has reported yet in safe mode is `Unavailable` (ask again), not lost.
    fn locations_of(
        &self,
        chunks: Vec<(u64, ChunkId, ChunkVersion)>,
        for_reading: bool,
    ) -> KfsResult<Vec<ChunkLocation>> {
        let mut map = self.state.chunks.lock().expect("chunk map lock");
        let found: Vec<ChunkLocation> = chunks
            .into_iter()
            .map(|(offset, chunk, version)| ChunkLocation {
                offset,
                chunk,
                version,
                replicas: map.locations(chunk),
            })
            .collect();
        // Just after a restart a chunk may have replicas that have not reported yet: the reader
        // should ask again, not conclude that the chunk is lost.
        if for_reading
            && let Some(unknown) = found.iter().find(|l| l.replicas.is_empty())
            && map.in_safe_mode(self.state.clock.now())
        {
            return Err(KfsError::Unavailable(format!(
                "the master has just restarted and no chunkserver has reported {} yet; ask again shortly",
                unknown.chunk
            )));
        }
        Ok(found)
    }

    fn allocate_fids(&self, count: u64) -> FileId {
        FileId(self.state.next_fid.fetch_add(count, Ordering::Relaxed))
    }
}

/// A session base no earlier run of the master used.
fn session_base() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the clock is different enough between runs.
        return now() as u64;
    }
    u64::from_le_bytes(bytes) >> 1
}

/// Declares chunkservers dead when they stay silent (a [`Worker`]).
struct HeartbeatTimeouts {
    chunks: Arc<Mutex<ChunkMap>>,
    timing: ChunkTiming,
    clock: Clock,
}

impl Worker for HeartbeatTimeouts {
    fn name(&self) -> String {
        "heartbeat timeouts".into()
    }

    fn run(self: Box<Self>, _: CancellationToken, status: WorkerStatus) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let period = (self.timing.server_timeout / 4).max(Duration::from_millis(20));
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let dead = self
                    .chunks
                    .lock()
                    .expect("chunk map lock")
                    .expire(self.clock.now());
                if !dead.is_empty() {
                    status.note(format!("declared {} chunkservers dead", dead.len()));
                }
                status.round(format!("checked every {} ms", period.as_millis()));
            }
        })
    }
}

fn expect_attr(reply: Reply) -> KfsResult<FileAttr> {
    match reply {
        Reply::Attr(attr) => Ok(attr),
        other => Err(KfsError::Internal(format!(
            "expected attributes, got {other:?}"
        ))),
    }
}

fn expect_removed(reply: Reply) -> KfsResult<RemoveSummary> {
    match reply {
        Reply::Removed(summary) => Ok(summary),
        Reply::Done => Ok(RemoveSummary::default()),
        other => Err(KfsError::Internal(format!(
            "expected a summary, got {other:?}"
        ))),
    }
}

impl MasterService for MasterServer {
    #[instrument(level = "debug", skip_all, fields(protocol))]
    async fn handshake(self, _: Context, protocol: u32) -> KfsResult<MasterInfo> {
        if !(OLDEST_CLIENT_PROTOCOL..=CLIENT_PROTOCOL_VERSION).contains(&protocol) {
            return Err(KfsError::IncompatibleProtocol {
                ours: CLIENT_PROTOCOL_VERSION,
                theirs: protocol,
            });
        }
        Ok(MasterInfo {
            protocol: CLIENT_PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
            default_replication: self.state.default_replication,
            chunk_size: self.state.leases.chunk_size(),
        })
    }

    #[instrument(level = "debug", skip_all, fields(%path, parents = options.parents))]
    async fn mkdir(self, _: Context, path: String, options: MkdirOptions) -> KfsResult<FileAttr> {
        // One id per component covers every directory `-p` might create.
        let count = path::components(&path)?.len().max(1) as u64;
        let op = Op::Mkdir {
            first_fid: self.allocate_fids(count),
            parents: options.parents,
            mode: options.mode.unwrap_or(DEFAULT_DIR_MODE),
            time: now(),
            path,
        };
        self.mutate(op).await.and_then(expect_attr)
    }

    #[instrument(level = "debug", skip_all, fields(%path, exclusive = options.exclusive))]
    async fn create(self, _: Context, path: String, options: CreateOptions) -> KfsResult<FileAttr> {
        let op = Op::Create {
            exclusive: options.exclusive,
            replication: options
                .replication
                .unwrap_or(self.state.default_replication),
            replication_given: options.replication.is_some(),
            mode: options.mode.unwrap_or(DEFAULT_FILE_MODE),
            fid: self.allocate_fids(1),
            time: now(),
            path,
        };
        self.mutate(op).await.and_then(expect_attr)
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn stat(self, _: Context, path: String) -> KfsResult<FileAttr> {
        self.read(|ns| ns.stat(&path))
    }

    #[instrument(level = "debug", skip_all, fields(%path, limit))]
    async fn readdir(
        self,
        _: Context,
        path: String,
        start_after: Option<String>,
        limit: u32,
        with_attrs: bool,
    ) -> KfsResult<DirPage> {
        self.read(|ns| ns.readdir(&path, start_after.as_deref(), limit, with_attrs))
    }

    #[instrument(level = "debug", skip_all, fields(%src, %dst))]
    async fn rename(self, _: Context, src: String, dst: String) -> KfsResult<()> {
        self.mutate(Op::Rename {
            src,
            dst,
            time: now(),
        })
        .await
        .map(drop)
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn remove(self, _: Context, path: String) -> KfsResult<()> {
        self.mutate(Op::Remove { path, time: now() })
            .await
            .map(drop)
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn rmdir(self, _: Context, path: String) -> KfsResult<()> {
        self.mutate(Op::Rmdir { path, time: now() }).await.map(drop)
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn remove_recursive(self, _: Context, path: String) -> KfsResult<RemoveSummary> {
        self.mutate(Op::RemoveRecursive { path, time: now() })
            .await
            .and_then(expect_removed)
    }

    #[instrument(level = "debug", skip_all, fields(%path, replication))]
    async fn set_replication(
        self,
        _: Context,
        path: String,
        replication: u8,
    ) -> KfsResult<FileAttr> {
        self.mutate(Op::SetReplication { path, replication })
            .await
            .and_then(expect_attr)
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn set_attr(self, _: Context, path: String, attr: SetAttr) -> KfsResult<FileAttr> {
        self.mutate(Op::SetAttr { path, attr })
            .await
            .and_then(expect_attr)
    }

    #[instrument(level = "debug", skip_all, fields(%path, %name))]
    async fn set_xattr(
        self,
        _: Context,
        path: String,
        name: String,
        value: ByteBuf,
    ) -> KfsResult<()> {
        self.mutate(Op::SetXattr { path, name, value })
            .await
            .map(drop)
    }

    #[instrument(level = "debug", skip_all, fields(%path, %name))]
    async fn get_xattr(self, _: Context, path: String, name: String) -> KfsResult<ByteBuf> {
        self.read(|ns| ns.get_xattr(&path, &name))
            .map(ByteBuf::from)
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn list_xattrs(self, _: Context, path: String) -> KfsResult<Vec<String>> {
        self.read(|ns| ns.list_xattrs(&path))
    }

    #[instrument(level = "debug", skip_all, fields(%path, %name))]
    async fn remove_xattr(self, _: Context, path: String, name: String) -> KfsResult<()> {
        self.mutate(Op::RemoveXattr { path, name }).await.map(drop)
    }

    #[instrument(level = "debug", skip_all)]
    async fn counters(self, _: Context) -> KfsResult<NamespaceCounters> {
        self.read(|ns| Ok(ns.counters()))
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn file_chunks(self, _: Context, path: String) -> KfsResult<Vec<ChunkLocation>> {
        let chunks = self.read(|ns| {
            let attr = ns.stat(&path)?;
            if attr.kind == kfs_common::FileKind::Dir {
                return Err(KfsError::is_a_directory(path.as_str()));
            }
            Ok(ns.chunks(attr.fid))
        })?;
        self.locations_of(chunks, false)
    }

    #[instrument(level = "debug", skip_all)]
    async fn chunkservers(self, _: Context) -> KfsResult<Vec<ChunkserverInfo>> {
        Ok(self
            .state
            .chunks
            .lock()
            .expect("chunk map lock")
            .servers(self.state.clock.now()))
    }

    #[instrument(level = "debug", skip_all)]
    async fn fsck(self, _: Context) -> KfsResult<FsckReport> {
        // A snapshot (O(1)), so mutations go on while the walk runs.
        let ns = self.state.ns.read().expect("namespace lock").clone();
        Ok(self.state.chunks.lock().expect("chunk map lock").fsck(&ns))
    }

    #[instrument(level = "debug", skip_all, fields(%server, drain))]
    async fn decommission(
        self,
        _: Context,
        server: String,
        drain: bool,
    ) -> KfsResult<ChunkserverInfo> {
        self.state
            .chunks
            .lock()
            .expect("chunk map lock")
            .set_draining(&server, drain, self.state.clock.now())
    }

    #[instrument(level = "debug", skip_all, fields(%fid))]
    async fn stat_fid(self, _: Context, fid: FileId) -> KfsResult<FileAttr> {
        self.read(|ns| ns.stat_fid(fid))
    }

    #[instrument(level = "debug", skip_all, fields(%fid, offset, len))]
    async fn locate(
        self,
        _: Context,
        fid: FileId,
        offset: u64,
        len: u64,
    ) -> KfsResult<Vec<ChunkLocation>> {
        let chunk_size = self.state.leases.chunk_size();
        let chunks = self.read(|ns| {
            let attr = ns.stat_fid(fid)?;
            if attr.kind == kfs_common::FileKind::Dir {
                return Err(KfsError::is_a_directory(fid.to_string()));
            }
            Ok(ns.chunks_in(fid, offset, offset.saturating_add(len), chunk_size))
        })?;
        self.locations_of(chunks, true)
    }

    #[instrument(level = "debug", skip_all, fields(%path, len))]
    async fn open(
        self,
        _: Context,
        path: String,
        len: u64,
    ) -> KfsResult<(FileAttr, Option<Vec<ChunkLocation>>)> {
        let chunk_size = self.state.leases.chunk_size();
        let (attr, chunks) = self.read(|ns| {
            let attr = ns.stat(&path)?;
            if attr.kind == kfs_common::FileKind::Dir {
                return Err(KfsError::is_a_directory(path.as_str()));
            }
            let chunks = ns.chunks_in(attr.fid, 0, len, chunk_size);
            Ok((attr, chunks))
        })?;
        // Locations not all known yet (safe mode): the open still succeeds; reads ask again.
        Ok((attr, self.locations_of(chunks, true).ok()))
    }

    #[instrument(level = "debug", skip_all, fields(%fid, chunk_offset))]
    async fn lease(self, _: Context, fid: FileId, chunk_offset: u64) -> KfsResult<WriteLease> {
        self.state
            .leases
            .lease(&self.lease_context(), fid, chunk_offset)
            .await
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn renew_lease(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
    ) -> KfsResult<u64> {
        self.state
            .leases
            .renew(&self.lease_context(), chunk, version)
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version, failed = failed.len()))]
    async fn report_failure(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        failed: Vec<ServerId>,
    ) -> KfsResult<WriteLease> {
        self.state
            .leases
            .report_failure(&self.lease_context(), chunk, version, failed)
            .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn workers(self, _: Context) -> KfsResult<Vec<WorkerInfo>> {
        Ok(self.state.workers.list())
    }

    #[instrument(level = "debug", skip_all, fields(%fid, length))]
    async fn extend_length(self, _: Context, fid: FileId, length: u64) -> KfsResult<FileAttr> {
        // Boxed: the check's calls to chunkservers would make every request's future larger.
        Box::pin(crate::length_check::check_extension(
            &self.state.ns,
            &self.state.chunks,
            self.state.leases.pool(),
            self.state.leases.chunk_size(),
            fid,
            length,
        ))
        .await?;
        self.mutate(Op::ExtendLength {
            fid,
            size: length,
            time: now(),
        })
        .await
        .and_then(expect_attr)
    }
}

impl ClusterService for ClusterServer {
    #[instrument(level = "debug", skip_all, fields(server = %request.server, chunks = request.chunks.len()))]
    async fn hello(self, _: Context, request: HelloRequest) -> KfsResult<HelloReply> {
        self.state
            .chunks
            .lock()
            .expect("chunk map lock")
            .hello(request, self.state.clock.now())
    }

    #[instrument(level = "debug", skip_all, fields(server = %request.server))]
    async fn heartbeat(self, _: Context, request: HeartbeatRequest) -> KfsResult<HeartbeatReply> {
        Ok(self
            .state
            .chunks
            .lock()
            .expect("chunk map lock")
            .heartbeat(request, self.state.clock.now()))
    }
}
