//! Write leases: allocating new chunks, moving existing ones to a new version, and granting the
//! right to write them, in step with chunkservers.
//!
//! Order of steps, so that a crash anywhere leaves nothing unsafe:
//! - New chunk: replicas are created on the chosen chunkservers first, then the allocation is
//!   logged. A crash in between leaves empty replicas no file references; chunkservers delete
//!   them at their next hello.
//! - New lease on an existing chunk: the live replicas move to version `v + 1` first, then the
//!   bump is logged. A crash in between leaves replicas newer than the master's record, which
//!   hello accepts; replicas that missed the bump stay at `v` and are stale from then on, never
//!   served, and deleted.
//!
//! Invariants:
//! - at most one valid lease per chunk; a lease is only ever granted at the chunk's current
//!   version, and every grant or failure report for one file position is serialized;
//! - right after a restart (the master may have granted leases it no longer knows of), no lease
//!   is granted on a chunk the namespace held at start-up until one lease duration has passed
//!   since the start: any of them may have a lease from before, renewed without a log record.
//!   A chunk allocated since the start (its id is at least the first id this master hands out)
//!   can only have leases this master granted, so it is leased at once;
//! - a chunk id is handed out only once it is below a reservation in the log
//!   (`Op::ReserveChunkIds`, one record per [`RESERVE_BLOCK`] ids), and a restarted master starts
//!   above every reservation: it never hands out again an id that the old master had
//!   chunkservers create just before it died without logging the allocation (such replicas are
//!   orphans, deleted at their servers' hello; a new chunk under the same id would go with them).

use crate::chunks::ChunkMap;
use crate::committer::{Committer, SharedNamespace};
use crate::namespace::op::Op;
use futures::future::join_all;
use kfs_common::clock::Clock;
use kfs_common::proto::chunk::ChunkPool;
use kfs_common::proto::master::{ReplicaLocation, WriteLease};
use kfs_common::{ChunkId, ChunkVersion, FileId, FileKind, KfsError, KfsResult, ServerId, rpc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Serializes the grants for one file position.
type GrantLock = Arc<tokio::sync::Mutex<()>>;

/// How leases are granted.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub duration: Duration,
    pub chunk_size: u64,
    pub min_write_replicas: usize,
    /// When the master started, if it restarted (recovered a namespace rather than formatting
    /// one): leases on chunks it knew then wait until one lease duration after it.
    pub restarted_at: Option<Instant>,
    /// What lease expiry and the restart grace are measured by.
    pub clock: Clock,
}

/// Chunk ids reserved by one log record (see the module docs): one extra record per 65,536
/// allocations, and a restart skips at most that many ids (64 bits never run out).
pub const RESERVE_BLOCK: u64 = 1 << 16;

/// The master's lease desk; see the module docs.
pub struct Leases {
    config: LeaseConfig,
    pool: ChunkPool,
    next_chunk: AtomicU64,
    /// Ids below this are reserved in the log (may be handed out).
    reserved: AtomicU64,
    /// Held while a reservation is being logged.
    reserving: tokio::sync::Mutex<()>,
    /// Chunks below this id were in the namespace at start-up (only those can have a lease from
    /// before a restart).
    first_new: ChunkId,
    /// One grant at a time per file position (a chunk may not exist yet, so not per chunk).
    grants: Mutex<HashMap<(FileId, u64), GrantLock>>,
}

/// What a lease operation works on.
pub struct LeaseContext<'a> {
    pub ns: &'a SharedNamespace,
    pub chunks: &'a Mutex<ChunkMap>,
    pub committer: &'a Committer,
}

const CHUNKSERVER_CALL: Duration = Duration::from_secs(10);

impl Leases {
    /// `next_chunk`: the recovered namespace's next chunk id (above every id it holds or ever
    /// reserved).
    pub fn new(config: LeaseConfig, next_chunk: ChunkId) -> Leases {
        Leases {
            config,
            pool: ChunkPool::new(),
            next_chunk: AtomicU64::new(next_chunk.0),
            reserved: AtomicU64::new(next_chunk.0),
            reserving: tokio::sync::Mutex::new(()),
            first_new: next_chunk,
            grants: Mutex::new(HashMap::new()),
        }
    }

    pub fn chunk_size(&self) -> u64 {
        self.config.chunk_size
    }

    /// The master's connections to chunkservers for its own calls (shared with the length
    /// check of `extend_length`).
    pub fn pool(&self) -> &ChunkPool {
        &self.pool
    }

