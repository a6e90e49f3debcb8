//! `LOG_HEAD`: which log segment is the newest, kept outside the segments.
//!
//! Without it a lost newest segment would go unnoticed: the one before it ends cleanly, and
//! recovery would start with every op of the lost segment missing. [`write`] runs each time a
//! segment is created (after the segment itself is durable), by temp file, fsync, rename and a
//! directory fsync, so `LOG_HEAD` is always whole and never names a segment that was not yet on
//! disk. Invariant checked at recovery: the newest segment on disk starts at or after the one
//! `LOG_HEAD` names. A directory without `LOG_HEAD` (written before it existed, or a backup, which
//! copies only checkpoints and segments) is accepted, and the next segment writes it.
//!
//! Format: one [frame](super::frame) holding `{format: u32, newest_first_seq: u64}` (bincode).

use super::frame::{FrameReader, write_frame};
use super::{StorageError, codec, sync_dir};
use bincode::Options;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "LOG_HEAD";
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct LogHead {
    format: u32,
    newest_first_seq: u64,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Records durably that the newest segment starts at record `first_seq`.
pub fn write(dir: &Path, first_seq: u64) -> Result<(), StorageError> {
    let head = LogHead {
        format: FORMAT,
        newest_first_seq: first_seq,
    };
    let mut bytes = Vec::new();
    write_frame(&mut bytes, &codec().serialize(&head).expect("encodes"));
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let target = path(dir);
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .map_err(StorageError::io(&tmp))?;
    std::fs::rename(&tmp, &target).map_err(StorageError::io(&target))?;
    sync_dir(dir)
}

/// The first record of the newest segment, as `LOG_HEAD` says (`None` when there is no
/// `LOG_HEAD`).
pub fn read(dir: &Path) -> Result<Option<u64>, StorageError> {
    let target = path(dir);
    let bytes = match std::fs::read(&target) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&target)(e)),
    };
    let mut frames = FrameReader::new(&bytes[..], 0);
    let payload = match frames.next_frame().map_err(StorageError::io(&target))? {
        Ok(Some(payload)) => payload,
        Ok(None) => return Err(StorageError::corrupt(&target, 0, "empty")),
        Err(e) => return Err(StorageError::corrupt(&target, 0, e.to_string())),
    };
    let head: LogHead = codec()
        .deserialize(payload)
        .map_err(|e| StorageError::corrupt(&target, 0, format!("undecodable: {e}")))?;
    if head.format != FORMAT {
        return Err(StorageError::corrupt(
            &target,
            0,
            format!(
                "format {} is not supported by this build ({FORMAT})",
                head.format
            ),
        ));
    }
    Ok(Some(head.newest_first_seq))
}

/// Removes `LOG_HEAD` (when recovery removed the only segment, which held no record).
pub fn remove(dir: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path(dir)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path(dir))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_heads_read_back_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), 7).unwrap();
        write(dir.path(), 42).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(42));
        let file = path(dir.path());
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[9] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("LOG_HEAD") && err.contains("corrupt"), "{err}");
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }
}
