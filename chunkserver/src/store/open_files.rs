//! A bounded cache of a data dir's open chunk files, so a chunk written or read in a burst is
//! opened once (an `openat` costs more than the write of a small file).
//!
//! Invariants:
//! - an entry is the file of the replica at the version it names, opened read-write; every job
//!   that renames or removes a replica's file forgets its entry in the same job (on the dir's
//!   thread), so a cached file is never one the store moved away;
//! - a file removed *behind* the store's back stays open here, but has no links left: every
//!   use of a file checks its link count (`chunk_file::length_of`) and takes none for missing,
//!   as an open by name would;
//! - the cache holds at most its capacity, which [`capacity_for`] keeps to a sixteenth of the
//!   process's open-file limit whatever the number of stores and dirs in the process.

use kfs_common::{ChunkId, ChunkVersion};
use lru::LruCache;
use std::fs::{File, OpenOptions};
use std::io;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Files kept open per data dir at most.
const MOST_PER_DIR: usize = 256;
const LEAST_PER_DIR: usize = 8;

/// A data dir's open chunk files; see the module docs.
pub struct OpenFiles {
    files: Mutex<LruCache<ChunkId, (ChunkVersion, Arc<File>)>>,
    /// Files opened (cache misses), for the metrics.
    opens: AtomicU64,
}

impl OpenFiles {
    pub fn new(capacity: usize) -> OpenFiles {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("at least one");
        OpenFiles {
            files: Mutex::new(LruCache::new(capacity)),
            opens: AtomicU64::new(0),
        }
    }

    /// The replica's file, from the cache or opened read-write from `path`.
    pub fn get(&self, chunk: ChunkId, version: ChunkVersion, path: &Path) -> io::Result<Arc<File>> {
        if let Some((v, file)) = self.lock().get(&chunk)
            && *v == version
        {
            return Ok(file.clone());
        }
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        self.opens.fetch_add(1, Ordering::Relaxed);
        Ok(self.insert(chunk, version, file))
    }

    /// Keeps a file just made (by a create) for its next uses.
    pub fn insert(&self, chunk: ChunkId, version: ChunkVersion, file: File) -> Arc<File> {
        let file = Arc::new(file);
        self.lock().put(chunk, (version, file.clone()));
        file
    }

    /// Forgets the replica's file (it was renamed or removed).
    pub fn forget(&self, chunk: ChunkId) {
        self.lock().pop(&chunk);
    }

    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<ChunkId, (ChunkVersion, Arc<File>)>> {
        self.files.lock().expect("open files lock")
    }
}

/// Files to keep open in each of a store's `dirs` data dirs: a sixteenth of the process's
/// open-file limit shared among them, between 8 and 256 each.
pub fn capacity_for(dirs: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let share = (limit / 16 / dirs.max(1) as u64).min(MOST_PER_DIR as u64) as usize;
    share.max(LEAST_PER_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_file_is_opened_once_per_version_and_forgotten_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let files = OpenFiles::new(2);
        let a = files.get(ChunkId(1), ChunkVersion(1), &path).unwrap();
        let b = files.get(ChunkId(1), ChunkVersion(1), &path).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(files.opens(), 1);
        files.get(ChunkId(1), ChunkVersion(2), &path).unwrap();
        assert_eq!(files.opens(), 2, "another version is another file");
        files.forget(ChunkId(1));
        files.get(ChunkId(1), ChunkVersion(2), &path).unwrap();
        assert_eq!(files.opens(), 3);
        // Bounded: the least recently used goes.
        files.get(ChunkId(2), ChunkVersion(1), &path).unwrap();
        files.get(ChunkId(3), ChunkVersion(1), &path).unwrap();
        files.get(ChunkId(1), ChunkVersion(2), &path).unwrap();
        assert_eq!(files.opens(), 6);
    }

    #[test]
    fn the_capacity_fits_the_open_file_limit() {
        let one = capacity_for(1);
        assert!((LEAST_PER_DIR..=MOST_PER_DIR).contains(&one));
        assert!(capacity_for(4) <= one);
    }
}