    /// Serializes grants for one file position; the entry goes when nobody holds or waits for it.
    async fn lock_position(&self, fid: FileId, offset: u64) -> GrantGuard<'_> {
        let lock = self
            .grants
            .lock()
            .expect("grants lock")
            .entry((fid, offset))
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        GrantGuard {
            leases: self,
            key: (fid, offset),
            lock,
            _guard: guard,
        }
    }

    /// Whether a lease on `chunk` may be granted now: not while a lease the master granted
    /// before a restart may still be valid (see the module docs).
    fn check_grace(&self, chunk: ChunkId) -> KfsResult<()> {
        let Some(started) = self.config.restarted_at else {
            return Ok(());
        };
        if chunk >= self.first_new {
            return Ok(());
        }
        let until = started + self.config.duration;
        let now = self.config.clock.now();
        if now < until {
            return Err(KfsError::Unavailable(format!(
                "the master restarted; it grants leases on {chunk} again in {} ms, once leases \
                 granted before the restart have expired",
                (until - now).as_millis()
            )));
        }
        Ok(())
    }

    /// Grants a lease on the chunk of `fid` at `chunk_offset`; see `MasterService::lease`.
    pub async fn lease(
        &self,
        cx: &LeaseContext<'_>,
        fid: FileId,
        chunk_offset: u64,
    ) -> KfsResult<WriteLease> {
        if !chunk_offset.is_multiple_of(self.config.chunk_size) {
            return Err(KfsError::invalid_argument(format!(
                "chunk offset {chunk_offset} is not a multiple of the chunk size {}",
                self.config.chunk_size
            )));
        }
        let _position = self.lock_position(fid, chunk_offset).await;
        let (existing, replication) = {
            let ns = cx.ns.read().expect("namespace lock");
            let attr = ns.stat_fid(fid)?;
            if attr.kind == FileKind::Dir {
                return Err(KfsError::is_a_directory(fid.to_string()));
            }
            (ns.chunk_at(fid, chunk_offset), attr.replication)
        };
        match existing {
            Some((chunk, version)) => {
                self.check_grace(chunk)?;
                let _granting = Granting::start(cx.chunks, chunk);
                let now = self.config.clock.now();
                let live = {
                    let chunks = cx.chunks.lock().expect("chunk map lock");
                    if let Some(lease) = chunks.current_lease(chunk, now)
                        && lease.version == version
                    {
                        return Ok(lease);
                    }
                    chunks.locations(chunk)
                };
                // Boxed (here and below): calls to chunkservers and the log make large state
                // machines, which every request's future would otherwise carry.
                Box::pin(self.new_version(cx, fid, chunk_offset, chunk, version, live)).await
            }
            None => Box::pin(self.allocate(cx, fid, chunk_offset, replication)).await,
        }
    }

    /// A chunk id never handed out before, by this master or an earlier one: below a
    /// reservation that is durable in the log (logging the next one first when needed).
    async fn take_chunk_id(&self, cx: &LeaseContext<'_>) -> KfsResult<ChunkId> {
        let id = self.next_chunk.fetch_add(1, Ordering::Relaxed);
        if id < self.reserved.load(Ordering::Acquire) {
            return Ok(ChunkId(id));
        }
        let _reserving = self.reserving.lock().await;
        if id >= self.reserved.load(Ordering::Acquire) {
            let below = id.saturating_add(RESERVE_BLOCK);
            cx.committer
                .commit(Op::ReserveChunkIds {
                    below: ChunkId(below),
                })
                .await?;
            self.reserved.store(below, Ordering::Release);
        }
        Ok(ChunkId(id))
    }

    /// Allocates a new chunk at `fid`/`offset` on `replication` chunkservers and leases it. A
    /// server that fails to create its replica is replaced by another, while any is left.
    async fn allocate(
        &self,
        cx: &LeaseContext<'_>,
        fid: FileId,
        offset: u64,
        replication: u8,
    ) -> KfsResult<WriteLease> {
        let chunk = self.take_chunk_id(cx).await?;
        let version = ChunkVersion(1);
        let mut made: Vec<ReplicaLocation> = Vec::new();
        let mut tried: Vec<ServerId> = Vec::new();
        let mut refusals: Vec<String> = Vec::new();
        let mut full: Vec<String> = Vec::new();
        while made.len() < replication as usize {
            let targets = cx
                .chunks
                .lock()
                .expect("chunk map lock")
                .place(replication as usize - made.len(), &tried);
            if targets.is_empty() {
                break;
            }
            tried.extend(targets.iter().map(|t| t.server));
            let created = self
                .on_each(&targets, |client| async move {
                    client
                        .create(rpc::context(CHUNKSERVER_CALL), chunk, version)
                        .await
                })
                .await;
            let (ok, failed) = split(targets, created);
            made.extend(ok);
            for (target, refused) in failed {
                if refused.full {
                    // Full since its last report: not asked again until it reports room.
                    cx.chunks
                        .lock()
                        .expect("chunk map lock")
                        .mark_full(target.server);
                    full.push(target.addr.to_string());
                } else {
                    refusals.push(refused.why);
                }
            }
        }
        if made.len() < self.config.min_write_replicas {
            self.delete_later(cx, chunk, &made);
            return Err(self.too_few_replicas(cx, made.len(), full, refusals));
        }
        if made.len() < replication as usize {
            tracing::warn!(%chunk, %fid, replicas = made.len(), replication, "too few chunkservers: the new chunk starts under-replicated");
        }
        if let Err(e) = cx
            .committer
            .commit(Op::AllocateChunk {
                fid,
                offset,
                chunk,
                version,
            })
            .await
        {
            // The file went away (or the log failed): the new replicas are orphans.
            self.delete_later(cx, chunk, &made);
            return Err(e);
        }
        let mut chunks = cx.chunks.lock().expect("chunk map lock");
        for r in &made {
            chunks.add_replica(chunk, r.server, version, 0);
        }
        tracing::debug!(%chunk, %fid, offset, replicas = made.len(), "chunk allocated");
        chunks.grant(chunk, &made, self.config.clock.now(), self.config.duration)
    }

    /// Why a new chunk could not get `min_write_replicas` replicas (`made` were created):
    /// `NoSpace` naming the full servers when too few of the live servers have room,
    /// `Unavailable` (worth retrying: servers come back) when too few are live, or servers with
    /// room did not answer.
    fn too_few_replicas(
        &self,
        cx: &LeaseContext<'_>,
        made: usize,
        mut full: Vec<String>,
        refusals: Vec<String>,
    ) -> KfsError {
        let need = self.config.min_write_replicas;
        let (known_full, serving) = cx.chunks.lock().expect("chunk map lock").full_servers();
        for r in known_full {
            let addr = r.addr.to_string();
            if !full.contains(&addr) {
                full.push(addr);
            }
        }
        // Full servers are why only if the others could not have made up the number.
        if !full.is_empty() && serving.saturating_sub(full.len()) < need {
            full.sort();
            let mut why = kfs_common::error::servers_full(&full);
            if !refusals.is_empty() {
                why = format!("{why}; {}", refusals.join("; "));
            }
            return KfsError::NoSpace(why);
        }
        let why = if refusals.is_empty() {
            format!("{serving} live")
        } else {
            refusals.join("; ")
        };
        KfsError::Unavailable(format!(
            "a new chunk needs {need} chunkservers, {made} could take it: {why}"
        ))
    }

    /// Moves `chunk` from `version` to the next one on `replicas` and leases it to those that
    /// moved; the others are stale from then on.
    async fn new_version(
        &self,
        cx: &LeaseContext<'_>,
        fid: FileId,
        offset: u64,
        chunk: ChunkId,
        version: ChunkVersion,
        replicas: Vec<ReplicaLocation>,
    ) -> KfsResult<WriteLease> {
        if replicas.is_empty() {
            return Err(KfsError::ChunkUnavailable {
                chunk,
                reason: format!(
                    "no live replica at {version}; it can be written again once one returns"
                ),
            });
        }
        let next = ChunkVersion(version.0 + 1);
        let asked: Vec<ServerId> = replicas.iter().map(|r| r.server).collect();
        let moved = self
            .on_each(&replicas, |client| async move {
                client
                    .set_version(rpc::context(CHUNKSERVER_CALL), chunk, version, next)
                    .await
            })
            .await;
        let (moved, failures) = split(replicas, moved);
        if moved.is_empty() {
            return Err(KfsError::ChunkUnavailable {
                chunk,
                reason: format!("no replica could move to {next}: {}", describe(&failures)),
            });
        }
        cx.committer
            .commit(Op::BumpVersion {
                fid,
                offset,
                chunk,
                version: next,
            })
            .await?;
        let mut chunks = cx.chunks.lock().expect("chunk map lock");
        for r in &moved {
            chunks.set_replica_version(chunk, r.server, next);
        }
        // Replicas that could not move are stale from now on: no longer listed, and deleted once
        // the chunk is back at its replication factor without them (kept until then: they may
        // be all that is left if the moved ones are lost).
        let stale: Vec<ServerId> = asked
            .into_iter()
            .filter(|s| !moved.iter().any(|m| m.server == *s))
            .collect();
        for server in stale {
            chunks.defer_delete(server, chunk);
        }
        tracing::debug!(%chunk, %next, replicas = moved.len(), stale = failures.len(), "chunk moved to a new version");
        chunks.grant(chunk, &moved, self.config.clock.now(), self.config.duration)
    }

    /// A writer could not write `chunk` at `version` on `failed`; see `MasterService::report_failure`.
    pub async fn report_failure(
        &self,
        cx: &LeaseContext<'_>,
        chunk: ChunkId,
        version: ChunkVersion,
        failed: Vec<ServerId>,
    ) -> KfsResult<WriteLease> {
        self.check_grace(chunk)?;
        let (fid, offset, _) = cx
            .chunks
            .lock()
            .expect("chunk map lock")
            .chunk(chunk)
            .ok_or(KfsError::NoSuchChunk { chunk })?;
        let _position = self.lock_position(fid, offset).await;
        let _granting = Granting::start(cx.chunks, chunk);
        let now = self.config.clock.now();
        let (current, live) = {
            let mut chunks = cx.chunks.lock().expect("chunk map lock");
            let (_, _, current) = chunks.chunk(chunk).ok_or(KfsError::NoSuchChunk { chunk })?;
            if current > version {
                // The chunk already moved past the version of the failed write (another report,
                // another writer). A replica counts as failed only for a failure at the current
                // version: one that moved on did so after the write reported here (it took the
                // new version), and if it is failing it fails again at the new version and is
                // reported then. Dropping it now would drop healthy replicas one after another
                // for writes that were merely in flight across the move.
                if let Some(lease) = chunks.current_lease(chunk, now) {
                    return Ok(lease);
                }
                tracing::debug!(%chunk, %version, %current, "a failure reported at an old version; moving on without dropping replicas");
                chunks.revoke(chunk);
                (current, chunks.locations(chunk))
            } else {
                // One writer's word never deletes anything, and never leaves a chunk without a
                // replica: the reported ones stop counting (they go stale at the next version)
                // and stay on disk until the chunk is back at its factor elsewhere.
                let survivors: Vec<ReplicaLocation> = chunks
                    .locations(chunk)
                    .into_iter()
                    .filter(|r| !failed.contains(&r.server))
                    .collect();
                // (With nobody reported failed, `new_version` says itself that no replica is
                // live.)
                if survivors.is_empty() && !failed.is_empty() {
                    return Err(KfsError::ChunkUnavailable {
                        chunk,
                        reason: format!(
                            "every live replica at {current} was reported failed; the master \
                             keeps them all (try again, or wait for the failed servers to be \
                             declared dead)"
                        ),
                    });
                }
                for server in &failed {
                    tracing::warn!(%chunk, %server, "a writer could not write a replica; it stops counting and is kept until the chunk is re-replicated");
                    chunks.defer_delete(*server, chunk);
                }
                chunks.revoke(chunk);
                (current, survivors)
            }
        };
        Box::pin(self.new_version(cx, fid, offset, chunk, current, live)).await
    }

    /// Extends the lease on `chunk` at `version`.
    pub fn renew(
        &self,
        cx: &LeaseContext<'_>,
        chunk: ChunkId,
        version: ChunkVersion,
    ) -> KfsResult<u64> {
        cx.chunks.lock().expect("chunk map lock").renew(
            chunk,
            version,
            self.config.clock.now(),
            self.config.duration,
        )
    }

    /// Calls every replica at once; results in the same order.
    async fn on_each<F, Fut>(
        &self,
        replicas: &[ReplicaLocation],
        call: F,
    ) -> Vec<Result<(), Refused>>
    where
        F: Fn(kfs_common::proto::chunk::ChunkServiceClient) -> Fut,
        Fut: std::future::Future<Output = Result<KfsResult<()>, tarpc::client::RpcError>>,
    {
        join_all(replicas.iter().map(|r| {
            let pool = self.pool.clone();
            let call = &call;
            async move {
                let client = pool
                    .get(r.addr)
                    .await
                    .map_err(|e| Refused::other(format!("{} unreachable: {e}", r.addr)))?;
                match call(client).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(Refused {
                        why: format!("{}: {e}", r.addr),
                        full: e.is_no_space(),
                    }),
                    Err(e) => {
                        pool.forget(r.addr);
                        Err(Refused::other(format!("{}: {e}", r.addr)))
                    }
                }
            }
        }))
        .await
    }

    fn delete_later(&self, cx: &LeaseContext<'_>, chunk: ChunkId, replicas: &[ReplicaLocation]) {
        let mut chunks = cx.chunks.lock().expect("chunk map lock");
        for r in replicas {
            chunks.queue_delete(r.server, chunk);
        }
    }
}

