//! The operation log: segment files of framed `{seq, batch, op}` records.
//!
//! A segment is a 32-byte header (magic `KFSOPLOG`, format version, first sequence number,
//! header checksum) followed by [frames](super::frame) whose payloads are records with
//! consecutive sequence numbers (their stored types and versions:
//! [`super::format::log_record`]). Segments are append-only while they are the current one and never
//! written again after: a restarted master starts a new segment. `LOG_HEAD` ([`super::log_head`])
//! names the newest segment, so a lost newest segment is noticed.
//!
//! Formats (the header's version):
//! - 1: `{seq, op}` records. Read only.
//! - 2: `{seq, batch_first, op}` records: each names the first record of the batch it was
//!   written (and fsynced) with. Read only.
//! - 3: records that each start with their own version byte (this build writes record
//!   version 2, `{seq, batch_first, op}`). Written by this build.
//!
//! Invariants:
//! - [`LogWriter::append`] returns only after the records are written and `fdatasync`ed
//!   ([`LogWriter::write`] then [`LogWriter::sync`], which the committer calls apart, to answer
//!   `Logged` changes in between); a failed write is cut back off the file, so the segment
//!   never holds a partial batch that a later batch follows.
//! - The bytes after the last fsync are at most one batch ([`MAX_BATCH_BYTES`] plus one record),
//!   so that is the most a crash can leave torn at the end of the last segment.
//! - A torn write is only ever the tail of the last batch: damage that an intact record of a
//!   later batch follows is corruption ([`super::log_tail`]), and recovery refuses to start.

use super::format::log_record;
pub use super::format::log_record::LogRecord;
use super::frame::{self, FrameReader};
use super::log_tail::{self, Intact};
use super::{StorageError, numbered_files, numbered_name, sync_dir};
use crate::namespace::op::Op;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"KFSOPLOG";
/// Version of the segment format written by this build.
pub const FORMAT: u32 = 3;
/// The oldest segment format this build reads.
pub const OLDEST_FORMAT: u32 = 1;
/// Bytes of a segment's header.
pub const HEADER_LEN: u64 = 32;
/// A batch stops growing once it holds this many bytes.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Most bytes a crash can leave unsynced at the end of the last segment (one batch and the record
/// that crossed the limit). Damage further from the end than this is corruption, not a torn write.
pub const MAX_TORN_BYTES: u64 = 2 * MAX_BATCH_BYTES as u64;

/// Decodes one record's payload in segment format `format`.
fn decode_record(format: u32, payload: &[u8]) -> Result<LogRecord, String> {
    log_record::decode(format, payload).map_err(|e| e.to_string())
}

const PREFIX: &str = "log-";
const SUFFIX: &str = ".kfslog";

pub fn segment_name(first_seq: u64) -> String {
    numbered_name(PREFIX, first_seq, SUFFIX)
}

fn encode_header(first_seq: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The header's `(first_seq, format)`.
fn decode_header(h: &[u8; HEADER_LEN as usize]) -> Result<(u64, u32), String> {
    if &h[..8] != MAGIC {
        return Err("not a KFS log segment (bad magic)".into());
    }
    if crc32c::crc32c(&h[..24]).to_le_bytes() != h[24..28] {
        return Err("segment header checksum mismatch".into());
    }
    let format = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if !(OLDEST_FORMAT..=FORMAT).contains(&format) {
        return Err(format!(
            "segment format {format} is not supported by this build (it reads \
             {OLDEST_FORMAT} to {FORMAT})"
        ));
    }
    Ok((
        u64::from_le_bytes(h[16..24].try_into().expect("8 bytes")),
        format,
    ))
}

/// A segment file on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    pub first_seq: u64,
}

/// The segments in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> Result<Vec<Segment>, StorageError> {
    Ok(numbered_files(dir, PREFIX, SUFFIX)?
        .into_iter()
        .map(|(path, first_seq)| Segment { path, first_seq })
        .collect())
}

/// How reading a segment ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Every byte belonged to a whole record.
    Clean,
    /// The records end at `offset`; the `dropped` bytes after it are a torn write (only ever
    /// reported for the last segment). `offset` 0 means even the header is torn.
    Torn { offset: u64, dropped: u64 },
}

