//! The master process: recovery at start, the wiring of the RPC services, and shutdown.
//!
//! [`start`] locks the metadata directory, recovers the namespace, starts the committer and the
//! background workers (healer, heartbeat timeouts, checkpointer) and serves [`MasterService`]
//! (clients, `namespace_service.rs`) and [`ClusterService`] (chunkservers, `cluster_service.rs`)
//! on one TCP listener; [`MasterHandle::shutdown`] stops accepting, closes connections, commits
//! what was already sent and waits for a checkpoint being written.
//!
//! This file also holds the two adapters that keep `chunks/` free of the log thread: the chunk
//! map as the committer's [`Observer`](crate::committer::Observer) and the committer as the lease
//! desk's [`OpLog`].
//!
//! Invariants: both services share one `MasterState`; the metadata directory's lock is held
//! until the committer has stopped (also when the handle is dropped without `shutdown`), so no
//! other master writes the directory while this one might.

use crate::chunks::leases::{LeaseConfig, Leases, OpLog};
use crate::chunks::{ChunkMap, ChunkTiming};
use crate::committer::{CommitStats, Committer, CommitterConfig, SharedNamespace};
use crate::config::{ConfigError, MasterConfig};
use crate::healer::HealerStats;
use crate::namespace::op::{Applied, Op};
use crate::status::StatusSources;
use crate::storage::log::LogWriter;
use crate::storage::recovery::recover;
use crate::storage::{MetaDirLock, StorageError, lock_meta_dir};
use futures::StreamExt;
use futures::future::BoxFuture;
use kfs_common::clock::Clock;
use kfs_common::metrics::{HttpServer, Metered};
use kfs_common::proto::chunk::ChunkPool;
use kfs_common::proto::cluster::ClusterService;
use kfs_common::proto::master::{MasterService, ReplicaLocation};
use kfs_common::proto::now;
use kfs_common::rpc::Service;
use kfs_common::worker::{CancellationToken, Worker, WorkerStatus, Workers};
use kfs_common::{ChunkId, KfsResult, rpc};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tarpc::server::{BaseChannel, Channel};

mod abandoned;
mod authorize;
mod capabilities;
mod cluster_service;
mod compactor;
mod connection;
mod name_changes;
mod namespace_service;
mod small_files;
mod special_files;
mod users_service;

pub use abandoned::AbandonedStats;
pub use compactor::CompactionStats;

/// Why the master could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Security(#[from] kfs_common::security::SecurityError),
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
    /// The metadata directory (for `DECOMMISSIONED`).
    meta_dir: std::path::PathBuf,
    /// Decommission changes, one at a time (each saved before it takes effect).
    decommissions: tokio::sync::Mutex<()>,
    /// What chunkservers and gateways say of themselves, for the status page.
    reports: Arc<crate::status::Reports>,
    /// Which certificate each chunkserver id first said hello with (in memory): a hello for
    /// that id from another certificate is refused, so no server poses as another.
    bindings: Mutex<std::collections::HashMap<kfs_common::ServerId, String>>,
    /// The users of a secured cluster (`USERS.json`).
    users: crate::users::Users,
    /// The secrets directory, when secured (its CA key, if there, issues users' certificates).
    secrets: Option<kfs_common::security::ClusterFiles>,
    /// The file ids confined users reached by path.
    grants: authorize::Grants,
    /// The keys of the capabilities signed for chunkservers; `None` when insecure.
    keys: Option<kfs_common::security::capability::KeyRing>,
}

/// The namespace service for clients; cheap to clone (one per call).
#[derive(Clone)]
pub struct MasterServer {
    state: Arc<MasterState>,
    /// Who the connection's client proved to be; `None` when insecure (or for the master's own
    /// workers, which call it from inside).
    peer: Option<Arc<kfs_common::security::Peer>>,
    /// The connection's protocol and durability (`connection.rs`).
    connection: Arc<connection::Connection>,
}

