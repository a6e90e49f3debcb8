//! A volume replica on disk: many small files' records, appended to one file.
//!
//! ```text
//! c<chunk id, 16 hex digits>_v<version>.kfschunk    the same names as chunk files; the magic
//!                                                   tells a volume from a chunk
//! [0, 64)      fields: magic "KFSVOLUM", format, chunk id, crc32c of the fields
//! [64, ...)    records, back to back, each starting on an 8-byte boundary:
//!   [0, 4)       magic "KFSR"
//!   [4, 8)       data length (u32 LE)
//!   [8, 16)      file id (u64 LE)
//!   [16, 20)     crc32c of bytes [0, 16) and the data
//!   [20, 24)     zero (a record whose bytes here are not is damaged)
//!   [24, ...)    data, then zeros to the next 8-byte boundary
//! ```
//! A volume's length is the file's length minus 64; a record is named by its offset in that
//! length (an *extent*: volume, offset, data length). Every record describes itself, so a
//! volume can be checked, or its records listed, by one pass from the start ([`records`]).
//!
//! Invariants:
//! - a record is appended only at the volume's end (the caller names the end it expects; any
//!   other offset is refused), with one positional write;
//! - a read returns a record's data only if its header names the file and length asked for and
//!   its checksum matches; anything else is an error, never other bytes (a checksum mismatch is
//!   damage; a header that names another file, length or nothing is a bad request as far as a
//!   read can tell, and condemns nothing: [`records`] finds damaged headers);
//! - an append that fails (a full disk) leaves the volume as it was (cut back to its old end);
//!   one cut short by a crash leaves a torn last record, which [`records`] tells from damage:
//!   a bad record with no good one after it is a torn tail, a bad one followed by good ones is
//!   damage.

use super::aligned::{BufPool, PooledBuf};
use super::chunk_file::ChunkError;
use super::io::FileIo;
use kfs_common::{ChunkId, FileId};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Arc;

/// Bytes before the first record.
pub const HEADER_LEN: u64 = 64;
/// Bytes of a record before its data.
pub const RECORD_HEADER_LEN: u64 = 24;
/// Largest data one record holds.
pub const MAX_RECORD_DATA: u64 = 16 << 20;
/// Largest volume this format holds.
pub const MAX_VOLUME_LEN: u64 = 1 << 32;
pub const MAGIC: &[u8; 8] = b"KFSVOLUM";
const RECORD_MAGIC: &[u8; 4] = b"KFSR";
/// Version of the volume file format written by this build.
pub const FORMAT: u32 = 1;

/// Bytes a record of `len` data bytes takes, padding included.
pub fn record_len(len: u64) -> u64 {
    (RECORD_HEADER_LEN + len).div_ceil(8) * 8
}

fn fields(chunk: ChunkId) -> [u8; HEADER_LEN as usize] {
    let mut f = [0u8; HEADER_LEN as usize];
    f[..8].copy_from_slice(MAGIC);
    f[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    f[16..24].copy_from_slice(&chunk.0.to_le_bytes());
    let crc = crc32c::crc32c(&f[..60]);
    f[60..64].copy_from_slice(&crc.to_le_bytes());
    f
}

/// Creates an empty volume file and returns it open read-write (durable with a sync of the
/// file and its directory). If the header cannot be written, the file is removed again.
pub fn create(io: &dyn FileIo, path: &Path, chunk: ChunkId) -> Result<File, ChunkError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    if let Err(e) = io.write_at(&file, &fields(chunk), 0) {
        drop(file);
        if let Err(removing) = std::fs::remove_file(path) {
            tracing::warn!(file = %path.display(), error = %removing, "could not remove a volume file whose create failed");
        }
        return Err(e.into());
    }
    Ok(file)
}

/// Checks the fields read from a file's first bytes (already known to carry the volume magic).
pub fn check_fields(f: &[u8], chunk: ChunkId) -> Result<(), ChunkError> {
    let damaged = |why: &str| Err(ChunkError::Damaged(why.to_string()));
    if f.len() < HEADER_LEN as usize || &f[..8] != MAGIC {
        return damaged("not a volume file (bad magic)");
    }
    if crc32c::crc32c(&f[..60]).to_le_bytes() != f[60..64] {
        return damaged("volume header checksum mismatch");
    }
    let format = u32::from_le_bytes(f[8..12].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(ChunkError::Damaged(format!(
            "volume format {format} is not supported by this build ({FORMAT})"
        )));
    }
    if u64::from_le_bytes(f[16..24].try_into().expect("8 bytes")) != chunk.0 {
        return damaged("the volume header names another chunk");
    }
    Ok(())
}

