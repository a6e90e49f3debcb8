//! Repairing replication: which copies to make and which replicas to remove, one round at a time,
//! and what a copy's end means ([`ChunkMap::copy_done`]).
//!
//! Each round looks at every chunk that is not being written (no valid lease, no lease being
//! granted, no copy in flight), and counts its *live* replicas: on a live, not-draining server,
//! at the chunk's current version, not reported corrupt. Then:
//! - fewer live replicas than the file's replication factor: a copy from a readable replica to a
//!   chunkserver that holds none (placement as for new chunks), the chunks with the fewest live
//!   replicas first, within the per-server and total limits of copies in flight;
//! - as many or more: replicas beyond the factor are removed (draining servers' first, then
//!   unproven ones, then the fullest servers'; only while the factor stays proven, or digests are
//!   asked first: `proof.rs`), and so are corrupt and stale replicas of the chunk;
//! - when there is no repair to do, one replica moves from the fullest server to the emptiest if
//!   their space use differs by more than the rebalance threshold (a copy now; the removal from the
//!   fullest follows in a later round, as an over-replicated chunk).
//!
//! Invariants: nothing is removed from a chunk unless it keeps at least its replication factor
//! of live replicas (or, for a corrupt or stale replica, at least one); a replica kept back
//! from deletion (stale after a version bump, reported failed by a writer) is deleted only once its
//! chunk has its factor of live replicas without it ([`ChunkMap::release_deferred`]); nothing is removed or copied
//! in safe mode; a copy counts only if the chunk is still at the version it was copied at.

use super::fsck::{Health, Under};
use super::proof::ProofTask;
use super::{ChunkMap, Copy, CopyFailed, CopyTask};
use crate::namespace::Namespace;
use kfs_common::{ChunkId, FileId};
use std::time::Instant;

/// One repair round in progress: the scan's position and the copies it found wanted. A round is
/// scanned in slices ([`ChunkMap::scan_repairs`]) so the chunk map's lock is never held for a walk
/// of every chunk, then its copies start at once ([`ChunkMap::start_repairs`]).
#[derive(Debug)]
pub struct RepairRound {
    /// Where the next slice starts: `(file, offset)` in the namespace's chunk order.
    cursor: (FileId, u64),
    /// `(live replicas, chunk, replication factor)` of under-replicated chunks.
    wanted: Vec<(usize, ChunkId, usize)>,
    done: bool,
    /// What the scan found: chunks with fewer live replicas than their factor but one readable,
    /// and chunks with none readable. `None` when the round ended at once in safe mode.
    health: Option<RoundHealth>,
    /// Digests to ask before replicas beyond a factor can be trimmed (`proof.rs`).
    proofs: Vec<ProofTask>,
}

/// Replication health as one repair round found it, counted as `fsck` counts it
/// ([`ChunkMap::classify`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundHealth {
    pub under_replicated: u64,
    pub missing: u64,
    /// Under-replicated chunks whose repair waits for a lease to run out or a copy.
    pub waiting: u64,
    /// Under-replicated chunks with fewer live, undrained servers than their factor.
    pub short_of_servers: u64,
}

impl Default for RepairRound {
    fn default() -> Self {
        RepairRound {
            cursor: (FileId(0), 0),
            wanted: Vec::new(),
            done: false,
            health: Some(RoundHealth::default()),
            proofs: Vec::new(),
        }
    }
}

impl RepairRound {
    /// The proofs the round wants made (now recorded as in flight): the healer asks the
    /// digests and reports with [`ChunkMap::proof_done`].
    pub fn take_proofs(&mut self) -> Vec<ProofTask> {
        std::mem::take(&mut self.proofs)
    }

    pub fn new() -> RepairRound {
        RepairRound::default()
    }

    /// Whether every chunk has been examined.
    pub fn done(&self) -> bool {
        self.done
    }

    /// What the scan found so far (`None`: the master is in safe mode and did not look).
    pub fn health(&self) -> Option<RoundHealth> {
        self.health
    }
}

