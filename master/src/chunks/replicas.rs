//! The replicas of chunks: which live server holds which chunk at which version, kept in step
//! with the namespace's applied ops and with what chunkservers acknowledge; deletions queued for
//! the next heartbeat reply, and deletions kept back until a chunk is whole again.
//!
//! Invariants:
//! - a chunk freed by an applied op leaves the map with its lease, and every server that held a
//!   replica of it, corrupt or not, is told to delete it;
//! - a replica the master saw made or moved to its version ([`ChunkMap::add_replica`],
//!   [`ChunkMap::set_replica_version`]) is proven and no longer kept back from deletion;
//! - a replica kept back ([`ChunkMap::defer_delete`]) is not listed and does not count; it is
//!   deleted only once its chunk is back at its replication factor without it
//!   ([`ChunkMap::release_deferred`], `repair.rs`);
//! - [`ChunkMap::locations`] lists only replicas at the chunk's current version on live servers.

use super::{ChunkMap, ChunkState, Replica};
use crate::namespace::op::{Applied, Op};
use kfs_common::proto::master::ReplicaLocation;
use kfs_common::{ChunkId, ChunkVersion, FileId, KfsResult, ServerId};

impl ChunkMap {
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
            Op::CreateVolume {
                chunk,
                version,
                replication,
            } => {
                self.chunks.insert(
                    *chunk,
                    ChunkState {
                        fid: crate::namespace::record::volume_set(*replication),
                        offset: chunk.0,
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

    /// The highest version any replica of `chunk` is known at (one may be ahead of the chunk's
    /// logged version: a move whose log never happened).
    pub fn highest_version(&self, chunk: ChunkId) -> Option<ChunkVersion> {
        let state = self.chunks.get(&chunk)?;
        state
            .replicas
            .iter()
            .map(|r| r.version)
            .chain([state.version])
            .max()
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

    /// Replicas of `chunk` that count towards its replication factor (current, on a live server
    /// that is not draining), and those that can be read (current, on a live server).
    pub(super) fn replica_counts(&self, chunk: ChunkId) -> (usize, usize) {
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

    /// The replica lengths known for `chunk` (for consistency checks).
    pub fn replica_lengths(&self, chunk: ChunkId) -> Vec<u64> {
        self.chunks
            .get(&chunk)
            .map(|s| s.replicas.iter().map(|r| r.length).collect())
            .unwrap_or_default()
    }
}