/// Opens the volume file at `path` and checks it (see [`check`]).
pub fn check_path(io: &dyn FileIo, path: &Path, chunk: ChunkId) -> Result<u64, ChunkError> {
    check(io, &File::open(path)?, chunk)
}

/// Checks a volume file's header; returns its length.
pub fn check(io: &dyn FileIo, file: &File, chunk: ChunkId) -> Result<u64, ChunkError> {
    let length = length_of(file)?;
    let mut f = [0u8; HEADER_LEN as usize];
    io.read_at(file, &mut f, 0)?;
    if f.iter().all(|b| *b == 0) {
        return Err(ChunkError::Unfinished {
            size: length + HEADER_LEN,
        });
    }
    check_fields(&f, chunk)?;
    Ok(length)
}

/// The volume's length, from its open file (a file with no links left is missing).
pub fn length_of(file: &File) -> Result<u64, ChunkError> {
    let size = super::chunk_file::linked_size(file)?;
    if size < HEADER_LEN {
        return Err(ChunkError::Unfinished { size });
    }
    Ok(size - HEADER_LEN)
}

fn record_crc(head: &[u8], data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&head[..16]), data)
}

/// Appends a record of file `fid` at `at`, which must be the volume's end; returns the volume's
/// new length. A failed write is cut back, leaving the volume as it was.
pub fn append(
    io: &dyn FileIo,
    pool: &Arc<BufPool>,
    file: &File,
    at: u64,
    fid: FileId,
    data: &[u8],
) -> Result<u64, ChunkError> {
    let length = length_of(file)?;
    if at != length {
        return Err(ChunkError::NotAtEnd {
            asked: at,
            end: length,
        });
    }
    let len = data.len() as u64;
    if len > MAX_RECORD_DATA {
        return Err(ChunkError::TooLarge { end: at + len });
    }
    let total = record_len(len);
    if at + total > MAX_VOLUME_LEN {
        return Err(ChunkError::TooLarge { end: at + total });
    }
    let mut record = pool.take(total as usize);
    record.fill(0);
    record[..4].copy_from_slice(RECORD_MAGIC);
    record[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    record[8..16].copy_from_slice(&fid.0.to_le_bytes());
    let crc = record_crc(&record[..16], data);
    record[16..20].copy_from_slice(&crc.to_le_bytes());
    let start = RECORD_HEADER_LEN as usize;
    record[start..start + data.len()].copy_from_slice(data);
    if let Err(e) = io.write_at(file, &record, HEADER_LEN + at) {
        if let Err(cutting) = file.set_len(HEADER_LEN + length) {
            tracing::warn!(error = %cutting, "could not cut a failed append back");
        }
        return Err(e.into());
    }
    Ok(at + total)
}

/// Reads the data of the record at `at`, which must be file `fid`'s and `len` bytes long, with
/// one positional read; returns the bytes read and the data's range in them.
pub fn read(
    io: &dyn FileIo,
    pool: &Arc<BufPool>,
    file: &File,
    at: u64,
    fid: FileId,
    len: u64,
) -> Result<(PooledBuf, std::ops::Range<usize>), ChunkError> {
    let length = length_of(file)?;
    let want = RECORD_HEADER_LEN + len;
    if len > MAX_RECORD_DATA || !at.is_multiple_of(8) || at + want > length {
        return Err(ChunkError::NoRecord(format!(
            "no record of {len} bytes at {at}: the volume holds {length} bytes"
        )));
    }
    let mut buf = pool.take(want as usize);
    io.read_at(file, &mut buf, HEADER_LEN + at)?;
    let head = Head::parse(&buf);
    if head.magic != *RECORD_MAGIC || head.len != len || head.fid != fid || head.reserved != 0 {
        // A request for the wrong place or file, or a damaged header: a read cannot tell them
        // apart, so it condemns nothing (the scrubber's pass does).
        return Err(ChunkError::NoRecord(format!(
            "the record at {at} is not file {fid}'s {len} bytes"
        )));
    }
    let data = RECORD_HEADER_LEN as usize..want as usize;
    if record_crc(&buf[..16], &buf[data.clone()]) != head.crc {
        return Err(ChunkError::Checksum { offset: at });
    }
    Ok((buf, data))
}

struct Head {
    magic: [u8; 4],
    len: u64,
    fid: FileId,
    crc: u32,
    reserved: u32,
}

impl Head {
    fn parse(b: &[u8]) -> Head {
        Head {
            magic: b[..4].try_into().expect("4 bytes"),
            len: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")) as u64,
            fid: FileId(u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"))),
            crc: u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")),
            reserved: u32::from_le_bytes(b[20..24].try_into().expect("4 bytes")),
        }
    }
}

/// Reads up to `len` bytes of the volume's records as they lie, from `at` (a copy's source;
/// the copy checks them with [`records`]); shorter at the end.
pub fn read_raw(
    io: &dyn FileIo,
    pool: &Arc<BufPool>,
    file: &File,
    at: u64,
    len: u64,
) -> Result<(PooledBuf, std::ops::Range<usize>), ChunkError> {
    let length = length_of(file)?;
    let end = at.saturating_add(len).min(length);
    if at >= end {
        return Ok((pool.take(0), 0..0));
    }
    let mut buf = pool.take((end - at) as usize);
    io.read_at(file, &mut buf, HEADER_LEN + at)?;
    let n = buf.len();
    Ok((buf, 0..n))
}

/// Writes bytes copied from another replica at `at`, the volume's end (a copy in progress);
/// returns the new length. A failed write is cut back.
pub fn append_raw(io: &dyn FileIo, file: &File, at: u64, data: &[u8]) -> Result<u64, ChunkError> {
    let length = length_of(file)?;
    if at != length {
        return Err(ChunkError::NotAtEnd {
            asked: at,
            end: length,
        });
    }
    if at + data.len() as u64 > MAX_VOLUME_LEN {
        return Err(ChunkError::TooLarge {
            end: at + data.len() as u64,
        });
    }
    if let Err(e) = io.write_at(file, data, HEADER_LEN + at) {
        if let Err(cutting) = file.set_len(HEADER_LEN + length) {
            tracing::warn!(error = %cutting, "could not cut a failed copy back");
        }
        return Err(e.into());
    }
    Ok(at + data.len() as u64)
}

/// One record found by [`records`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub at: u64,
    pub fid: FileId,
    pub len: u64,
}

/// What a pass over a volume found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Records {
    /// The good records, in order.
    pub good: Vec<Record>,
    /// Where a torn last record starts (nothing good after it), if there is one.
    pub torn_at: Option<u64>,
}

