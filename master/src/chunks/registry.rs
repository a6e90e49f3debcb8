//! The registry of chunkservers: `hello` (a server and every replica it holds), heartbeats, the
//! expiry of silent servers, the listing of servers, and draining (decommissioning).
//!
//! A server is known by its index in the map's `servers` from its first hello until the master
//! stops: replicas, copies and leases name servers by that index, so a server is never removed,
//! only declared dead (and alive again at its next hello).
//!
//! Invariants:
//! - a heartbeat counts only from a live server in the session its last hello got; any other is
//!   told to say hello again (`Rehello`);
//! - a hello replaces what the master knew of the server: its replicas listed are those the hello
//!   reports (and those it acknowledges later), its deletions those the hello calls for;
//! - a server declared dead has no replica listed, and loses its queued and kept-back deletions
//!   and its copies in flight;
//! - a replica reported corrupt stops being listed at once;
//! - in safe mode neither hello nor heartbeat replies carry a deletion: they wait in the server's
//!   queue (`safe_mode.rs`).

use super::{ChunkMap, Replica, Server};
use kfs_common::proto::cluster::{HeartbeatReply, HeartbeatRequest, HelloReply, HelloRequest};
use kfs_common::proto::master::{ChunkserverInfo, ReplicaLocation, ServerState};
use kfs_common::proto::{OLDEST_CLUSTER_PROTOCOL, PROTOCOL_VERSION};
use kfs_common::{ChunkId, KfsError, KfsResult, ServerId};
use std::collections::BTreeSet;
use std::time::Instant;

impl ChunkMap {
    /// Registers a chunkserver and everything it holds; replies with its session and the
    /// replicas it must delete.
    pub fn hello(&mut self, req: HelloRequest, now: Instant) -> KfsResult<HelloReply> {
        if !(OLDEST_CLUSTER_PROTOCOL..=PROTOCOL_VERSION).contains(&req.protocol) {
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
                    draining: self.drain_marks.contains(&req.server),
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
        self.safe_mode.recount();
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

    /// Whether `server` is alive in `session` (its last hello's).
    pub fn in_session(&self, server: ServerId, session: u64) -> bool {
        self.by_id
            .get(&server)
            .is_some_and(|&i| self.servers[i].alive && self.servers[i].session == session)
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

    pub(super) fn drop_replicas_of(&mut self, server: usize) {
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

    pub(super) fn location(&self, server: usize) -> ReplicaLocation {
        ReplicaLocation {
            server: self.servers[server].id,
            addr: self.servers[server].addr,
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

    /// The servers marked for draining, as the master keeps them durably (at start-up, what
    /// it kept): each drains from its first hello on.
    pub fn set_drain_marks(&mut self, marks: BTreeSet<ServerId>) {
        for server in &mut self.servers {
            server.draining = marks.contains(&server.id);
        }
        self.drain_marks = marks;
    }

    /// The marks that [`ChunkMap::set_draining`] of the server `name` would leave (for the
    /// master to keep durably first), and that server's id.
    pub fn drain_marks_after(
        &self,
        name: &str,
        drain: bool,
    ) -> KfsResult<(ServerId, BTreeSet<ServerId>)> {
        let id = self.servers[self.find_server(name)?].id;
        let mut marks = self.drain_marks.clone();
        if drain {
            marks.insert(id);
        } else {
            marks.remove(&id);
        }
        Ok((id, marks))
    }

    /// Starts or cancels the draining of a chunkserver (id, id prefix or address); replies
    /// with its state.
    pub fn set_draining(
        &mut self,
        name: &str,
        drain: bool,
        now: Instant,
    ) -> KfsResult<ChunkserverInfo> {
        let id = self.servers[self.find_server(name)?].id;
        self.set_draining_id(id, drain, now)
    }

    /// Starts or cancels the draining of the chunkserver `id`; replies with its state.
    pub fn set_draining_id(
        &mut self,
        id: ServerId,
        drain: bool,
        now: Instant,
    ) -> KfsResult<ChunkserverInfo> {
        let i = *self
            .by_id
            .get(&id)
            .ok_or_else(|| KfsError::invalid_argument(format!("no chunkserver '{id}'")))?;
        if self.servers[i].draining != drain {
            tracing::info!(server = %id, drain, "decommissioning changed");
        }
        self.servers[i].draining = drain;
        if drain {
            self.drain_marks.insert(id);
        } else {
            self.drain_marks.remove(&id);
        }
        Ok(self.servers(now).swap_remove(i))
    }
}
