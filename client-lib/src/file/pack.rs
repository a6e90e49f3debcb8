//! Small files packed into volumes: a handle keeps a small file's whole data in memory, and on
//! flush, sync and close appends it as one record to a volume and has the master make that
//! record the file's data; reads of a packed file are one record read from one replica.
//!
//! - A handle that created (or truncated) a file packs it while it stays within
//!   `ClientOptions::pack_threshold` bytes; a handle opened on a packed file loads its record at
//!   its first write and packs from there.
//! - A write that takes the file past the threshold *spills*: the image is written to chunks of
//!   the file's own, and the handle goes on as for any file. The master keeps the file's extent
//!   (what readers read) until the writer's next flush records the length of the chunks, which
//!   hold everything by then: a reader sees the old bytes or the new, never a mix or zeros.
//! - A commit appends the image to the open volume of the file's replication (its lease cached
//!   in `Io`), down the volume's chain, and answers once every replica holds it durably; then
//!   `set_extent` switches the file to it in one logged step. A failed append has the volume
//!   sealed and tries another. When no volume can be had (too few chunkservers), the image
//!   spills to chunks instead.
//! - A read of a record that no replica serves asks the master once where the file is now:
//!   compaction moves records to other volumes and frees the old ones.
//!
//! Invariants: while packing, `written_end` is the image's length; a commit replaces the file's
//! data only once its record is durable on every replica of its volume; a handle never writes a
//! packed file's chunks without first having the whole image written to them.

use super::Shared;
use crate::capabilities::Need;
use crate::errors::unreachable;
use bytes::Bytes;
use kfs_common::proto::Payload;
use kfs_common::proto::chunk::AppendRequest;
use kfs_common::proto::master::{ExtentLocation, FileAttr, Layout, WriteLease};
use kfs_common::security::capability::Access;
use kfs_common::{KfsError, KfsResult};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Why a commit did not happen.
enum Commit {
    /// No volume can be had: the file should go to chunks of its own.
    NoVolume(KfsError),
    Failed(KfsError),
}

/// What a handle packing its file holds.
pub(crate) enum Image {
    /// The file's whole data (it was created by this handle, or loaded).
    Loaded { data: Vec<u8>, dirty: bool },
    /// A packed file opened by this handle: its record, loaded at the first write.
    Unloaded(ExtentLocation),
}

impl Shared {
    /// Writes `data` at `offset`: into the image while packing, else through chunks.
    pub(super) async fn write_at(self: Arc<Self>, offset: u64, data: Bytes) -> KfsResult<u64> {
        if self.packing.load(Ordering::Acquire) {
            let mut pack = self.pack.lock().await;
            if let Some(image) = pack.as_mut() {
                if let Image::Unloaded(extent) = image {
                    let loaded = self.read_record(extent).await?;
                    *image = Image::Loaded {
                        data: loaded.to_vec(),
                        dirty: false,
                    };
                }
                let Image::Loaded { data: bytes, dirty } = image else {
                    unreachable!("loaded above")
                };
                let end = offset + data.len() as u64;
                if end <= self.io.options.pack_threshold {
                    if (bytes.len() as u64) < end {
                        bytes.resize(end as usize, 0);
                    }
                    bytes[offset as usize..end as usize].copy_from_slice(&data);
                    *dirty = true;
                    self.written_end.fetch_max(end, Ordering::AcqRel);
                    self.modified.store(true, Ordering::Release);
                    self.size.fetch_max(end, Ordering::AcqRel);
                    return Ok(end);
                }
                // Past the threshold: the image goes to chunks first (while the lock holds other
                // writes back), then this write; the handle keeps the image until then.
                let image = Bytes::from(bytes.clone());
                self.spill(image).await?;
                *pack = None;
                self.packing.store(false, Ordering::Release);
            }
        }
        self.write_chunks(offset, data).await
    }

    /// Commits the image if it changed since the last commit; `false` if the handle is not
    /// packing (the caller records the length of its chunks instead).
    pub(super) async fn commit_pack(self: &Arc<Self>) -> KfsResult<bool> {
        self.commit_image(true).await
    }

