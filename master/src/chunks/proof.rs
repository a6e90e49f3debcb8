//! Proving replicas before trimming: nobody's claim alone removes a chunk's real replicas.
//!
//! A replica is *proven* when the master saw it made or moved to its version (a create, a
//! version move or a checked copy it asked for), or when its server answered `digest` (every
//! block read and verified) with the same length and crc32c as every other replica of the chunk
//! that answered. One only heard of in a `hello` is unproven.
//!
//! Trimming (`repair.rs`) keeps the chunk's factor of proven replicas: unproven extras go
//! first, and while fewer than the factor are proven nothing beyond the factor is trimmed;
//! instead the round asks every live replica for its digest ([`ProofTask`]). Then:
//! - replicas whose digests all agree are proven;
//! - a server that answers that it does not hold the replica at that version claimed it
//!   falsely: the replica leaves the map (nothing is deleted there);
//! - if answers disagree, nothing is proven (and so nothing trimmed): the master logs it and
//!   leaves the replicas for an operator, rather than guess which data is real;
//! - a server that does not answer stays unproven, and is asked again in a later round.
//!
//! Limit: a server that impersonates another, or relays a real server's digest, is not caught
//! here; authenticating servers is issue 19's.

use super::ChunkMap;
use kfs_common::proto::master::ReplicaLocation;
use kfs_common::{ChunkId, ChunkVersion, KfsError, ServerId};

/// Proofs in flight at most, over the cluster (each reads a whole chunk on every replica).
pub const PROOFS_IN_FLIGHT: usize = 16;

/// Digests to ask of a chunk's live replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofTask {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    pub replicas: Vec<ReplicaLocation>,
}

/// One replica's answer: `(length, crc32c)`, or why not.
pub type DigestAnswer = Result<(u64, u32), DigestFailure>;

/// Why a replica gave no digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestFailure {
    /// The server says it does not hold the replica at the version asked (its claim was false).
    NotHeld(KfsError),
    /// Anything else (unreachable, a timeout, damage it found): no conclusion.
    Other(String),
}

impl DigestFailure {
    /// What a server's answer means for its claim.
    pub fn from_reply(error: KfsError) -> DigestFailure {
        match error {
            // (A replica newer than the master's version is not a false claim.)
            KfsError::NoSuchChunk { .. } | KfsError::StaleVersion { .. }
                if !error.is_version_moved() =>
            {
                DigestFailure::NotHeld(error)
            }
            other => DigestFailure::Other(other.to_string()),
        }
    }
}

impl ChunkMap {
    /// Records that `chunk`'s replicas want a proof (called by the repair scan); returns the
    /// task, unless one is in flight already or too many are.
    pub(super) fn want_proof(&mut self, chunk: ChunkId, servers: &[usize]) -> Option<ProofTask> {
        if self.proofs.contains(&chunk) || self.proofs.len() >= PROOFS_IN_FLIGHT {
            return None;
        }
        let version = self.chunks.get(&chunk)?.version;
        self.proofs.insert(chunk);
        Some(ProofTask {
            chunk,
            version,
            replicas: servers.iter().map(|&i| self.location(i)).collect(),
        })
    }

    /// Proofs in flight.
    pub fn proofs_in_flight(&self) -> usize {
        self.proofs.len()
    }

    /// The digests of a proof came back; see the module docs.
    pub fn proof_done(&mut self, task: &ProofTask, answers: &[(ServerId, DigestAnswer)]) {
        self.proofs.remove(&task.chunk);
        let Some(state) = self.chunks.get(&task.chunk) else {
            return;
        };
        if state.version != task.version {
            // Written since: its replicas were proven or dropped by the version move.
            return;
        }
        let mut digests: Vec<(u64, u32)> = answers
            .iter()
            .filter_map(|(_, a)| a.as_ref().ok().copied())
            .collect();
        digests.sort();
        digests.dedup();
        let agree = digests.len() == 1;
        if digests.len() > 1 {
            tracing::error!(chunk = %task.chunk, version = %task.version, ?answers, "replicas of one chunk at one version hold different data; none is trimmed until an operator looks");
        }
        let known: Vec<(usize, ServerId, &DigestAnswer)> = answers
            .iter()
            .filter_map(|(server, a)| self.by_id.get(server).map(|&i| (i, *server, a)))
            .collect();
        let state = self.chunks.get_mut(&task.chunk).expect("looked up above");
        for (i, server, answer) in known {
            match answer {
                Ok(_) if agree => {
                    if let Some(r) = state.replicas.iter_mut().find(|r| r.server == i) {
                        r.proven = true;
                    }
                }
                Ok(_) => {}
                Err(DigestFailure::NotHeld(why)) => {
                    tracing::warn!(chunk = %task.chunk, %server, %why, "a server claimed a replica it does not hold; it leaves the map");
                    state.replicas.retain(|r| r.server != i);
                }
                Err(DigestFailure::Other(why)) => {
                    tracing::debug!(chunk = %task.chunk, %server, %why, "a replica gave no digest; it stays unproven");
                }
            }
        }
    }
}
