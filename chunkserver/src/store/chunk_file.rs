//! One chunk replica on disk: its file format and the blocking operations on it.
//!
//! ```text
//! c<chunk id, 16 hex digits>_v<version>.kfschunk
//! c<chunk id, 16 hex digits>_v<version>.corrupt      the same, once found corrupt (kept so a
//!                                                    restart still knows; never served)
//! [0, 64)        fields: magic "KFSCHUNK", format, block size, chunk id, crc32c of the fields
//! [64, 8192)     crc32c of each 64 KiB block of data, 4 bytes each (2032 blocks: 127 MiB)
//! [8192, ...)    data; the chunk's length is the file's length minus 8192
//! ```
//! The version lives in the file name, so changing it is one atomic `rename`. Data starts on a
//! 4 KiB boundary, and reads fill 4 KiB-aligned buffers, so copies out of the page cache keep the
//! alignment that makes them fast.
//!
//! Invariants:
//! - every block of data has its checksum in the table, computed over the block's bytes up to the
//!   chunk's length (the last block may be short);
//! - a read returns bytes only from blocks whose checksum matched; any mismatch is an error;
//! - a write puts data first and checksums second, and verifies every old block it merges new
//!   bytes into, so a write cut short by a crash leaves a mismatch that reads report, never a
//!   block that passes with wrong bytes, and corruption is never laundered into a fresh checksum;
//! - a write that fails (a full disk) leaves the replica as it was: one that only adds bytes
//!   past the old end is cut back to the old length, and one that also replaces old bytes
//!   allocates its space before writing anything (on file systems that cannot allocate ahead,
//!   such a write cut back leaves a block that fails its checksum);
//! - a create that fails leaves no file; one cut short by a crash leaves a file no longer than
//!   the header, which holds no data ([`ChunkError::Unfinished`]).

use super::aligned::{BufPool, PooledBuf};
use super::io::FileIo;
use kfs_common::{ChunkId, ChunkVersion};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Bytes covered by one checksum.
pub const BLOCK_LEN: usize = 64 * 1024;
/// Bytes before the data: fields and the checksum table.
pub const HEADER_LEN: u64 = 8192;
const FIELDS_LEN: usize = 64;
/// Blocks the checksum table holds.
pub const MAX_BLOCKS: usize = (HEADER_LEN as usize - FIELDS_LEN) / 4;
/// Largest chunk this format holds.
pub const MAX_CHUNK_LEN: u64 = (MAX_BLOCKS * BLOCK_LEN) as u64;
const MAGIC: &[u8; 8] = b"KFSCHUNK";
/// Version of the chunk file format written by this build.
pub const FORMAT: u32 = 1;
const SUFFIX: &str = ".kfschunk";
const CORRUPT_SUFFIX: &str = ".corrupt";
/// Blocks read per system call: small enough to stay in a core's cache for the checksum pass.
const SUB_READ_BLOCKS: usize = 4;

/// What went wrong with a chunk file.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A block's bytes do not match its checksum.
    #[error("checksum mismatch in the block at byte {offset}")]
    Checksum { offset: u64 },
    /// The file is not a whole chunk file (a crash while creating it, or damage to its header).
    #[error("damaged chunk file: {0}")]
    Damaged(String),
    #[error("write ends at byte {end}, past the largest chunk ({MAX_CHUNK_LEN} bytes)")]
    TooLarge { end: u64 },
    /// A create that never finished (a crash between making the file and writing its header):
    /// the file is shorter than the header, or header-sized with nothing written in it; it holds
    /// no data.
    #[error("an unfinished create ({size} bytes, no valid header)")]
    Unfinished { size: u64 },
    /// An append to a volume named another offset than its end.
    #[error("an append at byte {asked}, but the volume ends at byte {end}")]
    NotAtEnd { asked: u64, end: u64 },
    /// A read of a volume named no record of its file and length there (a bad request, not
    /// damage: the scrubber's pass over the records is what finds damaged headers).
    #[error("{0}")]
    NoRecord(String),
    /// An append to a volume this process did not create (see `volume_file`).
    #[error("the volume is sealed: it takes appends only in the process that created it")]
    Sealed,
}

pub fn file_name(chunk: ChunkId, version: ChunkVersion) -> String {
    format!("c{:016x}_v{}{SUFFIX}", chunk.0, version.0)
}

