//! The namespace: a synchronous state machine over one ordered map (ops in, results out).
//!
//! Nothing here does I/O or knows about tokio; the server logs an [`Op`](op::Op) first and
//! applies it after it is durable. Reads ([`Namespace::stat`], [`Namespace::readdir`], ...) never
//! change state.
//!
//! Every mutation is planned before it is committed: the plan step only reads and may fail; the
//! commit step cannot fail. So an op that fails leaves the namespace exactly as it was, and
//! [`Namespace::prepare`] can check an op without applying it.
//!
//! Invariants (checked by [`Namespace::check_invariants`]):
//! - the root directory exists and no entry names it;
//! - every other directory is named by exactly one `Dentry`, and anything else by as many as its
//!   link count (1, or its `LINKS` record's, never below 2); every entry's parent is a directory
//!   and is reachable from the root (no cycles); a directory's `size` is its number of
//!   subdirectories;
//! - a `Dentry`'s kind is its child's kind; chunks belong to files (or to volume sets: volumes),
//!   xattrs to existing files; extents name volumes (`extents.rs`); every symbolic link, and
//!   nothing else, has a target record as long as its attributes' size;
//! - the counters equal a recount; `next_fid` and `next_chunk_id` exceed every id in use (and
//!   `next_chunk_id` every id reserved by `Op::ReserveChunkIds`, so none is ever handed out twice).
//!
//! Each step is its own file, adding methods to [`Namespace`]: `read.rs` (lookups and the
//! read-only queries), `plan.rs` ([`Namespace::prepare`]: checking an op and deciding what it will
//! do), `apply.rs` ([`Namespace::apply`]: committing that decision to the map) and `invariants.rs`
//! ([`Namespace::check_invariants`]). This file holds the struct, its constructors (empty, or from
//! a checkpoint's records) and its counters; `record.rs` the map's records, `op.rs` the ops.

mod apply;
pub mod extents;
mod invariants;
mod name;
pub mod op;
mod plan;
mod read;
pub mod record;

use crate::tree::PMap;
use kfs_common::proto::Timestamp;
use kfs_common::proto::master::NamespaceCounters;
use kfs_common::{ChunkId, FileId, FileKind};
use record::{Fattr, Key, Val};

/// Permission bits a file gets when none are given.
pub const DEFAULT_FILE_MODE: u16 = 0o644;
/// Permission bits a directory gets when none are given.
pub const DEFAULT_DIR_MODE: u16 = 0o755;

/// The master's namespace; see the module docs. Cloning is O(1) (the map is persistent).
#[derive(Clone)]
pub struct Namespace {
    map: PMap<Key, Val>,
    counters: NamespaceCounters,
    next_fid: FileId,
    next_chunk_id: ChunkId,
    /// What each volume's live records add up to (derived from the map: recounted on load; a
    /// persistent map, so a clone for a checkpoint stays O(1)).
    volume_use: PMap<ChunkId, extents::VolumeUse>,
}

/// A resolved path.
#[derive(Clone, Copy, Debug)]
struct Node {
    fid: FileId,
    kind: FileKind,
}

/// A resolved path and where it hangs.
#[derive(Clone, Copy, Debug)]
struct Entry<'p> {
    parent: FileId,
    name: &'p str,
    node: Node,
}

impl Namespace {
    /// An empty namespace: just the root directory, made at `time`.
    pub fn new(time: Timestamp) -> Namespace {
        let mut map = PMap::new();
        map.insert(
            Key::fattr(FileId::ROOT),
            Val::Attr(Fattr {
                size: 0,
                mtime: time,
                atime: time,
                owner: 0,
                group: 0,
                mode: DEFAULT_DIR_MODE,
                replication: 0,
                kind: FileKind::Dir,
                ctime_after: 0,
            }),
        );
        Namespace {
            map,
            counters: NamespaceCounters {
                dirs: 1,
                ..Default::default()
            },
            next_fid: FileId::FIRST_USER,
            next_chunk_id: ChunkId(1),
            volume_use: PMap::new(),
        }
    }

    pub fn counters(&self) -> NamespaceCounters {
        self.counters
    }

    /// The smallest file id never used.
    pub fn next_fid(&self) -> FileId {
        self.next_fid
    }

    /// The smallest chunk id never used.
    pub fn next_chunk_id(&self) -> ChunkId {
        self.next_chunk_id
    }

    /// Number of records in the map.
    pub fn record_count(&self) -> usize {
        self.map.len()
    }

    /// `(leaves, branches, records)` of the map's tree, for measuring how full it is.
    pub fn tree_shape(&self) -> (usize, usize, usize) {
        self.map.node_counts()
    }

    /// Every record in key order (for checkpoints).
    pub fn records(&self) -> impl Iterator<Item = (&Key, &Val)> {
        self.map.iter()
    }

    /// Rebuilds a namespace from records in key order (a checkpoint) and its id counters.
    /// Counters are recounted; the result is checked against every invariant.
    pub fn from_records(
        records: impl IntoIterator<Item = (Key, Val)>,
        next_fid: FileId,
        next_chunk_id: ChunkId,
    ) -> Result<Namespace, String> {
        let map = PMap::from_sorted(records).map_err(|e| e.to_string())?;
        let mut ns = Namespace {
            map,
            counters: NamespaceCounters::default(),
            next_fid,
            next_chunk_id,
            volume_use: PMap::new(),
        };
        ns.recount_subdirs();
        ns.counters = ns.recount();
        ns.volume_use = ns.recount_volume_use();
        ns.check_invariants()?;
        Ok(ns)
    }
}

#[cfg(test)]
mod extent_tests;
#[cfg(test)]
mod tests;
