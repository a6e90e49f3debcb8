//! Where new replicas go: live chunkservers that are not being drained and have room.
//!
//! A server has room while its last report (hello or heartbeat) says it can take more
//! (`SpaceReport::available` is what is free above the server's reserve, within its
//! `capacity_bytes`), and no create or copy it was asked for since was refused for want of
//! space: such a refusal counts it full until its next report. Placement is random, weighted by
//! free space, so emptier servers get more and every server with room gets some; the choices
//! follow from the map's seed (its session base), so a test with a fixed seed sees fixed ones.
//!
//! Invariant: a server without room is never chosen, so a full server is not asked again and
//! again for replicas it cannot take (the healer's copies included).

use super::ChunkMap;
use kfs_common::ServerId;
use kfs_common::proto::master::ReplicaLocation;
use rand::RngExt;

impl ChunkMap {
    /// Whether server `i` may take new replicas.
    fn takes_replicas(&self, i: usize) -> bool {
        let s = &self.servers[i];
        s.alive && !s.draining && s.space.available > 0
    }

    /// Whether server `i` has room for new replicas (alive or not).
    pub(super) fn has_room(&self, i: usize) -> bool {
        self.servers[i].space.available > 0
    }

    /// Chooses `count` distinct servers with room (not in `exclude`) for new replicas; see the
    /// module docs.
    pub fn place(&self, count: usize, exclude: &[ServerId]) -> Vec<ReplicaLocation> {
        let mut candidates: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.takes_replicas(i) && !exclude.contains(&self.servers[i].id))
            .collect();
        let mut chosen = Vec::new();
        let mut rng = self.placement_rng.lock().unwrap_or_else(|p| p.into_inner());
        while chosen.len() < count && !candidates.is_empty() {
            // Weight by free space in MiB, at least 1 so nearly full servers can still be picked.
            let weight = |i: usize| (self.servers[i].space.available >> 20).max(1);
            let total: u64 = candidates.iter().map(|&i| weight(i)).sum();
            let mut pick = rng.random_range(0..total);
            let at = candidates
                .iter()
                .position(|&i| {
                    let w = weight(i);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .expect("the pick falls within the total weight");
            let i = candidates.swap_remove(at);
            chosen.push(self.location(i));
        }
        chosen
    }

    /// Counts `server` full until its next report: it refused a replica for want of space.
    pub fn mark_full(&mut self, server: ServerId) {
        if let Some(&i) = self.by_id.get(&server) {
            if self.servers[i].space.available > 0 {
                tracing::warn!(%server, addr = %self.servers[i].addr, "chunkserver full: no new replicas go there until it reports room");
            }
            self.servers[i].space.available = 0;
        }
    }

    /// The live servers, not being drained, that have no room; and how many live servers not
    /// being drained there are.
    pub fn full_servers(&self) -> (Vec<ReplicaLocation>, usize) {
        let serving: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.servers[i].alive && !self.servers[i].draining)
            .collect();
        let full = serving
            .iter()
            .filter(|&&i| !self.has_room(i))
            .map(|&i| self.location(i))
            .collect();
        (full, serving.len())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ChunkMap, ChunkTiming};
    use super::*;
    use crate::namespace::Namespace;
    use kfs_common::proto::PROTOCOL_VERSION;
    use kfs_common::proto::cluster::{HelloRequest, SpaceReport};
    use std::time::{Duration, Instant};

    #[test]
    fn only_servers_with_room_get_replicas() {
        let timing = ChunkTiming {
            heartbeat_interval: Duration::from_secs(1),
            server_timeout: Duration::from_secs(5),
        };
        let mut map = ChunkMap::new(&Namespace::new(1), timing, 1);
        let now = Instant::now();
        for (id, available) in [(1u128, 0u64), (2, 10 << 20), (3, 1)] {
            map.hello(
                HelloRequest {
                    protocol: PROTOCOL_VERSION,
                    server: ServerId(id),
                    addr: format!("127.0.0.1:{}", 4000 + id).parse().unwrap(),
                    space: SpaceReport {
                        capacity: 100 << 20,
                        available,
                        used: 0,
                    },
                    chunks: Vec::new(),
                    corrupt: Vec::new(),
                },
                now,
            )
            .unwrap();
        }
        for _ in 0..50 {
            let placed: Vec<ServerId> = map.place(3, &[]).iter().map(|r| r.server).collect();
            assert_eq!(placed.len(), 2, "the full server is never chosen");
            assert!(!placed.contains(&ServerId(1)));
        }
        map.mark_full(ServerId(3));
        assert_eq!(
            map.place(3, &[])
                .iter()
                .map(|r| r.server)
                .collect::<Vec<_>>(),
            vec![ServerId(2)]
        );
        let (full, serving) = map.full_servers();
        assert_eq!(serving, 3);
        assert_eq!(
            full.iter().map(|r| r.addr.to_string()).collect::<Vec<_>>(),
            ["127.0.0.1:4001", "127.0.0.1:4003"]
        );
    }
}
