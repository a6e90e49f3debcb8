//! The chunk service: [`ChunkService`] on [`ChunkServer`].
//!
//! A write is applied locally while it is forwarded down the chain, in the order the primary's
//! sequencer numbers it; a failure is reported as `WriteFailed` naming the replica that failed,
//! except that a version move or lost ordering is passed on as it is (no replica's fault).
//! `replicate` copies a replica from another chunkserver, staged at version 0 (so a copy cut
//! short is stale, never short at a real version) and checked against the source's `digest`
//! before it takes the real version.
//!
//! On a secured server, each call is first checked for who may make it (`capabilities.rs`): the
//! master alone changes replicas; the data calls without a capability are the cluster's own
//! (chains, copies); clients' data calls carry the master's capability, and then run as their
//! unsigned namesakes do.

use super::ChunkServer;
use kfs_common::proto::Payload;
use kfs_common::proto::chunk::{
    AppendRequest, ChunkService, ChunkserverStatus, MAX_READ_LEN, MAX_WRITE_LEN, WriteRequest,
};
use kfs_common::proto::master::ReplicaLocation;
use kfs_common::rpc;
use kfs_common::security::capability::{Access, Capability};
use kfs_common::{ChunkId, ChunkVersion, FileId, KfsError, KfsResult};
use std::time::Duration;
use tarpc::context::Context;
use tracing::instrument;

impl ChunkServer {
    /// What a write or sync at `version` that failed here answers: the version moved under it
    /// (the master moved this replica on while the request was on its way), or the writes at
    /// this version can no longer be ordered (see the sequencer), both as they are, with no
    /// replica to blame; or a failure of this replica, as the chain reports it.
    pub(super) fn local_failure(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        error: KfsError,
    ) -> KfsError {
        if error.is_version_moved() || error.is_order_lost() {
            return error;
        }
        // A replica renamed to its new version between the check and the file's opening reads
        // as missing: it is a version move too.
        if let KfsError::NoSuchChunk { .. } = error
            && let Some((found, _)) = self.store.replica(chunk)
            && found > version
        {
            return KfsError::StaleVersion {
                chunk,
                expected: version,
                found,
            };
        }
        self.failed_here(chunk, error)
    }

    /// On the primary of a write or append: the length of its replica at the writer's lease
    /// version. A replica moved past the lease is a version move (the writer gets the new
    /// lease); a missing or older one is this replica's own failure, reported as such.
    pub(super) fn primary_replica(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<u64> {
        match self.store.replica(chunk) {
            None => {
                let missing = KfsError::NoSuchChunk { chunk };
                Err(self.local_failure(chunk, version, missing))
            }
            Some((found, _)) if found != version => {
                let stale = KfsError::StaleVersion {
                    chunk,
                    expected: version,
                    found,
                };
                Err(self.local_failure(chunk, version, stale))
            }
            Some((_, length)) => Ok(length),
        }
    }

    /// Has a copy of `chunk` (a `volume`, or a chunk) made here from `source`; a copy that
    /// fails leaves nothing behind (the staging replica is this copy's own).
    async fn copy_in(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        source: &ReplicaLocation,
        volume: bool,
    ) -> KfsResult<u64> {
        let _copy = self.store.begin_copy_in(chunk)?;
        let copied = self.copy_from(chunk, version, source, volume).await;
        if copied.is_err() && self.store.replica(chunk).is_some_and(|(v, _)| v == COPYING) {
            let _ = self.store.delete(chunk).await;
        }
        copied
    }

    /// A failure of this replica, as the chain reports it.
    fn failed_here(&self, chunk: ChunkId, error: KfsError) -> KfsError {
        KfsError::WriteFailed {
            chunk,
            server: self.me.server,
            addr: self.me.addr.to_string(),
            reason: error.to_string(),
        }
    }

    /// Sends `call` to the first replica of `chain` and turns its failure into a `WriteFailed`
    /// naming the replica that failed. A reply that the version moved, or that the writes at it
    /// can no longer be ordered, is passed on as it is: it is no replica's failure (the writer
    /// must get a new lease), and reporting the replica that said it would drop a healthy
    /// replica of the chunk.
    pub(super) async fn forward<F, Fut>(
        &self,
        chunk: ChunkId,
        chain: &[ReplicaLocation],
        call: F,
    ) -> KfsResult<()>
    where
        F: FnOnce(kfs_common::proto::chunk::ChunkServiceClient, Vec<ReplicaLocation>) -> Fut,
        Fut: std::future::Future<Output = Result<KfsResult<()>, tarpc::client::RpcError>>,
    {
        let Some((next, rest)) = chain.split_first() else {
            return Ok(());
        };
        let failed = |reason: String| KfsError::WriteFailed {
            chunk,
            server: next.server,
            addr: next.addr.to_string(),
            reason,
        };
        let client = self
            .peers
            .get(next.addr)
            .await
            .map_err(|e| failed(format!("unreachable: {e}")))?;
        match call(client, rest.to_vec()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e @ KfsError::WriteFailed { .. })) => Err(e),
            Ok(Err(e)) if e.is_version_moved() || e.is_order_lost() => Err(e),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(e) => {
                self.peers.forget(next.addr);
                Err(failed(format!("unreachable: {e}")))
            }
        }
    }
}

