//! The chunk service's volume calls: volumes made, records appended down the chain, records
//! read (`store/volumes.rs` holds what the store does with them).
//!
//! An append reaches the primary without a place; the primary numbers it and places it at the
//! volume's end (`Sequencer::assign_append`), and every replica applies it in that number's
//! order, so each record lies at the same offset on every replica. A replica queues its append
//! on its data dir in its turn and passes the turn on at once: the appends queued behind it share
//! its sync. Once an append failed on the primary, its numbering is dropped: the primary numbers
//! afresh from its own end, which the secondaries refuse (numbers below those applied, or an end
//! not theirs), so no later append is acknowledged at an offset some replica lacks; the writer
//! has the volume sealed.

use super::ChunkServer;
use super::chunk_service::FORWARD_TIMEOUT;
use crate::store::volume_file;
use kfs_common::proto::Payload;
use kfs_common::proto::chunk::{AppendRequest, MAX_WRITE_LEN};
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
                let end = self.primary_replica(chunk, version)?;
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

    pub(super) async fn serve_read_record(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        fid: FileId,
        len: u32,
    ) -> KfsResult<Payload> {
        super::chunk_service::check_read_len(len)?;
        let data = self
            .store
            .read_record(chunk, version, offset, fid, u64::from(len))
            .await?;
        self.io.read_bytes.inc_by(data.len() as u64);
        Ok(Payload::from_buffer(data))
    }
}
