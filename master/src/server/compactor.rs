//! Compaction of volumes of small files (a [`Worker`], "volume compactor"): space held by
//! records no file holds any more comes back, and no file's data is ever at risk doing it.
//!
//! Each round looks at the volumes that take no appends (not the open volume of their
//! replication, and no valid lease: nothing can land on them) while the master is out of safe
//! mode. One whose dead bytes (its length less what its live records take) are at least
//! `compact_dead_fraction` of its length is compacted:
//! 1. each live record is read from a replica of the volume (`read_record`, which checks the
//!    record's file id, length and checksum) and appended to the open volume of the same
//!    replication, as a writer appends a small file: the append is answered once every replica
//!    of that volume holds it durably;
//! 2. every [`BATCH`] copies are committed in one logged `MoveExtents`, while their volume is
//!    still open and leased (as a writer's `set_extent` is: no copy of that volume can be in
//!    the making, so every replica of it holds them); each move applies only if the file's
//!    extent is still the record copied, so a file removed, rewritten or grown into chunks
//!    meanwhile keeps what it has, and its copy is dead space;
//! 3. the compacted volume, holding no record any more, is freed by the volume reclaimer
//!    (`small_files.rs`), and its replicas deleted.
//!
//! Invariants: at every step every file's extent names a record that is durable on every
//! replica of a volume the namespace holds (before its batch commits the original, after it the
//! copy), so a crash of the master or of any chunkserver anywhere loses nothing; copies not
//! committed are dead space that a later compaction reclaims. A failed read, a failed append
//! or a full disk ends that volume's compaction for the round with what was committed so far;
//! it is tried again next round. The copies' bytes pass through the master, at most
//! [`IN_FLIGHT`] records at a time.

use super::MasterState;
use super::small_files::RECORD_OVERHEAD;
use crate::chunks::leases::LeaseContext;
use crate::namespace::op::{ExtentMove, Op};
use crate::namespace::record::Extent;
use futures::StreamExt;
use futures::future::BoxFuture;
use kfs_common::proto::Payload;
use kfs_common::proto::chunk::AppendRequest;
use kfs_common::proto::master::{ReplicaLocation, WriteLease};
use kfs_common::worker::{CancellationToken, Worker, WorkerStatus};
use kfs_common::{ChunkId, ChunkVersion, FileId, KfsError, KfsResult, rpc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Copies committed per `MoveExtents` record.
const BATCH: usize = 256;
/// Records read and appended at once.
const IN_FLIGHT: usize = 8;
/// Appends tried for one record (each failure seals the volume it went to).
const APPEND_TRIES: usize = 3;
const CHUNKSERVER_CALL: Duration = Duration::from_secs(30);

/// What compaction did since the master started, for the metrics.
#[derive(Debug, Default)]
pub struct CompactionStats {
    /// Volumes whose every live record was moved.
    pub volumes: AtomicU64,
    /// Records copied and committed.
    pub records: AtomicU64,
    /// Bytes of data copied and committed.
    pub bytes: AtomicU64,
}

pub(super) struct Compactor {
    pub state: Arc<MasterState>,
    pub interval: Duration,
    pub dead_fraction: f64,
    pub stats: Arc<CompactionStats>,
}

/// A volume worth compacting.
struct Candidate {
    chunk: ChunkId,
    version: ChunkVersion,
    replication: u8,
    replicas: Vec<ReplicaLocation>,
}

impl Worker for Compactor {
    fn name(&self) -> String {
        "volume compactor".into()
    }

    fn run(self: Box<Self>, _: CancellationToken, status: WorkerStatus) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut ticks = tokio::time::interval(self.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let candidates = self.candidates().await;
                let mut live = self.live_records(&candidates);
                for candidate in candidates {
                    let chunk = candidate.chunk;
                    let records = live.remove(&chunk).unwrap_or_default();
                    match self.compact(candidate, records).await {
                        Ok(()) if self.emptied(chunk) => {
                            self.stats.volumes.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(%chunk, "volume compacted");
                        }
                        Ok(()) => {
                            tracing::debug!(%chunk, "volume compacted in part (the volume its copies went to was sealed); the rest next round");
                        }
                        Err(e) => {
                            tracing::warn!(%chunk, error = %e, "volume compaction stopped; it is tried again next round");
                        }
                    }
                }
                status.round(format!(
                    "{} volumes compacted, {} records moved so far",
                    self.stats.volumes.load(Ordering::Relaxed),
                    self.stats.records.load(Ordering::Relaxed)
                ));
            }
        })
    }
}

