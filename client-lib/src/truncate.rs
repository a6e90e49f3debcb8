//! [`Client::truncate`]: a file cut to a length, or extended with zeros, as `truncate(2)`.
//!
//! A chunked file: the master sets the length and frees every chunk wholly past the shorter of
//! the old and new lengths (`MasterService::truncate`, one logged op). The chunk holding that
//! point may hold bytes past it (the cut-off tail, or bytes written past the end and never
//! committed), which a read must see as zeros once they fall inside the file; they are
//! overwritten with zeros, on every replica, durably, while they lie past the end of the file,
//! so no reader sees them change: after the cut when shrinking, before the new length when
//! growing. The zeroing writes do not move the length. A crash between the two steps leaves
//! either the old file, or the new length with unzeroed bytes past it (zeroed by the next
//! truncate that grows over them).
//!
//! A small packed file is rewritten as one new record of the new length (one logged switch:
//! all or nothing); one grown past the packing threshold moves to chunks. A packed file is
//! not shrunk when no volume can take the new record (too few chunkservers with room): that
//! is an error, and the file stays as it was.
//!
//! Writers of the file at the same time race with the truncate as they do on a local disk: a
//! writer whose chunk the truncate freed gets an error at its next flush, never a silent loss.

use crate::client::Client;
use kfs_common::proto::master::{FileAttr, Layout};
use kfs_common::{FileKind, KfsError, KfsResult};

/// Zeros written per call.
const ZERO_PIECE: usize = 1 << 20;

impl Client {
    /// Sets the length of the file at `path` to `len`: bytes past it are gone, and a file
    /// grown reads zeros up to it. Returns the file's attributes.
    pub async fn truncate(&self, path: &str, len: u64) -> KfsResult<FileAttr> {
        let (attr, layout) = self.file_layout(path).await?;
        if attr.kind == FileKind::Dir {
            return Err(KfsError::is_a_directory(path));
        }
        if let Layout::Packed(_) = layout {
            let file = self.open(path).await?;
            if len <= self.inner.io.options.pack_threshold
                && let Some(attr) = file.truncate_packed(len).await?
            {
                return Ok(attr);
            }
            if len > attr.size {
                // Past the threshold: one zero byte at the end moves it to chunks, whole.
                file.write_at(len - 1, &[0]).await?;
                return file.close().await;
            }
            return Err(KfsError::NoSpace(format!(
                "{path} is packed, and no volume could take it shortened (too few chunkservers \
                 with room for its replication): left as it was"
            )));
        }
        let cut = attr.size.min(len);
        if len < attr.size {
            let attr = self
                .call(self.m().truncate(self.ctx(), attr.fid, len))
                .await?;
            self.zero_past_end(path, cut).await?;
            return Ok(attr);
        }
        self.zero_past_end(path, cut).await?;
        self.call(self.m().truncate(self.ctx(), attr.fid, len))
            .await
    }

    /// Overwrites with zeros, durably, what the replicas of the chunk holding byte `cut` hold
    /// past it (up to the longest replica, within the chunk). Every byte zeroed lies past the
    /// file's end, and the file's length is left as it is.
    async fn zero_past_end(&self, path: &str, cut: u64) -> KfsResult<()> {
        let chunk_size = self.chunk_size();
        if cut.is_multiple_of(chunk_size) {
            // The chunk starting at the cut is the master's to free (it lies wholly past it).
            return Ok(());
        }
        let chunk_offset = cut - cut % chunk_size;
        let end = chunk_offset + self.replica_data_len(path, chunk_offset).await?;
        if end <= cut {
            return Ok(());
        }
        let file = self.open(path).await?;
        let zeros = vec![0u8; ZERO_PIECE];
        let mut at = cut;
        while at < end {
            let n = ((end - at) as usize).min(ZERO_PIECE);
            file.write_at(at, &zeros[..n]).await?;
            at += n as u64;
        }
        file.sync_past_end().await
    }

    /// How many bytes the longest replica of the chunk at `chunk_offset` holds (the chunk size
    /// when a replica does not say, so nothing is left unzeroed); 0 for a hole.
    async fn replica_data_len(&self, path: &str, chunk_offset: u64) -> KfsResult<u64> {
        let chunks = self.file_chunks(path).await?;
        let Some(c) = chunks.iter().find(|c| c.offset == chunk_offset) else {
            return Ok(0);
        };
        if c.replicas.is_empty() {
            // No replica to ask: the zeroing write will say what is wrong.
            return Ok(self.chunk_size());
        }
        let mut longest = 0;
        for r in &c.replicas {
            let need = crate::capabilities::Need::whole(c.chunk, c.version, None);
            let answer = match (
                self.inner.io.chunks.get(r.addr).await,
                self.inner.io.caps.for_call(need),
            ) {
                (Ok(client), Ok(Some(cap))) => client.length_with(self.ctx(), cap).await,
                (Ok(client), Ok(None)) => client.length(self.ctx(), c.chunk, c.version).await,
                _ => return Ok(self.chunk_size()),
            };
            match answer {
                Ok(Ok(len)) => longest = longest.max(len),
                _ => return Ok(self.chunk_size()),
            }
        }
        Ok(longest)
    }
}
