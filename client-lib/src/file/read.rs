//! The read path: where each chunk is, and its bytes read from one replica after another.
//!
//! Chunk locations are asked of the master ([`LOCATE_AHEAD`] chunks at a time) and cached by
//! chunk offset; each piece is read from one replica (the first chosen by the chunk's id, so
//! reads spread over the servers) and, on any error (a checksum mismatch included), from the
//! next; when every replica failed, the location is asked again once, since the chunk may have
//! moved to a new version or new replicas. While the master answers that it does not know the
//! locations yet (`Unavailable`: it has just restarted), a read asks again with backoff, for at
//! most `read_retry_for`.
//!
//! On a secured cluster each location comes with the master's capability to read the chunk
//! (`capabilities.rs`); a cached location whose capability is due for renewal is asked again,
//! and so is one a chunkserver refused as expired.
//!
//! Invariants: a chunk that was never written (a hole) reads as zeros, as do bytes past a
//! chunk's data; reads end at the file's length as this handle knows it. A chunk the master did
//! not list is cached as a hole only below that length (past it, another writer may add chunks),
//! and a write through this handle drops the chunk's cached location so its reads see the chunk.

use super::{LOCATE_AHEAD, Shared};
use crate::capabilities::Need;
use crate::errors::unreachable;
use kfs_common::proto::chunk::MAX_READ_LEN;
use kfs_common::proto::master::{ChunkLocation, Layout};
use kfs_common::security::capability::Access;
use kfs_common::{ChunkId, KfsError, KfsResult};
use std::sync::Arc;

impl Shared {
    /// Where the chunk at `chunk_offset` is (`None`: a hole), from the cache (while the
    /// capability to read it is good) or the master.
    pub(super) async fn location(&self, chunk_offset: u64) -> KfsResult<Option<ChunkLocation>> {
        let cached = self
            .locations
            .lock()
            .expect("locations lock")
            .get(&chunk_offset)
            .cloned();
        match cached {
            Some(None) => return Ok(None),
            Some(Some(loc)) if self.io.caps.holds(read_need(&loc)) => return Ok(Some(loc)),
            _ => {}
        }
        let (fid, len) = (self.fid, self.chunk_size * LOCATE_AHEAD);
        let found = self
            .by_fid(|| {
                self.io.signed(
                    self.io
                        .m()
                        .locate_signed(self.io.ctx(), fid, chunk_offset, len),
                )
            })
            .await?;
        self.remember_locations(chunk_offset, found);
        Ok(self
            .locations
            .lock()
            .expect("locations lock")
            .get(&chunk_offset)
            .cloned()
            .flatten())
    }

    /// Caches what the master said of the [`LOCATE_AHEAD`] chunks from `chunk_offset`: `found`,
    /// and holes where it listed none.
    pub(super) fn remember_locations(&self, chunk_offset: u64, found: Vec<ChunkLocation>) {
        let mut cache = self.locations.lock().expect("locations lock");
        // A chunk the master did not list is a hole, but only below the length known now:
        // past it, another writer may add chunks later.
        let size = self.size();
        for i in 0..LOCATE_AHEAD {
            let at = chunk_offset + i * self.chunk_size;
            if at < size {
                cache.entry(at).or_insert(None);
            }
        }
        for loc in found {
            cache.insert(loc.offset, Some(loc));
        }
    }

    /// Reads up to `len` bytes at `offset` (less at the end of the file). The pieces in different
    /// chunks are read at once.
    pub(super) async fn read_at(self: Arc<Self>, offset: u64, len: usize) -> KfsResult<Vec<u8>> {
        let size = self.size();
        if offset >= size || len == 0 {
            return Ok(Vec::new());
        }
        let len = (len as u64).min(size - offset) as usize;
        self.learn_layout(offset - offset % self.chunk_size).await?;
        if let Some(packed) = self.read_packed(offset, len).await? {
            return Ok(packed);
        }
        let mut pieces = futures::future::try_join_all(self.pieces(offset, len).into_iter().map(
            |(chunk_offset, in_chunk, range)| self.read_piece(chunk_offset, in_chunk, range.len()),
        ))
        .await?;
        if pieces.len() == 1 {
            return Ok(pieces.pop().expect("one piece"));
        }
        Ok(pieces.concat())
    }