impl ChunkMap {
    /// Plans a whole repair round at once: returns the copies to start and the proofs to make
    /// (both now recorded as in flight), and queues the removals for the servers' next heartbeat
    /// replies.
    pub fn plan_repairs(
        &mut self,
        ns: &Namespace,
        now: Instant,
    ) -> (Vec<CopyTask>, Vec<ProofTask>) {
        let mut round = RepairRound::new();
        while !round.done() {
            self.scan_repairs(ns, now, &mut round, usize::MAX);
        }
        let proofs = round.take_proofs();
        (self.start_repairs(now, round), proofs)
    }

    /// Examines up to `budget` chunks from where `round` stopped: queues the removals they need
    /// and remembers the copies they want. In safe mode the round ends at once, empty.
    pub fn scan_repairs(
        &mut self,
        ns: &Namespace,
        now: Instant,
        round: &mut RepairRound,
        budget: usize,
    ) {
        if self.in_safe_mode(now) {
            round.wanted.clear();
            round.done = true;
            round.health = None;
            return;
        }
        // Once a round, at its first slice: kept-back replicas whose chunks are whole again go.
        if round.cursor == (FileId(0), 0) {
            self.release_deferred(ns);
        }
        let mut removals: Vec<(usize, ChunkId)> = Vec::new();
        let mut proofs_wanted: Vec<(ChunkId, Vec<usize>)> = Vec::new();
        let any_corrupt = self.servers.iter().any(|s| !s.corrupt.is_empty());
        let live_servers = self.live_servers();
        // The replication factor of the file seen last: a file's chunks come together.
        let mut factor_of = (FileId(0), 0usize);
        round.done = true;
        for (seen, (fid, offset, chunk, _)) in
            ns.chunks_from(round.cursor.0, round.cursor.1).enumerate()
        {
            if seen == budget {
                round.cursor = (fid, offset);
                round.done = false;
                break;
            }
            let Some(state) = self.chunks.get(&chunk) else {
                continue;
            };
            debug_assert_eq!(state.fid, fid);
            let factor = if factor_of.0 == state.fid {
                factor_of.1
            } else {
                let f = ns.replication_of(state.fid) as usize;
                factor_of = (state.fid, f);
                f
            };
            let current =
                |r: &super::Replica| self.servers[r.server].alive && r.version >= state.version;
            // The common case, cheaply: exactly the factor, all current and counting.
            if state.replicas.len() == factor
                && state
                    .replicas
                    .iter()
                    .all(|r| current(r) && !self.servers[r.server].draining)
                && !(any_corrupt && self.servers.iter().any(|s| s.corrupt.contains(&chunk)))
            {
                continue;
            }
            // Counted as fsck counts, whether or not it can be repaired now.
            if let Some(health) = &mut round.health {
                match self.classify(chunk, factor, live_servers, now).0 {
                    Health::Missing => health.missing += 1,
                    Health::Under(why) => {
                        health.under_replicated += 1;
                        match why {
                            Under::Waiting => health.waiting += 1,
                            Under::ShortOfServers => health.short_of_servers += 1,
                            Under::Repairable => {}
                        }
                    }
                    Health::Healthy | Health::Over => {}
                }
            }
            if !self.repairable(chunk, now) {
                continue;
            }
            let live: Vec<usize> = state
                .replicas
                .iter()
                .filter(|r| current(r) && !self.servers[r.server].draining)
                .map(|r| r.server)
                .collect();
            let readable = state.replicas.iter().filter(|r| current(r)).count();
            if live.len() < factor {
                if readable > 0 {
                    round.wanted.push((live.len(), chunk, factor));
                }
                continue;
            }
            // Enough live replicas: whatever is beyond them can go.
            let mut extra: Vec<usize> = state
                .replicas
                .iter()
                .filter(|r| !current(r) || self.servers[r.server].draining)
                .map(|r| r.server)
                .filter(|&i| self.servers[i].alive)
                .collect();
            // Beyond the factor (`proof.rs`): with the factor proven, unproven replicas go
            // first, then the fullest servers'; with fewer proven, nothing beyond the factor goes
            // until digests prove enough (fake hellos claiming a chunk never trim its real
            // replicas away).
            let spare = live.len() - factor;
            if spare > 0 {
                let proven = |i: usize| state.replicas.iter().any(|r| r.server == i && r.proven);
                let proven_count = live.iter().filter(|&&i| proven(i)).count();
                if proven_count >= factor {
                    let mut by_trust = live.clone();
                    by_trust.sort_by(|&a, &b| {
                        proven(a)
                            .cmp(&proven(b))
                            .then(self.use_of(b).total_cmp(&self.use_of(a)))
                    });
                    extra.extend(by_trust.into_iter().take(spare));
                } else {
                    proofs_wanted.push((chunk, live.clone()));
                }
            }
            for i in extra {
                removals.push((i, chunk));
            }
            if any_corrupt {
                for (i, s) in self.servers.iter().enumerate() {
                    if s.corrupt.contains(&chunk) && s.alive {
                        removals.push((i, chunk));
                    }
                }
            }
        }
        for (chunk, servers) in proofs_wanted {
            round.proofs.extend(self.want_proof(chunk, &servers));
        }
        for (i, chunk) in removals {
            tracing::debug!(%chunk, server = %self.servers[i].id, "removing a replica that is not needed");
            if let Some(state) = self.chunks.get_mut(&chunk) {
                state.replicas.retain(|r| r.server != i);
            }
            self.servers[i].corrupt.remove(&chunk);
            self.servers[i].pending_delete.push(chunk);
        }
    }

