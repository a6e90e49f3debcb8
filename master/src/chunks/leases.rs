//! Write leases: the chunk map's lease table, and the master's lease desk ([`Leases`]), which
//! allocates new chunks, moves existing ones to a new version and grants the right to write
//! them, in step with chunkservers.
//!
//! The table ([`ChunkMap::grant`], [`ChunkMap::renew`], [`ChunkMap::revoke`],
//! [`ChunkMap::current_lease`], and the chunks whose lease is being granted) is part of the
//! synchronous chunk map: time comes in as an argument. The desk is async: it calls
//! chunkservers, logs its ops through an [`OpLog`] (the committer, in the master: this module
//! does not import the log thread) and takes the chunk map's lock only between those calls. New
//! chunks and new versions, with the order of steps that makes a crash anywhere safe, are in
//! `leases/versions.rs`.
//!
//! Invariants:
//! - at most one valid lease per chunk; a lease is only ever granted at the chunk's current
//!   version, and every grant or failure report for one file position is serialized;
//! - repair leaves alone a chunk whose lease is being granted (its replicas are changing
//!   version), and one with a lease under which writes may still land (until one lease period
//!   after its end);
//! - right after a restart (the master may have granted leases it no longer knows of), no lease
//!   is granted on a chunk the namespace held at start-up until one lease duration has passed
//!   since the start: any of them may have a lease from before, renewed without a log record.
//!   A chunk allocated since the start (its id is at least the first id this master hands out)
//!   can only have leases this master granted, so it is leased at once.

use super::ChunkMap;
use crate::namespace::Namespace;
use crate::namespace::op::{Applied, Op};
use futures::future::BoxFuture;
use kfs_common::clock::Clock;
use kfs_common::proto::chunk::ChunkPool;
use kfs_common::proto::master::{ReplicaLocation, WriteLease};
use kfs_common::{ChunkId, ChunkVersion, FileId, FileKind, KfsError, KfsResult, ServerId};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

mod versions;
mod volumes;
mod writers;

/// A write lease the master granted: a row of the chunk map's lease table.
#[derive(Clone, Debug)]
pub(super) struct Lease {
    pub(super) version: ChunkVersion,
    /// Primary first, then the secondaries in chain order.
    replicas: Vec<usize>,
    expires: Instant,
    /// How long it was granted (or renewed) for.
    duration: Duration,
}

impl Lease {
    /// Until when writes under this lease may still reach replicas: its end, plus one more
    /// lease period for writes sent just before it (chunkservers check versions, not lease
    /// times). Repair copies wait until then.
    pub(super) fn writes_may_land_until(&self) -> Instant {
        self.expires + self.duration
    }
}

impl ChunkMap {
    /// The valid lease on `chunk`, if any.
    pub fn current_lease(&self, chunk: ChunkId, now: Instant) -> Option<WriteLease> {
        let lease = self.leases.get(&chunk).filter(|l| l.expires > now)?;
        Some(self.lease_view(chunk, lease, now))
    }

    /// Keeps an open volume's lease (on `chain`, primary first) for `duration` more from `now`:
    /// extended while valid, granted again once lapsed if no copy of the volume was started
    /// meanwhile and its replicas are still exactly `chain`. `None` (the volume must be sealed)
    /// if a server of the chain is dead or draining, or its replicas changed.
    pub fn keep_open(
        &mut self,
        chunk: ChunkId,
        chain: &[ReplicaLocation],
        now: Instant,
        duration: Duration,
    ) -> Option<WriteLease> {
        let state = self.chunks.get(&chunk)?;
        let mut holders: Vec<ServerId> = state
            .replicas
            .iter()
            .filter(|r| {
                let s = &self.servers[r.server];
                s.alive && !s.draining && r.version == state.version
            })
            .map(|r| self.servers[r.server].id)
            .collect();
        let mut wanted: Vec<ServerId> = chain.iter().map(|r| r.server).collect();
        holders.sort();
        wanted.sort();
        if holders != wanted || self.copies.contains_key(&chunk) {
            return None;
        }
        match self.leases.get_mut(&chunk) {
            Some(lease) if lease.expires > now => {
                lease.expires = now + duration;
                let lease = self.leases.get(&chunk).expect("just found");
                Some(self.lease_view(chunk, lease, now))
            }
            _ => self.grant(chunk, chain, now, duration).ok(),
        }
    }

