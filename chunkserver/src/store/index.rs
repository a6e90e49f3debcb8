//! The store's index: every replica held, where it lies, and the bytes they hold together.
//!
//! Invariants:
//! - `used` is the sum over the entries of their file sizes (data plus header), so space checks
//!   never walk the index;
//! - an entry's existence, dir and version change only together with its file: the job on the
//!   data dir's I/O thread that creates, renames or removes the file updates the entry before it
//!   ends, so a job on the same dir that finds a file missing can tell "deleted or moved just
//!   before" (the entry changed) from "lost behind the store's back" (the entry still names it).
//!   (The corrupt flag is set at once from the async side, and a failed dir's entries are dropped
//!   there: neither makes a missing file look present.)

use kfs_common::{ChunkId, ChunkVersion};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The data dir (its position in the store's list).
    pub dir: usize,
    pub version: ChunkVersion,
    /// Bytes of data.
    pub length: u64,
    /// Never served again; reported to the master until it has the replica deleted.
    pub corrupt: bool,
    pub kind: Kind,
}

/// What a replica's file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A chunk of one file (`chunk_file.rs`).
    Chunk,
    /// Records of many small files (`volume_file.rs`). Appendable only in the process that
    /// created it: one found at start, or copied in, is sealed, so a torn tail left by a crash
    /// stays the last thing in the file.
    Volume { appendable: bool },
}

impl Kind {
    /// Bytes of the file before the data.
    pub fn header_len(self) -> u64 {
        match self {
            Kind::Chunk => super::chunk_file::HEADER_LEN,
            Kind::Volume { .. } => super::volume_file::HEADER_LEN,
        }
    }
}

impl Entry {
    fn size(&self) -> u64 {
        self.length + self.kind.header_len()
    }
}

/// The replicas, and the bytes their files hold.
#[derive(Debug, Default)]
pub struct Index {
    map: HashMap<ChunkId, Entry>,
    used: u64,
}

impl Index {
    pub fn get(&self, chunk: ChunkId) -> Option<Entry> {
        self.map.get(&chunk).copied()
    }

    pub fn contains(&self, chunk: ChunkId) -> bool {
        self.map.contains_key(&chunk)
    }

    pub fn insert(&mut self, chunk: ChunkId, entry: Entry) {
        if let Some(old) = self.map.insert(chunk, entry) {
            self.used -= old.size();
        }
        self.used += entry.size();
    }

    pub fn remove(&mut self, chunk: ChunkId) -> Option<Entry> {
        let old = self.map.remove(&chunk)?;
        self.used -= old.size();
        Some(old)
    }

    /// Records the replica's new version (its file was renamed).
    pub fn set_version(&mut self, chunk: ChunkId, version: ChunkVersion) {
        if let Some(e) = self.map.get_mut(&chunk) {
            e.version = version;
        }
    }

    /// Records that the replica holds at least `length` bytes.
    pub fn grow(&mut self, chunk: ChunkId, length: u64) {
        if let Some(e) = self.map.get_mut(&chunk)
            && length > e.length
        {
            self.used += length - e.length;
            e.length = length;
        }
    }

    /// Marks the replica corrupt; returns whether it was not already.
    pub fn mark_corrupt(&mut self, chunk: ChunkId) -> bool {
        match self.map.get_mut(&chunk) {
            Some(e) if !e.corrupt => {
                e.corrupt = true;
                true
            }
            _ => false,
        }
    }

    /// Drops every replica of data dir `dir`; returns how many.
    pub fn drop_dir(&mut self, dir: usize) -> usize {
        let before = self.map.len();
        let mut freed = 0;
        self.map.retain(|_, e| {
            let keep = e.dir != dir;
            if !keep {
                freed += e.size();
            }
            keep
        });
        self.used -= freed;
        before - self.map.len()
    }

    /// Bytes held by replica files.
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (ChunkId, Entry)> + '_ {
        self.map.iter().map(|(c, e)| (*c, *e))
    }
}

/// The index, shared by the store and the jobs on its data dirs' threads.
#[derive(Clone, Debug, Default)]
pub struct SharedIndex(Arc<Mutex<Index>>);

impl SharedIndex {
    pub fn new(index: Index) -> SharedIndex {
        SharedIndex(Arc::new(Mutex::new(index)))
    }

    pub fn lock(&self) -> MutexGuard<'_, Index> {
        self.0.lock().expect("index lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunk_file::HEADER_LEN;

    #[test]
    fn used_follows_every_change() {
        let mut index = Index::default();
        let entry = |dir, length| Entry {
            dir,
            version: ChunkVersion(1),
            length,
            corrupt: false,
            kind: Kind::Chunk,
        };
        index.insert(ChunkId(1), entry(0, 10));
        index.insert(ChunkId(2), entry(1, 0));
        assert_eq!(index.used(), 10 + 2 * HEADER_LEN);
        index.grow(ChunkId(1), 5);
        index.grow(ChunkId(1), 30);
        index.insert(ChunkId(2), entry(1, 7));
        assert_eq!(index.used(), 37 + 2 * HEADER_LEN);
        assert!(index.mark_corrupt(ChunkId(2)));
        assert!(!index.mark_corrupt(ChunkId(2)));
        assert_eq!(index.drop_dir(1), 1);
        assert_eq!(index.used(), 30 + HEADER_LEN);
        assert_eq!(index.remove(ChunkId(1)).map(|e| e.length), Some(30));
        assert_eq!((index.used(), index.len()), (0, 0));
    }
}
