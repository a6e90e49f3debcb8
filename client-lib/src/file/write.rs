//! The write path: a write sent to the primary of a chunk's lease and down its chain of
//! replicas, retried until every replica holds it; the file's length at the master; `sync`.
//!
//! The primary orders the bytes and forwards them along the chain; a write is acknowledged once
//! every replica holds it. A write is split at chunk boundaries, one piece per chunk. A replica
//! that fails mid-write is reported to the master, which moves the chunk to a new version on the
//! survivors; the write is then sent again to them, and the caller sees no error. A replica is
//! reported only for its own failure (`WriteFailed` naming it): an answer that the version moved
//! under the write (`StaleVersion`) just sends it again under the current lease, and one that
//! writes at the version can no longer be ordered (`LeaseExpired`) asks the master for a new
//! version without naming any replica. Only a chunk with no replica left fails the write, with
//! an error naming the chunk and servers ([`write_failure`]), and so does a lease the master
//! refuses (a full cluster, the file gone); an unreachable master or a busy chunkserver is
//! retried with backoff, for at most `write_retry_for` in all.
//!
//! Invariants: a write returns `Ok` only once every replica holds it; the length this handle
//! gives the master (`extend_length`, on `flush` and `close`) is the end of its furthest
//! acknowledged write, never more; a chunk written stays to be synced until a `sync` of it
//! succeeds.

use super::Shared;
use crate::capabilities::Need;
use crate::errors::unreachable;
use bytes::Bytes;
use kfs_common::proto::Payload;
use kfs_common::proto::chunk::WriteRequest;
use kfs_common::proto::master::WriteLease;
use kfs_common::{ChunkId, KfsError, KfsResult};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What one write attempt came to.
enum Attempt {
    Done,
    /// These replicas failed (each at the lease's version): report them and write again.
    /// `full`: the failure was a full disk.
    Failed {
        servers: Vec<kfs_common::ServerId>,
        full: bool,
    },
    /// A replica can no longer order writes at the lease's version (a write never came, or the
    /// primary restarted): have the master move the chunk to a new version, dropping no
    /// replica, and write again.
    OrderLost,
    /// The lease is no longer current: get a new one and write again.
    Stale,
    /// The capability to write ran out: ask for the lease again (the same one, newly signed)
    /// and write again at once.
    Renew,
    /// Try again later.
    Busy(KfsError),
}

impl Attempt {
    /// `server` failed, its disk not full.
    fn failed(server: kfs_common::ServerId) -> Attempt {
        Attempt::Failed {
            servers: vec![server],
            full: false,
        }
    }
}

/// The error of a write to `path` that cannot go on: the master keeps the last replicas of
/// `chunk` (`reason`) after the writer found `failed` (address, full disk). Every one of them
/// full reads `No space left on device (chunkservers A, B, C are full)`.
fn write_failure(
    path: &str,
    chunk: ChunkId,
    failed: &[(String, bool)],
    reason: String,
) -> KfsError {
    let mut addrs: Vec<String> = Vec::new();
    for (addr, _) in failed {
        if !addrs.contains(addr) {
            addrs.push(addr.clone());
        }
    }
    if !failed.is_empty() && failed.iter().all(|(_, full)| *full) {
        return KfsError::NoSpace(kfs_common::error::servers_full(&addrs));
    }
    KfsError::ChunkUnavailable {
        chunk,
        reason: format!(
            "writing {path} failed on chunkservers {}; {reason}",
            addrs.join(", ")
        ),
    }
}

impl Shared {
    /// Writes `data` at `offset` through chunks until every replica holds it; returns the end
    /// offset.
    pub(super) async fn write_chunks(self: Arc<Self>, offset: u64, data: Bytes) -> KfsResult<u64> {
        let end = offset + data.len() as u64;
        for (chunk_offset, in_chunk, range) in self.pieces(offset, data.len()) {
            self.write_piece(chunk_offset, in_chunk, data.slice(range))
                .await?;
        }
        self.written_end.fetch_max(end, Ordering::AcqRel);
        self.modified.store(true, Ordering::Release);
        self.size.fetch_max(end, Ordering::AcqRel);
        Ok(end)
    }