/// Why a chunkserver did not do what the master asked.
struct Refused {
    /// The server's address and its answer.
    why: String,
    /// It is out of space.
    full: bool,
}

impl Refused {
    fn other(why: String) -> Refused {
        Refused { why, full: false }
    }
}

/// Splits replicas into those whose call succeeded and those refused, with why.
fn split(
    replicas: Vec<ReplicaLocation>,
    results: Vec<Result<(), Refused>>,
) -> (Vec<ReplicaLocation>, Vec<(ReplicaLocation, Refused)>) {
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for (r, result) in replicas.into_iter().zip(results) {
        match result {
            Ok(()) => ok.push(r),
            Err(e) => failures.push((r, e)),
        }
    }
    (ok, failures)
}

/// The refusals, one after another.
fn describe(failures: &[(ReplicaLocation, Refused)]) -> String {
    let whys: Vec<&str> = failures.iter().map(|(_, r)| r.why.as_str()).collect();
    whys.join("; ")
}

/// Holds a file position's grant lock; forgets the lock when nobody else wants it.
struct GrantGuard<'a> {
    leases: &'a Leases,
    key: (FileId, u64),
    lock: GrantLock,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for GrantGuard<'_> {
    fn drop(&mut self) {
        let mut grants = self.leases.grants.lock().expect("grants lock");
        // Ours, the map's, and the guard's: nobody else is waiting.
        if Arc::strong_count(&self.lock) <= 3 {
            grants.remove(&self.key);
        }
    }
}

