//! Offline check of a metadata directory: a backup, or the master's own while it is stopped.
//!
//! [`verify`] does what start-up does (recovery: newest good checkpoint plus every later log
//! record), then checks the namespace's invariants, and reports what the directory holds. Like
//! start-up it tidies the directory (removes `*.tmp`, cuts a torn tail off the last segment), so
//! it is run on a copy or on a stopped master's directory; the directory's lock refuses it while
//! a master uses the directory. A directory without any checkpoint is refused rather than
//! formatted: it is not a metadata directory.

use super::checkpoint::list_checkpoints;
use super::recovery::recover;
use super::{StorageError, lock_meta_dir};
use kfs_common::proto::master::NamespaceCounters;
use std::path::{Path, PathBuf};

/// What a verified metadata directory holds.
#[derive(Debug)]
pub struct Verified {
    /// The checkpoint recovery started from, and the op it ends at.
    pub checkpoint: PathBuf,
    pub checkpoint_seq: u64,
    /// Log records replayed after it; the directory holds every op up to `last_seq`.
    pub replayed: u64,
    pub last_seq: u64,
    pub counters: NamespaceCounters,
    /// A torn write cut off the end of the log (normal in a copy taken while running).
    pub torn_tail: Option<String>,
    /// Newer checkpoints that could not be read (set aside as `*.kfsckpt.corrupt`).
    pub skipped_checkpoints: Vec<String>,
}

/// Recovers `dir` as the master would at start, checks the result, and says what it holds.
pub fn verify(dir: &Path) -> Result<Verified, StorageError> {
    let inconsistent = |reason: String| StorageError::Inconsistent {
        dir: dir.to_path_buf(),
        reason,
    };
    if !dir.is_dir() {
        return Err(inconsistent("not a directory".into()));
    }
    if list_checkpoints(dir)?.is_empty() {
        return Err(inconsistent(
            "no checkpoint-*.kfsckpt file: not a KFS metadata directory (or a copy that missed \
             the checkpoints)"
                .into(),
        ));
    }
    let _lock = lock_meta_dir(dir)?;
    let recovered = recover(dir, kfs_common::proto::now())?;
    recovered
        .ns
        .check_invariants()
        .map_err(|e| inconsistent(format!("the recovered namespace is inconsistent: {e}")))?;
    Ok(Verified {
        checkpoint: recovered.checkpoint,
        checkpoint_seq: recovered.checkpoint_seq,
        replayed: recovered.replayed,
        last_seq: recovered.last_seq,
        counters: recovered.ns.counters(),
        torn_tail: recovered.torn_tail,
        skipped_checkpoints: recovered
            .skipped_checkpoints
            .iter()
            .map(|e| e.to_string())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_directory_without_checkpoints_and_never_formats_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = verify(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no checkpoint"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
