//! [`Client::truncate`]: a file cut to a length, or extended with zeros, as `truncate(2)`.
//!
//! A chunked file: the master frees every chunk wholly past the shorter of the old and new
//! lengths (`MasterService::truncate`); the chunk holding that point may hold bytes past it (the
//! cut-off tail, or bytes written past the end and never committed), which a read must see as
//! zeros once they fall inside the file, so they are overwritten with zeros first, on every
//! replica, durably. A crash between the two leaves the file at its old length with that tail
//! zeroed: bytes the truncate was asked to discard. A small packed file is rewritten as one new
//! record of the new length (one logged switch: all or nothing); one grown past the packing
//! threshold moves to chunks.

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
        }
        let cut = attr.size.min(len);
        let chunk_size = self.chunk_size();
        let chunk_offset = cut - cut % chunk_size;
        let end = (chunk_offset + chunk_size).min(attr.size.max(len));
        if cut % chunk_size != 0 && end > cut {
            let end = end.min(chunk_offset + self.replica_data_len(path, chunk_offset).await?);
            if end > cut {
                let mut file = self.open(path).await?;
                let zeros = vec![0u8; ZERO_PIECE];
                let mut at = cut;
                while at < end {
                    let n = ((end - at) as usize).min(ZERO_PIECE);
                    file.write_at(at, &zeros[..n]).await?;
                    at += n as u64;
                }
                file.sync().await?;
                file.close().await?;
            }
        }
        self.call(self.m().truncate(self.ctx(), attr.fid, len))
            .await
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
            let answer = match self.inner.io.chunks.get(r.addr).await {
                Ok(client) => client.length(self.ctx(), c.chunk, c.version).await,
                Err(_) => return Ok(self.chunk_size()),
            };
            match answer {
                Ok(Ok(len)) => longest = longest.max(len),
                _ => return Ok(self.chunk_size()),
            }
        }
        Ok(longest)
    }
}
