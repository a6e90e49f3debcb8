//! The write leases a file handle holds, one per chunk it writes.
//!
//! A write to a chunk goes out under the master's lease on it, which names the chunk's version
//! and its primary and secondaries. A lease is kept (by chunk offset) and used again while it
//! has time left; past half its life it is renewed first, and once expired, or if the renewal
//! fails, a new one is asked for; so is one whose capability to write is due for renewal (the
//! master answers the lease it holds, with a new capability). Invariants: a lease is handed to a write only before it
//! expires (by this handle's clock, from when the lease or its renewal arrived); a write that
//! found its lease out of date forgets it only if it is still the one at that version
//! ([`Shared::forget_lease_at`]), so it never throws away a newer lease another write in flight
//! already got.

use super::Shared;
use crate::capabilities::Need;
use kfs_common::KfsResult;
use kfs_common::proto::master::WriteLease;
use kfs_common::security::capability::Access;
use std::time::{Duration, Instant};

/// A lease this file holds.
#[derive(Clone)]
pub(super) struct Held {
    lease: WriteLease,
    granted: Instant,
    valid: Duration,
}

impl Held {
    fn new(lease: WriteLease) -> Held {
        Held {
            valid: Duration::from_millis(lease.valid_ms),
            granted: Instant::now(),
            lease,
        }
    }

    fn expires(&self) -> Instant {
        self.granted + self.valid
    }
}

impl Shared {
    /// The lease on the chunk at `chunk_offset`: the one held if it has time left, renewed if it
    /// is past half its life, or a new one.
    pub(super) async fn lease(&self, chunk_offset: u64) -> KfsResult<WriteLease> {
        let held = self
            .leases
            .lock()
            .expect("leases lock")
            .get(&chunk_offset)
            .cloned();
        let now = Instant::now();
        if let Some(h) = held
            && now < h.expires()
            && self.io.caps.holds(write_need(&h.lease))
        {
            if now < h.granted + h.valid / 2 {
                return Ok(h.lease);
            }
            let (chunk, version) = (h.lease.chunk, h.lease.version);
            if let Ok(ms) = self
                .io
                .call(self.io.m().renew_lease(self.io.ctx(), chunk, version))
                .await
            {
                let renewed = Held {
                    granted: Instant::now(),
                    valid: Duration::from_millis(ms),
                    lease: h.lease.clone(),
                };
                self.leases
                    .lock()
                    .expect("leases lock")
                    .insert(chunk_offset, renewed);
                return Ok(h.lease);
            }
        }
        self.forget_lease(chunk_offset);
        let fid = self.fid;
        let unpacking = self.unpacking.load(std::sync::atomic::Ordering::Acquire);
        let lease = self
            .by_fid(|| {
                self.io.signed(self.io.m().lease_signed(
                    self.io.ctx(),
                    fid,
                    chunk_offset,
                    unpacking,
                ))
            })
            .await?;
        self.keep_lease(chunk_offset, lease.clone());
        Ok(lease)
    }

    pub(super) fn keep_lease(&self, chunk_offset: u64, lease: WriteLease) {
        self.leases
            .lock()
            .expect("leases lock")
            .insert(chunk_offset, Held::new(lease));
    }

    pub(super) fn forget_lease(&self, chunk_offset: u64) {
        self.leases
            .lock()
            .expect("leases lock")
            .remove(&chunk_offset);
    }

    /// Forgets the lease held on the chunk at `chunk_offset` if it is still the one at
    /// `version` (another write may already hold a newer one).
    pub(super) fn forget_lease_at(&self, chunk_offset: u64, version: kfs_common::ChunkVersion) {
        let mut leases = self.leases.lock().expect("leases lock");
        if leases
            .get(&chunk_offset)
            .is_some_and(|h| h.lease.version == version)
        {
            leases.remove(&chunk_offset);
        }
    }
}

/// What writing under `lease` needs: a write capability for its chunk at its version.
pub(super) fn write_need(lease: &WriteLease) -> Need {
    Need::whole(lease.chunk, lease.version, Some(Access::Write))
}
