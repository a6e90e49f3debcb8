//! Where every chunk is: the master's volatile map of chunks, replicas and chunkservers.
//!
//! Nothing here is persisted. At start the map holds every chunk the namespace references, with no
//! replicas; chunkservers' `hello` reports fill in the replicas, heartbeats keep them alive, and a
//! server silent longer than the timeout is declared dead and its replicas dropped. Applied ops
//! keep the map in step with the namespace (new chunks, chunks freed by removes and truncates).
//!
//! This is a synchronous state machine: time comes in as an argument, so tests drive it without
//! a clock.
//!
//! Invariants:
//! - the map's chunks are exactly the namespace's, with the namespace's versions;
//! - a replica is listed only for a server that is alive and reported it at a version not below
//!   the chunk's, and never for a replica the server reported corrupt;
//! - a chunk the namespace no longer references is deleted from every server that held it (through
//!   heartbeat replies); a replica the master does not know, or at a stale version, is deleted when
//!   its server says hello.

use crate::namespace::Namespace;
use crate::namespace::op::{Applied, Op};
use kfs_common::proto::PROTOCOL_VERSION;
use kfs_common::proto::cluster::{
    HeartbeatReply, HeartbeatRequest, HelloReply, HelloRequest, SpaceReport,
};
use kfs_common::proto::master::{
    ChunkserverInfo, FsckProblem, FsckReport, ReplicaLocation, ServerState, WriteLease,
};
use kfs_common::{ChunkId, ChunkVersion, FileId, KfsError, KfsResult, ServerId};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Problems `fsck` lists at most.
const FSCK_PROBLEMS: usize = 1000;

/// Timing of chunkservers' reports.
#[derive(Clone, Copy, Debug)]
pub struct ChunkTiming {
    /// How often chunkservers send heartbeats.
    pub heartbeat_interval: Duration,
    /// A server silent for longer than this is dead.
    pub server_timeout: Duration,
}

#[derive(Clone, Debug)]
struct Replica {
    server: usize,
    version: ChunkVersion,
    length: u64,
    /// The master itself saw this replica made or moved to its version (a create, a version
    /// move or a checked copy it asked for), rather than only hearing of it in a hello. Trimming
    /// keeps proven replicas first (`repair.rs`).
    proven: bool,
}

#[derive(Clone, Debug)]
struct ChunkState {
    fid: FileId,
    offset: u64,
    version: ChunkVersion,
    replicas: Vec<Replica>,
}

#[derive(Clone, Debug)]
struct Server {
    id: ServerId,
    addr: SocketAddr,
    session: u64,
    alive: bool,
    space: SpaceReport,
    corrupt: BTreeSet<ChunkId>,
    last_heard: Instant,
    /// Replicas to delete, sent with the next heartbeat reply.
    pending_delete: Vec<ChunkId>,
    /// Replicas that no longer count (stale after a version bump, reported failed by a writer,
    /// reported at an old version) but are kept on disk until their chunk is back at its
    /// replication factor elsewhere ([`ChunkMap::release_deferred`]): nobody's word alone
    /// deletes a chunk's last copies. Rebuilt from each hello.
    deferred_delete: BTreeSet<ChunkId>,
    /// Being decommissioned: its replicas do not count, and are removed once copied elsewhere.
    draining: bool,
}

/// Why a repair copy failed.
#[derive(Clone, Debug)]
pub struct CopyFailed {
    pub why: String,
    /// The target is out of space.
    pub full: bool,
}

