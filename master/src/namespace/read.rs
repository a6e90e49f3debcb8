//! Reads: path lookups, attributes, directory pages, xattrs, a file's chunks, and the walks over
//! every chunk (to rebuild the chunk map, the healer's rounds) or path (to name files in fsck
//! reports and errors). Everything here takes `&self` and changes nothing, so it runs under the
//! read lock alongside other reads.
//!
//! The lookup helpers (`child`, `fattr`, `resolve`, `resolve_parent`, `resolve_entry`,
//! `xattr_count`) are also the plan step's: a missing component is `NotFound` and a file used as a
//! directory `NotADirectory`, both naming the whole path as the caller gave it; a name whose file
//! has no attributes is `Internal` (the map broke an invariant).

use super::record::{Fattr, Key, KeyView, Val, is_reserved_xattr};
use super::{Entry, Namespace, Node};
use kfs_common::path;
use kfs_common::proto::master::{DirEntry, DirPage, FileAttr, MAX_READDIR_LIMIT};
use kfs_common::{ChunkId, ChunkVersion, FileId, FileKind, KfsError, KfsResult};
use std::ops::Bound;

impl Namespace {
    pub(super) fn child(&self, parent: FileId, name: &str) -> Option<Node> {
        match self.map.get_by(|k| k.cmp_dentry(parent, name)) {
            Some((_, Val::Child { fid, kind })) => Some(Node {
                fid: *fid,
                kind: *kind,
            }),
            _ => None,
        }
    }

    pub(super) fn fattr(&self, fid: FileId) -> KfsResult<&Fattr> {
        match self.map.get(&Key::fattr(fid)) {
            Some(Val::Attr(a)) => Ok(a),
            _ => Err(KfsError::Internal(format!(
                "{fid} has a name but no attributes"
            ))),
        }
    }