/// The name of a replica's file once it was found corrupt.
pub fn corrupt_file_name(chunk: ChunkId, version: ChunkVersion) -> String {
    format!("c{:016x}_v{}{CORRUPT_SUFFIX}", chunk.0, version.0)
}

/// The chunk and version a file name stands for, and whether it names a corrupt replica.
pub fn parse_any_file_name(name: &str) -> Option<(ChunkId, ChunkVersion, bool)> {
    match name.strip_suffix(CORRUPT_SUFFIX) {
        Some(stem) => parse_file_name(&format!("{stem}{SUFFIX}")).map(|(c, v)| (c, v, true)),
        None => parse_file_name(name).map(|(c, v)| (c, v, false)),
    }
}

/// The chunk and version a file name stands for.
pub fn parse_file_name(name: &str) -> Option<(ChunkId, ChunkVersion)> {
    let rest = name.strip_prefix('c')?.strip_suffix(SUFFIX)?;
    let (id, version) = rest.split_once("_v")?;
    if id.len() != 16 {
        return None;
    }
    Some((
        ChunkId(u64::from_str_radix(id, 16).ok()?),
        ChunkVersion(version.parse().ok()?),
    ))
}

fn fields(chunk: ChunkId) -> [u8; FIELDS_LEN] {
    let mut f = [0u8; FIELDS_LEN];
    f[..8].copy_from_slice(MAGIC);
    f[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    f[12..16].copy_from_slice(&(BLOCK_LEN as u32).to_le_bytes());
    f[16..24].copy_from_slice(&chunk.0.to_le_bytes());
    let crc = crc32c::crc32c(&f[..60]);
    f[60..64].copy_from_slice(&crc.to_le_bytes());
    f
}

fn check_fields(f: &[u8; FIELDS_LEN], chunk: ChunkId) -> Result<(), ChunkError> {
    let damaged = |why: &str| Err(ChunkError::Damaged(why.to_string()));
    if &f[..8] != MAGIC {
        return damaged("not a chunk file (bad magic)");
    }
    if crc32c::crc32c(&f[..60]).to_le_bytes() != f[60..64] {
        return damaged("header checksum mismatch");
    }
    let format = u32::from_le_bytes(f[8..12].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(ChunkError::Damaged(format!(
            "format {format} is not supported by this build ({FORMAT})"
        )));
    }
    if u32::from_le_bytes(f[12..16].try_into().expect("4 bytes")) as usize != BLOCK_LEN {
        return damaged("unexpected block size");
    }
    if u64::from_le_bytes(f[16..24].try_into().expect("8 bytes")) != chunk.0 {
        return damaged("the header names another chunk");
    }
    Ok(())
}

/// The size of an open file that still has a name; one with no links left (removed behind the
/// store's back while open) is missing, as an open by name would find it.
pub fn linked_size(file: &File) -> Result<u64, ChunkError> {
    let meta = file.metadata()?;
    if std::os::unix::fs::MetadataExt::nlink(&meta) == 0 {
        return Err(ChunkError::Io(io::Error::new(
            io::ErrorKind::NotFound,
            "the chunk file was removed",
        )));
    }
    Ok(meta.len())
}

/// The chunk's length, from the size of its open file; a file with no links left (removed
/// behind the store's back while open) is missing, as an open by name would find it.
fn length_of(file: &File) -> Result<u64, ChunkError> {
    let size = linked_size(file)?;
    if size < HEADER_LEN || size - HEADER_LEN > MAX_CHUNK_LEN {
        return Err(ChunkError::Damaged(format!("impossible file size {size}")));
    }
    Ok(size - HEADER_LEN)
}

fn crc_of(block: &[u8]) -> [u8; 4] {
    crc32c::crc32c(block).to_le_bytes()
}

/// Creates an empty chunk file and returns it open read-write (no fsync: durability comes with a
/// sync of the file and its directory). If the header cannot be written (a full disk), the file
/// is removed again.
pub fn create(io: &dyn FileIo, path: &Path, chunk: ChunkId) -> Result<File, ChunkError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    let mut header = vec![0u8; HEADER_LEN as usize];
    header[..FIELDS_LEN].copy_from_slice(&fields(chunk));
    if let Err(e) = io.write_at(&file, &header, 0) {
        drop(file);
        if let Err(removing) = std::fs::remove_file(path) {
            tracing::warn!(file = %path.display(), error = %removing, "could not remove a chunk file whose create failed");
        }
        return Err(e.into());
    }
    Ok(file)
}