impl Compactor {
    fn lease_context(&self) -> LeaseContext<'_> {
        LeaseContext {
            ns: &self.state.ns,
            chunks: &self.state.chunks,
            log: &self.state.committer,
        }
    }

    /// The volumes that take no appends and whose dead fraction is reached.
    async fn candidates(&self) -> Vec<Candidate> {
        let now = self.state.clock.now();
        // Taken alone first: the lease desk takes the chunk map's lock under its own.
        let open = self.state.leases.open_volumes();
        let idle: Vec<(Candidate, u64)> = {
            let ns = self.state.ns.read().expect("namespace lock");
            let mut chunks = self.state.chunks.lock().expect("chunk map lock");
            if chunks.in_safe_mode(now) {
                return Vec::new();
            }
            ns.volumes()
                .into_iter()
                .filter(|(chunk, _, _)| {
                    !open.contains(chunk) && chunks.current_lease(*chunk, now).is_none()
                })
                .filter_map(|(chunk, version, replication)| {
                    let used = ns.volume_use(chunk).filter(|u| u.records > 0)?;
                    let live = used.bytes + used.records * RECORD_OVERHEAD;
                    let replicas = chunks.locations(chunk);
                    (!replicas.is_empty()).then_some((
                        Candidate {
                            chunk,
                            version,
                            replication,
                            replicas,
                        },
                        live,
                    ))
                })
                .collect()
        };
        let mut worth = Vec::new();
        for (candidate, live) in idle {
            let Some(data) = self.length(&candidate).await else {
                continue;
            };
            let dead = data.saturating_sub(live);
            if data > 0 && dead as f64 >= self.dead_fraction * data as f64 {
                worth.push(candidate);
            }
        }
        worth
    }

    /// The bytes of the volume's records (live and dead), from the first replica that answers.
    async fn length(&self, v: &Candidate) -> Option<u64> {
        for r in &v.replicas {
            let Ok(client) = self.state.leases.pool().get(r.addr).await else {
                continue;
            };
            if let Ok(Ok(length)) = client
                .length(rpc::context(CHUNKSERVER_CALL), v.chunk, v.version)
                .await
            {
                return Some(length);
            }
        }
        None
    }

    /// The live records of the candidates, by volume: one pass over a snapshot of the namespace
    /// (an O(1) clone), so the namespace's lock is held only to take it.
    fn live_records(&self, candidates: &[Candidate]) -> HashMap<ChunkId, Vec<(FileId, Extent)>> {
        let mut by_volume: HashMap<ChunkId, Vec<(FileId, Extent)>> = HashMap::new();
        if candidates.is_empty() {
            return by_volume;
        }
        let snapshot = self.state.ns.read().expect("namespace lock").clone();
        let volumes: HashSet<ChunkId> = candidates.iter().map(|c| c.chunk).collect();
        for (fid, e) in snapshot.extents_in(&volumes) {
            by_volume.entry(e.volume).or_default().push((fid, e));
        }
        by_volume
    }

    /// Whether the volume holds no file's record any more.
    fn emptied(&self, chunk: ChunkId) -> bool {
        let ns = self.state.ns.read().expect("namespace lock");
        ns.volume_use(chunk).is_none_or(|u| u.records == 0)
    }

    /// Moves the live records of the volume (`live`, as they were when the round began; each
    /// move applies only if the file still holds the record) to the open volume of its
    /// replication.
    async fn compact(&self, v: Candidate, mut live: Vec<(FileId, Extent)>) -> KfsResult<()> {
        live.sort_by_key(|(_, e)| e.at);
        tracing::info!(chunk = %v.chunk, records = live.len(), "compacting a volume");
        for batch in live.chunks(BATCH) {
            let copies: Vec<BoxFuture<'_, KfsResult<ExtentMove>>> = batch
                .iter()
                .map(|&(fid, e)| Box::pin(self.copy(&v, fid, e)) as BoxFuture<'_, _>)
                .collect();
            let copied: Vec<KfsResult<ExtentMove>> = futures::stream::iter(copies)
                .buffered(IN_FLIGHT)
                .collect()
                .await;
            let mut moves = Vec::new();
            let mut failed = None;
            for c in copied {
                match c {
                    Ok(m) => moves.push(m),
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            self.commit(v.chunk, moves).await?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Commits the copies whose volume is still open and leased; the others are dead space.
    async fn commit(&self, from: ChunkId, moves: Vec<ExtentMove>) -> KfsResult<()> {
        let cx = self.lease_context();
        let targets: HashSet<ChunkId> = moves.iter().map(|m| m.to).collect();
        let committable: HashSet<ChunkId> = targets
            .into_iter()
            .filter(|t| self.state.leases.check_committable(&cx, *t).is_ok())
            .collect();
        let moves: Vec<ExtentMove> = moves
            .into_iter()
            .filter(|m| committable.contains(&m.to))
            .collect();
        if moves.is_empty() {
            return Ok(());
        }
        let (records, bytes) = (
            moves.len() as u64,
            moves.iter().map(|m| u64::from(m.len)).sum::<u64>(),
        );
        let ends: Vec<(ChunkId, u64)> = moves
            .iter()
            .map(|m| (m.to, m.to_at + u64::from(m.len) + RECORD_OVERHEAD))
            .collect();
        self.state
            .committer
            .commit(Op::MoveExtents { from, moves })
            .await?;
        for (to, end) in ends {
            self.state.leases.volume_committed(to, end);
        }
        self.stats.records.fetch_add(records, Ordering::Relaxed);
        self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Copies the record of `fid` at `e` into the open volume of the same replication.
    async fn copy(&self, v: &Candidate, fid: FileId, e: Extent) -> KfsResult<ExtentMove> {
        let data = self.read(v, fid, e).await?;
        let mut last = None;
        for _ in 0..APPEND_TRIES {
            let lease = self
                .state
                .leases
                .volume_lease(&self.lease_context(), v.replication)
                .await?;
            match self.append(&lease, fid, data.clone()).await {
                Ok(to_at) => {
                    return Ok(ExtentMove {
                        fid,
                        at: e.at,
                        to: lease.chunk,
                        to_at,
                        len: e.len,
                    });
                }
                Err(err) if err.is_no_space() => return Err(err),
                Err(err) => {
                    tracing::debug!(volume = %lease.chunk, error = %err, "a compaction's append failed; sealing the volume");
                    self.state.leases.seal_volume(lease.chunk);
                    last = Some(err);
                }
            }
        }
        Err(last.expect("at least one try"))
    }

    /// The record's data, from the first replica that reads it whole and checked.
    async fn read(&self, v: &Candidate, fid: FileId, e: Extent) -> KfsResult<Payload> {
        let mut failures = Vec::new();
        for r in &v.replicas {
            let read = async {
                let client = self
                    .state
                    .leases
                    .pool()
                    .get(r.addr)
                    .await
                    .map_err(|err| KfsError::Unavailable(format!("{}: {err}", r.addr)))?;
                client
                    .read_record(
                        rpc::context(CHUNKSERVER_CALL),
                        v.chunk,
                        v.version,
                        e.at,
                        fid,
                        e.len,
                    )
                    .await
                    .map_err(|err| {
                        self.state.leases.pool().forget(r.addr);
                        KfsError::Unavailable(format!("{}: {err}", r.addr))
                    })?
            };
            match read.await {
                Ok(data) => return Ok(data),
                Err(err) => failures.push(format!("{}: {err}", r.addr)),
            }
        }
        Err(KfsError::ChunkUnavailable {
            chunk: v.chunk,
            reason: format!(
                "compaction could not read {fid}'s record: {}",
                failures.join("; ")
            ),
        })
    }

    /// One append to the lease's primary; the record's offset.
    async fn append(&self, lease: &WriteLease, fid: FileId, data: Payload) -> KfsResult<u64> {
        let pool = self.state.leases.pool();
        let primary = &lease.primary;
        let client = pool
            .get(primary.addr)
            .await
            .map_err(|e| KfsError::Unavailable(format!("{}: {e}", primary.addr)))?;
        let request = AppendRequest {
            chunk: lease.chunk,
            version: lease.version,
            fid,
            data,
            placed: None,
            chain: lease.secondaries.clone(),
        };
        match client.append(rpc::context(CHUNKSERVER_CALL), request).await {
            Ok(done) => done,
            Err(e) => {
                pool.forget(primary.addr);
                Err(KfsError::Unavailable(format!("{}: {e}", primary.addr)))
            }
        }
    }
}