/// Reads every record from the start, checking each; a bad record followed by a good one is
/// damage (`Checksum` at the bad one's offset), a bad one at the end a torn tail.
pub fn records(io: &dyn FileIo, pool: &Arc<BufPool>, file: &File) -> Result<Records, ChunkError> {
    let length = length_of(file)?;
    let mut found = Records::default();
    let mut at = 0;
    while at < length {
        match record_at(io, pool, file, at, length)? {
            Some(record) => {
                found.good.push(record);
                at += record_len(record.len);
            }
            None => {
                // Torn if no good record starts anywhere after it (on an 8-byte boundary).
                let mut next = at + 8;
                while next + RECORD_HEADER_LEN <= length {
                    if record_at(io, pool, file, next, length)?.is_some() {
                        return Err(ChunkError::Checksum { offset: at });
                    }
                    next += 8;
                }
                found.torn_at = Some(at);
                return Ok(found);
            }
        }
    }
    Ok(found)
}

/// The good record at `at`, or `None` if what is there is not one.
fn record_at(
    io: &dyn FileIo,
    pool: &Arc<BufPool>,
    file: &File,
    at: u64,
    length: u64,
) -> Result<Option<Record>, ChunkError> {
    if at + RECORD_HEADER_LEN > length {
        return Ok(None);
    }
    let mut head = [0u8; RECORD_HEADER_LEN as usize];
    io.read_at(file, &mut head, HEADER_LEN + at)?;
    let h = Head::parse(&head);
    if h.magic != *RECORD_MAGIC || h.len > MAX_RECORD_DATA || at + record_len(h.len) > length {
        return Ok(None);
    }
    match read(io, pool, file, at, h.fid, h.len) {
        Ok(_) => Ok(Some(Record {
            at,
            fid: h.fid,
            len: h.len,
        })),
        Err(ChunkError::Checksum { .. } | ChunkError::NoRecord(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::io::RealIo;

    fn setup() -> (tempfile::TempDir, File, Arc<BufPool>) {
        let dir = tempfile::tempdir().unwrap();
        let file = create(&RealIo, &dir.path().join("v"), ChunkId(9)).unwrap();
        (dir, file, BufPool::new(4))
    }

    #[test]
    fn records_append_at_the_end_and_read_back_with_one_read() {
        let (_dir, file, pool) = setup();
        let mut at = 0;
        let mut extents = Vec::new();
        for (i, len) in [0usize, 1, 7, 8, 6144, 100_000].into_iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|b| (b * 31 + i) as u8).collect();
            let end = append(&RealIo, &pool, &file, at, FileId(i as u64 + 1), &data).unwrap();
            assert_eq!(end, at + record_len(len as u64));
            assert_eq!(end % 8, 0);
            extents.push((at, FileId(i as u64 + 1), data));
            at = end;
        }
        for (at, fid, data) in &extents {
            let (buf, range) = read(&RealIo, &pool, &file, *at, *fid, data.len() as u64).unwrap();
            assert_eq!(&buf[range], &data[..]);
        }
        let found = records(&RealIo, &pool, &file).unwrap();
        assert_eq!(found.good.len(), extents.len());
        assert_eq!(found.torn_at, None);
        // Anywhere but the end is refused; so is a read naming another file or length.
        assert!(matches!(
            append(&RealIo, &pool, &file, 0, FileId(1), b"x"),
            Err(ChunkError::NotAtEnd { asked: 0, .. })
        ));
        let (at, _, data) = &extents[2];
        assert!(read(&RealIo, &pool, &file, *at, FileId(99), data.len() as u64).is_err());
        assert!(read(&RealIo, &pool, &file, *at, FileId(3), 6).is_err());
    }

    #[test]
    fn damage_is_told_from_a_torn_tail() {
        let (dir, file, pool) = setup();
        let mut at = 0;
        for i in 0..3u64 {
            at = append(&RealIo, &pool, &file, at, FileId(i), &[i as u8; 100]).unwrap();
        }
        let path = dir.path().join("v");
        // A torn tail: half a record past the end.
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(&whole[64..64 + 60]);
        std::fs::write(&path, &torn).unwrap();
        let found = records(&RealIo, &pool, &file).unwrap();
        assert_eq!(found.good.len(), 3);
        assert_eq!(found.torn_at, Some(at));
        // A flipped bit in the second record: damage, and its read fails its checksum.
        let mut flipped = whole.clone();
        flipped[64 + record_len(100) as usize + 30] ^= 4;
        std::fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            records(&RealIo, &pool, &file),
            Err(ChunkError::Checksum { offset }) if offset == record_len(100)
        ));
        assert!(matches!(
            read(&RealIo, &pool, &file, record_len(100), FileId(1), 100),
            Err(ChunkError::Checksum { .. })
        ));
        // The first and third still read.
        assert!(read(&RealIo, &pool, &file, 0, FileId(0), 100).is_ok());
        assert!(read(&RealIo, &pool, &file, 2 * record_len(100), FileId(2), 100).is_ok());
    }

    #[test]
    fn a_full_disk_leaves_the_volume_as_it_was() {
        use crate::store::io::FaultyIo;
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let pool = BufPool::new(4);
        let file = create(&io, &dir.path().join("v"), ChunkId(1)).unwrap();
        let at = append(&io, &pool, &file, 0, FileId(1), &[1u8; 500]).unwrap();
        io.set(|f| f.space_left = Some(100));
        assert!(append(&io, &pool, &file, at, FileId(2), &[2u8; 500]).is_err());
        io.set(|f| f.space_left = None);
        assert_eq!(length_of(&file).unwrap(), at);
        let found = records(&io, &pool, &file).unwrap();
        assert_eq!(found.good.len(), 1);
        assert_eq!(found.torn_at, None);
    }
}
