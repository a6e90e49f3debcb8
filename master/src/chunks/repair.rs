//! Repairing replication: which copies to make and which replicas to remove, one round at a time.
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

use super::proof::ProofTask;
use super::{ChunkMap, Copy, CopyTask};
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

/// Replication health as one repair round found it (chunks being written are not examined).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundHealth {
    pub under_replicated: u64,
    pub missing: u64,
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
                let f = ns.stat_fid(state.fid).map_or(0, |a| a.replication) as usize;
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
                if let Some(health) = &mut round.health {
                    if readable > 0 {
                        health.under_replicated += 1;
                    } else {
                        health.missing += 1;
                    }
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
                        let factor = ns.stat_fid(state.fid).map_or(0, |a| a.replication) as usize;
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
    fn repairable(&self, chunk: ChunkId, now: Instant) -> bool {
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
        Some(CopyTask {
            id,
            chunk,
            version,
            source: self.location(source),
            target: self.location(target),
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
}

#[cfg(test)]
mod tests {
    use super::super::{ChunkTiming, RepairConfig};
    use super::*;
    use crate::namespace::op::Op;
    use kfs_common::proto::PROTOCOL_VERSION;
    use kfs_common::proto::cluster::{ChunkReport, HelloRequest, SpaceReport};
    use kfs_common::{ChunkVersion, FileId, ServerId};
    use std::time::Duration;

    const T: ChunkTiming = ChunkTiming {
        heartbeat_interval: Duration::from_secs(1),
        server_timeout: Duration::from_secs(5),
    };

    /// A namespace with one file (replication `r`) of `chunks` chunks at version 1.
    fn ns(r: u8, chunks: u64) -> Namespace {
        let mut ns = Namespace::new(1);
        ns.apply(&Op::Create {
            path: "/f".into(),
            exclusive: true,
            replication: r,
            replication_given: true,
            mode: 0o644,
            fid: FileId(2),
            time: 1,
        })
        .unwrap();
        for i in 0..chunks {
            ns.apply(&Op::AllocateChunk {
                fid: FileId(2),
                offset: i << 20,
                chunk: ChunkId(10 + i),
                version: ChunkVersion(1),
            })
            .unwrap();
        }
        ns
    }

    fn hello(map: &mut ChunkMap, server: u128, chunks: &[u64], used: u64) {
        map.hello(
            HelloRequest {
                protocol: PROTOCOL_VERSION,
                server: ServerId(server),
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 9000 + server as u16)),
                space: SpaceReport {
                    capacity: 1000,
                    available: 1000 - used,
                    used,
                },
                chunks: chunks
                    .iter()
                    .map(|c| ChunkReport {
                        chunk: ChunkId(*c),
                        version: ChunkVersion(1),
                        length: 1,
                    })
                    .collect(),
                corrupt: Vec::new(),
            },
            Instant::now(),
        )
        .unwrap();
    }

    #[test]
    fn copies_go_where_the_chunk_is_not_fewest_replicas_first() {
        let ns = ns(3, 2);
        let mut map = ChunkMap::new(&ns, T, 0);
        hello(&mut map, 1, &[10, 11], 0);
        hello(&mut map, 2, &[11], 0);
        hello(&mut map, 3, &[], 0);
        hello(&mut map, 4, &[], 0);
        let tasks = map.plan_repairs(&ns, Instant::now()).0;
        // Chunk 10 has one replica, 11 two: 10 goes first; each copy targets a server without it.
        assert_eq!(tasks[0].chunk, ChunkId(10));
        for t in &tasks {
            let holders = map.locations(t.chunk);
            assert!(
                !holders.iter().any(|h| h.server == t.target.server),
                "{t:?}"
            );
        }
        assert!(
            map.plan_repairs(&ns, Instant::now())
                .0
                .iter()
                .all(|t| !tasks.iter().any(|u| u.chunk == t.chunk)),
            "no second copy while one is in flight"
        );
        for t in &tasks {
            map.copy_done(t, Ok(1));
        }
        assert!(tasks.iter().all(|t| {
            map.locations(t.chunk)
                .iter()
                .any(|r| r.server == t.target.server)
        }));
    }

    #[test]
    fn extra_replicas_are_trimmed_from_the_fullest_server() {
        let ns = ns(2, 1);
        let mut map = ChunkMap::new(&ns, T, 0);
        hello(&mut map, 1, &[10], 100);
        hello(&mut map, 2, &[10], 900);
        hello(&mut map, 3, &[10], 500);
        // Heard of in hellos only: the replicas prove their data before any is trimmed.
        let (copies, proofs) = map.plan_repairs(&ns, Instant::now());
        assert!(copies.is_empty());
        assert_eq!(proofs.len(), 1);
        assert_eq!(map.locations(ChunkId(10)).len(), 3, "nothing trimmed yet");
        assert!(
            map.plan_repairs(&ns, Instant::now()).1.is_empty(),
            "one proof at a time"
        );
        let answers: Vec<_> = proofs[0]
            .replicas
            .iter()
            .map(|r| (r.server, Ok((1, 7))))
            .collect();
        map.proof_done(&proofs[0], &answers);
        assert!(map.plan_repairs(&ns, Instant::now()).0.is_empty());
        let left: Vec<ServerId> = map
            .locations(ChunkId(10))
            .iter()
            .map(|r| r.server)
            .collect();
        assert_eq!(left.len(), 2);
        assert!(
            !left.contains(&ServerId(2)),
            "the fullest server lost its replica"
        );
    }

    #[test]
    fn a_draining_server_is_copied_from_then_emptied() {
        let ns = ns(2, 1);
        let mut map = ChunkMap::new(&ns, T, 0);
        hello(&mut map, 1, &[10], 0);
        hello(&mut map, 2, &[10], 0);
        hello(&mut map, 3, &[], 0);
        let info = map
            .set_draining("127.0.0.1:9001", true, Instant::now())
            .unwrap();
        assert_eq!(info.state, kfs_common::proto::master::ServerState::Draining);
        let tasks = map.plan_repairs(&ns, Instant::now()).0;
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].target.server, ServerId(3));
        map.copy_done(&tasks[0], Ok(1));
        assert!(map.plan_repairs(&ns, Instant::now()).0.is_empty());
        let states: Vec<_> = map
            .servers(Instant::now())
            .into_iter()
            .map(|s| s.state)
            .collect();
        assert_eq!(states[0], kfs_common::proto::master::ServerState::Drained);
    }

    #[test]
    fn safe_mode_holds_everything_until_chunks_report() {
        let ns = ns(3, 2);
        let config = RepairConfig {
            safe_mode_max: Duration::from_secs(3600),
            ..Default::default()
        };
        let mut map = ChunkMap::with_repair(&ns, T, 0, config, Some(Instant::now()));
        hello(&mut map, 1, &[10, 99], 0);
        hello(&mut map, 2, &[], 0);
        assert!(
            map.in_safe_mode(Instant::now()),
            "chunk 11 has not reported"
        );
        assert!(map.plan_repairs(&ns, Instant::now()).0.is_empty());
        hello(&mut map, 3, &[11], 0);
        assert!(!map.in_safe_mode(Instant::now()));
        assert!(!map.plan_repairs(&ns, Instant::now()).0.is_empty());
    }

    #[test]
    fn unbalanced_servers_get_a_replica_moved() {
        let ns = ns(1, 3);
        let mut map = ChunkMap::new(&ns, T, 0);
        hello(&mut map, 1, &[10, 11, 12], 800);
        hello(&mut map, 2, &[], 100);
        let tasks = map.plan_repairs(&ns, Instant::now()).0;
        assert_eq!(tasks.len(), 1);
        assert_eq!(
            (tasks[0].source.server, tasks[0].target.server),
            (ServerId(1), ServerId(2))
        );
    }

    #[test]
    fn a_round_in_slices_finds_what_a_whole_round_finds() {
        let ns = ns(2, 10);
        let build = || {
            let mut map = ChunkMap::new(&ns, T, 0);
            hello(&mut map, 1, &[10, 11, 12, 13, 14, 15, 16, 17, 18, 19], 0);
            hello(&mut map, 2, &[10, 12, 14], 0);
            hello(&mut map, 3, &[], 0);
            hello(&mut map, 4, &[], 0);
            map
        };
        let mut whole = build();
        let mut expected: Vec<ChunkId> = whole
            .plan_repairs(&ns, Instant::now())
            .0
            .iter()
            .map(|t| t.chunk)
            .collect();
        let mut sliced = build();
        let mut round = RepairRound::new();
        let mut slices = 0;
        while !round.done() {
            sliced.scan_repairs(&ns, Instant::now(), &mut round, 3);
            slices += 1;
        }
        assert_eq!(slices, 4, "10 chunks in slices of 3");
        let mut got: Vec<ChunkId> = sliced
            .start_repairs(Instant::now(), round)
            .iter()
            .map(|t| t.chunk)
            .collect();
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        assert_eq!(
            got.len(),
            2,
            "seven chunks want a copy, all from server 1, which serves two at a time"
        );
    }

    /// Digests that fail or disagree trim nothing; a server that does not hold what it claimed
    /// leaves the map.
    #[test]
    fn claims_are_proven_by_digests_before_anything_is_trimmed() {
        use super::super::proof::DigestFailure;
        use kfs_common::KfsError;
        let ns = ns(2, 1);
        let mut map = ChunkMap::new(&ns, T, 0);
        for s in 1..=4 {
            hello(&mut map, s, &[10], 100 * s as u64);
        }
        let (_, proofs) = map.plan_repairs(&ns, Instant::now());
        // Disagreeing data: none proven, nothing trimmed, asked again next round.
        let answers: Vec<_> = proofs[0]
            .replicas
            .iter()
            .enumerate()
            .map(|(n, r)| (r.server, Ok((1, n as u32 % 2))))
            .collect();
        map.proof_done(&proofs[0], &answers);
        let (_, proofs) = map.plan_repairs(&ns, Instant::now());
        assert_eq!(map.locations(ChunkId(10)).len(), 4);
        // Server 4 does not hold it, server 3 does not answer; 1 and 2 agree.
        let answers: Vec<_> = proofs[0]
            .replicas
            .iter()
            .map(|r| {
                let answer = match r.server.0 {
                    4 => Err(DigestFailure::from_reply(KfsError::NoSuchChunk {
                        chunk: ChunkId(10),
                    })),
                    3 => Err(DigestFailure::Other("unreachable".into())),
                    _ => Ok((1, 7)),
                };
                (r.server, answer)
            })
            .collect();
        map.proof_done(&proofs[0], &answers);
        let left = |map: &ChunkMap| -> Vec<u128> {
            let mut l: Vec<u128> = map
                .locations(ChunkId(10))
                .iter()
                .map(|r| r.server.0)
                .collect();
            l.sort();
            l
        };
        assert_eq!(left(&map), vec![1, 2, 3], "the false claim left the map");
        // Two proven (the factor): the unproven one is the extra.
        assert!(map.plan_repairs(&ns, Instant::now()).1.is_empty());
        assert_eq!(left(&map), vec![1, 2]);
    }
}