/// Opens the chunk file at `path` and checks it (see [`check`]).
pub fn check_path(io: &dyn FileIo, path: &Path, chunk: ChunkId) -> Result<u64, ChunkError> {
    check(io, &File::open(path)?, chunk)
}

/// Checks a chunk file's header and size; returns its length.
pub fn check(io: &dyn FileIo, file: &File, chunk: ChunkId) -> Result<u64, ChunkError> {
    let size = file.metadata()?.len();
    if size < HEADER_LEN {
        return Err(ChunkError::Unfinished { size });
    }
    let length = length_of(file)?;
    let mut f = [0u8; FIELDS_LEN];
    io.read_at(file, &mut f, 0)?;
    if size == HEADER_LEN && f.iter().all(|b| *b == 0) {
        // The file was made and sized, but its header never landed.
        return Err(ChunkError::Unfinished { size });
    }
    check_fields(&f, chunk)?;
    Ok(length)
}

/// Reads and verifies the blocks `[first, last]`; returns their bytes (up to the chunk's
/// length) in a 4 KiB-aligned buffer from `pool`.
fn read_blocks(
    io: &dyn FileIo,
    pool: &Arc<BufPool>,
    file: &File,
    length: u64,
    first: u64,
    last: u64,
) -> Result<PooledBuf, ChunkError> {
    let start = first * BLOCK_LEN as u64;
    let end = ((last + 1) * BLOCK_LEN as u64).min(length);
    let mut crcs = [0u8; MAX_BLOCKS * 4];
    let crcs = &mut crcs[..((last - first + 1) * 4) as usize];
    io.read_at(file, crcs, FIELDS_LEN as u64 + first * 4)?;
    let mut data = pool.take((end - start) as usize);
    // Read and verify a few blocks at a time, so the checksum pass finds them still in cache.
    let piece = SUB_READ_BLOCKS * BLOCK_LEN;
    for (p, (bytes, crcs)) in data
        .chunks_mut(piece)
        .zip(crcs.chunks(SUB_READ_BLOCKS * 4))
        .enumerate()
    {
        let piece_start = start + (p * piece) as u64;
        io.read_at(file, bytes, HEADER_LEN + piece_start)?;
        for (i, (block, crc)) in bytes.chunks(BLOCK_LEN).zip(crcs.chunks(4)).enumerate() {
            if crc_of(block) != crc {
                return Err(ChunkError::Checksum {
                    offset: piece_start + (i * BLOCK_LEN) as u64,
                });
            }
        }
    }
    Ok(data)
}

/// Reads up to `len` bytes from `offset`, verifying every block touched. Returns the blocks'
/// bytes and the range of them that was asked for (empty past the end of the chunk). The
/// replica holds at least `known_len` bytes: a shorter file was cut behind the store's back,
/// and reading it would pass a lost tail off as the chunk's end.
pub fn read(
    io: &dyn FileIo,
    pool: &Arc<BufPool>,
    file: &File,
    known_len: u64,
    offset: u64,
    len: u64,
) -> Result<(PooledBuf, std::ops::Range<usize>), ChunkError> {
    let length = length_of(file)?;
    if length < known_len {
        return Err(ChunkError::Damaged(format!(
            "the file holds {length} bytes of data, the replica {known_len}"
        )));
    }
    if offset >= length || len == 0 {
        return Ok((pool.take(0), 0..0));
    }
    let end = (offset + len).min(length);
    let first = offset / BLOCK_LEN as u64;
    let last = (end - 1) / BLOCK_LEN as u64;
    let data = read_blocks(io, pool, file, length, first, last)?;
    let base = first * BLOCK_LEN as u64;
    Ok((data, (offset - base) as usize..(end - base) as usize))
}