/// The cluster service for chunkservers; cheap to clone (one per call).
#[derive(Clone)]
pub struct ClusterServer {
    state: Arc<MasterState>,
    /// The chunkserver this connection's certificate names; `None` when insecure. Shared:
    /// the server is cloned for every call.
    peer: Option<Arc<kfs_common::security::Identity>>,
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
    let security = config.security()?;
    let dir = config.meta_dir.clone();
    let lock = lock_meta_dir(&dir)?;
    let segment_bytes = config.log_segment_bytes;
    let (recovered, writer, drain_marks, users) = tokio::task::spawn_blocking(move || {
        let recovered = recover(&dir, now())?;
        let writer = LogWriter::create(&dir, recovered.last_seq + 1, segment_bytes)?;
        let drain_marks = crate::storage::decommissioned::load(&dir)?;
        let users = crate::users::Users::load(&dir)?;
        Ok::<_, StorageError>((recovered, writer, drain_marks, users))
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
            // A chunkserver notices a master gone at its next heartbeat and reconnects with a
            // backoff of at most 2 s (chunkserver/src/master_link.rs).
            registration_grace: Duration::from_millis(
                config
                    .chunkserver_timeout_ms
                    .min(config.heartbeat_interval_ms + 2_000),
            ),
            clock: clock.clone(),
        },
        recovered.ns.next_chunk_id(),
        ChunkPool::new(security.clone()),
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
    if !drain_marks.is_empty() {
        tracing::info!(
            servers = drain_marks.len(),
            "chunkservers marked for draining (DECOMMISSIONED)"
        );
    }
    chunks
        .lock()
        .expect("chunk map lock")
        .set_drain_marks(drain_marks);
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
            recovered_checkpoint_seq: recovered.checkpoint_seq,
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
        meta_dir: config.meta_dir.clone(),
        decommissions: tokio::sync::Mutex::new(()),
        reports: Arc::new(crate::status::Reports::default()),
        bindings: Mutex::new(std::collections::HashMap::new()),
        users,
        secrets: match security {
            kfs_common::security::Security::Insecure => None,
            kfs_common::security::Security::Tls(_) => {
                kfs_common::security::ClusterFiles::from_flag_or_env(config.secrets.as_deref())
            }
        },
        grants: authorize::new_grants(),
        keys: match security {
            kfs_common::security::Security::Insecure => None,
            kfs_common::security::Security::Tls(_) => {
                Some(kfs_common::security::capability::KeyRing::new(
                    config.capability_ms,
                    kfs_common::security::capability::now_ms(),
                ))
            }
        },
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
    let compaction = Arc::new(CompactionStats::default());
    let history = Arc::new(crate::status::History::default());
    let sources = StatusSources {
        ns: state.ns.clone(),
        chunks: state.chunks.clone(),
        commit: state.committer.shared_stats(),
        healer: healer_stats.clone(),
        compaction: compaction.clone(),
        workers: state.workers.clone(),
        started,
        addr,
        history: history.clone(),
        open_files: {
            let state = state.clone();
            Arc::new(move || {
                let now = state.clock.now();
                let lease = state.leases.lease_duration();
                let written = state.leases.written_files();
                let writing = written
                    .values()
                    .filter(|last| now.saturating_duration_since(**last) < lease)
                    .count() as u64;
                (writing, written.len() as u64 - writing)
            })
        },
        reports: state.reports.clone(),
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
    state.workers.spawn(small_files::VolumeReclaimer {
        state: state.clone(),
        interval: Duration::from_millis(config.heal_interval_ms),
    });
    state.workers.spawn(compactor::Compactor {
        state: state.clone(),
        interval: Duration::from_millis(config.compact_interval_ms),
        dead_fraction: config.compact_dead_fraction,
        stats: compaction.clone(),
    });
    state.workers.spawn(crate::status::Sampler {
        history,
        ns: state.ns.clone(),
        commit: state.committer.shared_stats(),
        reports: state.reports.clone(),
        interval: Duration::from_millis(config.status_sample_ms),
    });
    state.workers.spawn(abandoned::AbandonedFiles {
        state: state.clone(),
        upload_after: Duration::from_millis(config.abandoned_upload_ms),
        stats: Arc::new(AbandonedStats::default()),
    });
    state.workers.spawn(crate::healer::Healer {
        pool: ChunkPool::new(security.clone()),
        ns: state.ns.clone(),
        chunks: state.chunks.clone(),
        interval: Duration::from_millis(config.heal_interval_ms),
        stats: healer_stats,
        clock: clock.clone(),
    });
    let master = MasterServer {
        state: state.clone(),
        peer: None,
        connection: Arc::default(),
    };
    let cluster = ClusterServer {
        state: state.clone(),
        peer: None,
    };
    let rpc_server = rpc::RpcServer::new(config.rpc_limits()?, security.clone());
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
                        let connection = Arc::new(connection::Connection::default());
                        let protocol = connection.protocol_cell();
                        let master = MasterServer {
                            peer: incoming.peer_certificate().cloned().map(Arc::new),
                            connection,
                            ..master
                        };
                        BaseChannel::with_defaults(incoming.transport().encode_for_peer(protocol))
                            .execute(Metered::new(master.serve(), rpc_metrics))
                            .for_each(|call| async move {
                                tokio::spawn(call);
                            })
                            .await
                    }
                    Service::Cluster => {
                        let cluster = ClusterServer {
                            peer: incoming.peer().cloned().map(Arc::new),
                            ..cluster
                        };
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

    /// Every volume of small files and its live replicas (for tools and tests: volumes no
    /// file's listing names once their files are gone).
    pub fn volume_locations(&self) -> Vec<(ChunkId, Vec<ReplicaLocation>)> {
        let volumes = self.state.ns.read().expect("namespace lock").volumes();
        let chunks = self.state.chunks.lock().expect("chunk map lock");
        volumes
            .into_iter()
            .map(|(chunk, _, _)| (chunk, chunks.locations(chunk)))
            .collect()
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
                status.round(match dead.len() {
                    0 => format!("checked every {} ms", period.as_millis()),
                    n => format!("declared {n} chunkservers dead"),
                });
            }
        })
    }
}
