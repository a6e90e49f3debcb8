//! The healer: the master's background worker that keeps every chunk at its replication factor.
//!
//! Every `heal_interval` it plans one round of repairs on an O(1) snapshot of the namespace,
//! examining the chunks in slices ([`ChunkMap::scan_repairs`]) so that the chunk map's lock is
//! held for milliseconds at a time, never for a walk of every chunk, and then starts the copies
//! the round wants ([`ChunkMap::start_repairs`]), each as its own task: the
//! target chunkserver copies the replica from the source, checks it end to end and makes it
//! durable (`ChunkService::replicate`), and the master counts it only if the chunk is still at
//! the copied version ([`ChunkMap::copy_done`]). Removals the plan decides go out with the
//! servers' heartbeat replies. The plan itself bounds the copies in flight per server and in
//! total, so a round never floods a server. Before replicas beyond a factor are trimmed while too
//! few are proven, the round's proofs ask every live replica for its digest
//! ([`ChunkMap::proof_done`]).
//!
//! Invariant: the healer never changes the namespace; it only moves replicas between
//! chunkservers, and everything it knows it learns again from reports after a restart.

use crate::chunks::{
    ChunkMap, CopyFailed, CopyTask, DigestFailure, ProofTask, RepairRound, RoundHealth,
};
use crate::committer::SharedNamespace;
use futures::future::BoxFuture;
use kfs_common::clock::Clock;
use kfs_common::proto::chunk::ChunkPool;
use kfs_common::rpc;
use kfs_common::worker::{CancellationToken, Worker, WorkerStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// What the healer has done, for the status page and metrics.
#[derive(Debug, Default)]
pub struct HealerStats {
    pub rounds: AtomicU64,
    /// How long the last round's scan took, in microseconds.
    pub last_round_us: AtomicU64,
    pub copies_started: AtomicU64,
    pub copies_done: AtomicU64,
    pub copies_failed: AtomicU64,
    /// When the last round ended and what it found (`None` in the health: safe mode).
    pub last: Mutex<Option<(Instant, Option<RoundHealth>)>>,
}

/// Chunks examined per hold of the chunk map's lock (a few milliseconds' work).
const SCAN_SLICE: usize = 16_384;

/// How long one copy may take: a 64 MiB chunk at a throttled few MB/s, with room to spare.
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// The healer as a [`Worker`]: a repair round every `interval` until cancelled.
pub struct Healer {
    /// Connections to chunkservers, for copies and proofs.
    pub pool: ChunkPool,
    pub ns: SharedNamespace,
    pub chunks: Arc<Mutex<ChunkMap>>,
    pub interval: Duration,
    pub stats: Arc<HealerStats>,
    pub clock: Clock,
}

impl Worker for Healer {
    fn name(&self) -> String {
        "healer".into()
    }

    fn run(
        self: Box<Self>,
        _cancel: CancellationToken,
        status: WorkerStatus,
    ) -> BoxFuture<'static, ()> {
        Box::pin(self.rounds(status))
    }
}

impl Healer {
    async fn rounds(self: Box<Self>, status: WorkerStatus) {
        let Healer {
            pool,
            ns,
            chunks,
            interval,
            stats,
            clock,
        } = *self;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let started = Instant::now();
            let snapshot = ns.read().expect("namespace lock").clone();
            let mut round = RepairRound::new();
            while !round.done() {
                chunks.lock().expect("chunk map lock").scan_repairs(
                    &snapshot,
                    clock.now(),
                    &mut round,
                    SCAN_SLICE,
                );
                // Let heartbeats, leases and lookups have the lock between slices.
                tokio::task::yield_now().await;
            }
            drop(snapshot);
            let health = round.health();
            let proofs = round.take_proofs();
            let proof_count = proofs.len();
            for task in proofs {
                let span = tracing::info_span!("replica proof", chunk = %task.chunk, version = %task.version);
                tokio::spawn(prove(pool.clone(), chunks.clone(), task).instrument(span));
            }
            let tasks = chunks
                .lock()
                .expect("chunk map lock")
                .start_repairs(clock.now(), round);
            stats.rounds.fetch_add(1, Ordering::Relaxed);
            stats
                .last_round_us
                .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            stats
                .copies_started
                .fetch_add(tasks.len() as u64, Ordering::Relaxed);
            status.round(match &health {
                None => "safe mode: no repairs yet".to_string(),
                Some(_) => format!("{} copies started, {proof_count} proofs", tasks.len()),
            });
            *stats.last.lock().expect("healer stats lock") = Some((Instant::now(), health));
            for task in tasks {
                let span = tracing::info_span!("repair copy", chunk = %task.chunk, version = %task.version, source = %task.source.addr, target = %task.target.addr);
                tokio::spawn(
                    copy(pool.clone(), chunks.clone(), stats.clone(), task).instrument(span),
                );
            }
        }
    }
}

/// Asks every replica of a proof for its digest at once, then tells the chunk map.
async fn prove(pool: ChunkPool, chunks: Arc<Mutex<ChunkMap>>, task: ProofTask) {
    let answers = futures::future::join_all(task.replicas.iter().map(|r| {
        let pool = pool.clone();
        async move {
            let answer = match pool.get(r.addr).await {
                Err(e) => Err(DigestFailure::Other(format!("{} unreachable: {e}", r.addr))),
                Ok(client) => match client
                    .digest(rpc::context(COPY_TIMEOUT), task.chunk, task.version)
                    .await
                {
                    Ok(Ok(digest)) => Ok(digest),
                    Ok(Err(e)) => Err(DigestFailure::from_reply(e)),
                    Err(e) => {
                        pool.forget(r.addr);
                        Err(DigestFailure::Other(format!("{}: {e}", r.addr)))
                    }
                },
            };
            (r.server, answer)
        }
    }))
    .await;
    chunks
        .lock()
        .expect("chunk map lock")
        .proof_done(&task, &answers);
}

/// Has the target copy the replica, then tells the chunk map how it went.
async fn copy(
    pool: ChunkPool,
    chunks: Arc<Mutex<ChunkMap>>,
    stats: Arc<HealerStats>,
    task: CopyTask,
) {
    let target = task.target.addr;
    let failed = |why: String| CopyFailed { why, full: false };
    let result = match pool.get(target).await {
        Err(e) => Err(failed(format!("{target} unreachable: {e}"))),
        Ok(client) => {
            let context = rpc::context(COPY_TIMEOUT);
            let (chunk, version, source) = (task.chunk, task.version, task.source.clone());
            let copied = if task.volume {
                client
                    .replicate_volume(context, chunk, version, source)
                    .await
            } else {
                client.replicate(context, chunk, version, source).await
            };
            match copied {
                Ok(Ok(length)) => Ok(length),
                Ok(Err(e)) => Err(CopyFailed {
                    why: e.to_string(),
                    full: e.is_no_space(),
                }),
                Err(e) => {
                    pool.forget(target);
                    Err(failed(format!("{target}: {e}")))
                }
            }
        }
    };
    let counter = if result.is_ok() {
        &stats.copies_done
    } else {
        &stats.copies_failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
    chunks
        .lock()
        .expect("chunk map lock")
        .copy_done(&task, result);
}
