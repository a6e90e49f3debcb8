//! Checkpoints: the whole namespace as of one log sequence number.
//!
//! A checkpoint file is the magic `KFSCKPT\0`, then [frames](super::frame): a
//! [`CheckpointHeader`], then blocks of up to [`BLOCK_RECORDS`] records in key order. The records
//! are a stable, versioned form of the namespace map ([`v3::Record`], in
//! [`super::format::checkpoint_v3`]; formats 1 and 2 are read and migrated), independent of the
//! in-memory layout.
//!
//! A checkpoint is written from a clone of the namespace (O(1)) by a background thread while
//! mutations go on: to `<name>.tmp`, fsynced, renamed into place, and the directory fsynced.
//! Loading checks every frame's checksum, the record count, the key order and every namespace
//! invariant; an error names the file and the byte offset.

use super::format::Migrate;
use super::format::checkpoint_v1::{self as v1, CheckpointHeader};
use super::format::checkpoint_v2 as v2;
use super::format::checkpoint_v3::{self as v3, from_record, to_record};
use super::frame::{self, FrameReader};
use super::{StorageError, codec, numbered_files, numbered_name, sync_dir};
use crate::namespace::Namespace;
use bincode::Options;
use kfs_common::proto::Timestamp;
use kfs_common::{ChunkId, FileId};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"KFSCKPT\0";
/// Version of the checkpoint format written (and read) by this build.
pub const FORMAT: u32 = v3::FORMAT;
/// Records per frame.
pub const BLOCK_RECORDS: usize = 4096;

const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".kfsckpt";

pub fn checkpoint_name(seq: u64) -> String {
    numbered_name(PREFIX, seq, SUFFIX)
}

/// A checkpoint file on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointFile {
    pub path: PathBuf,
    pub seq: u64,
}

/// The checkpoints in `dir`, newest first.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<CheckpointFile>, StorageError> {
    Ok(numbered_files(dir, PREFIX, SUFFIX)?
        .into_iter()
        .rev()
        .map(|(path, seq)| CheckpointFile { path, seq })
        .collect())
}