    /// Writes one piece within one chunk, through failures and lease changes.
    async fn write_piece(&self, chunk_offset: u64, in_chunk: u64, data: Bytes) -> KfsResult<()> {
        let mut retries = self
            .io
            .options
            .retry
            .for_up_to(self.io.options.write_retry_for);
        // Replicas this write found failed, to name them if the write cannot be done, and
        // whether each had a full disk.
        let mut failed: Vec<(String, bool)> = Vec::new();
        // The version a chunkserver last said had moved on under this write.
        let mut moved_from = None;
        // Capabilities asked for again in a row (the second and later pause first).
        let mut renewed = 0;
        loop {
            let lease = match self.lease(chunk_offset).await {
                Ok(lease) => lease,
                // (A `NoSpace` answer is final: the master found the servers full.)
                Err(e @ KfsError::Unavailable(_)) if retries.time_left() => {
                    tracing::debug!(path = %self.path, error = %e, "no lease yet; retrying");
                    retries.pause().await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if moved_from == Some(lease.version) {
                // The master still leases the version a chunkserver said it had left: wait a
                // little rather than ask again at once.
                retries.pause().await;
            }
            match self.send_write(&lease, in_chunk, data.clone()).await {
                Attempt::Done => {
                    self.unsynced
                        .lock()
                        .expect("unsynced lock")
                        .insert(chunk_offset);
                    // Readers of this handle must see the chunk (it may have been a hole).
                    self.locations
                        .lock()
                        .expect("locations lock")
                        .remove(&chunk_offset);
                    return Ok(());
                }
                attempt @ (Attempt::Failed { .. } | Attempt::OrderLost) => {
                    let (servers, full) = match attempt {
                        Attempt::Failed { servers, full } => {
                            tracing::warn!(path = %self.path, chunk = %lease.chunk, ?servers, full, "replicas failed during a write; reporting them");
                            (servers, full)
                        }
                        _ => {
                            // `OrderLost` (the only other variant this arm takes): no replica
                            // failed; a new version (on every replica) starts a new order of
                            // writes.
                            tracing::debug!(path = %self.path, chunk = %lease.chunk, version = %lease.version, "writes at this version can no longer be ordered; asking for a new version");
                            (Vec::new(), false)
                        }
                    };
                    for s in &servers {
                        let addr = std::iter::once(&lease.primary)
                            .chain(&lease.secondaries)
                            .find(|r| r.server == *s)
                            .map_or_else(|| s.to_string(), |r| r.addr.to_string());
                        failed.push((addr, full));
                    }
                    self.forget_lease(chunk_offset);
                    let (chunk, version) = (lease.chunk, lease.version);
                    match self
                        .io
                        .signed(self.io.m().report_failure_signed(
                            self.io.ctx(),
                            chunk,
                            version,
                            servers,
                        ))
                        .await
                    {
                        Ok(new) => self.keep_lease(chunk_offset, new),
                        Err(KfsError::ChunkUnavailable { reason, .. }) => {
                            return Err(write_failure(&self.path, chunk, &failed, reason));
                        }
                        Err(e) if !retries.time_left() => return Err(e),
                        Err(_) => retries.pause().await,
                    }
                }
                Attempt::Stale => {
                    // The version moved under this write (the master moved the chunk on after
                    // a failure reported by another write in flight, or a new writer): no
                    // replica failed; write again under the current lease.
                    tracing::debug!(path = %self.path, chunk = %lease.chunk, version = %lease.version, "the chunk moved to a new version under a write; writing again");
                    moved_from = Some(lease.version);
                    self.forget_lease_at(chunk_offset, lease.version);
                }
                Attempt::Renew => {
                    tracing::debug!(path = %self.path, chunk = %lease.chunk, "the capability to write expired; asking for it again");
                    self.io.caps.forget(lease.chunk);
                    self.forget_lease_at(chunk_offset, lease.version);
                    renewed += 1;
                    if renewed > 1 {
                        retries.pause().await;
                    }
                }
                Attempt::Busy(e) => {
                    if !retries.time_left() {
                        return Err(e);
                    }
                    retries.pause().await;
                }
            }
            if !retries.time_left() {
                return Err(KfsError::Unavailable(format!(
                    "writing {} at byte {}: gave up after {:?} of retries",
                    self.path,
                    chunk_offset + in_chunk,
                    self.io.options.write_retry_for
                )));
            }
        }
    }

    /// One attempt: the write to the lease's primary, forwarded down its chain.
    async fn send_write(&self, lease: &WriteLease, in_chunk: u64, data: Bytes) -> Attempt {
        let pool = &self.io.chunks;
        let primary = &lease.primary;
        let client = match pool.get(primary.addr).await {
            Ok(c) => c,
            Err(_) => return Attempt::failed(primary.server),
        };
        let request = WriteRequest {
            chunk: lease.chunk,
            version: lease.version,
            offset: in_chunk,
            data: Payload::from_bytes(data),
            serial: None,
            chain: lease.secondaries.clone(),
        };
        let written = match self.io.caps.for_call(super::lease::write_need(lease)) {
            Ok(Some(cap)) => client.write_with(self.io.ctx(), cap, request).await,
            Ok(None) => client.write(self.io.ctx(), request).await,
            Err(_) => return Attempt::Renew,
        };
        match written {
            Ok(Ok(_)) => Attempt::Done,
            Ok(Err(KfsError::CapabilityExpired { .. })) => Attempt::Renew,
            // A replica's own failure at this version (chunkservers never answer a version
            // move with `WriteFailed`): report it.
            Ok(Err(e @ KfsError::WriteFailed { server, .. })) => Attempt::Failed {
                servers: vec![server],
                full: e.is_no_space(),
            },
            Ok(Err(e)) if e.is_order_lost() => Attempt::OrderLost,
            // The version moved under the write, or the chunk is gone: get the current lease.
            Ok(Err(e)) if e.is_version_moved() => Attempt::Stale,
            Ok(Err(KfsError::NoSuchChunk { .. })) => Attempt::Stale,
            // The primary is behind the lease's version: its own failure.
            Ok(Err(KfsError::StaleVersion { .. })) => Attempt::failed(primary.server),
            Ok(Err(e)) => Attempt::Busy(e),
            Err(_) => {
                pool.forget(primary.addr);
                Attempt::failed(primary.server)
            }
        }
    }
    /// Tells the master the file is at least as long as everything written, and that it was
    /// modified (an overwrite in place changes the mtime too, so validators such as HTTP ETags
    /// change).
    pub(super) async fn extend_length(self: Arc<Self>) -> KfsResult<()> {
        // A small file this handle packs is committed as a whole instead (`pack.rs`).
        if self.commit_pack().await? {
            return Ok(());
        }
        let end = self.written_end.load(Ordering::Acquire);
        let modified = self.modified.swap(false, Ordering::AcqRel);
        if end <= self.length_set.load(Ordering::Acquire) && !modified {
            return Ok(());
        }
        let fid = self.fid;
        let attr = match self
            .by_fid(|| {
                self.io
                    .call(self.io.m().extend_length(self.io.ctx(), fid, end))
            })
            .await
        {
            Ok(attr) => attr,
            Err(e) => {
                // Not recorded: the next flush or close tries again.
                if modified {
                    self.modified.store(true, Ordering::Release);
                }
                return Err(e);
            }
        };
        self.length_set.fetch_max(end, Ordering::AcqRel);
        self.size.fetch_max(attr.size, Ordering::AcqRel);
        *self.extended.lock().expect("extended lock") = Some(attr);
        Ok(())
    }

    /// Has every replica of every chunk written since the last sync make its data durable. A
    /// chunk whose sync fails stays to be synced (with the chunks after it), so a later `sync`
    /// tries it again rather than report success; a chunk that moved to a new version under the
    /// sync is synced at its new version (within `write_retry_for`).
    pub(super) async fn sync(&self) -> KfsResult<()> {
        let chunks: Vec<u64> = std::mem::take(&mut *self.unsynced.lock().expect("unsynced lock"))
            .into_iter()
            .collect();
        for (i, &chunk_offset) in chunks.iter().enumerate() {
            if let Err(e) = self.sync_chunk(chunk_offset).await {
                self.unsynced
                    .lock()
                    .expect("unsynced lock")
                    .extend(&chunks[i..]);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Syncs every replica of the chunk at `chunk_offset`, at its current version.
    async fn sync_chunk(&self, chunk_offset: u64) -> KfsResult<()> {
        let mut retries = self
            .io
            .options
            .retry
            .for_up_to(self.io.options.write_retry_for);
        loop {
            self.locations
                .lock()
                .expect("locations lock")
                .remove(&chunk_offset);
            let Some(loc) = self.location(chunk_offset).await? else {
                return Ok(());
            };
            let Some((first, rest)) = loc.replicas.split_first() else {
                return Err(KfsError::ChunkUnavailable {
                    chunk: loc.chunk,
                    reason: format!("syncing {}: no live replica", self.path),
                });
            };
            let pool = &self.io.chunks;
            let client = pool
                .get(first.addr)
                .await
                .map_err(|e| unreachable("chunkserver", first.addr, e))?;
            let need = Need::whole(loc.chunk, loc.version, None);
            let synced = match self.io.caps.for_call(need)? {
                Some(cap) => client.sync_with(self.io.ctx(), cap, rest.to_vec()).await,
                None => {
                    client
                        .sync(self.io.ctx(), loc.chunk, loc.version, rest.to_vec())
                        .await
                }
            };
            match synced.map_err(|e| unreachable("chunkserver", first.addr, e))? {
                Err(e) if e.is_version_moved() && retries.time_left() => {
                    retries.pause().await;
                }
                // Located again at the loop's top, with a new capability.
                Err(KfsError::CapabilityExpired { chunk }) if retries.time_left() => {
                    self.io.caps.forget(chunk);
                    retries.pause().await;
                }
                done => return done,
            }
        }
    }
}