    /// [`Shared::commit_pack`]; with no volume to be had, the image goes to chunks only if
    /// `spill` (else it stays, dirty, and the answer is `false`).
    async fn commit_image(self: &Arc<Self>, spill: bool) -> KfsResult<bool> {
        if !self.packing.load(Ordering::Acquire) {
            return Ok(false);
        }
        let mut pack = self.pack.lock().await;
        let Some(Image::Loaded { data, dirty }) = pack.as_mut() else {
            // Packing but never written: nothing to commit.
            return Ok(pack.is_some());
        };
        if !*dirty {
            return Ok(true);
        }
        let image = Bytes::from(data.clone());
        match self.append_and_set(image.clone()).await {
            Ok(attr) => {
                *dirty = false;
                let len = image.len() as u64;
                self.length_set.store(len, Ordering::Release);
                self.written_end.store(len, Ordering::Release);
                self.modified.store(false, Ordering::Release);
                *self.extended.lock().expect("extended lock") = Some(attr);
                *self.record.lock().expect("record lock") = None;
                Ok(true)
            }
            Err(Commit::NoVolume(e)) if !spill => {
                tracing::debug!(path = %self.path, error = %e, "no volume for a small file");
                Ok(false)
            }
            Err(Commit::NoVolume(e)) => {
                // No volume to be had (too few chunkservers with room): the file goes to chunks
                // of its own, the image kept until they hold it.
                tracing::debug!(path = %self.path, error = %e, "no volume for a small file; writing it to chunks");
                self.spill(image).await?;
                *pack = None;
                self.packing.store(false, Ordering::Release);
                Ok(false)
            }
            // Not committed: the image stays, dirty, for the next flush.
            Err(Commit::Failed(e)) => Err(e),
        }
    }

    /// Packs the file again (into a volume of this handle's replication); the attributes.
    pub(super) async fn repack(self: &Arc<Self>) -> KfsResult<FileAttr> {
        {
            let mut pack = self.pack.lock().await;
            let extent = match pack.as_ref() {
                Some(Image::Unloaded(extent)) => Some(extent.clone()),
                Some(Image::Loaded { .. }) => None,
                None => self.extent.lock().expect("extent lock").clone(),
            };
            if let Some(extent) = extent {
                let data = self.read_record(&extent).await?.to_vec();
                *pack = Some(Image::Loaded { data, dirty: true });
            } else if let Some(Image::Loaded { dirty, .. }) = pack.as_mut() {
                *dirty = true;
            }
            self.packing.store(pack.is_some(), Ordering::Release);
        }
        self.commit_or_spill().await?;
        self.extended
            .lock()
            .expect("extended lock")
            .take()
            .ok_or_else(|| KfsError::Internal(format!("{} was not packed again", self.path)))
    }

    /// Commits the image; if no volume could take it (it went to chunks of the file's own),
    /// makes those chunks durable and records their length, so either way the file's new data
    /// is on every replica, durably, and `extended` holds the attributes.
    async fn commit_or_spill(self: &Arc<Self>) -> KfsResult<()> {
        if !self.commit_pack().await? {
            self.sync().await?;
            self.clone().extend_length().await?;
        }
        Ok(())
    }

    /// Sets a packed file's length to `len` (at most the packing threshold): the image cut,
    /// or extended with zeros, and committed as a new record. `None` if the handle does not
    /// pack the file, or no volume could take the record (the image is then dropped and the
    /// file left as it was: going to chunks cannot shorten a packed file).
    pub(super) async fn truncate_packed(self: &Arc<Self>, len: u64) -> KfsResult<Option<FileAttr>> {
        {
            let mut pack = self.pack.lock().await;
            let Some(image) = pack.as_mut() else {
                return Ok(None);
            };
            if let Image::Unloaded(extent) = image {
                let data = self.read_record(extent).await?.to_vec();
                *image = Image::Loaded { data, dirty: true };
            }
            let Image::Loaded { data, dirty } = image else {
                unreachable!("loaded above")
            };
            data.resize(len as usize, 0);
            *dirty = true;
            self.size.store(len, Ordering::Release);
            self.written_end.store(len, Ordering::Release);
            self.modified.store(true, Ordering::Release);
        }
        match self.commit_image(false).await? {
            true => Ok(self.extended.lock().expect("extended lock").take()),
            false => {
                self.drop_pack();
                Ok(None)
            }
        }
    }

    /// Drops the image (the handle is abandoned).
    pub(super) fn drop_pack(&self) {
        self.packing.store(false, Ordering::Release);
        if let Ok(mut pack) = self.pack.try_lock() {
            *pack = None;
        }
    }