/// Reads the records of `segment` in order, giving each to `on_record`. Records must carry
/// consecutive sequence numbers from the segment's first. Damage is reported as
/// [`SegmentEnd::Torn`] only when it can be a torn write: in the last segment (`is_last`), within
/// [`MAX_TORN_BYTES`] of the end, and with no intact record of a later batch after it
/// ([`log_tail::check_torn`]); any other damage is an error naming the file and offset.
pub fn read_segment(
    segment: &Segment,
    is_last: bool,
    mut on_record: impl FnMut(LogRecord) -> Result<(), StorageError>,
) -> Result<SegmentEnd, StorageError> {
    let path = &segment.path;
    let file = File::open(path).map_err(StorageError::io(path))?;
    let len = file.metadata().map_err(StorageError::io(path))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut header = [0u8; HEADER_LEN as usize];
    let header = match reader.read_exact(&mut header) {
        Ok(()) => decode_header(&header),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err("segment header cut short".into()),
        Err(e) => return Err(StorageError::io(path)(e)),
    };
    let format = match header {
        Ok((first, _)) if first != segment.first_seq => {
            return Err(StorageError::corrupt(
                path,
                16,
                format!(
                    "header says the first record is {first}, the name says {}",
                    segment.first_seq
                ),
            ));
        }
        Ok((_, format)) => format,
        // The header is synced before any record is written, so a damaged header is torn only
        // in a last segment that holds nothing else.
        Err(reason) if is_last && len <= HEADER_LEN => {
            tracing::debug!(path = %path.display(), %reason, "segment header torn");
            return Ok(SegmentEnd::Torn {
                offset: 0,
                dropped: len,
            });
        }
        Err(reason) => return Err(StorageError::corrupt(path, 0, reason)),
    };
    let mut frames = FrameReader::new(reader, HEADER_LEN);
    let mut expected = segment.first_seq;
    loop {
        let offset = frames.offset();
        let payload = match frames.next_frame().map_err(StorageError::io(path))? {
            Ok(Some(payload)) => payload,
            Ok(None) => return Ok(SegmentEnd::Clean),
            Err(e) => {
                let damage = e.to_string();
                return if is_last && len - offset <= MAX_TORN_BYTES {
                    let tail = read_from(path, offset)?;
                    let intact = |payload: &[u8]| {
                        decode_record(format, payload).ok().map(|r| Intact {
                            seq: r.seq,
                            batch_first: r.batch_first,
                        })
                    };
                    log_tail::check_torn(&tail, offset, expected, intact).map_err(|reason| {
                        StorageError::corrupt(path, offset, format!("{damage}, and {reason}"))
                    })?;
                    Ok(SegmentEnd::Torn {
                        offset,
                        dropped: len - offset,
                    })
                } else {
                    Err(StorageError::corrupt(path, offset, damage))
                };
            }
        };
        let record = decode_record(format, payload)
            .map_err(|e| StorageError::corrupt(path, offset, format!("undecodable record: {e}")))?;
        if record.seq != expected {
            return Err(StorageError::corrupt(
                path,
                offset,
                format!("record {} where {expected} was expected", record.seq),
            ));
        }
        expected += 1;
        on_record(record)?;
    }
}