/// The chunk map; see the module docs.
pub struct ChunkMap {
    timing: ChunkTiming,
    chunks: HashMap<ChunkId, ChunkState>,
    servers: Vec<Server>,
    by_id: HashMap<ServerId, usize>,
    next_session: u64,
    leases: HashMap<ChunkId, Lease>,
    /// Chunks whose lease is being granted (their replicas are changing version): repair leaves
    /// them alone.
    granting: HashSet<ChunkId>,
    /// Copies in flight to repair replication.
    copies: HashMap<ChunkId, Copy>,
    /// Chunks whose replicas are being asked for digests before a trim (`proof.rs`).
    proofs: HashSet<ChunkId>,
    next_copy: u64,
    /// When safe mode ends at the latest; `None` once it has ended.
    safe_until: Option<Instant>,
    /// When safe mode was last found to go on (the check walks every chunk, so heartbeats do not
    /// repeat it more than every `SAFE_MODE_RECHECK`; a hello, which brings replicas, does).
    safe_checked: Option<Instant>,
    repair: RepairConfig,
    /// Where new replicas go is random (`placement.rs`), seeded by the session base: random per
    /// master run, fixed in tests that pass a fixed one.
    placement_rng: std::sync::Mutex<rand::rngs::SmallRng>,
}

/// How often, at most, heartbeats recount the chunks reported while in safe mode.
const SAFE_MODE_RECHECK: Duration = Duration::from_millis(200);

/// How replication is repaired.
#[derive(Clone, Copy, Debug)]
pub struct RepairConfig {
    /// Safe mode ends once this fraction of chunks has a live replica...
    pub safe_mode_fraction: f64,
    /// ... or after this long at the latest.
    pub safe_mode_max: Duration,
    /// Copies in flight per chunkserver (as source or target), at most.
    pub copies_per_server: usize,
    /// Copies in flight in the whole cluster, at most.
    pub copies_total: usize,
    /// Replicas are moved from the fullest to the emptiest chunkserver when their space use (used /
    /// capacity) differs by more than this.
    pub rebalance_threshold: f64,
}

impl Default for RepairConfig {
    /// The master's defaults (`MasterConfig`'s, the one table of them).
    fn default() -> Self {
        crate::config::MasterConfig::default().repair()
    }
}

/// A copy in flight.
#[derive(Clone, Debug)]
struct Copy {
    /// Which copy this is: a late answer from an older copy of the chunk is told apart.
    id: u64,
    source: usize,
    target: usize,
}

/// A copy the repair plan wants made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyTask {
    pub id: u64,
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    pub source: ReplicaLocation,
    pub target: ReplicaLocation,
}

/// A write lease the master granted.
#[derive(Clone, Debug)]
struct Lease {
    version: ChunkVersion,
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
    fn writes_may_land_until(&self) -> Instant {
        self.expires + self.duration
    }
}

impl ChunkMap {
    /// A map of every chunk in `ns`, with no replica known yet. `session_base` should differ
    /// between master runs (sessions of a previous run must not be accepted).
    pub fn new(ns: &Namespace, timing: ChunkTiming, session_base: u64) -> ChunkMap {
        ChunkMap::with_repair(ns, timing, session_base, RepairConfig::default(), None)
    }

    /// [`ChunkMap::new`] with `repair`'s settings. With `safe_mode_since` (the start of a
    /// master that restarted), the map starts in safe mode: no deletion and no repair until
    /// enough chunks have reported a replica, or `repair.safe_mode_max` has passed since then.
    pub fn with_repair(
        ns: &Namespace,
        timing: ChunkTiming,
        session_base: u64,
        repair: RepairConfig,
        safe_mode_since: Option<Instant>,
    ) -> ChunkMap {
        let chunks = ns
            .all_chunks()
            .map(|(fid, offset, id, version)| {
                (
                    id,
                    ChunkState {
                        fid,
                        offset,
                        version,
                        replicas: Vec::new(),
                    },
                )
            })
            .collect();
        ChunkMap {
            timing,
            chunks,
            servers: Vec::new(),
            by_id: HashMap::new(),
            next_session: session_base,
            leases: HashMap::new(),
            granting: HashSet::new(),
            copies: HashMap::new(),
            proofs: HashSet::new(),
            next_copy: 1,
            safe_until: safe_mode_since.map(|since| since + repair.safe_mode_max),
            safe_checked: None,
            repair,
            placement_rng: std::sync::Mutex::new(rand::SeedableRng::seed_from_u64(session_base)),
        }
    }

    pub fn timing(&self) -> ChunkTiming {
        self.timing
    }

