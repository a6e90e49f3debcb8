//! The namespace: a synchronous state machine over one ordered map (ops in, results out).
//!
//! Nothing here does I/O or knows about tokio; the server logs an [`Op`] first and applies it
//! after it is durable. Reads ([`Namespace::stat`], [`Namespace::readdir`], ...) never change
//! state.
//!
//! Every mutation is planned before it is committed: the plan step only reads and may fail; the
//! commit step cannot fail. So an op that fails leaves the namespace exactly as it was, and
//! [`Namespace::prepare`] can check an op without applying it.
//!
//! Invariants (checked by [`Namespace::check_invariants`]):
//! - the root directory exists and no entry names it;
//! - every other file or directory is named by exactly one `Dentry`, whose parent is a directory,
//!   and is reachable from the root (no cycles);
//! - a `Dentry`'s kind is its child's kind; chunks belong to files, xattrs to existing files;
//! - the counters equal a recount; `next_fid` and `next_chunk_id` exceed every id in use (and
//!   `next_chunk_id` every id reserved by `Op::ReserveChunkIds`, so none is ever handed out twice).

mod name;
pub mod op;
pub mod record;

use crate::tree::PMap;
use kfs_common::path;
use kfs_common::proto::Timestamp;
use kfs_common::proto::master::{
    DirEntry, DirPage, FileAttr, MAX_READDIR_LIMIT, MAX_XATTR_VALUE_LEN, MAX_XATTRS_PER_FILE,
    NamespaceCounters, REPLICATION_RANGE, RemoveSummary, SetAttr,
};
use kfs_common::{ChunkId, ChunkVersion, FileId, FileKind, KfsError, KfsResult};
use op::{Applied, Op, Prepared, Reply};
use record::{Fattr, Key, KeyView, Val};
use std::ops::Bound;

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

/// A checked mutation, ready to commit. Borrowed names point into the op.
enum Change<'p> {
    Mkdir {
        parent: FileId,
        names: Vec<&'p str>,
        first_fid: FileId,
        mode: u16,
        time: Timestamp,
    },
    CreateNew {
        parent: FileId,
        name: &'p str,
        fid: FileId,
        replication: u8,
        mode: u16,
        time: Timestamp,
    },
    Truncate {
        fid: FileId,
        replication: Option<u8>,
        time: Timestamp,
    },
    Rename {
        from: Entry<'p>,
        to_parent: FileId,
        to_name: &'p str,
        replaced: Option<Node>,
        time: Timestamp,
    },
    Remove {
        entry: Entry<'p>,
        time: Timestamp,
    },
    SetFattr {
        fid: FileId,
        update: FattrUpdate<'p>,
    },
    SetXattr {
        fid: FileId,
        name: &'p str,
        value: &'p [u8],
    },
    RemoveXattr {
        fid: FileId,
        name: &'p str,
    },
    AllocateChunk {
        fid: FileId,
        offset: u64,
        chunk: ChunkId,
        version: ChunkVersion,
    },
    BumpVersion {
        fid: FileId,
        offset: u64,
        chunk: ChunkId,
        version: ChunkVersion,
    },
    ReserveChunkIds {
        below: ChunkId,
    },
    Unchanged(Reply),
}