    /// Asks the master how the file is stored from `chunk_offset` on, unless this handle knows
    /// (it packs the file, knows its extent, or has the chunk's location): a packed file's
    /// extent, or chunks' locations, cached. Waits (up to `read_retry_for`) while the master
    /// does not know them yet.
    async fn learn_layout(&self, chunk_offset: u64) -> KfsResult<()> {
        let unpacking = self.unpacking.load(std::sync::atomic::Ordering::Acquire);
        if self.packing.load(std::sync::atomic::Ordering::Acquire)
            || self.extent.lock().expect("extent lock").is_some()
            || self
                .locations
                .lock()
                .expect("locations lock")
                .contains_key(&chunk_offset)
        {
            return Ok(());
        }
        let mut retries = self
            .io
            .options
            .retry
            .for_up_to(self.io.options.read_retry_for);
        let len = self.chunk_size * LOCATE_AHEAD;
        loop {
            match self
                .by_fid(|| {
                    self.io.signed(self.io.m().layout_signed(
                        self.io.ctx(),
                        self.fid,
                        chunk_offset,
                        len,
                    ))
                })
                .await
            {
                // A handle moving the file to chunks reads them, not the extent readers still
                // read until it has moved: the chunk reads ask where they are.
                Ok(Layout::Packed(_)) if unpacking => return Ok(()),
                Ok(Layout::Packed(extent)) => {
                    *self.extent.lock().expect("extent lock") = Some(extent);
                    return Ok(());
                }
                Ok(Layout::Chunks(Some(found))) => {
                    self.remember_locations(chunk_offset, found);
                    return Ok(());
                }
                // Not known yet: the chunk reads ask again as they do.
                Ok(Layout::Chunks(None)) => return Ok(()),
                Err(KfsError::Unavailable(why)) if retries.time_left() => {
                    tracing::debug!(path = %self.path, %why, "layout not known yet; asking again");
                    retries.pause().await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Self::location`], waiting (up to `read_retry_for`, with backoff) while the master says
    /// the locations are not known yet: it has just restarted and chunkservers are reporting.
    async fn location_when_known(&self, chunk_offset: u64) -> KfsResult<Option<ChunkLocation>> {
        let mut retries = self
            .io
            .options
            .retry
            .for_up_to(self.io.options.read_retry_for);
        loop {
            match self.location(chunk_offset).await {
                Err(KfsError::Unavailable(why)) if retries.time_left() => {
                    tracing::debug!(path = %self.path, chunk_offset, %why, "chunk locations not known yet; asking again");
                    retries.pause().await;
                }
                other => return other,
            }
        }
    }

    /// Reads `len` bytes of the chunk at `chunk_offset` from `in_chunk` on; a hole, or bytes past
    /// the chunk's data, read as zeros.
    async fn read_piece(&self, chunk_offset: u64, in_chunk: u64, len: usize) -> KfsResult<Vec<u8>> {
        let mut failures = Vec::new();
        let mut chunk = ChunkId(0);
        // A capability refused as expired (a chunkserver without the master's newest key yet,
        // just after the master restarted) asks again without counting as an attempt, pausing
        // from the second time on, within `read_retry_for`.
        let mut renewals = self
            .io
            .options
            .retry
            .for_up_to(self.io.options.read_retry_for);
        let mut renewed = 0;
        let mut attempt = 0;
        while attempt < 2 {
            let Some(loc) = self.location_when_known(chunk_offset).await? else {
                return Ok(vec![0; len]);
            };
            chunk = loc.chunk;
            if loc.replicas.is_empty() && failures.is_empty() {
                failures.push("no live replica".to_string());
            }
            // Spread readers over the replicas; fail over to the next one on any error.
            let n = loc.replicas.len();
            let first = (loc.chunk.0 as usize + attempt) % n.max(1);
            let mut expired = false;
            for i in 0..n {
                let replica = &loc.replicas[(first + i) % n];
                match self.read_replica(&loc, replica.addr, in_chunk, len).await {
                    Ok(bytes) => return Ok(bytes),
                    // Every replica would say so: ask the master again at once.
                    Err(e @ KfsError::CapabilityExpired { .. }) => {
                        self.io.caps.forget(loc.chunk);
                        failures.push(format!("{}: {e}", replica.addr));
                        expired = true;
                        break;
                    }
                    Err(e) => failures.push(format!("{}: {e}", replica.addr)),
                }
            }
            // The chunk may have moved to a new version or new replicas: ask again, once.
            self.locations
                .lock()
                .expect("locations lock")
                .remove(&chunk_offset);
            if expired && renewals.time_left() {
                renewed += 1;
                if renewed > 1 {
                    renewals.pause().await;
                }
                continue;
            }
            attempt += 1;
        }
        Err(KfsError::ChunkUnavailable {
            chunk,
            reason: format!(
                "reading {} at byte {}: {}",
                self.path,
                chunk_offset + in_chunk,
                failures.join("; ")
            ),
        })
    }

    /// Reads `len` bytes from one replica, zero-padded past the chunk's data.
    async fn read_replica(
        &self,
        loc: &ChunkLocation,
        addr: std::net::SocketAddr,
        in_chunk: u64,
        len: usize,
    ) -> KfsResult<Vec<u8>> {
        let pool = &self.io.chunks;
        let client = pool
            .get(addr)
            .await
            .map_err(|e| unreachable("chunkserver", addr, e))?;
        let cap = self.io.caps.for_call(read_need(loc))?;
        let mut out: Vec<u8> = Vec::new();
        while out.len() < len {
            let want = (len - out.len()).min(MAX_READ_LEN as usize) as u32;
            let at = in_chunk + out.len() as u64;
            let read = match &cap {
                Some(cap) => client.read_with(self.io.ctx(), cap.clone(), at, want).await,
                None => {
                    client
                        .read(self.io.ctx(), loc.chunk, loc.version, at, want)
                        .await
                }
            };
            let got = match read {
                Ok(got) => got?,
                Err(e) => {
                    pool.forget(addr);
                    return Err(unreachable("chunkserver", addr, e));
                }
            };
            let short = got.len() < want as usize;
            if out.is_empty() {
                out = got.into_vec();
            } else {
                out.extend_from_slice(&got);
            }
            if short {
                // The chunk's data ends here; the rest reads as zeros.
                break;
            }
        }
        out.resize(len, 0);
        Ok(out)
    }
}

/// What reading a chunk needs: a read capability for the whole chunk.
fn read_need(loc: &ChunkLocation) -> Need {
    Need {
        chunk: loc.chunk,
        version: loc.version,
        access: Some(Access::Read),
        offset: 0,
        len: u64::MAX,
    }
}