    /// Queues for deletion the kept-back replicas ([`ChunkMap::defer_delete`]) whose chunk is back
    /// at its replication factor of live replicas, or no longer held by any file.
    pub fn release_deferred(&mut self, ns: &Namespace) {
        for i in 0..self.servers.len() {
            if self.servers[i].deferred_delete.is_empty() || !self.servers[i].alive {
                continue;
            }
            let deferred = std::mem::take(&mut self.servers[i].deferred_delete);
            for chunk in deferred {
                let release = match self.chunks.get(&chunk) {
                    None => true,
                    Some(state) => {
                        let factor = ns.replication_of(state.fid) as usize;
                        let live = state
                            .replicas
                            .iter()
                            .filter(|r| {
                                let s = &self.servers[r.server];
                                r.server != i
                                    && s.alive
                                    && !s.draining
                                    && r.version >= state.version
                                    && !s.corrupt.contains(&chunk)
                            })
                            .count();
                        live >= factor
                    }
                };
                if release {
                    tracing::debug!(%chunk, server = %self.servers[i].id, "a kept-back replica is no longer needed");
                    self.servers[i].pending_delete.push(chunk);
                } else {
                    self.servers[i].deferred_delete.insert(chunk);
                }
            }
        }
    }

    /// Starts the copies `round` found wanted, fewest live replicas first, within the limits of
    /// copies in flight; with none wanted and none in flight, one rebalancing move if the servers'
    /// use differs enough. Returns the copies to make (now recorded as in flight).
    pub fn start_repairs(&mut self, now: Instant, mut round: RepairRound) -> Vec<CopyTask> {
        if self.in_safe_mode(now) {
            return Vec::new();
        }
        let mut busy = vec![0usize; self.servers.len()];
        for c in self.copies.values() {
            busy[c.source] += 1;
            busy[c.target] += 1;
        }
        round.wanted.sort();
        let mut tasks = Vec::new();
        for (_, chunk, factor) in round.wanted {
            if self.copies.len() >= self.repair.copies_total {
                break;
            }
            // The chunk may have changed since it was scanned.
            if self.replica_counts(chunk).0 >= factor || !self.repairable(chunk, now) {
                continue;
            }
            if let Some(task) = self.start_copy(chunk, None, &mut busy) {
                tasks.push(task);
            }
        }
        if tasks.is_empty() && self.copies.is_empty() {
            tasks.extend(self.plan_rebalance(&mut busy, now));
        }
        tasks
    }