enum FattrUpdate<'p> {
    Replication(u8),
    Attr(&'p SetAttr),
    Length(u64, Timestamp),
    AtLeast(u64, Timestamp),
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

    // ---------------------------------------------------------------- reads

    fn child(&self, parent: FileId, name: &str) -> Option<Node> {
        match self.map.get_by(|k| k.cmp_dentry(parent, name)) {
            Some((_, Val::Child { fid, kind })) => Some(Node {
                fid: *fid,
                kind: *kind,
            }),
            _ => None,
        }
    }

    fn fattr(&self, fid: FileId) -> KfsResult<&Fattr> {
        match self.map.get(&Key::fattr(fid)) {
            Some(Val::Attr(a)) => Ok(a),
            _ => Err(KfsError::Internal(format!(
                "{fid} has a name but no attributes"
            ))),
        }
    }

    /// Walks the path from the root. Every component but the last must be a directory.
    fn resolve(&self, path: &str) -> KfsResult<Node> {
        let mut node = Node {
            fid: FileId::ROOT,
            kind: FileKind::Dir,
        };
        for name in path::components(path)? {
            if node.kind != FileKind::Dir {
                return Err(KfsError::not_a_directory(path));
            }
            node = self
                .child(node.fid, name)
                .ok_or_else(|| KfsError::not_found(path))?;
        }
        Ok(node)
    }

    /// Resolves the parent directory of `path`; `None` for the root.
    fn resolve_parent<'p>(&self, path: &'p str) -> KfsResult<Option<(FileId, &'p str)>> {
        let Some((parent, name)) = path::split_parent(path)? else {
            return Ok(None);
        };
        let dir = self.resolve(parent).map_err(|e| match e {
            KfsError::NotFound { .. } => KfsError::not_found(path),
            KfsError::NotADirectory { .. } => KfsError::not_a_directory(path),
            other => other,
        })?;
        if dir.kind != FileKind::Dir {
            return Err(KfsError::not_a_directory(path));
        }
        Ok(Some((dir.fid, name)))
    }

    /// Resolves an existing path other than the root, with its parent.
    fn resolve_entry<'p>(&self, path: &'p str) -> KfsResult<Option<Entry<'p>>> {
        let Some((parent, name)) = self.resolve_parent(path)? else {
            return Ok(None);
        };
        let node = self
            .child(parent, name)
            .ok_or_else(|| KfsError::not_found(path))?;
        Ok(Some(Entry { parent, name, node }))
    }

    pub fn stat(&self, path: &str) -> KfsResult<FileAttr> {
        let node = self.resolve(path)?;
        Ok(self.fattr(node.fid)?.to_attr(node.fid))
    }

    /// Attributes of a file or directory by id.
    pub fn stat_fid(&self, fid: FileId) -> KfsResult<FileAttr> {
        match self.map.get(&Key::fattr(fid)) {
            Some(Val::Attr(a)) => Ok(a.to_attr(fid)),
            _ => Err(KfsError::not_found(fid.to_string())),
        }
    }

    /// One page of a directory listing; see `MasterService::readdir`.
    pub fn readdir(
        &self,
        path: &str,
        start_after: Option<&str>,
        limit: u32,
        with_attrs: bool,
    ) -> KfsResult<DirPage> {
        let dir = self.resolve(path)?;
        if dir.kind != FileKind::Dir {
            return Err(KfsError::not_a_directory(path));
        }
        let limit = match limit {
            0 => MAX_READDIR_LIMIT,
            n => n.min(MAX_READDIR_LIMIT),
        } as usize;
        let start = Key::dir_start(dir.fid);
        let iter = match start_after {
            Some(after) => self.map.range_by(|k| k.cmp_dentry(dir.fid, after), false),
            None => self.map.range_from(Bound::Included(&start)),
        };
        let mut entries = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for (key, val) in iter.take_while(|(k, _)| k.same_range(&start)) {
            if entries.len() == limit {
                more = true;
                break;
            }
            let (KeyView::Dentry { name, .. }, Val::Child { fid, kind }) = (key.view(), val) else {
                return Err(KfsError::Internal(format!("bad entry in directory {path}")));
            };
            let attr = if with_attrs {
                Some(self.fattr(*fid)?.to_attr(*fid))
            } else {
                None
            };
            entries.push(DirEntry {
                name: name.to_string(),
                fid: *fid,
                kind: *kind,
                attr,
            });
        }
        Ok(DirPage { entries, more })
    }

    fn xattr_count(&self, fid: FileId) -> usize {
        let start = Key::xattrs_start(fid);
        self.map
            .range_from(Bound::Included(&start))
            .take_while(|(k, _)| k.same_range(&start))
            .count()
    }

    pub fn get_xattr(&self, path: &str, name: &str) -> KfsResult<Vec<u8>> {
        let node = self.resolve(path)?;
        match self.map.get(&Key::xattr(node.fid, name)) {
            Some(Val::Xattr(v)) => Ok(v.to_vec()),
            _ => Err(KfsError::NoSuchXattr {
                path: path.into(),
                name: name.into(),
            }),
        }
    }

    pub fn list_xattrs(&self, path: &str) -> KfsResult<Vec<String>> {
        let node = self.resolve(path)?;
        let start = Key::xattrs_start(node.fid);
        Ok(self
            .map
            .range_from(Bound::Included(&start))
            .take_while(|(k, _)| k.same_range(&start))
            .filter_map(|(k, _)| match k.view() {
                KeyView::Xattr { name, .. } => Some(name.to_string()),
                _ => None,
            })
            .collect())
    }

    /// The chunks of file `fid`, as `(offset, id, version)` in offset order.
    pub fn chunks(&self, fid: FileId) -> Vec<(u64, ChunkId, ChunkVersion)> {
        let start = Key::chunks_start(fid);
        self.map
            .range_from(Bound::Included(&start))
            .take_while(|(k, _)| k.same_range(&start))
            .filter_map(|(k, v)| match (k.view(), v) {
                (KeyView::Chunk { offset, .. }, Val::Chunk { id, version }) => {
                    Some((offset, *id, *version))
                }
                _ => None,
            })
            .collect()
    }

    /// The chunks of file `fid` overlapping bytes `[start, end)`, as `(offset, id, version)` in
    /// offset order (chunks are `chunk_size` bytes).
    pub fn chunks_in(
        &self,
        fid: FileId,
        start: u64,
        end: u64,
        chunk_size: u64,
    ) -> Vec<(u64, ChunkId, ChunkVersion)> {
        let first = start - start % chunk_size;
        let from = Key::chunk(fid, first);
        self.map
            .range_from(Bound::Included(&from))
            .map_while(|(k, v)| match (k.view(), v) {
                (KeyView::Chunk { fid: f, offset }, Val::Chunk { id, version })
                    if f == fid && offset < end =>
                {
                    Some((offset, *id, *version))
                }
                _ => None,
            })
            .collect()
    }

    /// The chunk of file `fid` at `offset`, if one was allocated there.
    pub fn chunk_at(&self, fid: FileId, offset: u64) -> Option<(ChunkId, ChunkVersion)> {
        match self.map.get(&Key::chunk(fid, offset)) {
            Some(Val::Chunk { id, version }) => Some((*id, *version)),
            _ => None,
        }
    }

    /// The paths of the files and directories in `wanted` (a walk of the whole tree).
    pub fn paths_of(
        &self,
        wanted: &std::collections::HashSet<FileId>,
    ) -> std::collections::HashMap<FileId, String> {
        let mut found = std::collections::HashMap::new();
        if wanted.contains(&FileId::ROOT) {
            found.insert(FileId::ROOT, "/".to_string());
        }
        let mut dirs = vec![(FileId::ROOT, String::from("/"))];
        while let Some((dir, dir_path)) = dirs.pop() {
            if found.len() == wanted.len() {
                break;
            }
            let start = Key::dir_start(dir);
            for (k, v) in self.map.range_from(Bound::Included(&start)) {
                let (KeyView::Dentry { parent, name }, Val::Child { fid, kind }) = (k.view(), v)
                else {
                    break;
                };
                if parent != dir {
                    break;
                }
                let child = path::join(&dir_path, name);
                if wanted.contains(fid) {
                    found.insert(*fid, child.clone());
                }
                if *kind == FileKind::Dir {
                    dirs.push((*fid, child));
                }
            }
        }
        found
    }

    /// Every chunk of every file, as `(fid, offset, id, version)` (to rebuild the master's chunk
    /// map at start-up).
    pub fn all_chunks(&self) -> impl Iterator<Item = (FileId, u64, ChunkId, ChunkVersion)> + '_ {
        let start = Key::chunks_start(FileId(0));
        self.map
            .range_from(Bound::Included(&start))
            .map_while(|(k, v)| match (k.view(), v) {
                (KeyView::Chunk { fid, offset }, Val::Chunk { id, version }) => {
                    Some((fid, offset, *id, *version))
                }
                _ => None,
            })
    }

    /// Every chunk from file `fid` at `offset` on, in the order of [`Namespace::all_chunks`]
    /// (to walk every chunk in slices).
    pub fn chunks_from(
        &self,
        fid: FileId,
        offset: u64,
    ) -> impl Iterator<Item = (FileId, u64, ChunkId, ChunkVersion)> + '_ {
        let start = Key::chunk(fid, offset);
        self.map
            .range_from(Bound::Included(&start))
            .map_while(|(k, v)| match (k.view(), v) {
                (KeyView::Chunk { fid, offset }, Val::Chunk { id, version }) => {
                    Some((fid, offset, *id, *version))
                }
                _ => None,
            })
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
        };
        ns.counters = ns.recount();
        ns.check_invariants()?;
        Ok(ns)
    }

    // ---------------------------------------------------------------- mutations

    /// Checks `op` against the current state without changing it.
    pub fn prepare(&self, op: &Op) -> KfsResult<Prepared> {
        Ok(match self.plan(op)? {
            Change::Unchanged(reply) => Prepared::Unchanged(reply),
            _ => Prepared::Log,
        })
    }

    /// Applies `op`. On error the namespace is unchanged.
    pub fn apply(&mut self, op: &Op) -> KfsResult<Applied> {
        let change = self.plan(op)?;
        Ok(self.commit(change))
    }

    fn plan<'p>(&self, op: &'p Op) -> KfsResult<Change<'p>> {
        match op {
            Op::Mkdir {
                path,
                parents,
                mode,
                first_fid,
                time,
            } => self.plan_mkdir(path, *parents, *mode, *first_fid, *time),
            Op::Create {
                path,
                exclusive,
                replication,
                replication_given,
                mode,
                fid,
                time,
            } => {
                check_replication(*replication)?;
                check_mode(*mode)?;
                let Some((parent, name)) = self.resolve_parent(path)? else {
                    return Err(KfsError::is_a_directory(path.as_str()));
                };
                match self.child(parent, name) {
                    None => {
                        self.check_new_fids(*fid, 1)?;
                        Ok(Change::CreateNew {
                            parent,
                            name,
                            fid: *fid,
                            replication: *replication,
                            mode: *mode,
                            time: *time,
                        })
                    }
                    Some(node) if node.kind == FileKind::Dir => {
                        Err(KfsError::is_a_directory(path.as_str()))
                    }
                    Some(_) if *exclusive => Err(KfsError::already_exists(path.as_str())),
                    Some(node) => Ok(Change::Truncate {
                        fid: node.fid,
                        replication: replication_given.then_some(*replication),
                        time: *time,
                    }),
                }
            }
            Op::Rename { src, dst, time } => self.plan_rename(src, dst, *time),
            Op::Remove { path, time } => {
                let entry = self
                    .resolve_entry(path)?
                    .ok_or_else(|| KfsError::is_a_directory(path.as_str()))?;
                if entry.node.kind == FileKind::Dir {
                    return Err(KfsError::is_a_directory(path.as_str()));
                }
                Ok(Change::Remove { entry, time: *time })
            }
            Op::Rmdir { path, time } => {
                let entry = self.resolve_entry(path)?.ok_or_else(|| {
                    KfsError::invalid_argument("cannot remove the root directory")
                })?;
                if entry.node.kind != FileKind::Dir {
                    return Err(KfsError::not_a_directory(path.as_str()));
                }
                if !self.is_empty_dir(entry.node.fid) {
                    return Err(KfsError::directory_not_empty(path.as_str()));
                }
                Ok(Change::Remove { entry, time: *time })
            }
            Op::RemoveRecursive { path, time } => {
                let entry = self.resolve_entry(path)?.ok_or_else(|| {
                    KfsError::invalid_argument("cannot remove the root directory")
                })?;
                Ok(Change::Remove { entry, time: *time })
            }
            Op::SetReplication { path, replication } => {
                check_replication(*replication)?;
                let node = self.resolve(path)?;
                if node.kind == FileKind::Dir {
                    return Err(KfsError::is_a_directory(path.as_str()));
                }
                Ok(Change::SetFattr {
                    fid: node.fid,
                    update: FattrUpdate::Replication(*replication),
                })
            }
            Op::SetAttr { path, attr } => {
                if let Some(mode) = attr.mode {
                    check_mode(mode)?;
                }
                let node = self.resolve(path)?;
                Ok(Change::SetFattr {
                    fid: node.fid,
                    update: FattrUpdate::Attr(attr),
                })
            }
            Op::SetXattr { path, name, value } => {
                check_xattr_name(path, name)?;
                if value.len() > MAX_XATTR_VALUE_LEN {
                    return Err(KfsError::invalid_argument(format!(
                        "value of attribute '{name}' is {} bytes, more than {MAX_XATTR_VALUE_LEN}",
                        value.len()
                    )));
                }
                let node = self.resolve(path)?;
                if !self.map.contains_key(&Key::xattr(node.fid, name))
                    && self.xattr_count(node.fid) >= MAX_XATTRS_PER_FILE
                {
                    return Err(KfsError::invalid_argument(format!(
                        "'{path}' already has {MAX_XATTRS_PER_FILE} attributes, the most allowed"
                    )));
                }
                Ok(Change::SetXattr {
                    fid: node.fid,
                    name,
                    value,
                })
            }
            Op::RemoveXattr { path, name } => {
                let node = self.resolve(path)?;
                if !self.map.contains_key(&Key::xattr(node.fid, name)) {
                    return Err(KfsError::NoSuchXattr {
                        path: path.clone(),
                        name: name.clone(),
                    });
                }
                Ok(Change::RemoveXattr {
                    fid: node.fid,
                    name,
                })
            }
            Op::AllocateChunk {
                fid,
                offset,
                chunk,
                version,
            } => {
                self.existing_file(*fid)?;
                if self.map.contains_key(&Key::chunk(*fid, *offset)) {
                    return Err(KfsError::already_exists(format!("{fid} chunk at {offset}")));
                }
                Ok(Change::AllocateChunk {
                    fid: *fid,
                    offset: *offset,
                    chunk: *chunk,
                    version: *version,
                })
            }
            Op::SetLength { fid, size, time } => {
                self.existing_file(*fid)?;
                Ok(Change::SetFattr {
                    fid: *fid,
                    update: FattrUpdate::Length(*size, *time),
                })
            }
            Op::ExtendLength { fid, size, time } => {
                self.existing_file(*fid)?;
                Ok(Change::SetFattr {
                    fid: *fid,
                    update: FattrUpdate::AtLeast(*size, *time),
                })
            }
            Op::ReserveChunkIds { below } if *below > self.next_chunk_id => {
                Ok(Change::ReserveChunkIds { below: *below })
            }
            Op::ReserveChunkIds { .. } => Ok(Change::Unchanged(Reply::Done)),
            Op::BumpVersion {
                fid,
                offset,
                chunk,
                version,
            } => match self.map.get(&Key::chunk(*fid, *offset)) {
                Some(Val::Chunk {
                    id,
                    version: current,
                }) if id == chunk && version > current => Ok(Change::BumpVersion {
                    fid: *fid,
                    offset: *offset,
                    chunk: *chunk,
                    version: *version,
                }),
                Some(Val::Chunk {
                    id,
                    version: current,
                }) if id == chunk => Err(KfsError::StaleVersion {
                    chunk: *chunk,
                    expected: *version,
                    found: *current,
                }),
                _ => Err(KfsError::NoSuchChunk { chunk: *chunk }),
            },
        }
    }

    fn existing_file(&self, fid: FileId) -> KfsResult<()> {
        match self.map.get(&Key::fattr(fid)) {
            Some(Val::Attr(a)) if a.kind == FileKind::File => Ok(()),
            Some(_) => Err(KfsError::is_a_directory(fid.to_string())),
            None => Err(KfsError::not_found(fid.to_string())),
        }
    }

    fn plan_mkdir<'p>(
        &self,
        path: &'p str,
        parents: bool,
        mode: u16,
        first_fid: FileId,
        time: Timestamp,
    ) -> KfsResult<Change<'p>> {
        check_mode(mode)?;
        let names = path::components(path)?;
        let mut dir = FileId::ROOT;
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            match self.child(dir, name) {
                Some(node) if node.kind == FileKind::Dir => {
                    if last {
                        return if parents {
                            Ok(Change::Unchanged(Reply::Attr(
                                self.fattr(node.fid)?.to_attr(node.fid),
                            )))
                        } else {
                            Err(KfsError::already_exists(path))
                        };
                    }
                    dir = node.fid;
                }
                Some(_) if last => return Err(KfsError::already_exists(path)),
                Some(_) => return Err(KfsError::not_a_directory(path)),
                None if last || parents => {
                    let names = names[i..].to_vec();
                    self.check_new_fids(first_fid, names.len() as u64)?;
                    return Ok(Change::Mkdir {
                        parent: dir,
                        names,
                        first_fid,
                        mode,
                        time,
                    });
                }
                None => return Err(KfsError::not_found(path)),
            }
        }
        // Only the root has no names.
        if parents {
            Ok(Change::Unchanged(Reply::Attr(self.stat("/")?)))
        } else {
            Err(KfsError::already_exists(path))
        }
    }

    fn plan_rename<'p>(
        &self,
        src: &'p str,
        dst: &'p str,
        time: Timestamp,
    ) -> KfsResult<Change<'p>> {
        let from = self
            .resolve_entry(src)?
            .ok_or_else(|| KfsError::invalid_argument("cannot move the root directory"))?;
        path::validate(dst)?;
        if src == dst {
            return Ok(Change::Unchanged(Reply::Done));
        }
        if from.node.kind == FileKind::Dir && path::is_same_or_below(dst, src) {
            return Err(KfsError::invalid_argument(format!(
                "cannot move '{src}' to a subdirectory of itself, '{dst}'"
            )));
        }
        let Some((to_parent, to_name)) = self.resolve_parent(dst)? else {
            return Err(KfsError::invalid_argument(
                "cannot replace the root directory",
            ));
        };
        let replaced = match self.child(to_parent, to_name) {
            None => None,
            Some(old) => match (from.node.kind, old.kind) {
                (FileKind::File, FileKind::File) => Some(old),
                (FileKind::File, FileKind::Dir) => return Err(KfsError::is_a_directory(dst)),
                (FileKind::Dir, FileKind::File) => return Err(KfsError::not_a_directory(dst)),
                (FileKind::Dir, FileKind::Dir) if self.is_empty_dir(old.fid) => Some(old),
                (FileKind::Dir, FileKind::Dir) => {
                    return Err(KfsError::directory_not_empty(dst));
                }
            },
        };
        Ok(Change::Rename {
            from,
            to_parent,
            to_name,
            replaced,
            time,
        })
    }

    /// Ids chosen for new files must be unused (ops prepared concurrently may reach the log out of
    /// id order, so "above the largest id" would be wrong).
    fn check_new_fids(&self, first: FileId, count: u64) -> KfsResult<()> {
        let last = first.0.saturating_add(count.saturating_sub(1));
        let fresh = first >= FileId::FIRST_USER
            && last <= FileId::MAX.0
            && (first.0..=last).all(|id| !self.map.contains_key(&Key::fattr(FileId(id))));
        if fresh {
            Ok(())
        } else {
            Err(KfsError::Internal(format!(
                "{first} (and {count} after it) cannot name new files"
            )))
        }
    }

    fn is_empty_dir(&self, dir: FileId) -> bool {
        let start = Key::dir_start(dir);
        self.map
            .range_from(Bound::Included(&start))
            .next()
            .is_none_or(|(k, _)| !k.same_range(&start))
    }

    fn commit(&mut self, change: Change<'_>) -> Applied {
        let mut freed = Vec::new();
        let reply = match change {
            Change::Unchanged(reply) => reply,
            Change::Mkdir {
                mut parent,
                names,
                first_fid,
                mode,
                time,
            } => {
                self.touch_dir(parent, time);
                let mut fid = first_fid;
                for name in names {
                    self.link(parent, name, fid, FileKind::Dir);
                    self.map
                        .insert(Key::fattr(fid), Val::Attr(dir_attr(mode, time)));
                    self.counters.dirs += 1;
                    self.bump_next_fid(fid);
                    parent = fid;
                    fid = FileId(fid.0 + 1);
                }
                Reply::Attr(self.stat_fid(parent).expect("just created"))
            }
            Change::CreateNew {
                parent,
                name,
                fid,
                replication,
                mode,
                time,
            } => {
                self.touch_dir(parent, time);
                self.link(parent, name, fid, FileKind::File);
                self.map.insert(
                    Key::fattr(fid),
                    Val::Attr(Fattr {
                        size: 0,
                        mtime: time,
                        atime: time,
                        owner: 0,
                        group: 0,
                        mode,
                        replication,
                        kind: FileKind::File,
                    }),
                );
                self.counters.files += 1;
                self.bump_next_fid(fid);
                Reply::Attr(self.stat_fid(fid).expect("just created"))
            }
            Change::Truncate {
                fid,
                replication,
                time,
            } => {
                freed = self.drop_chunks(fid);
                let attr = self.fattr_mut(fid);
                let old_size = std::mem::take(&mut attr.size);
                attr.mtime = time;
                if let Some(r) = replication {
                    attr.replication = r;
                }
                self.counters.bytes -= old_size;
                Reply::Attr(self.stat_fid(fid).expect("exists"))
            }
            Change::Rename {
                from,
                to_parent,
                to_name,
                replaced,
                time,
            } => {
                self.map.remove(&Key::dentry(from.parent, from.name));
                if let Some(old) = replaced {
                    self.map.remove(&Key::dentry(to_parent, to_name));
                    match old.kind {
                        FileKind::File => freed = self.drop_file(old.fid),
                        FileKind::Dir => self.drop_dir(old.fid),
                    }
                }
                self.link(to_parent, to_name, from.node.fid, from.node.kind);
                self.touch_dir(from.parent, time);
                self.touch_dir(to_parent, time);
                Reply::Done
            }
            Change::Remove { entry, time } => {
                self.map.remove(&Key::dentry(entry.parent, entry.name));
                self.touch_dir(entry.parent, time);
                let summary = self.drop_subtree(entry.node, &mut freed);
                Reply::Removed(summary)
            }
            Change::SetFattr { fid, update } => {
                let attr = self.fattr_mut(fid);
                let mut size_change = None;
                match update {
                    FattrUpdate::Replication(r) => attr.replication = r,
                    FattrUpdate::Attr(set) => {
                        let SetAttr {
                            mode,
                            owner,
                            group,
                            mtime,
                            atime,
                        } = set;
                        attr.mode = mode.unwrap_or(attr.mode);
                        attr.owner = owner.unwrap_or(attr.owner);
                        attr.group = group.unwrap_or(attr.group);
                        attr.mtime = mtime.unwrap_or(attr.mtime);
                        attr.atime = atime.unwrap_or(attr.atime);
                    }
                    FattrUpdate::Length(size, time) => {
                        size_change = Some((attr.size, size));
                        attr.size = size;
                        attr.mtime = time;
                    }
                    FattrUpdate::AtLeast(size, time) => {
                        size_change = Some((attr.size, attr.size.max(size)));
                        attr.size = attr.size.max(size);
                        attr.mtime = time;
                    }
                }
                if let Some((old, new)) = size_change {
                    self.counters.bytes = self.counters.bytes - old + new;
                }
                Reply::Attr(self.stat_fid(fid).expect("exists"))
            }
            Change::SetXattr { fid, name, value } => {
                self.map
                    .insert(Key::xattr(fid, name), Val::Xattr(value.into()));
                Reply::Done
            }
            Change::RemoveXattr { fid, name } => {
                self.map.remove(&Key::xattr(fid, name));
                Reply::Done
            }
            Change::BumpVersion {
                fid,
                offset,
                chunk,
                version,
            } => {
                self.map
                    .insert(Key::chunk(fid, offset), Val::Chunk { id: chunk, version });
                Reply::Done
            }
            Change::ReserveChunkIds { below } => {
                self.next_chunk_id = self.next_chunk_id.max(below);
                Reply::Done
            }
            Change::AllocateChunk {
                fid,
                offset,
                chunk,
                version,
            } => {
                self.map
                    .insert(Key::chunk(fid, offset), Val::Chunk { id: chunk, version });
                self.counters.chunks += 1;
                self.next_chunk_id = self.next_chunk_id.max(ChunkId(chunk.0 + 1));
                Reply::Done
            }
        };
        Applied {
            reply,
            freed_chunks: freed,
        }
    }

    fn fattr_mut(&mut self, fid: FileId) -> &mut Fattr {
        match self.map.get_mut(&Key::fattr(fid)) {
            Some(Val::Attr(a)) => a,
            _ => unreachable!("planned changes name existing files"),
        }
    }

    fn touch_dir(&mut self, dir: FileId, time: Timestamp) {
        self.fattr_mut(dir).mtime = time;
    }

    fn link(&mut self, parent: FileId, name: &str, fid: FileId, kind: FileKind) {
        self.map
            .insert(Key::dentry(parent, name), Val::Child { fid, kind });
    }

    fn bump_next_fid(&mut self, used: FileId) {
        self.next_fid = self.next_fid.max(FileId(used.0 + 1));
    }

    /// Removes every record in the range starting at `start`; returns them.
    fn take_range(&mut self, start: Key) -> Vec<(Key, Val)> {
        let taken: Vec<(Key, Val)> = self
            .map
            .range_from(Bound::Included(&start))
            .take_while(|(k, _)| k.same_range(&start))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, _) in &taken {
            self.map.remove(k);
        }
        taken
    }

    fn drop_chunks(&mut self, fid: FileId) -> Vec<ChunkId> {
        let chunks: Vec<ChunkId> = self
            .take_range(Key::chunks_start(fid))
            .into_iter()
            .filter_map(|(_, v)| match v {
                Val::Chunk { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        self.counters.chunks -= chunks.len() as u64;
        chunks
    }

    /// Removes a file's attributes, chunks and xattrs (not its name); returns its chunks.
    fn drop_file(&mut self, fid: FileId) -> Vec<ChunkId> {
        let chunks = self.drop_chunks(fid);
        self.take_range(Key::xattrs_start(fid));
        if let Some(Val::Attr(a)) = self.map.remove(&Key::fattr(fid)) {
            self.counters.bytes -= a.size;
        }
        self.counters.files -= 1;
        chunks
    }

    /// Removes an empty directory's attributes and xattrs (not its name).
    fn drop_dir(&mut self, fid: FileId) {
        self.take_range(Key::xattrs_start(fid));
        self.map.remove(&Key::fattr(fid));
        self.counters.dirs -= 1;
    }

    /// Removes a file, or a directory and everything below it (not its own name).
    fn drop_subtree(&mut self, node: Node, freed: &mut Vec<ChunkId>) -> RemoveSummary {
        let mut summary = RemoveSummary::default();
        if node.kind == FileKind::File {
            freed.extend(self.drop_file(node.fid));
            summary.files = 1;
            return summary;
        }
        let mut dirs = vec![node.fid];
        while let Some(dir) = dirs.pop() {
            for (_, child) in self.take_range(Key::dir_start(dir)) {
                match child {
                    Val::Child {
                        fid,
                        kind: FileKind::Dir,
                    } => dirs.push(fid),
                    Val::Child { fid, .. } => {
                        freed.extend(self.drop_file(fid));
                        summary.files += 1;
                    }
                    _ => unreachable!("directories hold dentries"),
                }
            }
            self.drop_dir(dir);
            summary.dirs += 1;
        }
        summary
    }

    // ---------------------------------------------------------------- invariants

    fn recount(&self) -> NamespaceCounters {
        let mut c = NamespaceCounters::default();
        for (_, v) in self.map.iter() {
            match v {
                Val::Attr(a) if a.kind == FileKind::Dir => c.dirs += 1,
                Val::Attr(a) => {
                    c.files += 1;
                    c.bytes += a.size;
                }
                Val::Chunk { .. } => c.chunks += 1,
                _ => {}
            }
        }
        c
    }

    /// Checks every invariant in the module docs; the error says which one broke. Linear in the
    /// number of records (it runs on every checkpoint load).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.map.check_invariants()?;
        // Every file and directory, sorted by id (the map keeps attribute records in id order).
        let mut files: Vec<(FileId, FileKind)> = Vec::new();
        let mut max_chunk = 0u64;
        for (k, v) in self.map.iter() {
            match (k.view(), v) {
                (KeyView::Fattr { fid }, Val::Attr(a)) => files.push((fid, a.kind)),
                (KeyView::Dentry { .. }, Val::Child { .. })
                | (KeyView::Xattr { .. }, Val::Xattr(_)) => {}
                (KeyView::Chunk { .. }, Val::Chunk { id, .. }) => max_chunk = max_chunk.max(id.0),
                (view, val) => return Err(format!("key {view:?} holds {val:?}")),
            }
        }
        let index = |fid: FileId| files.binary_search_by_key(&fid, |(f, _)| *f).ok();
        let kind = |fid: FileId| index(fid).map(|i| files[i].1);
        if kind(FileId::ROOT) != Some(FileKind::Dir) {
            return Err("the root directory is missing".into());
        }
        let mut named = vec![false; files.len()];
        for (k, v) in self.map.iter() {
            match (k.view(), v) {
                (
                    KeyView::Dentry { parent, name },
                    Val::Child {
                        fid,
                        kind: child_kind,
                    },
                ) => {
                    if kind(parent) != Some(FileKind::Dir) {
                        return Err(format!(
                            "entry {name:?} hangs from {parent}, not a directory"
                        ));
                    }
                    if kind(*fid) != Some(*child_kind) {
                        return Err(format!(
                            "entry {name:?} says {fid} is a {child_kind}; it is not"
                        ));
                    }
                    if *fid == FileId::ROOT {
                        return Err(format!("entry {name:?} names the root"));
                    }
                    let i = index(*fid).expect("checked above");
                    if std::mem::replace(&mut named[i], true) {
                        return Err(format!("{fid} is named twice, once as {name:?}"));
                    }
                }
                (KeyView::Chunk { fid, .. }, _) if kind(fid) != Some(FileKind::File) => {
                    return Err(format!("a chunk belongs to {fid}, which is not a file"));
                }
                (KeyView::Xattr { fid, .. }, _) if kind(fid).is_none() => {
                    return Err(format!("an xattr belongs to missing {fid}"));
                }
                _ => {}
            }
        }
        if let Some(i) = (0..files.len()).find(|&i| files[i].0 != FileId::ROOT && !named[i]) {
            return Err(format!("{} has no name", files[i].0));
        }
        // Every node has exactly one name, so it is reachable from the root unless it is in a
        // cycle: count what a walk from the root reaches.
        let mut reached = 1;
        let mut dirs = vec![FileId::ROOT];
        while let Some(dir) = dirs.pop() {
            let start = Key::dir_start(dir);
            for (k, v) in self.map.range_from(Bound::Included(&start)) {
                if !k.same_range(&start) {
                    break;
                }
                if let Val::Child {
                    fid,
                    kind: FileKind::Dir,
                } = v
                {
                    dirs.push(*fid);
                }
                reached += 1;
                if reached > files.len() {
                    return Err("the directory tree has a cycle".into());
                }
            }
        }
        if reached != files.len() {
            return Err(format!(
                "{} files or directories are cut off from the root",
                files.len() - reached
            ));
        }
        if let Some((fid, _)) = files.last()
            && fid.0 >= self.next_fid.0
        {
            return Err(format!("{fid} is not below next_fid {}", self.next_fid));
        }
        if max_chunk >= self.next_chunk_id.0 {
            return Err(format!(
                "chunk {max_chunk} is not below next_chunk_id {}",
                self.next_chunk_id
            ));
        }
        let recount = self.recount();
        if recount != self.counters {
            return Err(format!(
                "counters {:?} but recount {recount:?}",
                self.counters
            ));
        }
        Ok(())
    }
}

fn dir_attr(mode: u16, time: Timestamp) -> Fattr {
    Fattr {
        size: 0,
        mtime: time,
        atime: time,
        owner: 0,
        group: 0,
        mode,
        replication: 0,
        kind: FileKind::Dir,
    }
}

fn check_replication(r: u8) -> KfsResult<()> {
    if REPLICATION_RANGE.contains(&r) {
        Ok(())
    } else {
        Err(KfsError::invalid_argument(format!(
            "replication factor {r} is outside {}..={}",
            REPLICATION_RANGE.start(),
            REPLICATION_RANGE.end()
        )))
    }
}

fn check_mode(mode: u16) -> KfsResult<()> {
    if mode <= 0o7777 {
        Ok(())
    } else {
        Err(KfsError::invalid_argument(format!(
            "mode {mode:o} has bits beyond 0o7777"
        )))
    }
}

fn check_xattr_name(path: &str, name: &str) -> KfsResult<()> {
    path::validate_name(path, name).map_err(|e| {
        KfsError::invalid_argument(format!(
            "bad attribute name '{name}' on '{path}': {}",
            e.reason()
        ))
    })
}

#[cfg(test)]
mod tests;
