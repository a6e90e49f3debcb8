//! The volumes small files are appended to: at most one open volume per replication factor,
//! handed to every writer that asks, sealed for good once it is full (at the commit that fills
//! it: writers holding its lease then have their next commit refused and append elsewhere), its
//! lease lapsed, one of its servers is dead or draining, or a writer reports an append to it
//! failed.
//!
//! A volume's replicas must each hold every committed record at the same offset, so:
//! - a volume is appended to only under its lease (on all its replicas, the first the primary),
//!   extended each time a writer asks for the volume. Repair leaves a leased chunk alone
//!   (`repair.rs`), so no copy of a volume is made while appends may land; once the lease
//!   lapsed it is granted again only if no copy was started meanwhile and the replicas are still
//!   exactly the chain (`ChunkMap::keep_open`), else the volume is sealed, and a sealed volume
//!   is copied like any chunk. A replica whose end moved (an append that failed unreported)
//!   refuses the next append (`AppendRefused`), and the writer has it sealed;
//! - a new volume starts with all its replicas or not at all;
//! - the master keeps open volumes only in memory: after a restart every volume is sealed.
//!
//! A sealed volume's records stay readable; its dead ones are reclaimed by compaction.

use super::{LeaseContext, Leases};
use kfs_common::proto::master::{ReplicaLocation, WriteLease};
use kfs_common::{ChunkId, KfsError, KfsResult};
use std::collections::HashMap;
use std::sync::Mutex;

/// The open volumes, by replication factor.
#[derive(Default)]
pub(super) struct OpenVolumes {
    open: Mutex<HashMap<u8, Open>>,
    /// Held while a new volume is made (one at a time).
    making: tokio::sync::Mutex<()>,
}

#[derive(Clone, Debug)]
struct Open {
    chunk: ChunkId,
    /// Its replicas, the primary first.
    chain: Vec<ReplicaLocation>,
    /// The furthest end of a record committed to it, as writers reported.
    end: u64,
}

impl Leases {
    /// A lease on the open volume for files of `replication` (made if there is none); see
    /// `MasterService::volume_lease`.
    pub async fn volume_lease(
        &self,
        cx: &LeaseContext<'_>,
        replication: u8,
    ) -> KfsResult<WriteLease> {
        if !kfs_common::proto::master::REPLICATION_RANGE.contains(&replication) {
            return Err(KfsError::invalid_argument(format!(
                "replication {replication} is not in {:?}",
                kfs_common::proto::master::REPLICATION_RANGE
            )));
        }
        if let Some(lease) = self.current_volume(cx, replication) {
            return Ok(lease);
        }
        let _making = self.volumes.making.lock().await;
        if let Some(lease) = self.current_volume(cx, replication) {
            return Ok(lease);
        }
        let lease = Box::pin(self.allocate_volume(cx, replication)).await?;
        self.volumes.open.lock().expect("open volumes lock").insert(
            replication,
            Open {
                chunk: lease.chunk,
                chain: std::iter::once(lease.primary.clone())
                    .chain(lease.secondaries.iter().cloned())
                    .collect(),
                end: 0,
            },
        );
        Ok(lease)
    }

    /// The open volume of `replication`, its lease extended, if it can still take appends;
    /// otherwise it is sealed.
    fn current_volume(&self, cx: &LeaseContext<'_>, replication: u8) -> Option<WriteLease> {
        let mut open = self.volumes.open.lock().expect("open volumes lock");
        let volume = open.get(&replication)?.clone();
        let mut chunks = cx.chunks.lock().expect("chunk map lock");
        let lease = (volume.end < self.config.chunk_size)
            .then(|| {
                chunks.keep_open(
                    volume.chunk,
                    &volume.chain,
                    self.config.clock.now(),
                    self.config.duration,
                )
            })
            .flatten();
        if lease.is_none() {
            // Sealed; its lease (if still valid) runs out on its own, so repair waits until no
            // writer holding it can append any more.
            open.remove(&replication);
            tracing::debug!(chunk = %volume.chunk, end = volume.end, "volume sealed (full, or its replicas changed)");
        }
        lease
    }

    /// Seals `chunk` (a writer's append to it failed): it is never handed out again, and no
    /// record is committed to it any more. Its lease runs out on its own (writers holding it
    /// may still append; repair waits for it, as for any lease).
    pub fn seal_volume(&self, chunk: ChunkId) {
        let mut open = self.volumes.open.lock().expect("open volumes lock");
        open.retain(|_, v| v.chunk != chunk);
        tracing::debug!(%chunk, "volume sealed at a writer's report");
    }

    /// Refuses a commit to `chunk` unless it is open with a valid lease now: a record is
    /// committed only while no copy of its volume can be in the making (`repair.rs` leaves
    /// leased chunks alone), so every replica a copy makes holds it. A writer refused appends
    /// its file elsewhere.
    pub fn check_committable(&self, cx: &LeaseContext<'_>, chunk: ChunkId) -> KfsResult<()> {
        let open = self.is_open_volume(chunk)
            && cx
                .chunks
                .lock()
                .expect("chunk map lock")
                .current_lease(chunk, self.config.clock.now())
                .is_some();
        if open {
            Ok(())
        } else {
            Err(KfsError::AppendRefused {
                chunk,
                reason: "the volume is sealed (or its lease ran out): nothing more is committed \
                         to it"
                    .into(),
            })
        }
    }

    /// Whether a volume is being made now (it may be empty and not yet open).
    pub fn making_volume(&self) -> bool {
        self.volumes.making.try_lock().is_err()
    }

    /// The open volumes (appends may land on them). Takes only the desk's own lock, so a caller
    /// may hold none of the others.
    pub fn open_volumes(&self) -> Vec<ChunkId> {
        self.volumes
            .open
            .lock()
            .expect("open volumes lock")
            .values()
            .map(|v| v.chunk)
            .collect()
    }

    /// Whether `chunk` is an open volume (appends may land on it).
    pub fn is_open_volume(&self, chunk: ChunkId) -> bool {
        self.volumes
            .open
            .lock()
            .expect("open volumes lock")
            .values()
            .any(|v| v.chunk == chunk)
    }

    /// A record ending at `end` was committed to `chunk`; once full, it is sealed (writers
    /// still holding its lease have their next commit to it refused, and append elsewhere).
    pub fn volume_committed(&self, chunk: ChunkId, end: u64) {
        let mut open = self.volumes.open.lock().expect("open volumes lock");
        let full = open
            .iter_mut()
            .find(|(_, v)| v.chunk == chunk)
            .and_then(|(r, v)| {
                v.end = v.end.max(end);
                (v.end >= self.config.chunk_size).then_some(*r)
            });
        if let Some(replication) = full {
            open.remove(&replication);
            tracing::debug!(%chunk, end, "volume sealed (full)");
        }
    }
}