/// Writes the namespace as of op `seq` to `dir` and makes it durable; returns its path.
pub fn write_checkpoint(
    dir: &Path,
    seq: u64,
    ns: &Namespace,
    now: Timestamp,
) -> Result<PathBuf, StorageError> {
    let path = dir.join(checkpoint_name(seq));
    let tmp = path.with_extension("kfsckpt.tmp");
    let file = File::create(&tmp).map_err(StorageError::io(&tmp))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let header = CheckpointHeader {
        format: FORMAT,
        seq,
        next_fid: ns.next_fid().0,
        next_chunk_id: ns.next_chunk_id().0,
        records: ns.record_count() as u64,
        written_at: now,
    };
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(MAGIC);
    frame::write_frame(
        &mut buf,
        &codec().serialize(&header).expect("header encodes"),
    );
    let mut block: Vec<v3::Record> = Vec::with_capacity(BLOCK_RECORDS);
    let mut records = ns.records().peekable();
    while records.peek().is_some() {
        block.clear();
        block.extend(
            records
                .by_ref()
                .take(BLOCK_RECORDS)
                .map(|(k, v)| to_record(k, v)),
        );
        let payload = codec().serialize(&block).expect("records encode");
        frame::write_frame(&mut buf, &payload);
        out.write_all(&buf).map_err(StorageError::io(&tmp))?;
        buf.clear();
    }
    out.write_all(&buf).map_err(StorageError::io(&tmp))?;
    let file = out
        .into_inner()
        .map_err(|e| StorageError::io(&tmp)(e.into_error()))?;
    file.sync_all().map_err(StorageError::io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(StorageError::io(&path))?;
    sync_dir(dir)?;
    Ok(path)
}

/// The records of one block of a checkpoint of `format` (1 to 3), migrated to version 3.
fn decode_block(format: u32, payload: &[u8]) -> Result<Vec<v3::Record>, bincode::Error> {
    match format {
        v1::FORMAT => {
            let old: Vec<v1::Record> = codec().deserialize(payload)?;
            Ok(old
                .into_iter()
                .map(|r| v3::Record::migrate(v2::Record::migrate(r)))
                .collect())
        }
        v2::FORMAT => {
            let old: Vec<v2::Record> = codec().deserialize(payload)?;
            Ok(old.into_iter().map(v3::Record::migrate).collect())
        }
        _ => codec().deserialize(payload),
    }
}

/// Reads a checkpoint; returns its header and the namespace it holds.
pub fn load_checkpoint(path: &Path) -> Result<(CheckpointHeader, Namespace), StorageError> {
    let file = File::open(path).map_err(StorageError::io(path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    reader
        .read_exact(&mut magic)
        .map_err(|_| StorageError::corrupt(path, 0, "file too short for a checkpoint"))?;
    if &magic != MAGIC {
        return Err(StorageError::corrupt(
            path,
            0,
            "not a KFS checkpoint (bad magic)",
        ));
    }
    let mut frames = FrameReader::new(reader, MAGIC.len() as u64);
    let frame_error =
        |offset, e: frame::FrameError| StorageError::corrupt(path, offset, e.to_string());
    let header: CheckpointHeader = match frames.next_frame().map_err(StorageError::io(path))? {
        Ok(Some(payload)) => codec()
            .deserialize(payload)
            .map_err(|e| StorageError::corrupt(path, 8, format!("undecodable header: {e}")))?,
        Ok(None) => return Err(frame_error(8, frame::FrameError::Truncated)),
        Err(e) => return Err(frame_error(8, e)),
    };
    if ![v1::FORMAT, v2::FORMAT, FORMAT].contains(&header.format) {
        return Err(StorageError::corrupt(
            path,
            8,
            format!(
                "checkpoint format {} is not supported by this build ({FORMAT})",
                header.format
            ),
        ));
    }

    // Records stream from the frames straight into the tree; the first error stops the stream and
    // is reported after the build.
    let mut failure: Option<StorageError> = None;
    let mut read = 0u64;
    let mut block: std::vec::IntoIter<v3::Record> = Vec::new().into_iter();
    let records = std::iter::from_fn(|| {
        loop {
            if let Some(r) = block.next() {
                read += 1;
                return Some(from_record(r));
            }
            if failure.is_some() || read >= header.records {
                return None;
            }
            let offset = frames.offset();
            let next = match frames.next_frame() {
                Err(e) => Err(StorageError::io(path)(e)),
                Ok(Err(e)) => Err(frame_error(offset, e)),
                Ok(Ok(None)) => Err(StorageError::corrupt(
                    path,
                    offset,
                    format!("ends after {read} of {} records", header.records),
                )),
                Ok(Ok(Some(payload))) => decode_block(header.format, payload).map_err(|e| {
                    StorageError::corrupt(path, offset, format!("undecodable records: {e}"))
                }),
            };
            match next {
                Ok(records) => block = records.into_iter(),
                Err(e) => failure = Some(e),
            }
        }
    });
    let ns = Namespace::from_records(
        records,
        FileId(header.next_fid),
        ChunkId(header.next_chunk_id),
    );
    if let Some(e) = failure {
        return Err(e);
    }
    let end = frames.offset();
    if read != header.records {
        return Err(StorageError::corrupt(
            path,
            end,
            format!(
                "holds more than the {} records its header announces",
                header.records
            ),
        ));
    }
    match frames.next_frame().map_err(StorageError::io(path))? {
        Ok(None) => {}
        _ => {
            return Err(StorageError::corrupt(
                path,
                end,
                "data after the last record",
            ));
        }
    }
    let ns = ns.map_err(|reason| StorageError::corrupt(path, end, reason))?;
    Ok((header, ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::op::{Op, Special};

    fn sample() -> Namespace {
        let mut ns = Namespace::new(5);
        let mut fid = 2;
        for d in 0..3 {
            ns.apply(&Op::Mkdir {
                path: format!("/d{d}"),
                parents: false,
                mode: 0o755,
                owner: 0,
                group: 0,
                first_fid: FileId(fid),
                time: 6,
            })
            .unwrap();
            fid += 1;
            for f in 0..3000 {
                ns.apply(&Op::Create {
                    path: format!("/d{d}/a-rather-long-file-name-{f}.jpg"),
                    exclusive: true,
                    replication: 3,
                    replication_given: true,
                    mode: 0o644,
                    owner: 0,
                    group: 0,
                    fid: FileId(fid),
                    time: 7,
                })
                .unwrap();
                fid += 1;
            }
        }
        ns.apply(&Op::SetXattr {
            path: "/d1".into(),
            name: "k".into(),
            value: serde_bytes::ByteBuf::from(b"v".to_vec()),
        })
        .unwrap();
        ns.apply(&Op::AllocateChunk {
            fid: FileId(5),
            offset: 0,
            chunk: kfs_common::ChunkId(40),
            version: kfs_common::ChunkVersion(2),
        })
        .unwrap();
        // Small files packed into a volume.
        ns.apply(&Op::CreateVolume {
            chunk: kfs_common::ChunkId(41),
            version: kfs_common::ChunkVersion(1),
            replication: 3,
        })
        .unwrap();
        for f in 6..20 {
            ns.apply(&Op::SetExtent {
                fid: FileId(f),
                volume: kfs_common::ChunkId(41),
                at: f * 1024,
                len: 1000,
                time: 8,
            })
            .unwrap();
        }
        // A change time after the modification time (format 3's `Changed`), on a file and a
        // symbolic link.
        for path in ["/d0/a-rather-long-file-name-3.jpg", "/d1"] {
            ns.apply(&Op::SetAttrAt {
                path: path.into(),
                attr: kfs_common::proto::master::SetAttr {
                    mode: Some(0o600),
                    ..Default::default()
                },
                time: 7 + 3_000_000_000,
            })
            .unwrap();
        }
        // Symbolic links and special files (format 3's own records).
        for (i, special) in [
            Special::Symlink {
                target: "d0/a-rather-long-file-name-1.jpg".into(),
            },
            Special::Fifo,
            Special::Socket,
            Special::CharDevice { rdev: 0x0102 },
            Special::BlockDevice { rdev: 0x0803 },
        ]
        .into_iter()
        .enumerate()
        {
            ns.apply(&Op::MakeSpecial {
                path: format!("/d2/special-{i}"),
                special,
                mode: 0o640,
                owner: 7,
                group: 8,
                fid: FileId(fid + i as u64),
                time: 9,
            })
            .unwrap();
        }
        ns
    }

    fn records(ns: &Namespace) -> Vec<v3::Record> {
        ns.records().map(|(k, v)| to_record(k, v)).collect()
    }

    #[test]
    fn a_checkpoint_loads_back_the_same_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let ns = sample();
        let path = write_checkpoint(dir.path(), 42, &ns, 99).unwrap();
        assert_eq!(
            list_checkpoints(dir.path()).unwrap(),
            vec![CheckpointFile {
                path: path.clone(),
                seq: 42
            }]
        );
        let (header, loaded) = load_checkpoint(&path).unwrap();
        assert_eq!(
            (header.seq, header.written_at, header.records),
            (42, 99, ns.record_count() as u64)
        );
        assert_eq!(records(&loaded), records(&ns));
        assert_eq!(loaded.counters(), ns.counters());
        assert_eq!(
            (loaded.next_fid(), loaded.next_chunk_id()),
            (ns.next_fid(), ns.next_chunk_id())
        );
    }

    #[test]
    fn damage_is_reported_with_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_checkpoint(dir.path(), 1, &sample(), 0).unwrap();
        let good = std::fs::read(&path).unwrap();
        for at in [0, 9, 40, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            let err = load_checkpoint(&path)
                .err()
                .expect("damage must be noticed");
            assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("checkpoint-"), "{err}");
        }
        for cut in [4, 20, good.len() - 1] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(matches!(
                load_checkpoint(&path),
                Err(StorageError::Corrupt { .. })
            ));
        }
        let mut longer = good.clone();
        frame::write_frame(&mut longer, b"extra");
        std::fs::write(&path, &longer).unwrap();
        assert!(matches!(
            load_checkpoint(&path),
            Err(StorageError::Corrupt { .. })
        ));
    }
}