    /// Walks the path from the root. Every component but the last must be a directory.
    pub(super) fn resolve(&self, path: &str) -> KfsResult<Node> {
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
    pub(super) fn resolve_parent<'p>(&self, path: &'p str) -> KfsResult<Option<(FileId, &'p str)>> {
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
    pub(super) fn resolve_entry<'p>(&self, path: &'p str) -> KfsResult<Option<Entry<'p>>> {
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
        self.attr(node.fid)
    }

    /// Attributes of a file or directory by id.
    pub fn stat_fid(&self, fid: FileId) -> KfsResult<FileAttr> {
        match self.map.get(&Key::fattr(fid)) {
            Some(Val::Attr(a)) => Ok(a.to_attr(fid, self.nlink(fid, a))),
            _ => Err(KfsError::not_found(fid.to_string())),
        }
    }

    /// The attributes of `fid`, which has a name.
    pub(super) fn attr(&self, fid: FileId) -> KfsResult<FileAttr> {
        let a = self.fattr(fid)?;
        Ok(a.to_attr(fid, self.nlink(fid, a)))
    }

    /// How many names `fid` (with attributes `a`) has: a directory 2 and one per subdirectory;
    /// anything else its link count (1 unless it has a `LINKS` record).
    pub(super) fn nlink(&self, fid: FileId, a: &Fattr) -> u32 {
        if a.kind == FileKind::Dir {
            return u32::try_from(a.size.saturating_add(2)).unwrap_or(u32::MAX);
        }
        self.links_of(fid)
    }

    /// The link count of a file (or link, or special file).
    pub(super) fn links_of(&self, fid: FileId) -> u32 {
        match self.map.get(&Key::links(fid)) {
            Some(Val::Xattr(n)) if n.len() == 4 => u32::from_le_bytes([n[0], n[1], n[2], n[3]]),
            _ => 1,
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
                Some(self.attr(*fid)?)
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

    /// The extended attributes of `fid` a user set (not the namespace's own records).
    pub(super) fn xattr_count(&self, fid: FileId) -> usize {
        let start = Key::xattrs_start(fid);
        self.map
            .range_from(Bound::Included(&start))
            .take_while(|(k, _)| k.same_range(&start))
            .filter(|(k, _)| !matches!(k.view(), KeyView::Xattr { name, .. } if is_reserved_xattr(name)))
            .count()
    }

    pub fn get_xattr(&self, path: &str, name: &str) -> KfsResult<Vec<u8>> {
        let node = self.resolve(path)?;
        match self.map.get(&Key::xattr(node.fid, name)) {
            Some(Val::Xattr(v)) if !is_reserved_xattr(name) => Ok(v.to_vec()),
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
                KeyView::Xattr { name, .. } if !is_reserved_xattr(name) => Some(name.to_string()),
                _ => None,
            })
            .collect())
    }

    /// The target of the symbolic link at `path`.
    pub fn readlink(&self, path: &str) -> KfsResult<String> {
        let node = self.resolve(path)?;
        match self.map.get(&Key::symlink_target(node.fid)) {
            Some(Val::Xattr(target)) if node.kind == FileKind::Symlink => {
                Ok(String::from_utf8_lossy(target).into_owned())
            }
            _ => Err(KfsError::invalid_argument(format!(
                "'{path}' is a {}, not a symbolic link",
                node.kind
            ))),
        }
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

    /// The attributes of the root and of each component of `path` in turn, as far as the path
    /// exists (the last is `path`'s own when it exists; the walk stops at a missing name or at a
    /// file used as a directory). What a permission check walks.
    pub fn attrs_along(&self, path: &str) -> KfsResult<Vec<FileAttr>> {
        let mut node = Node {
            fid: FileId::ROOT,
            kind: FileKind::Dir,
        };
        let mut attrs = vec![self.attr(node.fid)?];
        for name in path::components(path)? {
            if node.kind != FileKind::Dir {
                break;
            }
            let Some(child) = self.child(node.fid, name) else {
                break;
            };
            node = child;
            attrs.push(self.attr(node.fid)?);
        }
        Ok(attrs)
    }

    /// The directories at or below `path`, with their paths and attributes (what a recursive
    /// remove must be allowed to change); empty when `path` is a file.
    pub fn dirs_below(&self, path: &str) -> KfsResult<Vec<(String, FileAttr)>> {
        let top = self.resolve(path)?;
        if top.kind != FileKind::Dir {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        let mut dirs = vec![(top.fid, path::normalize("/", path)?)];
        while let Some((dir, dir_path)) = dirs.pop() {
            let start = Key::dir_start(dir);
            for (k, v) in self.map.range_from(Bound::Included(&start)) {
                let (KeyView::Dentry { parent, name }, Val::Child { fid, kind }) = (k.view(), v)
                else {
                    break;
                };
                if parent != dir {
                    break;
                }
                if *kind == FileKind::Dir {
                    dirs.push((*fid, path::join(&dir_path, name)));
                }
            }
            found.push((dir_path, self.attr(dir)?));
        }
        Ok(found)
    }

    /// The regular files at or below `path`, with their paths (depth first, in name order).
    pub fn files_below(&self, path: &str) -> KfsResult<Vec<(FileId, String)>> {
        let top = self.resolve(path)?;
        let top_path = path::normalize("/", path)?;
        match top.kind {
            FileKind::File => return Ok(vec![(top.fid, top_path)]),
            FileKind::Dir => {}
            _ => return Ok(Vec::new()),
        }
        let mut files = Vec::new();
        let mut dirs = vec![(top.fid, top_path)];
        while let Some((dir, dir_path)) = dirs.pop() {
            let start = Key::dir_start(dir);
            let mut subdirs = Vec::new();
            for (k, v) in self.map.range_from(Bound::Included(&start)) {
                let (KeyView::Dentry { parent, name }, Val::Child { fid, kind }) = (k.view(), v)
                else {
                    break;
                };
                if parent != dir {
                    break;
                }
                let child = path::join(&dir_path, name);
                match kind {
                    FileKind::File => files.push((*fid, child)),
                    FileKind::Dir => subdirs.push((*fid, child)),
                    _ => {}
                }
            }
            dirs.extend(subdirs.into_iter().rev());
        }
        Ok(files)
    }

    /// Every chunk of every file, and every volume (owned by its volume set), as `(fid, offset,
    /// id, version)` (to rebuild the master's chunk map at start-up).
    pub fn all_chunks(&self) -> impl Iterator<Item = (FileId, u64, ChunkId, ChunkVersion)> + '_ {
        self.chunks_from(FileId(0), 0)
    }

    /// Every chunk from file `fid` at `offset` on, in the order of [`Namespace::all_chunks`]
    /// (to walk every chunk in slices).
    pub fn chunks_from(
        &self,
        fid: FileId,
        offset: u64,
    ) -> impl Iterator<Item = (FileId, u64, ChunkId, ChunkVersion)> + '_ {
        let start = Key::chunk(fid, offset);
        // Every `Chunk` key from `start` on; the extents among them are not chunks.
        self.map
            .range_from(Bound::Included(&start))
            .map_while(|(k, v)| match (k.view(), v) {
                (KeyView::Chunk { fid, offset }, Val::Chunk { id, version }) => {
                    Some(Some((fid, offset, *id, *version)))
                }
                (KeyView::Chunk { .. }, _) => Some(None),
                _ => None,
            })
            .flatten()
    }
}
