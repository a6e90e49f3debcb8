//! Durable state of the master: the operation log, checkpoints, and recovery from them.
//!
//! Layout of the metadata directory:
//! ```text
//! LOCK                                   held (flock) by the one master using the directory
//! checkpoint-<seq>.kfsckpt               the namespace as of op <seq> (the newest two are kept)
//! log-<first seq>.kfslog                 op records <first seq>, <first seq> + 1, ...
//! LOG_HEAD                               the first seq of the newest segment (a lost one is noticed)
//! log-<first seq>.kfslog.torn-<offset>   bytes of a torn write cut off the end, kept as evidence
//! DECOMMISSIONED                         the chunkservers being drained, one id per line
//! ```
//! Guarantees (see also `docs/ARCHITECTURE.md`):
//! - An op is acknowledged only after its record is written and `fdatasync`ed ([`log`]).
//! - A checkpoint is written to a temp file, fsynced, renamed, and the directory fsynced; only
//!   then are older checkpoints and the log segments they cover removed ([`checkpoint`]).
//! - Recovery loads the newest valid checkpoint and replays every later record in sequence order;
//!   a torn write at the end of the last segment (damage no intact record of a later batch
//!   follows) is set aside and cut off; any other damage, or a missing newest segment, stops
//!   start-up with an error naming the file and byte offset ([`recovery`]).

pub mod checkpoint;
pub mod decommissioned;
pub mod format;
pub mod frame;
pub mod log;
pub mod log_head;
pub mod log_tail;
pub mod recovery;
pub mod verify;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Why the master's durable state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{path}: another kfs-master is using this metadata directory ({holder})")]
    Locked { path: PathBuf, holder: String },
    #[error("{dir}: {reason}")]
    Inconsistent { dir: PathBuf, reason: String },
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io { path, source }
    }

    pub fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}

/// bincode settings of every record on disk: varint integers, bounded, no trailing bytes.
pub(crate) fn codec() -> impl bincode::Options + Copy {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_limit(u64::from(frame::MAX_PAYLOAD))
        .reject_trailing_bytes()
}

/// The files in `dir` named `<prefix><number><suffix>`, as `(path, number)`, ascending by number.
pub(crate) fn numbered_files(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<Vec<(PathBuf, u64)>, StorageError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(StorageError::io(dir))? {
        let entry = entry.map_err(StorageError::io(dir))?;
        let number = entry.file_name().to_str().and_then(|name| {
            name.strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()
        });
        if let Some(number) = number {
            out.push((entry.path(), number));
        }
    }
    out.sort_by_key(|(_, number)| *number);
    Ok(out)
}

/// The name [`numbered_files`] parses: the number zero-padded so names sort like numbers.
pub(crate) fn numbered_name(prefix: &str, number: u64, suffix: &str) -> String {
    format!("{prefix}{number:020}{suffix}")
}

/// Makes a directory's entries (a created, renamed or removed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io(dir))
}

/// Exclusive use of a metadata directory, for as long as this value lives.
pub struct MetaDirLock {
    _file: File,
}

/// Creates `dir` if needed and takes its lock; a second master on the same directory is refused.
pub fn lock_meta_dir(dir: &Path) -> Result<MetaDirLock, StorageError> {
    std::fs::create_dir_all(dir).map_err(StorageError::io(dir))?;
    let path = dir.join("LOCK");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(StorageError::io(&path))?;
    if file.try_lock().is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => "holder unknown".to_string(),
            pid => format!("pid {pid}"),
        };
        return Err(StorageError::Locked { path, holder });
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(StorageError::io(&path))?;
    Ok(MetaDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_meta_dir(dir.path()).unwrap();
        match lock_meta_dir(dir.path()) {
            Err(e @ StorageError::Locked { .. }) => {
                assert!(
                    e.to_string()
                        .contains(&format!("pid {}", std::process::id())),
                    "{e}"
                );
            }
            other => panic!("expected Locked, got {:?}", other.map(|_| ())),
        }
        drop(lock);
        lock_meta_dir(dir.path()).unwrap();
    }
}
