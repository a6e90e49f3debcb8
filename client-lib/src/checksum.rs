//! A file's crc32c (of all its bytes, as `crc32c` over the whole file computes it) without
//! reading its data: each chunk's crc32c comes from the checksums its replica keeps of its
//! blocks (`ChunkService::checksum`, one read of a header), and they are combined in file order
//! with `crc32c_combine`. Bytes the chunks do not hold (holes, a last replica shorter than the
//! file) count as the zeros a read returns. A small file packed into a volume is one record:
//! it is read and summed here. A chunk no replica can sum (a chunkserver older than chunk
//! protocol 4, or a replica holding bytes past the file's end) is read instead.

use crate::client::Client;
use crate::errors::unreachable;
use kfs_common::proto::master::{ChunkLocation, Layout};
use kfs_common::{KfsError, KfsResult};

/// What [`Client::checksum`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileChecksum {
    /// The file's length in bytes.
    pub length: u64,
    /// The crc32c (Castagnoli) of those bytes.
    pub crc32c: u32,
}

/// `crc` extended by `n` zero bytes, in time logarithmic in `n` (a hole of a terabyte costs
/// microseconds): the crc32c of 64 KiB of zeros, doubled by `crc32c_combine` for each bit of
/// `n / 64 KiB`, and the rest appended directly. Zeros are all alike, so the pieces' order does
/// not matter.
fn append_zeros(crc: u32, n: u64) -> u32 {
    const PIECE: usize = 64 * 1024;
    static ZEROS: [u8; PIECE] = [0; PIECE];
    let mut crc = crc32c::crc32c_append(crc, &ZEROS[..(n % PIECE as u64) as usize]);
    let mut pieces = n / PIECE as u64;
    let (mut run_crc, mut run_len) = (crc32c::crc32c(&ZEROS), PIECE);
    while pieces > 0 {
        if pieces & 1 == 1 {
            crc = crc32c::crc32c_combine(crc, run_crc, run_len);
        }
        pieces >>= 1;
        if pieces > 0 {
            run_crc = crc32c::crc32c_combine(run_crc, run_crc, run_len);
            run_len *= 2;
        }
    }
    crc
}

/// `crc` (of some bytes, 0 for none) followed by `len` bytes whose own crc32c is `next`.
fn append_crc(crc: u32, next: u32, len: u64) -> u32 {
    crc32c::crc32c_combine(crc, next, len as usize)
}

impl Client {
    /// The crc32c of the file at `path` and its length (see the module docs): no data of a
    /// chunked file is read when its chunkservers keep block checksums (chunk protocol 4).
    pub async fn checksum(&self, path: &str) -> KfsResult<FileChecksum> {
        let (attr, layout) = self.file_layout(path).await?;
        if attr.kind == kfs_common::FileKind::Dir {
            return Err(KfsError::is_a_directory(path));
        }
        if let Layout::Packed(_) = layout {
            let data = self
                .open(path)
                .await?
                .read_at(0, attr.size as usize)
                .await?;
            return Ok(FileChecksum {
                length: data.len() as u64,
                crc32c: crc32c::crc32c(&data),
            });
        }
        let chunk_size = self.chunk_size();
        let mut chunks = self.file_chunks(path).await?;
        chunks.sort_by_key(|c| c.offset);
        let (mut crc, mut at) = (0u32, 0u64);
        for c in chunks.iter().filter(|c| c.offset < attr.size) {
            // A hole before this chunk reads as zeros.
            crc = append_zeros(crc, c.offset - at);
            let expected = (attr.size - c.offset).min(chunk_size);
            let (len, chunk_crc) = match self.chunk_checksum(c, expected).await? {
                Some(summed) => summed,
                None => {
                    let file = self.open(path).await?;
                    let data = file.read_at(c.offset, expected as usize).await?;
                    (data.len() as u64, crc32c::crc32c(&data))
                }
            };
            crc = append_crc(crc, chunk_crc, len);
            // Past the replica's data, up to the file's length in this chunk: zeros.
            crc = append_zeros(crc, expected - len);
            at = c.offset + expected;
        }
        crc = append_zeros(crc, attr.size - at);
        Ok(FileChecksum {
            length: attr.size,
            crc32c: crc,
        })
    }

    /// One chunk's data length and crc32c from the first replica that can sum it, or `None`
    /// when none can (the caller reads the chunk instead). A replica holding more than the
    /// `expected` bytes (written past the file's end) cannot be summed: its table covers them.
    async fn chunk_checksum(
        &self,
        c: &ChunkLocation,
        expected: u64,
    ) -> KfsResult<Option<(u64, u32)>> {
        let pool = &self.inner.io.chunks;
        let mut failures = Vec::new();
        for r in &c.replicas {
            let client = match pool.get(r.addr).await {
                Ok(client) => client,
                Err(e) => {
                    failures.push(unreachable("chunkserver", r.addr, e));
                    continue;
                }
            };
            let need = crate::capabilities::Need {
                access: Some(kfs_common::security::capability::Access::Read),
                len: u64::MAX,
                ..crate::capabilities::Need::whole(c.chunk, c.version, None)
            };
            let summed = match self.inner.io.caps.for_call(need) {
                Ok(Some(cap)) => client.checksum_with(self.ctx(), cap).await,
                Ok(None) => client.checksum(self.ctx(), c.chunk, c.version).await,
                // Not held (it expired): the chunk is read instead, asking again.
                Err(_) => return Ok(None),
            };
            match summed {
                Ok(Ok((len, crc))) if len <= expected => return Ok(Some((len, crc))),
                Ok(Ok(_)) => return Ok(None),
                Ok(Err(e)) => failures.push(e),
                Err(e) => {
                    pool.forget(r.addr);
                    failures.push(unreachable("chunkserver", r.addr, e));
                }
            }
        }
        tracing::debug!(chunk = %c.chunk, ?failures, "no replica summed the chunk; reading it");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_and_combined_pieces_match_the_whole() {
        let a = b"hello, ";
        let b = vec![7u8; 100_000];
        let mut whole = a.to_vec();
        whole.extend_from_slice(&b);
        whole.extend(std::iter::repeat_n(0u8, 70_000));
        let crc = append_crc(crc32c::crc32c(a), crc32c::crc32c(&b), b.len() as u64);
        assert_eq!(append_zeros(crc, 70_000), crc32c::crc32c(&whole));
        assert_eq!(append_zeros(0, 5), crc32c::crc32c(&[0; 5]));
        for n in [
            0u64,
            65_536,
            65_537,
            3 * 65_536 + 17,
            1 << 20,
            (5 << 20) + 3,
        ] {
            let zeros = vec![0u8; n as usize];
            assert_eq!(append_zeros(7, n), crc32c::crc32c_append(7, &zeros), "{n}");
        }
        // A petabyte of holes is summed with 50 combines (appending them would take hours),
        // and matches doubling by hand.
        let mut by_hand = crc32c::crc32c(&[0u8; 65_536]);
        for bit in 16..50 {
            by_hand = crc32c::crc32c_combine(by_hand, by_hand, 1 << bit);
        }
        assert_eq!(append_zeros(0, 1 << 50), by_hand);
        assert_eq!(append_crc(0, crc32c::crc32c(a), 7), crc32c::crc32c(a));
        assert_eq!(append_crc(crc32c::crc32c(a), 0, 0), crc32c::crc32c(a));
    }
}