/// Forwarding a write or sync down the chain may take this long.
pub(super) const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes a replication copies per read.
const COPY_PIECE: u32 = 4 << 20;

/// The version of a replica while it is being copied in.
const COPYING: ChunkVersion = ChunkVersion(0);

impl ChunkServer {
    /// Length and crc32c of all the data of a local replica, every block verified on the way
    /// (a volume's bytes as they lie: its copy checks its records).
    async fn local_digest(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<(u64, u32)> {
        let (_, length) = self
            .store
            .replica(chunk)
            .ok_or(KfsError::NoSuchChunk { chunk })?;
        let mut crc = 0u32;
        let mut at = 0u64;
        let volume = self.store.is_volume(chunk);
        while at < length {
            let piece = if volume {
                self.store
                    .read_raw(chunk, version, at, u64::from(COPY_PIECE))
                    .await?
            } else {
                self.store
                    .read(chunk, version, at, u64::from(COPY_PIECE))
                    .await?
            };
            if piece.is_empty() {
                break;
            }
            crc = crc32c::crc32c_append(crc, &piece);
            at += piece.len() as u64;
        }
        Ok((at, crc))
    }

    /// Copies a replica (a `volume` of small files, or a chunk) from `source` and checks it end
    /// to end: a chunk's blocks by their checksums as they are read, a volume's records once all
    /// are copied, and the whole against the source's digest.
    async fn copy_from(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        source: &ReplicaLocation,
        volume: bool,
    ) -> KfsResult<u64> {
        let unreachable =
            |e: String| KfsError::Unavailable(format!("source {} of {chunk}: {e}", source.addr));
        let from = self
            .peers
            .get(source.addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // Whatever replica of the chunk is here is stale or damaged: it is replaced. The copy is
        // made at version 0 (older than any real version), so a copy cut short by a crash is a
        // stale replica, never a short one at the current version.
        self.store.delete(chunk).await?;
        self.seq.forget(chunk);
        if volume {
            self.store.create_copied_volume(chunk, COPYING).await?;
        } else {
            self.store.create(chunk, COPYING).await?;
        }
        let mut at = 0u64;
        loop {
            let context = rpc::context(FORWARD_TIMEOUT);
            let read = if volume {
                from.read_volume(context, chunk, version, at, COPY_PIECE)
                    .await
            } else {
                from.read(context, chunk, version, at, COPY_PIECE).await
            };
            let piece = match read {
                Ok(piece) => piece?,
                Err(e) => {
                    self.peers.forget(source.addr);
                    return Err(unreachable(e.to_string()));
                }
            };
            let n = piece.len() as u64;
            self.io.copied_bytes.inc_by(n);
            if n > 0 && volume {
                self.store.write_raw(chunk, COPYING, at, piece).await?;
            } else if n > 0 {
                self.store.write(chunk, COPYING, at, piece).await?;
            }
            at += n;
            if n < u64::from(COPY_PIECE) {
                break;
            }
        }
        let theirs = match from
            .digest(rpc::context(FORWARD_TIMEOUT), chunk, version)
            .await
        {
            Ok(d) => d?,
            Err(e) => return Err(unreachable(e.to_string())),
        };
        self.store.sync(chunk, COPYING).await?;
        if volume {
            // Every record checked (a torn tail the source holds is copied as it is, and
            // allowed).
            self.store.verify(chunk, COPYING).await?;
        }
        let ours = self.local_digest(chunk, COPYING).await?;
        if ours != theirs {
            return Err(KfsError::CorruptReplica {
                chunk,
                reason: format!(
                    "the copy from {} has digest {ours:?}, the source {theirs:?}",
                    source.addr
                ),
            });
        }
        self.store.set_version(chunk, COPYING, version).await?;
        tracing::info!(%chunk, %version, bytes = at, source = %source.addr, "replica copied");
        Ok(at)
    }
}

/// Refuses a read of more than [`MAX_READ_LEN`] bytes at once.
pub(super) fn check_read_len(len: u32) -> KfsResult<()> {
    if len > MAX_READ_LEN {
        return Err(KfsError::invalid_argument(format!(
            "a read of {len} bytes is more than {MAX_READ_LEN} at once"
        )));
    }
    Ok(())
}

impl ChunkService for ChunkServer {
    #[instrument(level = "debug", skip_all, fields(%chunk, %version, offset, len))]
    async fn read(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        len: u32,
    ) -> KfsResult<Payload> {
        self.cluster_only("read")?;
        check_read_len(len)?;
        let data = self
            .store
            .read(chunk, version, offset, u64::from(len))
            .await?;
        self.io.read_bytes.inc_by(data.len() as u64);
        Ok(Payload::from_buffer(data))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %req.chunk, version = %req.version, offset = req.offset, len = req.data.len(), serial = ?req.serial))]
    async fn write(self, _: Context, req: WriteRequest) -> KfsResult<u64> {
        self.cluster_only("write")?;
        let WriteRequest {
            chunk,
            version,
            offset,
            data,
            serial,
            chain,
        } = req;
        if data.len() > MAX_WRITE_LEN {
            return Err(KfsError::invalid_argument(format!(
                "a write of {} bytes is more than {MAX_WRITE_LEN} at once",
                data.len()
            )));
        }
        let serial = match serial {
            Some(serial) => serial,
            None => {
                self.primary_replica(chunk, version)?;
                self.seq.assign(chunk, version)?
            }
        };
        let local = async {
            let turn = self.seq.turn(chunk, version, serial).await?;
            let written = self.store.write(chunk, version, offset, data.clone()).await;
            turn.finish();
            written
        };
        let forward = self.forward(chunk, &chain, |next, rest| {
            let request = WriteRequest {
                chunk,
                version,
                offset,
                data: data.clone(),
                serial: Some(serial),
                chain: rest,
            };
            async move {
                next.write(rpc::context(FORWARD_TIMEOUT), request)
                    .await
                    .map(|r| r.map(drop))
            }
        });
        let (local, forwarded) = tokio::join!(local, forward);
        // This replica's own answer first: its failure, or the version moved here (then the
        // write is moot at this version whatever the rest of the chain said).
        let length = local.map_err(|e| self.local_failure(chunk, version, e))?;
        self.io.written_bytes.inc_by(data.len() as u64);
        forwarded?;
        Ok(length)
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn sync(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        chain: Vec<ReplicaLocation>,
    ) -> KfsResult<()> {
        self.cluster_only("sync")?;
        let local = self.store.sync(chunk, version);
        let forward = self.forward(chunk, &chain, |next, rest| async move {
            next.sync(rpc::context(FORWARD_TIMEOUT), chunk, version, rest)
                .await
        });
        let (local, forwarded) = tokio::join!(local, forward);
        local.map_err(|e| self.local_failure(chunk, version, e))?;
        forwarded
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn create(self, _: Context, chunk: ChunkId, version: ChunkVersion) -> KfsResult<()> {
        self.master_only("create")?;
        match self.store.create(chunk, version).await {
            Err(KfsError::AlreadyExists { .. })
                if self.store.replica(chunk) == Some((version, 0)) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %from, %to))]
    async fn set_version(
        self,
        _: Context,
        chunk: ChunkId,
        from: ChunkVersion,
        to: ChunkVersion,
    ) -> KfsResult<()> {
        self.master_only("set_version")?;
        match self.store.replica(chunk).map(|(v, _)| v) {
            Some(held) if held == to => Ok(()),
            // Moved past `from` by an earlier move whose answer was lost (the master logs a
            // version, and leases it, only after a move): the same data as at `from`.
            Some(held) if held > from && held < to => self.store.set_version(chunk, held, to).await,
            _ => self.store.set_version(chunk, from, to).await,
        }
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version, source = %source.addr))]
    async fn replicate(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        source: ReplicaLocation,
    ) -> KfsResult<u64> {
        self.master_only("replicate")?;
        self.copy_in(chunk, version, &source, false).await
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn digest(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
    ) -> KfsResult<(u64, u32)> {
        self.cluster_only("digest")?;
        self.local_digest(chunk, version).await
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn length(self, _: Context, chunk: ChunkId, version: ChunkVersion) -> KfsResult<u64> {
        self.cluster_only("length")?;
        match self.store.replica(chunk) {
            Some((found, length)) if found == version => Ok(length),
            Some((found, _)) => Err(KfsError::StaleVersion {
                chunk,
                expected: version,
                found,
            }),
            None => Err(KfsError::NoSuchChunk { chunk }),
        }
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn create_volume(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
    ) -> KfsResult<()> {
        self.master_only("create_volume")?;
        self.serve_create_volume(chunk, version).await
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %req.chunk, version = %req.version, fid = %req.fid, len = req.data.len(), placed = ?req.placed))]
    async fn append(self, _: Context, req: AppendRequest) -> KfsResult<u64> {
        self.cluster_only("append")?;
        self.serve_append(req).await
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version, offset, %fid, len))]
    async fn read_record(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        fid: FileId,
        len: u32,
    ) -> KfsResult<Payload> {
        self.cluster_only("read_record")?;
        self.serve_read_record(chunk, version, offset, fid, len)
            .await
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version, offset, len))]
    async fn read_volume(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        len: u32,
    ) -> KfsResult<Payload> {
        self.cluster_only("read_volume")?;
        check_read_len(len)?;
        let data = self
            .store
            .read_raw(chunk, version, offset, u64::from(len))
            .await?;
        Ok(Payload::from_buffer(data))
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version, source = %source.addr))]
    async fn replicate_volume(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        source: ReplicaLocation,
    ) -> KfsResult<u64> {
        self.master_only("replicate_volume")?;
        self.copy_in(chunk, version, &source, true).await
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn checksum(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
    ) -> KfsResult<(u64, u32)> {
        self.cluster_only("checksum")?;
        self.store.checksum(chunk, version).await
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %cap.chunk, version = %cap.version, offset, len))]
    async fn read_with(
        self,
        cx: Context,
        cap: Capability,
        offset: u64,
        len: u32,
    ) -> KfsResult<Payload> {
        self.check_capability(&cap, Some(Access::Read), offset, u64::from(len), None)?;
        self.unchecked()
            .read(cx, cap.chunk, cap.version, offset, len)
            .await
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %req.chunk, version = %req.version, offset = req.offset, len = req.data.len()))]
    async fn write_with(self, cx: Context, cap: Capability, req: WriteRequest) -> KfsResult<u64> {
        self.check_capability_for(&cap, req.chunk, req.version, Access::Write)?;
        if req.serial.is_some() {
            return Err(KfsError::PermissionDenied(
                "a writer's write carries no serial number: only the chain numbers writes".into(),
            ));
        }
        self.unchecked().write(cx, req).await
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %cap.chunk, version = %cap.version))]
    async fn sync_with(
        self,
        cx: Context,
        cap: Capability,
        chain: Vec<ReplicaLocation>,
    ) -> KfsResult<()> {
        self.check_capability(&cap, None, cap.offset, 0, cap.fid)?;
        self.unchecked()
            .sync(cx, cap.chunk, cap.version, chain)
            .await
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %req.chunk, version = %req.version, fid = %req.fid, len = req.data.len()))]
    async fn append_with(self, cx: Context, cap: Capability, req: AppendRequest) -> KfsResult<u64> {
        self.check_capability_for(&cap, req.chunk, req.version, Access::Append)?;
        if req.placed.is_some() {
            return Err(KfsError::PermissionDenied(
                "a writer's append carries no place: only the chain places records".into(),
            ));
        }
        self.unchecked().append(cx, req).await
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %cap.chunk, version = %cap.version, offset, %fid, len))]
    async fn read_record_with(
        self,
        cx: Context,
        cap: Capability,
        offset: u64,
        fid: FileId,
        len: u32,
    ) -> KfsResult<Payload> {
        self.check_capability(&cap, Some(Access::Read), offset, u64::from(len), Some(fid))?;
        self.unchecked()
            .read_record(cx, cap.chunk, cap.version, offset, fid, len)
            .await
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %cap.chunk, version = %cap.version))]
    async fn checksum_with(self, cx: Context, cap: Capability) -> KfsResult<(u64, u32)> {
        self.check_capability(&cap, Some(Access::Read), 0, u64::MAX, None)?;
        self.unchecked().checksum(cx, cap.chunk, cap.version).await
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %cap.chunk, version = %cap.version))]
    async fn length_with(self, cx: Context, cap: Capability) -> KfsResult<u64> {
        self.check_capability(&cap, None, cap.offset, 0, cap.fid)?;
        self.unchecked().length(cx, cap.chunk, cap.version).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn status(self, _: Context) -> KfsResult<ChunkserverStatus> {
        Ok(ChunkserverStatus {
            server: self.store.server_id(),
            chunks: self.store.chunk_count(),
            corrupt: self.store.corrupt(),
            failed_dirs: self
                .store
                .failed_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect(),
        })
    }
}