    /// Keeps the map in step with an op the namespace applied.
    pub fn applied(&mut self, op: &Op, result: &KfsResult<Applied>) {
        let Ok(applied) = result else { return };
        match op {
            Op::AllocateChunk {
                fid,
                offset,
                chunk,
                version,
            } => {
                self.chunks.insert(
                    *chunk,
                    ChunkState {
                        fid: *fid,
                        offset: *offset,
                        version: *version,
                        replicas: Vec::new(),
                    },
                );
            }
            Op::BumpVersion { chunk, version, .. } => {
                if let Some(state) = self.chunks.get_mut(chunk) {
                    state.version = *version;
                }
            }
            _ => {}
        }
        for chunk in &applied.freed_chunks {
            self.leases.remove(chunk);
            if let Some(state) = self.chunks.remove(chunk) {
                for r in state.replicas {
                    self.servers[r.server].pending_delete.push(*chunk);
                }
            }
            for s in self
                .servers
                .iter_mut()
                .filter(|s| s.corrupt.contains(chunk))
            {
                s.pending_delete.push(*chunk);
            }
        }
    }

    /// Registers a chunkserver and everything it holds; replies with its session and the
    /// replicas it must delete.
    pub fn hello(&mut self, req: HelloRequest, now: Instant) -> KfsResult<HelloReply> {
        if req.protocol != PROTOCOL_VERSION {
            return Err(KfsError::IncompatibleProtocol {
                ours: PROTOCOL_VERSION,
                theirs: req.protocol,
            });
        }
        let session = self.next_session;
        self.next_session += 1;
        let server = match self.by_id.get(&req.server) {
            Some(&i) => {
                self.drop_replicas_of(i);
                i
            }
            None => {
                self.servers.push(Server {
                    id: req.server,
                    addr: req.addr,
                    session,
                    alive: true,
                    space: req.space,
                    corrupt: BTreeSet::new(),
                    last_heard: now,
                    pending_delete: Vec::new(),
                    deferred_delete: BTreeSet::new(),
                    draining: false,
                });
                self.by_id.insert(req.server, self.servers.len() - 1);
                self.servers.len() - 1
            }
        };
        let mut delete = Vec::new();
        let mut stale = BTreeSet::new();
        for report in &req.chunks {
            match self.chunks.get_mut(&report.chunk) {
                None => delete.push(report.chunk),
                Some(state) if report.version < state.version => {
                    stale.insert(report.chunk);
                }
                Some(state) => {
                    if report.version > state.version {
                        tracing::warn!(
                            chunk = %report.chunk,
                            reported = %report.version,
                            known = %state.version,
                            server = %req.server,
                            "a replica is newer than the master's version"
                        );
                    }
                    state.replicas.push(Replica {
                        server,
                        version: report.version,
                        length: report.length,
                        proven: false,
                    });
                }
            }
        }
        // Corrupt replicas of chunks no file references any more are just deleted.
        delete.extend(req.corrupt.iter().filter(|c| !self.chunks.contains_key(c)));
        self.safe_checked = None;
        let withheld = self.in_safe_mode(now);
        let s = &mut self.servers[server];
        s.addr = req.addr;
        s.session = session;
        s.alive = true;
        s.space = req.space;
        s.corrupt = req.corrupt.into_iter().collect();
        s.last_heard = now;
        s.pending_delete.clear();
        s.deferred_delete = stale;
        if withheld {
            // In safe mode nothing is deleted yet: the deletions wait in the queue.
            s.pending_delete = std::mem::take(&mut delete);
        }
        tracing::info!(
            server = %req.server,
            addr = %req.addr,
            replicas = req.chunks.len(),
            corrupt = s.corrupt.len(),
            delete = delete.len(),
            "chunkserver registered"
        );
        Ok(HelloReply {
            session,
            heartbeat_interval_ms: self.timing.heartbeat_interval.as_millis() as u64,
            delete,
        })
    }