    /// Writes the image to chunks of the file's own, from byte 0: the file moves to chunks
    /// (`lease_unpacking`; its extent stays what readers read until the next `extend_length`),
    /// and this handle reads its chunks from now on.
    async fn spill(self: &Arc<Self>, image: Bytes) -> KfsResult<()> {
        self.unpacking.store(true, Ordering::Release);
        *self.extent.lock().expect("extent lock") = None;
        if !image.is_empty() {
            self.clone().write_chunks(0, image).await?;
        }
        Ok(())
    }

    /// Appends `image` as this file's record to an open volume and makes it the file's data;
    /// a volume whose append fails is sealed and another tried, within `write_retry_for`.
    async fn append_and_set(&self, image: Bytes) -> Result<FileAttr, Commit> {
        let len = u32::try_from(image.len()).map_err(|_| {
            Commit::Failed(KfsError::invalid_argument(
                "a packed file is larger than 4 GiB",
            ))
        })?;
        let mut retries = self
            .io
            .options
            .retry
            .for_up_to(self.io.options.write_retry_for);
        loop {
            let lease = match self.io.volume_lease(self.replication).await {
                Ok(lease) => lease,
                Err(e) if e.is_no_space() || matches!(e, KfsError::Unavailable(_)) => {
                    return Err(Commit::NoVolume(e));
                }
                Err(e) => return Err(Commit::Failed(e)),
            };
            match self.append(&lease, image.clone()).await {
                Ok(at) => {
                    let set = self
                        .by_fid(|| {
                            self.io.call(self.io.m().set_extent(
                                self.io.ctx(),
                                self.fid,
                                lease.chunk,
                                at,
                                len,
                            ))
                        })
                        .await;
                    match set {
                        // The volume was sealed (its lease ran out, a server went) or freed
                        // under the append: the record goes to another.
                        Err(
                            KfsError::NoSuchChunk { chunk } | KfsError::AppendRefused { chunk, .. },
                        ) if chunk == lease.chunk && retries.time_left() => {
                            self.io.forget_volume(self.replication, lease.chunk);
                        }
                        done => return done.map_err(Commit::Failed),
                    }
                }
                // Nothing wrong with the volume: ask for its lease (newly signed) again.
                Err(KfsError::CapabilityExpired { chunk }) if retries.time_left() => {
                    self.io.caps.forget(chunk);
                    self.io.forget_volume(self.replication, chunk);
                    retries.pause().await;
                }
                Err(e) => {
                    tracing::debug!(path = %self.path, volume = %lease.chunk, error = %e, "append failed; sealing the volume");
                    self.io.forget_volume(self.replication, lease.chunk);
                    let _ = self
                        .io
                        .call(self.io.m().seal_volume(self.io.ctx(), lease.chunk))
                        .await;
                    if !retries.time_left() {
                        return Err(Commit::Failed(e));
                    }
                    retries.pause().await;
                }
            }
        }
    }

    /// One append of `image` to the lease's primary; the record's offset.
    async fn append(&self, lease: &WriteLease, image: Bytes) -> KfsResult<u64> {
        let pool = &self.io.chunks;
        let primary = &lease.primary;
        let client = pool
            .get(primary.addr)
            .await
            .map_err(|e| unreachable("chunkserver", primary.addr, e))?;
        let request = AppendRequest {
            chunk: lease.chunk,
            version: lease.version,
            fid: self.fid,
            data: Payload::from_bytes(image),
            placed: None,
            chain: lease.secondaries.clone(),
        };
        let need = Need::whole(lease.chunk, lease.version, Some(Access::Append));
        let appended = match self.io.caps.for_call(need)? {
            Some(cap) => client.append_with(self.io.ctx(), cap, request).await,
            None => client.append(self.io.ctx(), request).await,
        };
        match appended {
            Ok(done) => done,
            Err(e) => {
                pool.forget(primary.addr);
                Err(unreachable("chunkserver", primary.addr, e))
            }
        }
    }