    fn lease_view(&self, chunk: ChunkId, lease: &Lease, now: Instant) -> WriteLease {
        let mut replicas = lease.replicas.iter().map(|&i| self.location(i));
        WriteLease {
            chunk,
            version: lease.version,
            primary: replicas.next().expect("a lease has a primary"),
            secondaries: replicas.collect(),
            valid_ms: lease.expires.saturating_duration_since(now).as_millis() as u64,
        }
    }

    /// Grants a lease on `chunk` at its current version to `replicas` (primary first), valid for
    /// `duration`. The caller has made sure no other lease on it is valid.
    pub fn grant(
        &mut self,
        chunk: ChunkId,
        replicas: &[ReplicaLocation],
        now: Instant,
        duration: Duration,
    ) -> KfsResult<WriteLease> {
        let state = self
            .chunks
            .get(&chunk)
            .ok_or(KfsError::NoSuchChunk { chunk })?;
        let servers: Vec<usize> = replicas
            .iter()
            .filter_map(|r| self.by_id.get(&r.server).copied())
            .collect();
        if servers.is_empty() {
            return Err(KfsError::Unavailable(format!(
                "no replica of {chunk} to lease"
            )));
        }
        let lease = Lease {
            version: state.version,
            replicas: servers,
            expires: now + duration,
            duration,
        };
        let view = self.lease_view(chunk, &lease, now);
        self.leases.insert(chunk, lease);
        Ok(view)
    }

    /// Extends the lease on `chunk` at `version`; `LeaseExpired` if that is not the valid lease.
    pub fn renew(
        &mut self,
        chunk: ChunkId,
        version: ChunkVersion,
        now: Instant,
        duration: Duration,
    ) -> KfsResult<u64> {
        match self.leases.get_mut(&chunk) {
            Some(lease) if lease.version == version && lease.expires > now => {
                lease.expires = now + duration;
                Ok(duration.as_millis() as u64)
            }
            _ => Err(KfsError::LeaseExpired { chunk }),
        }
    }

    /// The file holding `chunk` (a volume's is its volume set's reserved id).
    pub fn file_of(&self, chunk: ChunkId) -> Option<FileId> {
        self.chunks.get(&chunk).map(|s| s.fid)
    }

    /// Write leases in force at `now`.
    pub fn leases_held(&self, now: Instant) -> u64 {
        self.leases.values().filter(|l| l.expires > now).count() as u64
    }

    /// Ends the lease on `chunk` (its replicas change).
    pub fn revoke(&mut self, chunk: ChunkId) {
        self.leases.remove(&chunk);
    }

    /// Marks a chunk whose lease is being granted (`true`) or done (`false`).
    pub fn set_granting(&mut self, chunk: ChunkId, granting: bool) {
        if granting {
            self.granting.insert(chunk);
        } else {
            self.granting.remove(&chunk);
        }
    }
}

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
    /// How long after a restart the chunkservers that were up may take to register again
    /// (their reconnect backoff and a heartbeat): until then, a new chunk waits for as many
    /// servers as its replication rather than start with fewer.
    pub registration_grace: Duration,
    /// What lease expiry and the restart grace are measured by.
    pub clock: Clock,
}