/// The bytes of `path` from `offset` to its end (a torn tail: at most [`MAX_TORN_BYTES`],
/// checked by the callers).
pub(super) fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, StorageError> {
    let mut file = File::open(path).map_err(StorageError::io(path))?;
    let mut out = Vec::new();
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_to_end(&mut out))
        .map_err(StorageError::io(path))?;
    Ok(out)
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Nothing of the batch is in the log (it was cut back off); later appends may succeed.
    #[error("{path}: {source}")]
    NotWritten {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The log can no longer be trusted (an fsync failed, or a failed write could not be cut
    /// off): the master must stop accepting mutations.
    #[error("{path}: {source}; the operation log is no longer usable")]
    Broken {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Appends batches of records to the current segment.
pub struct LogWriter {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Bytes in the current segment, all of them durable.
    len: u64,
    next_seq: u64,
    segment_limit: u64,
    /// The batch's frames, written with one `write`.
    buf: Vec<u8>,
    /// One record's payload, reused.
    payload: Vec<u8>,
}

impl LogWriter {
    /// Starts a new segment whose first record will be `next_seq`, and names it in `LOG_HEAD`.
    pub fn create(
        dir: &Path,
        next_seq: u64,
        segment_limit: u64,
    ) -> Result<LogWriter, StorageError> {
        let path = dir.join(segment_name(next_seq));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StorageError::io(&path))?;
        file.write_all(&encode_header(next_seq))
            .and_then(|()| file.sync_all())
            .map_err(StorageError::io(&path))?;
        sync_dir(dir)?;
        super::log_head::write(dir, next_seq)?;
        Ok(LogWriter {
            dir: dir.to_path_buf(),
            path,
            file,
            len: HEADER_LEN,
            next_seq,
            segment_limit,
            buf: Vec::with_capacity(64 << 10),
            payload: Vec::with_capacity(256),
        })
    }

    /// Sequence number of the last record written (0 if none ever was).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Whether the current segment has reached its size limit.
    pub fn segment_full(&self) -> bool {
        self.len >= self.segment_limit
    }

    /// Writes `ops` as consecutive records of one batch and makes them durable; returns the
    /// sequence number of the first.
    pub fn append<'a>(
        &mut self,
        ops: impl IntoIterator<Item = &'a Op>,
    ) -> Result<u64, AppendError> {
        let first = self.write(ops)?;
        self.sync()?;
        Ok(first)
    }

    /// Writes `ops` as consecutive records of one batch to the file (the kernel's page cache:
    /// they survive a crash of this process, not yet a power loss); returns the sequence
    /// number of the first. [`LogWriter::sync`] must follow before the next batch is written,
    /// so the bytes not yet synced never exceed one batch.
    pub fn write<'a>(&mut self, ops: impl IntoIterator<Item = &'a Op>) -> Result<u64, AppendError> {
        let first = self.next_seq;
        let mut seq = first;
        self.buf.clear();
        for op in ops {
            self.payload.clear();
            log_record::encode(seq, first, op, &mut self.payload);
            frame::write_frame(&mut self.buf, &self.payload);
            seq += 1;
        }
        if let Err(source) = self.file.write_all(&self.buf) {
            // Cut off whatever part of the batch reached the file, so the next batch follows the
            // last good record.
            let restored = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.seek(SeekFrom::Start(self.len)).map(|_| ()));
            let path = self.path.clone();
            return Err(match restored {
                Ok(()) => AppendError::NotWritten { path, source },
                Err(_) => AppendError::Broken { path, source },
            });
        }
        self.len += self.buf.len() as u64;
        self.next_seq = seq;
        Ok(first)
    }

    /// Makes every record written so far durable (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), AppendError> {
        if let Err(source) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing written
            // since the last good fsync can be trusted, and retrying would hide that.
            return Err(AppendError::Broken {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Closes the current segment and starts the next one (a no-op while the current one holds
    /// no record: the next would have the same name).
    pub fn rotate(&mut self) -> Result<(), StorageError> {
        if self.len == HEADER_LEN {
            return Ok(());
        }
        *self = LogWriter::create(&self.dir, self.next_seq, self.segment_limit)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(i: u64) -> Op {
        Op::Remove {
            path: format!("/f{i}"),
            time: i as i64,
        }
    }

    fn read_all(seg: &Segment, is_last: bool) -> Result<(Vec<u64>, SegmentEnd), StorageError> {
        let mut seqs = Vec::new();
        let end = read_segment(seg, is_last, |r| {
            assert_eq!(r.op, op(r.seq));
            seqs.push(r.seq);
            Ok(())
        })?;
        Ok((seqs, end))
    }

    #[test]
    fn appended_batches_read_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::create(dir.path(), 1, 64).unwrap();
        let batch: Vec<Op> = (1..=3).map(op).collect();
        assert_eq!(w.append(&batch).unwrap(), 1);
        assert!(w.segment_full());
        w.rotate().unwrap();
        let batch: Vec<Op> = (4..=5).map(op).collect();
        assert_eq!(w.append(&batch).unwrap(), 4);
        assert_eq!(w.last_seq(), 5);
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(
            segs.iter().map(|s| s.first_seq).collect::<Vec<_>>(),
            vec![1, 4]
        );
        assert_eq!(
            read_all(&segs[0], false).unwrap(),
            (vec![1, 2, 3], SegmentEnd::Clean)
        );
        assert_eq!(
            read_all(&segs[1], true).unwrap(),
            (vec![4, 5], SegmentEnd::Clean)
        );
    }

    #[test]
    fn a_cut_tail_is_torn_in_the_last_segment_and_corrupt_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::create(dir.path(), 1, 1 << 20).unwrap();
        let batch: Vec<Op> = (1..=10).map(op).collect();
        w.append(&batch).unwrap();
        let seg = &list_segments(dir.path()).unwrap()[0];
        let full = std::fs::metadata(&seg.path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&seg.path).unwrap();
        file.set_len(full - 3).unwrap();
        let (seqs, end) = read_all(seg, true).unwrap();
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
        let SegmentEnd::Torn { offset, dropped } = end else {
            panic!("{end:?}")
        };
        assert_eq!(offset + dropped, full - 3);
        match read_all(seg, false) {
            Err(StorageError::Corrupt { offset: at, .. }) => assert_eq!(at, offset),
            other => panic!("expected corruption, got {other:?}"),
        }
        // A cut inside the header of the last segment leaves nothing to replay.
        file.set_len(10).unwrap();
        assert_eq!(
            read_all(seg, true).unwrap(),
            (
                vec![],
                SegmentEnd::Torn {
                    offset: 0,
                    dropped: 10
                }
            )
        );
    }

    #[test]
    fn damage_far_from_the_end_is_corruption_even_in_the_last_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::create(dir.path(), 1, u64::MAX).unwrap();
        let big = Op::SetXattr {
            path: "/x".into(),
            name: "blob".into(),
            value: serde_bytes::ByteBuf::from(vec![7u8; 60_000]),
        };
        for _ in 0..200 {
            w.append([&big]).unwrap();
        }
        let seg = &list_segments(dir.path()).unwrap()[0];
        let mut bytes = std::fs::read(&seg.path).unwrap();
        bytes[100] ^= 0x40;
        std::fs::write(&seg.path, &bytes).unwrap();
        match read_segment(seg, true, |_| Ok(())) {
            Err(e @ StorageError::Corrupt { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("kfslog") && text.contains("byte 32"),
                    "{text}"
                );
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    /// A segment of batches of 10 records each, as `(path, offset of each batch)`.
    fn ten_batches(dir: &Path) -> (Segment, Vec<u64>) {
        let mut w = LogWriter::create(dir, 1, u64::MAX).unwrap();
        let mut starts = Vec::new();
        for b in 0..10 {
            starts.push(w.len);
            let batch: Vec<Op> = (b * 10 + 1..=b * 10 + 10).map(op).collect();
            w.append(&batch).unwrap();
        }
        (list_segments(dir).unwrap().remove(0), starts)
    }

    #[test]
    fn damage_that_later_batches_follow_is_corruption_and_the_file_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let (seg, starts) = ten_batches(dir.path());
        let clean = std::fs::read(&seg.path).unwrap();
        // A flipped byte inside any batch but the last, and 4 KiB zeroed in the middle.
        for at in [starts[1] + 5, starts[8] + 1, (clean.len() / 2) as u64] {
            let mut bytes = clean.clone();
            bytes[at as usize] ^= 0x10;
            std::fs::write(&seg.path, &bytes).unwrap();
            let err = read_all(&seg, true).unwrap_err().to_string();
            assert!(
                err.contains("corruption, not a torn write"),
                "flip at {at}: {err}"
            );
            assert_eq!(std::fs::read(&seg.path).unwrap(), bytes);
        }
        let mut zeroed = clean.clone();
        let middle = clean.len() / 2 - 100;
        zeroed[middle..middle + 200].fill(0);
        std::fs::write(&seg.path, &zeroed).unwrap();
        assert!(matches!(
            read_all(&seg, true),
            Err(StorageError::Corrupt { .. })
        ));
        // A damaged header with records after it is corruption, never an empty torn segment.
        let mut bytes = clean.clone();
        bytes[20] ^= 1;
        std::fs::write(&seg.path, &bytes).unwrap();
        assert!(matches!(
            read_all(&seg, true),
            Err(StorageError::Corrupt { offset: 0, .. })
        ));
    }

    #[test]
    fn damage_inside_the_last_batch_is_torn_even_with_its_own_records_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (seg, starts) = ten_batches(dir.path());
        let mut bytes = std::fs::read(&seg.path).unwrap();
        // The first record of the last batch is lost; its other nine are intact.
        bytes[starts[9] as usize + 9] ^= 0x01;
        std::fs::write(&seg.path, &bytes).unwrap();
        let (seqs, end) = read_all(&seg, true).unwrap();
        assert_eq!(seqs, (1..=90).collect::<Vec<_>>());
        assert_eq!(
            end,
            SegmentEnd::Torn {
                offset: starts[9],
                dropped: bytes.len() as u64 - starts[9]
            }
        );
    }

    #[test]
    fn format_1_segments_are_still_read() {
        use crate::storage::codec;
        use crate::storage::format::{log_record::V1, op_v1};
        use bincode::Options;
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_header(1).to_vec();
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..24]);
        bytes[24..28].copy_from_slice(&crc.to_le_bytes());
        for seq in 1..=3 {
            let op = op_v1::Op::from(&op(seq));
            let payload = codec().serialize(&V1 { seq, op }).unwrap();
            frame::write_frame(&mut bytes, &payload);
        }
        let path = dir.path().join(segment_name(1));
        std::fs::write(&path, &bytes).unwrap();
        let seg = Segment { path, first_seq: 1 };
        assert_eq!(
            read_all(&seg, true).unwrap(),
            (vec![1, 2, 3], SegmentEnd::Clean)
        );
    }

    #[test]
    fn header_damage_and_misnamed_segments_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        LogWriter::create(dir.path(), 7, 1 << 20).unwrap();
        let seg = &list_segments(dir.path()).unwrap()[0];
        let renamed = Segment {
            path: dir.path().join(segment_name(8)),
            first_seq: 8,
        };
        std::fs::rename(&seg.path, &renamed.path).unwrap();
        assert!(matches!(
            read_all(&renamed, true),
            Err(StorageError::Corrupt { .. })
        ));
        let mut bytes = std::fs::read(&renamed.path).unwrap();
        bytes[0] = b'X';
        std::fs::write(&renamed.path, &bytes).unwrap();
        assert!(matches!(
            read_all(&renamed, false),
            Err(StorageError::Corrupt { offset: 0, .. })
        ));
    }
}
