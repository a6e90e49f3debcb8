//! The chunk service's volume calls: volumes made, records appended down the chain, records
//! read (`store/volumes.rs` holds what the store does with them).
//!
//! An append reaches the primary without a place; the primary numbers it and places it at the
//! volume's end (`Sequencer::assign_append`), and every replica applies it in that number's
//! order, so each record lies at the same offset on every replica. A replica queues its append
//! on its data dir in its turn and passes the turn on at once: the appends queued behind it share
//! its sync. Once an append failed on the primary, its numbering is dropped, so every later
//! append at that version is refused rather than placed after a record that is not there.

use super::ChunkServer;
use super::chunk_service::{COPY_PIECE, COPYING, FORWARD_TIMEOUT};
use crate::store::volume_file;
use kfs_common::proto::Payload;
use kfs_common::proto::chunk::{AppendRequest, MAX_READ_LEN, MAX_WRITE_LEN};
use kfs_common::proto::master::ReplicaLocation;
use kfs_common::rpc;
use kfs_common::{ChunkId, ChunkVersion, FileId, KfsError, KfsResult};

impl ChunkServer {
    pub(super) async fn serve_create_volume(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
    ) -> KfsResult<()> {
        match self.store.create_volume(chunk, version).await {
            Err(KfsError::AlreadyExists { .. })
                if self.store.replica(chunk) == Some((version, 0))
                    && self.store.is_volume(chunk) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    pub(super) async fn serve_append(&self, req: AppendRequest) -> KfsResult<u64> {
        let AppendRequest {
            chunk,
            version,
            fid,
            data,
            placed,
            chain,
        } = req;
        if data.len() > MAX_WRITE_LEN {
            return Err(KfsError::invalid_argument(format!(
                "an append of {} bytes is more than {MAX_WRITE_LEN} at once",
                data.len()
            )));
        }
        let primary = placed.is_none();
        let (serial, at) = match placed {
            Some(placed) => placed,
            None => {
                let end = match self.store.replica(chunk) {
                    None => {
                        let missing = KfsError::NoSuchChunk { chunk };
                        return Err(self.local_failure(chunk, version, missing));
                    }
                    Some((found, _)) if found != version => {
                        let stale = KfsError::StaleVersion {
                            chunk,
                            expected: version,
                            found,
                        };
                        return Err(self.local_failure(chunk, version, stale));
                    }
                    Some((_, end)) => end,
                };
                let len = volume_file::record_len(data.len() as u64);
                self.seq.assign_append(chunk, version, len, end)?
            }
        };
        let local = async {
            let turn = self.seq.turn(chunk, version, serial).await?;
            // Queued in this turn; the turn passes on before the sync, which the appends queued
            // next share.
            let appended = self
                .store
                .start_append(chunk, version, at, fid, data.clone());
            turn.finish();
            appended.await
        };
        let forward = self.forward(chunk, &chain, |next, rest| {
            let request = AppendRequest {
                chunk,
                version,
                fid,
                data: data.clone(),
                placed: Some((serial, at)),
                chain: rest,
            };
            async move {
                next.append(rpc::context(FORWARD_TIMEOUT), request)
                    .await
                    .map(|r| r.map(drop))
            }
        });
        let (local, forwarded) = tokio::join!(local, forward);
        if primary && local.is_err() {
            self.seq.forget(chunk);
        }
        match local {
            // A sealed volume, or one whose end moved, is no replica's failure: the writer
            // appends elsewhere.
            Err(e @ KfsError::AppendRefused { .. }) => return Err(e),
            Err(e) => return Err(self.local_failure(chunk, version, e)),
            Ok(_) => {}
        }
        self.io.written_bytes.inc_by(data.len() as u64);
        forwarded?;
        Ok(at)
    }

    /// Copies the volume from `source` (sealed, staged at version 0 as any copy), checks every
    /// record and the whole against the source's digest, then gives it its version.
    pub(super) async fn copy_volume_from(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        source: &ReplicaLocation,
    ) -> KfsResult<u64> {
        let unreachable =
            |e: String| KfsError::Unavailable(format!("source {} of {chunk}: {e}", source.addr));
        let from = self
            .peers
            .get(source.addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        self.store.delete(chunk).await?;
        self.seq.forget(chunk);
        self.store.create_copied_volume(chunk, COPYING).await?;
        let mut at = 0u64;
        loop {
            let piece = match from
                .read_volume(
                    rpc::context(FORWARD_TIMEOUT),
                    chunk,
                    version,
                    at,
                    COPY_PIECE,
                )
                .await
            {
                Ok(piece) => piece?,
                Err(e) => {
                    self.peers.forget(source.addr);
                    return Err(unreachable(e.to_string()));
                }
            };
            let n = piece.len() as u64;
            self.io.copied_bytes.inc_by(n);
            if n > 0 {
                self.store.write_raw(chunk, COPYING, at, piece).await?;
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
        // Every record checked (a torn tail the source holds is copied as it is, and allowed).
        self.store.verify(chunk, COPYING).await?;
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
        tracing::info!(%chunk, %version, bytes = at, source = %source.addr, "volume copied");
        Ok(at)
    }

    pub(super) async fn serve_read_record(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        fid: FileId,
        len: u32,
    ) -> KfsResult<Payload> {
        if len > MAX_READ_LEN {
            return Err(KfsError::invalid_argument(format!(
                "a read of {len} bytes is more than {MAX_READ_LEN} at once"
            )));
        }
        let data = self
            .store
            .read_record(chunk, version, offset, fid, u64::from(len))
            .await?;
        self.io.read_bytes.inc_by(data.len() as u64);
        Ok(Payload::from_buffer(data))
    }
}