    /// The data of a packed file's record, from the first replica that reads it.
    /// A record that no replica serves may have moved (its volume compacted and freed): the
    /// master is asked once where the file is now, and a moved record read there.
    pub(super) async fn read_record(&self, extent: &ExtentLocation) -> KfsResult<Bytes> {
        if let Some(data) = self.record.lock().expect("record lock").clone() {
            return Ok(data);
        }
        let mut failed = match self.read_record_at(extent).await {
            Ok(data) => return Ok(data),
            Err(e) => e,
        };
        // A capability refused as expired again (a chunkserver without the master's newest
        // key yet) is asked for again with backoff, within `read_retry_for`.
        let mut retries = self
            .io
            .options
            .retry
            .for_up_to(self.io.options.read_retry_for);
        let mut extent = extent.clone();
        loop {
            let now = self
                .by_fid(|| {
                    self.io
                        .signed(self.io.m().layout_signed(self.io.ctx(), self.fid, 0, 1))
                })
                .await;
            let expired = matches!(failed, KfsError::CapabilityExpired { .. });
            match now {
                Ok(Layout::Packed(moved))
                    if expired
                        || (moved.volume, moved.offset) != (extent.volume, extent.offset) =>
                {
                    tracing::debug!(path = %self.path, from = %extent.volume, to = %moved.volume, expired, "reading the record where it is now, with a new capability");
                    {
                        let mut known = self.extent.lock().expect("extent lock");
                        if known.is_some() {
                            *known = Some(moved.clone());
                        }
                    }
                    match self.read_record_at(&moved).await {
                        Err(e @ KfsError::CapabilityExpired { .. }) if retries.time_left() => {
                            retries.pause().await;
                            failed = e;
                            extent = moved;
                        }
                        done => return done,
                    }
                }
                _ => return Err(failed),
            }
        }
    }

    /// The record's data from the first of `extent`'s replicas that reads it; `CapabilityExpired`
    /// when the capability to read it is not held, or a replica refused it as expired.
    async fn read_record_at(&self, extent: &ExtentLocation) -> KfsResult<Bytes> {
        let cap = self.io.caps.for_call(Need {
            chunk: extent.volume,
            version: extent.version,
            access: Some(Access::Read),
            offset: extent.offset,
            len: u64::from(extent.len),
        })?;
        let mut failures = Vec::new();
        let n = extent.replicas.len();
        let first = (self.fid.0 as usize) % n.max(1);
        for i in 0..n {
            let replica = &extent.replicas[(first + i) % n];
            let read = async {
                let client = self
                    .io
                    .chunks
                    .get(replica.addr)
                    .await
                    .map_err(|e| unreachable("chunkserver", replica.addr, e))?;
                let read = match &cap {
                    Some(cap) => {
                        client
                            .read_record_with(
                                self.io.ctx(),
                                cap.clone(),
                                extent.offset,
                                self.fid,
                                extent.len,
                            )
                            .await
                    }
                    None => {
                        client
                            .read_record(
                                self.io.ctx(),
                                extent.volume,
                                extent.version,
                                extent.offset,
                                self.fid,
                                extent.len,
                            )
                            .await
                    }
                };
                read.map_err(|e| {
                    self.io.chunks.forget(replica.addr);
                    unreachable("chunkserver", replica.addr, e)
                })?
            };
            match read.await {
                Ok(data) => {
                    let data = data.into_bytes();
                    *self.record.lock().expect("record lock") = Some(data.clone());
                    return Ok(data);
                }
                Err(e @ KfsError::CapabilityExpired { .. }) => {
                    self.io.caps.forget(extent.volume);
                    return Err(e);
                }
                Err(e) => failures.push(format!("{}: {e}", replica.addr)),
            }
        }
        if failures.is_empty() {
            failures.push("no live replica".into());
        }
        Err(KfsError::ChunkUnavailable {
            chunk: extent.volume,
            reason: format!("reading {} (packed): {}", self.path, failures.join("; ")),
        })
    }

    /// Reads of a file this handle packs, or of a packed file: `None` if neither.
    pub(super) async fn read_packed(&self, offset: u64, len: usize) -> KfsResult<Option<Vec<u8>>> {
        let slice = |data: &[u8]| {
            let start = (offset as usize).min(data.len());
            let end = (offset as usize).saturating_add(len).min(data.len());
            data[start..end].to_vec()
        };
        if self.packing.load(Ordering::Acquire) {
            let pack = self.pack.lock().await;
            match pack.as_ref() {
                Some(Image::Loaded { data, .. }) => return Ok(Some(slice(data))),
                Some(Image::Unloaded(extent)) => {
                    let extent = extent.clone();
                    drop(pack);
                    return Ok(Some(slice(&self.read_record(&extent).await?)));
                }
                None => {}
            }
        }
        let extent = self.extent.lock().expect("extent lock").clone();
        match extent {
            Some(extent) => Ok(Some(slice(&self.read_record(&extent).await?))),
            None => Ok(None),
        }
    }
}