/// The master's lease desk; see the module docs.
pub struct Leases {
    config: LeaseConfig,
    pool: ChunkPool,
    next_chunk: AtomicU64,
    /// Ids below this are reserved in the log (may be handed out; `leases/versions.rs`).
    reserved: AtomicU64,
    /// Held while a reservation is being logged.
    reserving: tokio::sync::Mutex<()>,
    /// Chunks below this id were in the namespace at start-up (only those can have a lease from
    /// before a restart).
    first_new: ChunkId,
    /// One grant at a time per file position (a chunk may not exist yet, so not per chunk).
    grants: Mutex<HashMap<(FileId, u64), GrantLock>>,
    /// The volumes small files are appended to now (`leases/volumes.rs`).
    volumes: volumes::OpenVolumes,
    /// The highest version a move of a chunk asked chunkservers for, while that move is not
    /// logged (`leases/versions.rs`): the next move asks for more.
    asked: Mutex<HashMap<ChunkId, ChunkVersion>>,
    /// Files written under leases, and when each writer last took or renewed one
    /// (`leases/writers.rs`).
    writers: Mutex<HashMap<FileId, Instant>>,
}

/// Where the lease desk logs its ops (chunk id reservations, allocations, version bumps): a
/// commit resolves once the op is durable and applied to the namespace and the chunk map. In the
/// master this is the committer (`server/mod.rs`); the desk needs nothing more of the log thread.
pub trait OpLog: Sync {
    fn commit(&self, op: Op) -> BoxFuture<'_, KfsResult<Applied>>;
}

/// What a lease operation works on.
pub struct LeaseContext<'a> {
    pub ns: &'a RwLock<Namespace>,
    pub chunks: &'a Mutex<ChunkMap>,
    /// Where the desk's ops are logged.
    pub log: &'a dyn OpLog,
}

impl Leases {
    /// `next_chunk`: the recovered namespace's next chunk id (above every id it holds or ever
    /// reserved).
    pub fn new(config: LeaseConfig, next_chunk: ChunkId, pool: ChunkPool) -> Leases {
        Leases {
            config,
            pool,
            next_chunk: AtomicU64::new(next_chunk.0),
            reserved: AtomicU64::new(next_chunk.0),
            reserving: tokio::sync::Mutex::new(()),
            first_new: next_chunk,
            grants: Mutex::new(HashMap::new()),
            volumes: volumes::OpenVolumes::default(),
            asked: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
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
        unpacking: bool,
    ) -> KfsResult<WriteLease> {
        if !chunk_offset.is_multiple_of(self.config.chunk_size) {
            return Err(KfsError::invalid_argument(format!(
                "chunk offset {chunk_offset} is not a multiple of the chunk size {}",
                self.config.chunk_size
            )));
        }
        let _position = self.lock_position(fid, chunk_offset).await;
        self.note_writer(fid, self.config.clock.now());
        let (existing, replication) = {
            let ns = cx.ns.read().expect("namespace lock");
            let attr = ns.stat_fid(fid)?;
            if attr.kind != FileKind::File {
                return Err(KfsError::not_a_regular_file(fid.to_string(), attr.kind));
            }
            // A packed file gets chunks only from a writer moving it to chunks, which writes
            // its whole data there first (`lease_unpacking`); a writer that does not know it is
            // packed would leave zeros where its data was.
            if !unpacking && ns.extent_of(fid).is_some() {
                return Err(KfsError::invalid_argument(format!(
                    "{fid} is a small file packed into a volume: only a client of protocol 4 or \
                     later writes it"
                )));
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
        if crate::namespace::record::volume_set_replication(fid).is_some() {
            return Err(KfsError::invalid_argument(format!(
                "{chunk} is a volume of small files: a failed append seals it (seal_volume)"
            )));
        }
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
        let now = self.config.clock.now();
        let mut chunks = cx.chunks.lock().expect("chunk map lock");
        let renewed = chunks.renew(chunk, version, now, self.config.duration)?;
        if let Some(fid) = chunks.file_of(chunk) {
            self.note_writer(fid, now);
        }
        Ok(renewed)
    }
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
            registration_grace: Duration::from_millis(500),
            clock: clock.clone(),
        };
        // Chunks below 100 were in the namespace at start-up.
        Leases::new(
            config,
            ChunkId(100),
            ChunkPool::new(kfs_common::security::Security::Insecure),
        )
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