/// Marks a chunk as being granted (repair leaves it alone) for as long as it lives.
struct Granting<'a> {
    chunks: &'a Mutex<ChunkMap>,
    chunk: ChunkId,
}

impl<'a> Granting<'a> {
    fn start(chunks: &'a Mutex<ChunkMap>, chunk: ChunkId) -> Granting<'a> {
        chunks
            .lock()
            .expect("chunk map lock")
            .set_granting(chunk, true);
        Granting { chunks, chunk }
    }
}

impl Drop for Granting<'_> {
    fn drop(&mut self) {
        self.chunks
            .lock()
            .expect("chunk map lock")
            .set_granting(self.chunk, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desk(clock: &Clock, restarted: bool) -> Leases {
        let config = LeaseConfig {
            duration: Duration::from_secs(60),
            chunk_size: 64 << 20,
            min_write_replicas: 1,
            restarted_at: restarted.then(|| clock.now()),
            clock: clock.clone(),
        };
        // Chunks below 100 were in the namespace at start-up.
        Leases::new(config, ChunkId(100))
    }

    #[test]
    fn after_a_restart_old_chunks_wait_one_lease_duration_and_new_ones_do_not() {
        let clock = Clock::manual();
        let leases = desk(&clock, true);
        let Err(KfsError::Unavailable(why)) = leases.check_grace(ChunkId(5)) else {
            panic!("a chunk known at start-up is not leased at once")
        };
        assert!(why.contains("again in 60000 ms"), "{why}");
        assert!(leases.check_grace(ChunkId(100)).is_ok(), "allocated since");
        clock.advance(Duration::from_secs(59));
        assert!(leases.check_grace(ChunkId(5)).is_err());
        clock.advance(Duration::from_secs(1));
        assert!(
            leases.check_grace(ChunkId(5)).is_ok(),
            "the old leases ran out"
        );
    }

    #[test]
    fn a_formatted_master_grants_at_once() {
        let clock = Clock::manual();
        assert!(desk(&clock, false).check_grace(ChunkId(5)).is_ok());
    }
}
