//! The master's side of small files packed into volumes: committing a file's extent, and the
//! layout readers are given (a packed file's extent and its volume's replicas, or chunks).
//!
//! A packed file answers the older `open` and `locate` with its volume as its only chunk, at
//! offset 0: a reader of an older protocol then reads a volume with a chunk read, which the
//! chunkserver refuses, so it fails rather than read zeros or another file's bytes.

use super::namespace_service::expect_attr;
use super::{MasterServer, MasterState};
use crate::namespace::Namespace;
use crate::namespace::op::Op;
use futures::future::BoxFuture;
use kfs_common::proto::master::{ExtentLocation, FileAttr, Layout};
use kfs_common::proto::now;
use kfs_common::worker::{CancellationToken, Worker, WorkerStatus};
use kfs_common::{ChunkId, ChunkVersion, FileId, FileKind, KfsError, KfsResult};
use std::sync::Arc;
use std::time::Duration;

/// Bytes a record of `len` data bytes takes in a volume, at most (its header and padding:
/// `chunkserver/src/store/volume_file.rs`), for the open volume's fill and compaction's dead bytes.
pub(super) const RECORD_OVERHEAD: u64 = 32;

/// The chunks of `fid` in `[start, end)` as `(offset, chunk, version)`, or for a packed file its
/// volume at offset 0 (see the module docs).
pub(super) fn chunks_or_volume(
    ns: &Namespace,
    fid: FileId,
    start: u64,
    end: u64,
    chunk_size: u64,
) -> Vec<(u64, ChunkId, ChunkVersion)> {
    match ns.extent_of(fid) {
        Some(e) if ns.chunks(fid).is_empty() => ns
            .volume(e.volume)
            .map(|(version, _)| vec![(0, e.volume, version)])
            .unwrap_or_default(),
        _ => ns.chunks_in(fid, start, end, chunk_size),
    }
}

impl MasterServer {
    pub(super) async fn commit_extent(
        &self,
        fid: FileId,
        volume: ChunkId,
        offset: u64,
        len: u32,
    ) -> KfsResult<FileAttr> {
        self.state
            .leases
            .check_committable(&self.lease_context(), volume)?;
        let attr = self
            .mutate(Op::SetExtent {
                fid,
                volume,
                at: offset,
                len,
                time: now(),
            })
            .await
            .and_then(expect_attr)?;
        self.state.leases.volume_committed(
            volume,
            offset
                .saturating_add(u64::from(len))
                .saturating_add(RECORD_OVERHEAD),
        );
        Ok(attr)
    }

    pub(super) fn open_with_layout(&self, path: &str, len: u64) -> KfsResult<(FileAttr, Layout)> {
        let attr = self.read(|ns| ns.stat(path))?;
        if attr.kind != FileKind::File {
            return Err(KfsError::not_a_regular_file(path, attr.kind));
        }
        let layout = self
            .layout_of(attr.fid, 0, len)
            .map_err(|e| e.naming(&attr.fid.to_string(), path))?;
        Ok((attr, layout))
    }

    pub(super) fn layout_of(&self, fid: FileId, offset: u64, len: u64) -> KfsResult<Layout> {
        let chunk_size = self.state.leases.chunk_size();
        let (extent, chunks) = self.read(|ns| {
            let attr = ns.stat_fid(fid)?;
            if attr.kind != FileKind::File {
                return Err(KfsError::not_a_regular_file(fid.to_string(), attr.kind));
            }
            // A file moving to chunks of its own is read from its extent until it has moved.
            let extent = ns
                .extent_of(fid)
                .and_then(|e| ns.volume(e.volume).map(|(version, r)| (e, version, r)));
            let chunks = ns.chunks_in(fid, offset, offset.saturating_add(len), chunk_size);
            Ok((extent, chunks))
        })?;
        match extent {
            Some((e, version, replication)) => {
                let located = self.locations_of(vec![(0, e.volume, version)], true)?;
                Ok(Layout::Packed(ExtentLocation {
                    volume: e.volume,
                    version,
                    offset: e.at,
                    len: e.len,
                    replication,
                    replicas: located
                        .into_iter()
                        .next()
                        .map(|l| l.replicas)
                        .unwrap_or_default(),
                }))
            }
            // Locations not all known yet (safe mode): the open still succeeds; reads ask again.
            None => Ok(Layout::Chunks(self.locations_of(chunks, true).ok())),
        }
    }
}

/// Frees volumes that hold no file's record any more and take no appends (a [`Worker`]): their
/// replicas are deleted like a removed file's chunks. A writer whose record went to a volume
/// freed before its `set_extent` is told `NoSuchChunk` and appends elsewhere; nothing it was
/// told is durable is lost.
pub(super) struct VolumeReclaimer {
    pub state: Arc<MasterState>,
    pub interval: Duration,
}

impl Worker for VolumeReclaimer {
    fn name(&self) -> String {
        "volume reclaimer".into()
    }

    fn run(self: Box<Self>, _: CancellationToken, status: WorkerStatus) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut ticks = tokio::time::interval(self.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut freed = 0u64;
            loop {
                ticks.tick().await;
                let empty: Vec<ChunkId> = {
                    let ns = self.state.ns.read().expect("namespace lock");
                    ns.volumes()
                        .into_iter()
                        .map(|(chunk, _, _)| chunk)
                        .filter(|c| ns.volume_use(*c).is_some_and(|u| u.records == 0))
                        .collect()
                };
                for chunk in empty {
                    // (A volume being made is empty and not open yet.)
                    if self.state.leases.is_open_volume(chunk) || self.state.leases.making_volume()
                    {
                        continue;
                    }
                    match self.state.committer.commit(Op::FreeVolume { chunk }).await {
                        Ok(_) => {
                            freed += 1;
                            tracing::debug!(%chunk, "empty volume freed");
                        }
                        // A record committed to it meanwhile: it stays.
                        Err(e) => tracing::debug!(%chunk, error = %e, "empty volume kept"),
                    }
                }
                status.round(format!("{freed} empty volumes freed so far"));
            }
        })
    }
}
