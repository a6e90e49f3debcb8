//! New chunks and new versions, for the lease desk ([`Leases`]): a chunk allocated on
//! chunkservers, an existing chunk moved to its next version, and the chunk ids handed out.
//!
//! Order of steps, so that a crash anywhere leaves nothing unsafe:
//! - New chunk: replicas are created on the chosen chunkservers first, then the allocation is
//!   logged. A crash in between leaves empty replicas no file references; chunkservers delete
//!   them at their next hello.
//! - New lease on an existing chunk: the live replicas move to version `v + 1` first, then the
//!   bump is logged. A crash in between leaves replicas newer than the master's record, which
//!   hello accepts; replicas that missed the bump stay at `v` and are stale from then on, never
//!   served, and deleted.
//! - A chunkserver whose call failed may have done it anyway (killed after making the file,
//!   before answering). Since hello lists any replica at the chunk's version, the replicas that
//!   did answer move on one version more (again, while one of that round fails the same way)
//!   before the chunk is logged or leased: a replica the writes will miss is never at the
//!   version they are written at.
//!
//! Invariants:
//! - a chunk id is handed out only once it is below a reservation in the log
//!   (`Op::ReserveChunkIds`, one record per [`RESERVE_BLOCK`] ids), and a restarted master starts
//!   above every reservation: it never hands out again an id that the old master had
//!   chunkservers create just before it died without logging the allocation (such replicas are
//!   orphans, deleted at their servers' hello; a new chunk under the same id would go with them);
//! - a new chunk is logged only with at least `min_write_replicas` replicas made; otherwise (or
//!   if the log refuses it) the replicas made are queued for deletion;
//! - a replica that did not move to the new version is no longer listed, and stays on disk until
//!   the chunk is back at its replication factor without it.

use super::{LeaseContext, Leases};
use crate::namespace::op::Op;
use futures::future::join_all;
use kfs_common::proto::master::{ReplicaLocation, WriteLease};
use kfs_common::{ChunkId, ChunkVersion, FileId, KfsError, KfsResult, ServerId, rpc};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Chunk ids reserved by one log record (see the module docs): one extra record per 65,536
/// allocations, and a restart skips at most that many ids (64 bits never run out).
const RESERVE_BLOCK: u64 = 1 << 16;

const CHUNKSERVER_CALL: Duration = Duration::from_secs(10);