/// The replica's length and the crc32c of all its data, combined from the checksum table
/// (the blocks' checksums cover exactly the chunk's bytes, the last block's up to the length):
/// one read of the header, none of the data. The replica holds at least `known_len` bytes, as
/// for [`read`]. (The table is what reads and the scrubber check blocks against, so a block
/// damaged on disk fails those, not this.)
pub fn checksum(io: &dyn FileIo, file: &File, known_len: u64) -> Result<(u64, u32), ChunkError> {
    let length = length_of(file)?;
    if length < known_len {
        return Err(ChunkError::Damaged(format!(
            "the file holds {length} bytes of data, the replica {known_len}"
        )));
    }
    let blocks = length.div_ceil(BLOCK_LEN as u64) as usize;
    let mut table = [0u8; MAX_BLOCKS * 4];
    let table = &mut table[..blocks * 4];
    io.read_at(file, table, FIELDS_LEN as u64)?;
    let mut crc = 0u32;
    for (i, entry) in table.chunks(4).enumerate() {
        let block_crc = u32::from_le_bytes(entry.try_into().expect("4 bytes"));
        let block_len = (length - (i * BLOCK_LEN) as u64).min(BLOCK_LEN as u64) as usize;
        crc = if i == 0 {
            block_crc
        } else {
            crc32c::crc32c_combine(crc, block_crc, block_len)
        };
    }
    Ok((length, crc))
}