    /// Records a heartbeat; replies with deletions, or `Rehello` for an unknown session.
    pub fn heartbeat(&mut self, req: HeartbeatRequest, now: Instant) -> HeartbeatReply {
        let Some(&i) = self.by_id.get(&req.server) else {
            return HeartbeatReply::Rehello;
        };
        if !self.servers[i].alive || self.servers[i].session != req.session {
            return HeartbeatReply::Rehello;
        }
        let newly_corrupt: Vec<ChunkId> = req
            .corrupt
            .iter()
            .filter(|c| !self.servers[i].corrupt.contains(c))
            .copied()
            .collect();
        for chunk in &newly_corrupt {
            tracing::warn!(%chunk, server = %req.server, "replica reported corrupt");
            if let Some(state) = self.chunks.get_mut(chunk) {
                state.replicas.retain(|r| r.server != i);
            }
        }
        let withheld = self.in_safe_mode(now);
        let s = &mut self.servers[i];
        s.corrupt = req.corrupt.into_iter().collect();
        s.space = req.space;
        s.last_heard = now;
        HeartbeatReply::Ok {
            delete: if withheld {
                Vec::new()
            } else {
                std::mem::take(&mut s.pending_delete)
            },
        }
    }

    /// Declares dead every live server silent for longer than the timeout, dropping its replicas;
    /// returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<ServerId> {
        let timeout = self.timing.server_timeout;
        let dead: Vec<usize> = (0..self.servers.len())
            .filter(|&i| {
                let s = &self.servers[i];
                s.alive && now.saturating_duration_since(s.last_heard) > timeout
            })
            .collect();
        for &i in &dead {
            self.servers[i].alive = false;
            self.servers[i].pending_delete.clear();
            self.servers[i].deferred_delete.clear();
            self.copies.retain(|_, c| c.source != i && c.target != i);
            self.drop_replicas_of(i);
            tracing::warn!(server = %self.servers[i].id, addr = %self.servers[i].addr, "chunkserver silent too long: declared dead");
        }
        dead.into_iter().map(|i| self.servers[i].id).collect()
    }

    fn drop_replicas_of(&mut self, server: usize) {
        for state in self.chunks.values_mut() {
            state.replicas.retain(|r| r.server != server);
        }
    }

    /// Every chunkserver heard of since the master started; `chunks` counts the replicas the
    /// master lists on it (up to date, unlike the server's last heartbeat).
    pub fn servers(&self, now: Instant) -> Vec<ChunkserverInfo> {
        let mut replicas = vec![0u64; self.servers.len()];
        for state in self.chunks.values() {
            for r in &state.replicas {
                replicas[r.server] += 1;
            }
        }
        self.servers
            .iter()
            .zip(replicas)
            .map(|(s, replicas)| ChunkserverInfo {
                server: s.id,
                addr: s.addr,
                state: match (s.alive, s.draining) {
                    (false, _) => ServerState::Dead,
                    (true, false) => ServerState::Alive,
                    (true, true) if replicas > 0 => ServerState::Draining,
                    (true, true) => ServerState::Drained,
                },
                space: s.space,
                chunks: replicas,
                corrupt: s.corrupt.len() as u64,
                since_heartbeat_ms: now.saturating_duration_since(s.last_heard).as_millis() as u64,
            })
            .collect()
    }

    /// The live replicas of `chunk` at its current version.
    pub fn locations(&self, chunk: ChunkId) -> Vec<ReplicaLocation> {
        let Some(state) = self.chunks.get(&chunk) else {
            return Vec::new();
        };
        state
            .replicas
            .iter()
            .filter(|r| r.version >= state.version && self.servers[r.server].alive)
            .map(|r| ReplicaLocation {
                server: self.servers[r.server].id,
                addr: self.servers[r.server].addr,
            })
            .collect()
    }

    /// The chunk's current version and the file position it serves, if the namespace knows it.
    pub fn chunk(&self, chunk: ChunkId) -> Option<(FileId, u64, ChunkVersion)> {
        self.chunks
            .get(&chunk)
            .map(|s| (s.fid, s.offset, s.version))
    }

    fn location(&self, server: usize) -> ReplicaLocation {
        ReplicaLocation {
            server: self.servers[server].id,
            addr: self.servers[server].addr,
        }
    }

    /// Records that `server` holds `chunk` at `version` (it acknowledged a create or a version
    /// change).
    pub fn add_replica(
        &mut self,
        chunk: ChunkId,
        server: ServerId,
        version: ChunkVersion,
        length: u64,
    ) {
        let (Some(state), Some(&i)) = (self.chunks.get_mut(&chunk), self.by_id.get(&server)) else {
            return;
        };
        self.servers[i].deferred_delete.remove(&chunk);
        match state.replicas.iter_mut().find(|r| r.server == i) {
            Some(r) => {
                r.version = version;
                r.length = length;
                r.proven = true;
            }
            None => state.replicas.push(Replica {
                server: i,
                version,
                length,
                proven: true,
            }),
        }
    }

    /// Records that `server`'s replica of `chunk` moved to `version` (keeping its length).
    pub fn set_replica_version(&mut self, chunk: ChunkId, server: ServerId, version: ChunkVersion) {
        let (Some(state), Some(&i)) = (self.chunks.get_mut(&chunk), self.by_id.get(&server)) else {
            return;
        };
        self.servers[i].deferred_delete.remove(&chunk);
        match state.replicas.iter_mut().find(|r| r.server == i) {
            Some(r) => {
                r.version = version;
                r.proven = true;
            }
            None => state.replicas.push(Replica {
                server: i,
                version,
                length: 0,
                proven: true,
            }),
        }
    }

    /// Stops counting `server`'s replica of `chunk` and has it deleted only once the chunk is
    /// back at its replication factor without it (or no file holds the chunk any more).
    pub fn defer_delete(&mut self, server: ServerId, chunk: ChunkId) {
        if let Some(&i) = self.by_id.get(&server) {
            if let Some(state) = self.chunks.get_mut(&chunk) {
                state.replicas.retain(|r| r.server != i);
            }
            self.servers[i].deferred_delete.insert(chunk);
        }
    }

    /// The replicas kept back from deletion on `server`.
    pub fn deferred_deletes(&self, server: ServerId) -> Vec<ChunkId> {
        self.by_id.get(&server).map_or_else(Vec::new, |&i| {
            self.servers[i].deferred_delete.iter().copied().collect()
        })
    }

    /// Has `server` delete its replica of `chunk` (with its next heartbeat reply).
    pub fn queue_delete(&mut self, server: ServerId, chunk: ChunkId) {
        if let Some(&i) = self.by_id.get(&server) {
            self.servers[i].pending_delete.push(chunk);
        }
    }

    /// The valid lease on `chunk`, if any.
    pub fn current_lease(&self, chunk: ChunkId, now: Instant) -> Option<WriteLease> {
        let lease = self.leases.get(&chunk).filter(|l| l.expires > now)?;
        Some(self.lease_view(chunk, lease, now))
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

    /// Ends the lease on `chunk` (its replicas change).
    pub fn revoke(&mut self, chunk: ChunkId) {
        self.leases.remove(&chunk);
    }

    /// Replicas of `chunk` that count towards its replication factor (current, on a live server
    /// that is not draining), and those that can be read (current, on a live server).
    fn replica_counts(&self, chunk: ChunkId) -> (usize, usize) {
        let Some(state) = self.chunks.get(&chunk) else {
            return (0, 0);
        };
        let mut counts = (0, 0);
        for r in &state.replicas {
            let s = &self.servers[r.server];
            if s.alive && r.version >= state.version {
                counts.1 += 1;
                if !s.draining {
                    counts.0 += 1;
                }
            }
        }
        counts
    }

    /// The health of every chunk; see `MasterService::fsck`.
    pub fn fsck(&self, ns: &Namespace) -> FsckReport {
        let mut report = FsckReport {
            files: ns.counters().files,
            ..Default::default()
        };
        let mut problems = Vec::new();
        for (fid, offset, chunk, _) in ns.all_chunks() {
            report.chunks += 1;
            let replication = ns.stat_fid(fid).map_or(0, |a| a.replication);
            let (live, readable) = self.replica_counts(chunk);
            match live {
                _ if readable == 0 => report.missing += 1,
                n if n < replication as usize => report.under_replicated += 1,
                n if n > replication as usize => {
                    report.over_replicated += 1;
                    report.healthy += 1;
                }
                _ => report.healthy += 1,
            }
            if live < replication as usize && problems.len() < FSCK_PROBLEMS {
                problems.push((fid, offset, chunk, live as u8, replication));
            }
        }
        report.copies_in_flight = self.copies.len() as u64;
        report.safe_mode = self.safe_until.is_some();
        report.corrupt_replicas = self
            .servers
            .iter()
            .map(|s| {
                s.corrupt
                    .iter()
                    .filter(|c| self.chunks.contains_key(c))
                    .count() as u64
            })
            .sum();
        let wanted = problems.iter().map(|p| p.0).collect();
        let paths = ns.paths_of(&wanted);
        report.problems = problems
            .into_iter()
            .map(|(fid, offset, chunk, live, replication)| FsckProblem {
                path: paths.get(&fid).cloned().unwrap_or_else(|| fid.to_string()),
                offset,
                chunk,
                live,
                replication,
            })
            .collect();
        report
    }

    /// Whether the map is in safe mode at `now`; leaves it once enough chunks have a live
    /// replica or the time is up.
    pub fn in_safe_mode(&mut self, now: Instant) -> bool {
        let Some(until) = self.safe_until else {
            return false;
        };
        if now < until
            && self
                .safe_checked
                .is_some_and(|at| now.saturating_duration_since(at) < SAFE_MODE_RECHECK)
        {
            return true;
        }
        let reported = self
            .chunks
            .values()
            .filter(|s| {
                s.replicas
                    .iter()
                    .any(|r| self.servers[r.server].alive && r.version >= s.version)
            })
            .count();
        let total = self.chunks.len();
        let enough = total == 0 || reported as f64 >= self.repair.safe_mode_fraction * total as f64;
        if enough || now >= until {
            tracing::info!(
                reported,
                total,
                timed_out = !enough,
                "leaving safe mode: deletions and repairs may begin"
            );
            self.safe_until = None;
            return false;
        }
        self.safe_checked = Some(now);
        true
    }

    /// Marks a chunk whose lease is being granted (`true`) or done (`false`).
    pub fn set_granting(&mut self, chunk: ChunkId, granting: bool) {
        if granting {
            self.granting.insert(chunk);
        } else {
            self.granting.remove(&chunk);
        }
    }

    /// Finds a chunkserver by id, id prefix (hex) or address.
    fn find_server(&self, name: &str) -> KfsResult<usize> {
        let name = name.trim();
        let found: Vec<usize> = (0..self.servers.len())
            .filter(|&i| {
                let s = &self.servers[i];
                s.addr.to_string() == name
                    || (!name.is_empty() && s.id.to_string().starts_with(name))
            })
            .collect();
        match found.as_slice() {
            [i] => Ok(*i),
            [] => Err(KfsError::invalid_argument(format!(
                "no chunkserver '{name}'"
            ))),
            _ => Err(KfsError::invalid_argument(format!(
                "'{name}' names {} chunkservers",
                found.len()
            ))),
        }
    }

    /// Starts or cancels the draining of a chunkserver; replies with its state.
    pub fn set_draining(
        &mut self,
        name: &str,
        drain: bool,
        now: Instant,
    ) -> KfsResult<ChunkserverInfo> {
        let i = self.find_server(name)?;
        if self.servers[i].draining != drain {
            tracing::info!(server = %self.servers[i].id, drain, "decommissioning changed");
        }
        self.servers[i].draining = drain;
        Ok(self.servers(now).swap_remove(i))
    }

    /// A copy ended: the replica counts if the chunk is still at the copy's version.
    pub fn copy_done(&mut self, task: &CopyTask, result: Result<u64, CopyFailed>) {
        if self
            .copies
            .get(&task.chunk)
            .is_some_and(|c| c.id == task.id)
        {
            self.copies.remove(&task.chunk);
        }
        let target = self.by_id.get(&task.target.server).copied();
        match result {
            Ok(length) => {
                let current = self.chunks.get(&task.chunk).map(|s| s.version);
                let target_alive = target.is_some_and(|i| self.servers[i].alive);
                if current == Some(task.version) && target_alive {
                    let i = target.expect("alive, so known");
                    // A corrupt replica the target held was replaced by the copy, and a deletion
                    // queued for it earlier must not remove the new one.
                    self.servers[i].corrupt.remove(&task.chunk);
                    self.servers[i].pending_delete.retain(|c| *c != task.chunk);
                    self.add_replica(task.chunk, task.target.server, task.version, length);
                    tracing::info!(chunk = %task.chunk, target = %task.target.addr, "replica copied");
                } else if target_alive {
                    // Written, removed or moved on while the copy ran: it is not needed.
                    self.queue_delete(task.target.server, task.chunk);
                }
            }
            Err(e) => {
                if e.full {
                    // Another target is placed next round; this one waits for room.
                    self.mark_full(task.target.server);
                }
                tracing::warn!(chunk = %task.chunk, source = %task.source.addr, target = %task.target.addr, error = %e.why, "a repair copy failed; it will be tried again")
            }
        }
    }

    /// Repair copies in flight.
    pub fn copies_in_flight(&self) -> usize {
        self.copies.len()
    }

    /// Number of chunks the map holds.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Checks the map against the namespace and its own rules; the error says what broke.
    pub fn check_invariants(&self, ns: &Namespace) -> Result<(), String> {
        let mut seen = 0;
        for (fid, offset, id, version) in ns.all_chunks() {
            seen += 1;
            let Some(state) = self.chunks.get(&id) else {
                return Err(format!("{id} of {fid} is missing from the chunk map"));
            };
            if (state.fid, state.offset, state.version) != (fid, offset, version) {
                return Err(format!(
                    "{id}: map says {:?}, namespace says {:?}",
                    (state.fid, state.offset, state.version),
                    (fid, offset, version)
                ));
            }
            for (n, r) in state.replicas.iter().enumerate() {
                if state.replicas[..n].iter().any(|o| o.server == r.server) {
                    return Err(format!(
                        "{id} lists server {} twice",
                        self.servers[r.server].id
                    ));
                }
                let s = &self.servers[r.server];
                if !s.alive || r.version < state.version || s.corrupt.contains(&id) {
                    return Err(format!(
                        "{id} lists a replica on {} that must not count",
                        s.id
                    ));
                }
            }
        }
        if seen != self.chunks.len() {
            return Err(format!(
                "the chunk map holds {} chunks, the namespace {seen}",
                self.chunks.len()
            ));
        }
        // One lease per chunk (the map's key), only on a chunk that exists, at its version.
        for (id, lease) in &self.leases {
            let Some(state) = self.chunks.get(id) else {
                return Err(format!("a lease on {id}, which no file holds"));
            };
            if lease.version > state.version {
                return Err(format!(
                    "{id}: lease at {}, the chunk at {}",
                    lease.version, state.version
                ));
            }
        }
        for (id, copy) in &self.copies {
            if copy.source >= self.servers.len() || copy.target >= self.servers.len() {
                return Err(format!("a copy of {id} between unknown servers"));
            }
        }
        Ok(())
    }

    /// The replica lengths known for `chunk` (for consistency checks).
    pub fn replica_lengths(&self, chunk: ChunkId) -> Vec<u64> {
        self.chunks
            .get(&chunk)
            .map(|s| s.replicas.iter().map(|r| r.length).collect())
            .unwrap_or_default()
    }
}

mod placement;
mod proof;
mod repair;
pub use proof::{DigestAnswer, DigestFailure, ProofTask};
pub use repair::{RepairRound, RoundHealth};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod time_tests;
