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
//! total, so a round never floods a server.
//!
//! Invariant: the healer never changes the namespace; it only moves replicas between
//! chunkservers, and everything it knows it learns again from reports after a restart.

use crate::chunks::{ChunkMap, CopyTask, RepairRound};
use crate::committer::SharedNamespace;
use kfs_common::proto::chunk::ChunkPool;
use kfs_common::rpc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Chunks examined per hold of the chunk map's lock (a few milliseconds' work).
const SCAN_SLICE: usize = 16_384;

/// How long one copy may take: a 64 MiB chunk at a throttled few MB/s, with room to spare.
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs repair rounds every `interval` until `stop` fires.
pub async fn run(
    ns: SharedNamespace,
    chunks: Arc<Mutex<ChunkMap>>,
    interval: Duration,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let pool = ChunkPool::new();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {
                let snapshot = ns.read().expect("namespace lock").clone();
                let mut round = RepairRound::new();
                while !round.done() {
                    chunks
                        .lock()
                        .expect("chunk map lock")
                        .scan_repairs(&snapshot, Instant::now(), &mut round, SCAN_SLICE);
                    // Let heartbeats, leases and lookups have the lock between slices.
                    tokio::task::yield_now().await;
                }
                drop(snapshot);
                let tasks = chunks.lock().expect("chunk map lock").start_repairs(Instant::now(), round);
                for task in tasks {
                    let span = tracing::info_span!("repair copy", chunk = %task.chunk, version = %task.version, source = %task.source.addr, target = %task.target.addr);
                    tokio::spawn(copy(pool.clone(), chunks.clone(), task).instrument(span));
                }
            }
        }
    }
}

/// Has the target copy the replica, then tells the chunk map how it went.
async fn copy(pool: ChunkPool, chunks: Arc<Mutex<ChunkMap>>, task: CopyTask) {
    let target = task.target.addr;
    let result = match pool.get(target).await {
        Err(e) => Err(format!("{target} unreachable: {e}")),
        Ok(client) => {
            match client
                .replicate(
                    rpc::context(COPY_TIMEOUT),
                    task.chunk,
                    task.version,
                    task.source.clone(),
                )
                .await
            {
                Ok(Ok(length)) => Ok(length),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => {
                    pool.forget(target);
                    Err(format!("{target}: {e}"))
                }
            }
        }
    };
    chunks
        .lock()
        .expect("chunk map lock")
        .copy_done(&task, result);
}