impl Leases {
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
            cx.log
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
    pub(super) async fn allocate(
        &self,
        cx: &LeaseContext<'_>,
        fid: FileId,
        offset: u64,
        replication: u8,
    ) -> KfsResult<WriteLease> {
        self.check_registrations(cx, replication)?;
        let chunk = self.take_chunk_id(cx).await?;
        let mut version = ChunkVersion(1);
        let mut made: Vec<ReplicaLocation> = Vec::new();
        let mut tried: Vec<ServerId> = Vec::new();
        let mut refusals: Vec<String> = Vec::new();
        let mut full: Vec<String> = Vec::new();
        let mut maybe_made_elsewhere = false;
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
            maybe_made_elsewhere |= failed.iter().any(|(_, r)| r.maybe_done);
            sort_refusals(cx, failed, &mut full, &mut refusals);
        }
        if maybe_made_elsewhere && made.len() >= self.config.min_write_replicas {
            // A server that did not answer may hold an empty replica at `version` all the same,
            // which its next hello would list beside the written ones: the chunk starts at a
            // version only the replicas made can hold.
            let next = ChunkVersion(version.0 + 1);
            let (moved_to, moved, failures) = self.move_on(chunk, version, next, made).await;
            (version, made) = (moved_to, moved);
            refusals.extend(failures.into_iter().map(|(_, r)| r.why));
        }
        if made.len() < self.config.min_write_replicas {
            self.delete_later(cx, chunk, &made);
            return Err(self.too_few_replicas(cx, made.len(), full, refusals));
        }
        if made.len() < replication as usize {
            tracing::warn!(%chunk, %fid, replicas = made.len(), replication, "too few chunkservers: the new chunk starts under-replicated");
        }
        let op = Op::AllocateChunk {
            fid,
            offset,
            chunk,
            version,
        };
        tracing::debug!(%chunk, %fid, offset, replicas = made.len(), "chunk allocated");
        let leased = self.log_and_lease(cx, op, chunk, version, &made).await;
        self.logged_up_to(chunk, version);
        leased
    }

    /// Logs the new chunk (`op`) its replicas `made` were created for, then leases it to them;
    /// if the log refuses it (the file went away, or the log failed) the replicas are orphans,
    /// deleted later.
    async fn log_and_lease(
        &self,
        cx: &LeaseContext<'_>,
        op: Op,
        chunk: ChunkId,
        version: ChunkVersion,
        made: &[ReplicaLocation],
    ) -> KfsResult<WriteLease> {
        if let Err(e) = cx.log.commit(op).await {
            self.delete_later(cx, chunk, made);
            return Err(e);
        }
        let mut chunks = cx.chunks.lock().expect("chunk map lock");
        for r in made {
            chunks.add_replica(chunk, r.server, version, 0);
        }
        chunks.grant(chunk, made, self.config.clock.now(), self.config.duration)
    }

    /// Makes a new volume for small files of `replication` on as many distinct chunkservers
    /// (every replica must take every append, so a volume starts whole or not at all), logs it,
    /// and leases it to its replicas in placement order (the first is the primary).
    pub(super) async fn allocate_volume(
        &self,
        cx: &LeaseContext<'_>,
        replication: u8,
    ) -> KfsResult<WriteLease> {
        let chunk = self.take_chunk_id(cx).await?;
        let version = ChunkVersion(1);
        let targets = cx
            .chunks
            .lock()
            .expect("chunk map lock")
            .place(replication as usize, &[]);
        let created = self
            .on_each(&targets, |client| async move {
                client
                    .create_volume(rpc::context(CHUNKSERVER_CALL), chunk, version)
                    .await
            })
            .await;
        let (made, failed) = split(targets, created);
        if made.len() < replication as usize {
            self.delete_later(cx, chunk, &made);
            let (mut full, mut refusals) = (Vec::new(), Vec::new());
            sort_refusals(cx, failed, &mut full, &mut refusals);
            if !full.is_empty() {
                return Err(KfsError::NoSpace(kfs_common::error::servers_full(&full)));
            }
            return Err(KfsError::Unavailable(format!(
                "a volume of replication {replication} needs {replication} chunkservers; {} took it{}",
                made.len(),
                if refusals.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", refusals.join("; "))
                }
            )));
        }
        let op = Op::CreateVolume {
            chunk,
            version,
            replication,
        };
        tracing::debug!(%chunk, replicas = made.len(), "volume made");
        self.log_and_lease(cx, op, chunk, version, &made).await
    }

    /// Why a new chunk could not get `min_write_replicas` replicas (`made` were created):
    /// `NoSpace` naming the full servers when too few of the live servers have room,
    /// `Unavailable` (worth retrying: servers come back) when too few are live, or servers with
    /// room did not answer.
    /// Right after a restart the chunkservers that were up are still coming back: a new chunk
    /// waits (`Unavailable`, which writers retry) rather than start on fewer servers than its
    /// replication, until enough have registered or the grace is over. (Found by the cluster
    /// model check: a write right after a restart made a chunk on the one server back yet,
    /// which then died, and the next write to it had no replica.)
    fn check_registrations(&self, cx: &LeaseContext<'_>, replication: u8) -> KfsResult<()> {
        let Some(started) = self.config.restarted_at else {
            return Ok(());
        };
        let grace = self.config.registration_grace;
        if self.config.clock.now() >= started + grace {
            return Ok(());
        }
        let (_, serving) = cx.chunks.lock().expect("chunk map lock").full_servers();
        if serving >= replication as usize {
            return Ok(());
        }
        Err(KfsError::Unavailable(format!(
            "{serving} chunkservers have registered since the master started, {replication}              are needed for a new chunk; waiting up to {grace:?} for the others"
        )))
    }

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
    pub(super) async fn new_version(
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
        let asked: Vec<ServerId> = replicas.iter().map(|r| r.server).collect();
        let first = self.next_version(cx, chunk, version);
        let (next, moved, failures) = self.move_on(chunk, version, first, replicas).await;
        if moved.is_empty() {
            return Err(KfsError::ChunkUnavailable {
                chunk,
                reason: format!("no replica could move to {next}: {}", describe(&failures)),
            });
        }
        cx.log
            .commit(Op::BumpVersion {
                fid,
                offset,
                chunk,
                version: next,
            })
            .await?;
        self.logged_up_to(chunk, next);
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

    /// The first version a move of `chunk` (logged at `version`) asks for: above the logged
    /// one, above every version a replica is known at (one may be ahead: a move of it whose log
    /// never happened), and above every version a move not logged asked for in this process, so
    /// no two moves ever ask for the same version.
    fn next_version(
        &self,
        cx: &LeaseContext<'_>,
        chunk: ChunkId,
        version: ChunkVersion,
    ) -> ChunkVersion {
        let known = cx
            .chunks
            .lock()
            .expect("chunk map lock")
            .highest_version(chunk)
            .unwrap_or(version);
        let asked = self.asked_before(chunk).unwrap_or(version);
        ChunkVersion(version.max(known).max(asked).0 + 1)
    }

    fn asked_before(&self, chunk: ChunkId) -> Option<ChunkVersion> {
        self.asked.lock().expect("asked lock").get(&chunk).copied()
    }

    /// The chunk's move to `version` is logged: no version above it was asked for.
    fn logged_up_to(&self, chunk: ChunkId, version: ChunkVersion) {
        let mut asked = self.asked.lock().expect("asked lock");
        if asked.get(&chunk).is_some_and(|v| *v <= version) {
            asked.remove(&chunk);
        }
    }

    /// Moves `replicas` of `chunk` (logged at `from`) to version `to`, and on to the next one
    /// again while a server that failed may have moved all the same ([`Refused::maybe_done`]:
    /// its answer was lost), so that at the version returned only the replicas returned can be
    /// found: a server left behind never reports the chunk at that version, whose writes it
    /// missed. Each round asks to move from `from` (a replica an earlier round moved, unlogged,
    /// moves from where it is) and records what it asked for (`next_version`). Returns the last
    /// version asked for, the replicas at it (none if every one refused) and the refusals.
    async fn move_on(
        &self,
        chunk: ChunkId,
        from: ChunkVersion,
        mut to: ChunkVersion,
        mut replicas: Vec<ReplicaLocation>,
    ) -> (
        ChunkVersion,
        Vec<ReplicaLocation>,
        Vec<(ReplicaLocation, Refused)>,
    ) {
        let mut refusals = Vec::new();
        loop {
            {
                let mut asked = self.asked.lock().expect("asked lock");
                let high = asked.entry(chunk).or_insert(to);
                *high = (*high).max(to);
            }
            let results = self
                .on_each(&replicas, |client| async move {
                    client
                        .set_version(rpc::context(CHUNKSERVER_CALL), chunk, from, to)
                        .await
                })
                .await;
            let (moved, failed) = split(replicas, results);
            let again = !moved.is_empty() && failed.iter().any(|(_, r)| r.maybe_done);
            refusals.extend(failed);
            replicas = moved;
            if !again {
                return (to, replicas, refusals);
            }
            to = ChunkVersion(to.0 + 1);
        }
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
                    .map_err(|e| Refused::unreached(format!("{} unreachable: {e}", r.addr)))?;
                match call(client).await {
                    Ok(Ok(())) => Ok(()),
                    // A store that fails midway (an I/O error) may leave the file it made or
                    // renamed; a refusal on the merits did nothing.
                    Ok(Err(e)) => Err(Refused {
                        why: format!("{}: {e}", r.addr),
                        full: e.is_no_space(),
                        maybe_done: !(e.is_no_space()
                            || matches!(
                                e,
                                KfsError::StaleVersion { .. }
                                    | KfsError::NoSuchChunk { .. }
                                    | KfsError::AlreadyExists { .. }
                                    | KfsError::InvalidArgument(_)
                            )),
                    }),
                    Err(e) => {
                        pool.forget(r.addr);
                        Err(Refused::lost(format!("{}: {e}", r.addr)))
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
    /// It may have done it all the same: the call reached it (its answer was lost, or it did
    /// part of the work before failing). Only a server never reached surely did nothing.
    maybe_done: bool,
}

impl Refused {
    fn unreached(why: String) -> Refused {
        Refused {
            why,
            full: false,
            maybe_done: false,
        }
    }

    fn lost(why: String) -> Refused {
        Refused {
            why,
            full: false,
            maybe_done: true,
        }
    }
}

/// Files the refusals of replicas that were not made: a full server (marked full until it
/// reports room) in `full`, any other reason in `refusals`.
fn sort_refusals(
    cx: &LeaseContext<'_>,
    failed: Vec<(ReplicaLocation, Refused)>,
    full: &mut Vec<String>,
    refusals: &mut Vec<String>,
) {
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