    /// Whether repair may touch `chunk` now: no copy of it in flight, no lease on it being
    /// granted or valid.
    pub(super) fn repairable(&self, chunk: ChunkId, now: Instant) -> bool {
        !self.copies.contains_key(&chunk)
            && !self.granting.contains(&chunk)
            && self
                .leases
                .get(&chunk)
                .is_none_or(|l| l.writes_may_land_until() <= now)
    }

    /// Space use of a server: used / capacity.
    fn use_of(&self, i: usize) -> f64 {
        let s = &self.servers[i].space;
        if s.capacity == 0 {
            0.0
        } else {
            s.used as f64 / s.capacity as f64
        }
    }

    /// Records and returns a copy of `chunk` to `target` (or to a placed server).
    fn start_copy(
        &mut self,
        chunk: ChunkId,
        target: Option<usize>,
        busy: &mut [usize],
    ) -> Option<CopyTask> {
        let limit = self.repair.copies_per_server;
        let state = self.chunks.get(&chunk)?;
        let version = state.version;
        let source = state
            .replicas
            .iter()
            .filter(|r| {
                self.servers[r.server].alive && r.version == version && busy[r.server] < limit
            })
            .min_by_key(|r| (self.servers[r.server].draining, busy[r.server]))?
            .server;
        let holders: Vec<kfs_common::ServerId> = state
            .replicas
            .iter()
            .map(|r| self.servers[r.server].id)
            // A server with a deletion of the chunk still queued must not receive a copy the
            // deletion would then remove.
            .chain(
                self.servers
                    .iter()
                    .filter(|s| s.pending_delete.contains(&chunk))
                    .map(|s| s.id),
            )
            .chain(
                (0..self.servers.len())
                    .filter(|&i| busy[i] >= limit)
                    .map(|i| self.servers[i].id),
            )
            .collect();
        let target = match target {
            Some(t) => t,
            None => {
                let placed = self.place(1, &holders).pop()?;
                self.by_id[&placed.server]
            }
        };
        busy[source] += 1;
        busy[target] += 1;
        let id = self.next_copy;
        self.next_copy += 1;
        self.copies.insert(chunk, Copy { id, source, target });
        let volume = self
            .chunks
            .get(&chunk)
            .is_some_and(|s| crate::namespace::record::volume_set_replication(s.fid).is_some());
        Some(CopyTask {
            id,
            chunk,
            version,
            source: self.location(source),
            target: self.location(target),
            volume,
        })
    }

    /// One move from the fullest live server to the emptiest, if their use differs enough.
    fn plan_rebalance(&mut self, busy: &mut [usize], now: Instant) -> Option<CopyTask> {
        let candidates: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.servers[i].alive && !self.servers[i].draining)
            .collect();
        let fullest = *candidates
            .iter()
            .max_by(|&&a, &&b| self.use_of(a).total_cmp(&self.use_of(b)))?;
        let emptiest = *candidates
            .iter()
            .filter(|&&i| self.has_room(i))
            .min_by(|&&a, &&b| self.use_of(a).total_cmp(&self.use_of(b)))?;
        if self.use_of(fullest) - self.use_of(emptiest) <= self.repair.rebalance_threshold {
            return None;
        }
        let chunk = self
            .chunks
            .iter()
            .find(|(id, s)| {
                s.replicas
                    .iter()
                    .any(|r| r.server == fullest && r.version >= s.version)
                    && !s.replicas.iter().any(|r| r.server == emptiest)
                    && !self.servers[emptiest].pending_delete.contains(id)
                    && self.repairable(**id, now)
            })
            .map(|(id, _)| *id)?;
        tracing::info!(%chunk, from = %self.servers[fullest].addr, to = %self.servers[emptiest].addr, "rebalancing: moving a replica");
        self.start_copy(chunk, Some(emptiest), busy)
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
}