/// Writes `data` at `offset` (bytes between the old end and `offset` read as zeros); returns the
/// chunk's new length.
pub fn write(
    io: &dyn FileIo,
    pool: &Arc<BufPool>,
    file: &File,
    offset: u64,
    data: &[u8],
) -> Result<u64, ChunkError> {
    let end = offset + data.len() as u64;
    if end > MAX_CHUNK_LEN {
        return Err(ChunkError::TooLarge { end });
    }
    let length = length_of(file)?;
    if data.is_empty() {
        return Ok(length);
    }
    let new_length = length.max(end);
    let block = BLOCK_LEN as u64;
    // Blocks whose checksums change: from the one holding `offset` (or, when writing past the
    // end, the old last block, which gains zeros) to the one holding the last byte written.
    let first = offset.min(length) / block;
    let last = (end - 1) / block;
    let start = first * block;
    let region_end = ((last + 1) * block).min(new_length);

    // A full disk must not leave the replica changed. A write that only adds bytes past the old
    // end (or rewrites old bytes as they were, merging) is simply cut back to the old length if
    // it fails: no checksum changed yet. One that replaces old bytes *and* grows the file could
    // fail after replacing some, which no cut undoes: it allocates its new space first, so a
    // full disk fails it before it touches the file.
    if offset < length
        && new_length > length
        && let Err(e) = io.allocate(file, HEADER_LEN + length, new_length - length)
    {
        // Give back what a partial allocation took past the end.
        let _ = file.set_len(HEADER_LEN + length);
        return Err(e.into());
    }
    // (On a file system that cannot allocate ahead, such a write cut back leaves a block that
    // fails its checksum rather than pass new bytes off as old.)
    let write_data = |bytes: &[u8], at: u64| -> Result<(), ChunkError> {
        io.write_at(file, bytes, HEADER_LEN + at).map_err(|e| {
            if new_length > length
                && let Err(cutting) = file.set_len(HEADER_LEN + length)
            {
                tracing::warn!(error = %cutting, "could not cut a failed write back");
            }
            ChunkError::Io(e)
        })
    };
    let crcs: Vec<u8> = if start == offset && region_end == end {
        // Whole blocks, or a run that ends at the new end of the chunk: write the caller's bytes
        // as they are.
        write_data(data, offset)?;
        data.chunks(BLOCK_LEN).flat_map(crc_of).collect()
    } else {
        let mut region = pool.take((region_end - start) as usize);
        region.fill(0);
        for b in first..=last {
            let (bs, be) = (b * block, ((b + 1) * block).min(new_length));
            let covered = offset <= bs && end >= be;
            if bs < length && !covered {
                // Old bytes stay in this block: verify them before giving them a new checksum.
                let old = read_blocks(io, pool, file, length, b, b)?;
                let at = (bs - start) as usize;
                region[at..at + old.len()].copy_from_slice(&old);
            }
        }
        let at = (offset - start) as usize;
        region[at..at + data.len()].copy_from_slice(data);
        write_data(&region, start)?;
        region.chunks(BLOCK_LEN).flat_map(crc_of).collect()
    };
    io.write_at(file, &crcs, FIELDS_LEN as u64 + first * 4)?;
    Ok(new_length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::io::RealIo;

    fn pool() -> Arc<BufPool> {
        BufPool::new(4)
    }

    fn read(
        io: &dyn FileIo,
        path: &Path,
        offset: u64,
        len: u64,
    ) -> Result<(PooledBuf, std::ops::Range<usize>), ChunkError> {
        super::read(io, &pool(), &File::open(path)?, 0, offset, len)
    }

    fn write(io: &dyn FileIo, path: &Path, offset: u64, data: &[u8]) -> Result<u64, ChunkError> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        super::write(io, &pool(), &file, offset, data)
    }

    #[test]
    fn names_round_trip() {
        let name = file_name(ChunkId(0xabc), ChunkVersion(7));
        assert_eq!(name, "c0000000000000abc_v7.kfschunk");
        assert_eq!(
            parse_file_name(&name),
            Some((ChunkId(0xabc), ChunkVersion(7)))
        );
        assert_eq!(parse_file_name("c12_v1.kfschunk"), None);
        assert_eq!(parse_file_name("c0000000000000abc_v7.kfschunk.tmp"), None);
    }

    #[test]
    fn writes_at_any_offset_read_back_with_holes_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(ChunkId(1), ChunkVersion(1)));
        create(&RealIo, &path, ChunkId(1)).unwrap();
        assert_eq!(check_path(&RealIo, &path, ChunkId(1)).unwrap(), 0);
        let mut model = vec![0u8; 0];
        let writes: [(u64, usize, u8); 6] = [
            (0, 100, 1),
            (BLOCK_LEN as u64 - 10, 30, 2),
            (3 * BLOCK_LEN as u64 + 5, 7, 3),
            (BLOCK_LEN as u64, BLOCK_LEN, 4),
            (50, 2 * BLOCK_LEN, 5),
            (0, 0, 6),
        ];
        for (offset, len, byte) in writes {
            let data = vec![byte; len];
            let new_len = write(&RealIo, &path, offset, &data).unwrap();
            let end = offset as usize + len;
            if model.len() < end {
                model.resize(end, 0);
            }
            model[offset as usize..end].copy_from_slice(&data);
            assert_eq!(new_len, model.len() as u64);
            let (buf, range) = read(&RealIo, &path, 0, u64::MAX / 2).unwrap();
            assert!(
                buf[range] == model[..],
                "after writing {len} bytes at {offset}"
            );
        }
        let (buf, range) = read(&RealIo, &path, 3 * BLOCK_LEN as u64, 8).unwrap();
        assert_eq!(&buf[range], &model[3 * BLOCK_LEN..3 * BLOCK_LEN + 8]);
        let (_, range) = read(&RealIo, &path, model.len() as u64, 10).unwrap();
        assert!(range.is_empty());
        assert!(matches!(
            write(&RealIo, &path, MAX_CHUNK_LEN - 1, b"xy"),
            Err(ChunkError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_checksum_from_the_table_is_the_crc32c_of_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(ChunkId(7), ChunkVersion(1)));
        let io = RealIo;
        create(&io, &path, ChunkId(7)).unwrap();
        let file = OpenOptions::new().read(true).open(&path).unwrap();
        assert_eq!(checksum(&io, &file, 0).unwrap(), (0, 0));
        let mut data: Vec<u8> = (0..(3 * BLOCK_LEN + 1234))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        write(&io, &path, 0, &data).unwrap();
        // A hole and a rewrite inside: the table follows every write.
        write(&io, &path, (5 * BLOCK_LEN) as u64, b"tail").unwrap();
        write(&io, &path, 100, b"rewritten").unwrap();
        data.resize(5 * BLOCK_LEN, 0);
        data.extend_from_slice(b"tail");
        data[100..109].copy_from_slice(b"rewritten");
        let file = OpenOptions::new().read(true).open(&path).unwrap();
        assert_eq!(
            checksum(&io, &file, data.len() as u64).unwrap(),
            (data.len() as u64, crc32c::crc32c(&data))
        );
        assert!(checksum(&io, &file, data.len() as u64 + 1).is_err());
    }

    #[test]
    fn a_flipped_bit_on_disk_fails_the_read_of_its_block_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(ChunkId(2), ChunkVersion(1)));
        create(&RealIo, &path, ChunkId(2)).unwrap();
        write(&RealIo, &path, 0, &vec![9u8; 3 * BLOCK_LEN]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN as usize + BLOCK_LEN + 77] ^= 4;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read(&RealIo, &path, 0, BLOCK_LEN as u64).is_ok());
        assert!(matches!(
            read(&RealIo, &path, 0, 3 * BLOCK_LEN as u64),
            Err(ChunkError::Checksum { offset }) if offset == BLOCK_LEN as u64
        ));
        // A partial write into the damaged block refuses to give it a fresh checksum.
        assert!(matches!(
            write(&RealIo, &path, BLOCK_LEN as u64 + 1, b"x"),
            Err(ChunkError::Checksum { .. })
        ));
        // Overwriting the whole block replaces the bad bytes.
        write(&RealIo, &path, BLOCK_LEN as u64, &vec![1u8; BLOCK_LEN]).unwrap();
        assert!(read(&RealIo, &path, 0, 3 * BLOCK_LEN as u64).is_ok());
    }

    #[test]
    fn damaged_headers_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(ChunkId(3), ChunkVersion(1)));
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            check_path(&RealIo, &path, ChunkId(3)),
            Err(ChunkError::Unfinished { size: 5 })
        ));
        std::fs::remove_file(&path).unwrap();
        create(&RealIo, &path, ChunkId(3)).unwrap();
        assert!(matches!(
            check_path(&RealIo, &path, ChunkId(4)),
            Err(ChunkError::Damaged(_))
        ));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            check_path(&RealIo, &path, ChunkId(3)),
            Err(ChunkError::Damaged(_))
        ));
    }

    #[test]
    fn corrupt_names_parse_apart() {
        let (c, v) = (ChunkId(0xabc), ChunkVersion(7));
        assert_eq!(parse_any_file_name(&file_name(c, v)), Some((c, v, false)));
        assert_eq!(
            parse_any_file_name(&corrupt_file_name(c, v)),
            Some((c, v, true))
        );
        assert_eq!(parse_file_name(&corrupt_file_name(c, v)), None);
        assert_eq!(parse_any_file_name("c12_v1.corrupt"), None);
    }

    #[test]
    fn a_full_disk_leaves_no_half_made_file_and_no_half_written_data() {
        use crate::store::io::FaultyIo;
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let path = dir.path().join(file_name(ChunkId(5), ChunkVersion(1)));
        io.set(|f| f.space_left = Some(100));
        let full = create(&io, &path, ChunkId(5));
        assert!(
            matches!(&full, Err(ChunkError::Io(e)) if e.kind() == io::ErrorKind::StorageFull),
            "{full:?}"
        );
        assert!(!path.exists(), "a failed create leaves no file");

        io.set(|f| f.space_left = None);
        create(&io, &path, ChunkId(5)).unwrap();
        write(&io, &path, 0, &vec![3u8; 1000]).unwrap();
        // An append, a write past a hole (both cut back), and one that replaces old bytes and
        // grows (refused by the allocation before it writes).
        for (offset, len) in [
            (1000u64, 3 * BLOCK_LEN),
            (BLOCK_LEN as u64 * 2, 10),
            (500, 3 * BLOCK_LEN),
        ] {
            io.set(|f| f.space_left = Some(5000));
            assert!(write(&io, &path, offset, &vec![4u8; len]).is_err());
            io.set(|f| f.space_left = None);
            assert_eq!(
                check_path(&io, &path, ChunkId(5)).unwrap(),
                1000,
                "the old length"
            );
            let (buf, range) = read(&io, &path, 0, 1 << 20).unwrap();
            assert_eq!(
                &buf[range],
                &vec![3u8; 1000][..],
                "the old bytes, checksums intact"
            );
        }
    }

    #[test]
    fn unfinished_creates_and_cut_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(ChunkId(6), ChunkVersion(1)));
        for size in [0, 100, HEADER_LEN] {
            std::fs::write(&path, vec![0u8; size as usize]).unwrap();
            assert!(
                matches!(check_path(&RealIo, &path, ChunkId(6)), Err(ChunkError::Unfinished { size: s }) if s == size),
                "{size} bytes"
            );
        }
        std::fs::remove_file(&path).unwrap();
        create(&RealIo, &path, ChunkId(6)).unwrap();
        write(&RealIo, &path, 0, &vec![1u8; 3 * BLOCK_LEN]).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(HEADER_LEN + BLOCK_LEN as u64)
            .unwrap();
        let cut = super::read(
            &RealIo,
            &pool(),
            &File::open(&path).unwrap(),
            3 * BLOCK_LEN as u64,
            0,
            10,
        );
        assert!(matches!(cut, Err(ChunkError::Damaged(_))), "{cut:?}");
    }
}
