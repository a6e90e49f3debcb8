//! Where every chunk is: the master's volatile map of chunks, replicas and chunkservers, and the
//! write leases on them.
//!
//! Nothing here is persisted. At start the map holds every chunk the namespace references, with no
//! replicas; chunkservers' `hello` reports fill in the replicas, heartbeats keep them alive, and a
//! server silent longer than the timeout is declared dead and its replicas dropped. Applied ops
//! keep the map in step with the namespace (new chunks, chunks freed by removes and truncates).
//!
//! This is a synchronous state machine: time comes in as an argument, so tests drive it without
//! a clock. It never imports the log thread: the committer tells it of applied ops through its
//! `Observer` (`server/mod.rs`), and the lease desk logs through the narrow [`leases::OpLog`].
//!
//! One room per job; this file holds the map's types, its constructors and its invariant check:
//! - `registry.rs`: chunkservers: hello, heartbeats, expiry, the servers' listing, draining;
//! - `replicas.rs`: which server holds which chunk: applied ops, acknowledged replicas, queued
//!   and kept-back deletions;
//! - `placement.rs`: where new replicas go;
//! - `leases.rs`: the lease table and the lease desk ([`leases::Leases`]), with
//!   `leases/versions.rs`: new chunks and new versions, in step with chunkservers;
//! - `repair.rs`: repair rounds (copies, trims, rebalancing) and copies ending; `proof.rs`:
//!   digests before a trim;
//! - `safe_mode.rs`: no deletion and no repair after a restart until chunks have reported;
//! - `fsck.rs`: the health of every chunk.
//!
//! Invariants (checked by [`ChunkMap::check_invariants`]):
//! - the map's chunks are exactly the namespace's, with the namespace's versions;
//! - a replica is listed only for a server that is alive and reported it at a version not below
//!   the chunk's, and never for a replica the server reported corrupt;
//! - a chunk the namespace no longer references is deleted from every server that held it (through
//!   heartbeat replies); a replica the master does not know, or at a stale version, is deleted when
//!   its server says hello;
//! - at most one lease per chunk, only on a chunk the map holds, never above its version.

use crate::namespace::Namespace;
use kfs_common::proto::cluster::SpaceReport;
use kfs_common::proto::master::ReplicaLocation;
use kfs_common::{ChunkId, ChunkVersion, FileId, ServerId};
use leases::Lease;
use safe_mode::SafeMode;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    /// The lease table (`leases.rs`): at most one lease per chunk.
    leases: HashMap<ChunkId, Lease>,
    /// Chunks whose lease is being granted (their replicas are changing version): repair leaves
    /// them alone.
    granting: HashSet<ChunkId>,
    /// Copies in flight to repair replication.
    copies: HashMap<ChunkId, Copy>,
    /// Chunks whose replicas are being asked for digests before a trim (`proof.rs`).
    proofs: HashSet<ChunkId>,
    next_copy: u64,
    /// Safe mode's state (`safe_mode.rs`).
    safe_mode: SafeMode,
    repair: RepairConfig,
    /// Where new replicas go is random (`placement.rs`), seeded by the session base: random per
    /// master run, fixed in tests that pass a fixed one.
    placement_rng: std::sync::Mutex<rand::rngs::SmallRng>,
    /// The servers an operator is draining (kept durably by the master: `DECOMMISSIONED`); a
    /// server marked here drains from its first hello on.
    drain_marks: BTreeSet<ServerId>,
}

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
    /// The chunk is a volume of small files (copied with `replicate_volume`).
    pub volume: bool,
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
            safe_mode: SafeMode::new(safe_mode_since.map(|since| since + repair.safe_mode_max)),
            repair,
            placement_rng: std::sync::Mutex::new(rand::SeedableRng::seed_from_u64(session_base)),
            drain_marks: BTreeSet::new(),
        }
    }

    pub fn timing(&self) -> ChunkTiming {
        self.timing
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
}

mod fsck;
pub mod leases;
mod placement;
mod proof;
mod registry;
mod repair;
mod replicas;
mod safe_mode;
pub use proof::{DigestAnswer, DigestFailure, ProofTask};
pub use repair::{RepairRound, RoundHealth};

#[cfg(test)]
mod repair_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod time_tests;
