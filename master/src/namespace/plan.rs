//! The plan step: [`Namespace::prepare`] and the checks behind every mutation.
//!
//! `plan` turns an [`Op`] into a `Change`, the mutation decided and checked, borrowing names from
//! the op. It only reads, and every error an op can meet is found here (a bad mode, replication
//! factor or xattr, a missing or wrong-kind path, a non-empty directory, a file id that cannot
//! name a new file, a missing chunk or a stale version). So a `Change` names only entries and files that exist (and new ids that
//! are free), and committing it (`apply.rs`) cannot fail. An op that would change nothing plans to
//! `Change::Unchanged` with its reply: `prepare` answers it as [`Prepared::Unchanged`], and it is
//! never logged.

use super::op::{Op, Prepared, Reply, Special};
use super::record::{Key, Val};
use super::{Entry, Namespace, Node};
use kfs_common::path;
use kfs_common::proto::Timestamp;
use kfs_common::proto::master::{
    MAX_SYMLINK_TARGET, MAX_XATTR_VALUE_LEN, MAX_XATTRS_PER_FILE, REPLICATION_RANGE, SetAttr,
};
use kfs_common::{ChunkId, ChunkVersion, FileId, FileKind, KfsError, KfsResult};
use std::ops::Bound;

/// A checked mutation, ready to commit. Borrowed names point into the op.
pub(super) enum Change<'p> {
    CreateVolume {
        chunk: ChunkId,
        version: ChunkVersion,
        replication: u8,
    },
    SetExtent {
        fid: FileId,
        extent: super::record::Extent,
        time: Timestamp,
    },
    FreeVolume {
        chunk: ChunkId,
        replication: u8,
    },
    /// Files' extents to move, `(fid, from, to)`: each file's extent is `from` now.
    MoveExtents {
        moves: Vec<(FileId, super::record::Extent, super::record::Extent)>,
    },
    Mkdir {
        parent: FileId,
        names: Vec<&'p str>,
        first_fid: FileId,
        mode: u16,
        owner: (u32, u32),
        time: Timestamp,
    },
    CreateNew {
        parent: FileId,
        name: &'p str,
        fid: FileId,
        replication: u8,
        mode: u16,
        owner: (u32, u32),
        time: Timestamp,
    },
    MakeSpecial {
        parent: FileId,
        name: &'p str,
        fid: FileId,
        special: &'p Special,
        mode: u16,
        owner: (u32, u32),
        time: Timestamp,
    },
    Link {
        node: Node,
        to_parent: FileId,
        to_name: &'p str,
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

pub(super) enum FattrUpdate<'p> {
    Replication(u8),
    /// Attributes set, and when (the change time), unless replayed from an old log.
    Attr(&'p SetAttr, Option<Timestamp>),
    Length(u64, Timestamp),
    /// A truncate: the new length, and the chunks past the shorter length freed.
    Cut(u64, Timestamp),
    AtLeast(u64, Timestamp),
}

impl Namespace {
    /// Checks `op` against the current state without changing it.
    pub fn prepare(&self, op: &Op) -> KfsResult<Prepared> {
        Ok(match self.plan(op)? {
            Change::Unchanged(reply) => Prepared::Unchanged(reply),
            _ => Prepared::Log,
        })
    }

    pub(super) fn plan<'p>(&self, op: &'p Op) -> KfsResult<Change<'p>> {
        match op {
            Op::Mkdir {
                path,
                parents,
                mode,
                owner,
                group,
                first_fid,
                time,
            } => self.plan_mkdir(path, *parents, *mode, (*owner, *group), *first_fid, *time),
            Op::Create {
                path,
                exclusive,
                replication,
                replication_given,
                mode,
                owner,
                group,
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
                            owner: (*owner, *group),
                            time: *time,
                        })
                    }
                    Some(node) if node.kind == FileKind::Dir => {
                        Err(KfsError::is_a_directory(path.as_str()))
                    }
                    Some(_) if *exclusive => Err(KfsError::already_exists(path.as_str())),
                    Some(node) if node.kind != FileKind::File => {
                        Err(KfsError::not_a_regular_file(path.as_str(), node.kind))
                    }
                    Some(node) => Ok(Change::Truncate {
                        fid: node.fid,
                        replication: replication_given.then_some(*replication),
                        time: *time,
                    }),
                }
            }
            Op::MakeSpecial {
                path,
                special,
                mode,
                owner,
                group,
                fid,
                time,
            } => {
                check_mode(*mode)?;
                if let Special::Symlink { target } = special {
                    check_symlink_target(path, target)?;
                }
                let Some((parent, name)) = self.resolve_parent(path)? else {
                    return Err(KfsError::already_exists(path.as_str()));
                };
                if self.child(parent, name).is_some() {
                    return Err(KfsError::already_exists(path.as_str()));
                }
                self.check_new_fids(*fid, 1)?;
                Ok(Change::MakeSpecial {
                    parent,
                    name,
                    fid: *fid,
                    special,
                    mode: *mode,
                    owner: (*owner, *group),
                    time: *time,
                })
            }
            Op::Rename { src, dst, time } => self.plan_rename(src, dst, *time),
            Op::Link { src, dst, time } => {
                let from = self
                    .resolve_entry(src)?
                    .ok_or_else(|| KfsError::is_a_directory(src.as_str()))?;
                if from.node.kind == FileKind::Dir {
                    return Err(KfsError::is_a_directory(src.as_str()));
                }
                let Some((to_parent, to_name)) = self.resolve_parent(dst)? else {
                    return Err(KfsError::already_exists(dst.as_str()));
                };
                if self.child(to_parent, to_name).is_some() {
                    return Err(KfsError::already_exists(dst.as_str()));
                }
                if self.links_of(from.node.fid) >= MAX_LINKS {
                    return Err(KfsError::invalid_argument(format!(
                        "'{src}' has {MAX_LINKS} names, the most a file may have"
                    )));
                }
                Ok(Change::Link {
                    node: from.node,
                    to_parent,
                    to_name,
                    time: *time,
                })
            }
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
                if node.kind != FileKind::File {
                    return Err(KfsError::not_a_regular_file(path.as_str(), node.kind));
                }
                Ok(Change::SetFattr {
                    fid: node.fid,
                    update: FattrUpdate::Replication(*replication),
                })
            }
            Op::SetAttr { path, attr } => self.plan_set_attr(path, attr, None),
            Op::SetAttrAt { path, attr, time } => self.plan_set_attr(path, attr, Some(*time)),
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
                if super::record::is_reserved_xattr(name)
                    || !self.map.contains_key(&Key::xattr(node.fid, name))
                {
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
                self.chunked_file(*fid)?;
                Ok(Change::SetFattr {
                    fid: *fid,
                    update: FattrUpdate::Length(*size, *time),
                })
            }
            Op::Truncate { fid, size, time } => {
                self.chunked_file(*fid)?;
                if *size > super::op::MAX_FILE_SIZE {
                    return Err(KfsError::invalid_argument(format!(
                        "a length of {size} bytes is more than a file may hold ({} bytes)",
                        super::op::MAX_FILE_SIZE
                    )));
                }
                Ok(Change::SetFattr {
                    fid: *fid,
                    update: FattrUpdate::Cut(*size, *time),
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
            Op::CreateVolume { .. }
            | Op::SetExtent { .. }
            | Op::FreeVolume { .. }
            | Op::MoveExtents { .. } => self.plan_extent_op(op),
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

    fn plan_set_attr<'p>(
        &self,
        path: &str,
        attr: &'p SetAttr,
        time: Option<Timestamp>,
    ) -> KfsResult<Change<'p>> {
        if let Some(mode) = attr.mode {
            check_mode(mode)?;
        }
        let node = self.resolve(path)?;
        Ok(Change::SetFattr {
            fid: node.fid,
            update: FattrUpdate::Attr(attr, time),
        })
    }

    /// [`Namespace::existing_file`], and not packed into a volume (whose length is its
    /// record's).
    fn chunked_file(&self, fid: FileId) -> KfsResult<()> {
        self.existing_file(fid)?;
        if self.extent_of(fid).is_some() {
            return Err(KfsError::invalid_argument(format!(
                "{fid} is packed into a volume: its length is its record's (write it again to \
                 change it)"
            )));
        }
        Ok(())
    }

    pub(super) fn existing_file(&self, fid: FileId) -> KfsResult<()> {
        match self.map.get(&Key::fattr(fid)) {
            Some(Val::Attr(a)) if a.kind == FileKind::File => Ok(()),
            Some(Val::Attr(a)) => Err(KfsError::not_a_regular_file(fid.to_string(), a.kind)),
            _ => Err(KfsError::not_found(fid.to_string())),
        }
    }

    fn plan_mkdir<'p>(
        &self,
        path: &'p str,
        parents: bool,
        mode: u16,
        owner: (u32, u32),
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
                            Ok(Change::Unchanged(Reply::Attr(self.attr(node.fid)?)))
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
                        owner,
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
            // Two names of one file: POSIX's rename does nothing.
            Some(old) if old.fid == from.node.fid => return Ok(Change::Unchanged(Reply::Done)),
            None => None,
            Some(old) => match (from.node.kind == FileKind::Dir, old.kind == FileKind::Dir) {
                (false, false) => Some(old),
                (false, true) => return Err(KfsError::is_a_directory(dst)),
                (true, false) => return Err(KfsError::not_a_directory(dst)),
                (true, true) if self.is_empty_dir(old.fid) => Some(old),
                (true, true) => return Err(KfsError::directory_not_empty(dst)),
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
}

/// The most names one file may have (ext4's limit).
pub const MAX_LINKS: u32 = 65_000;

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

fn check_symlink_target(path: &str, target: &str) -> KfsResult<()> {
    if target.is_empty() || target.len() > MAX_SYMLINK_TARGET || target.contains('\0') {
        return Err(KfsError::invalid_argument(format!(
            "the target of symbolic link '{path}' must be 1 to {MAX_SYMLINK_TARGET} bytes with \
             no NUL ({} given)",
            target.len()
        )));
    }
    Ok(())
}

fn check_xattr_name(path: &str, name: &str) -> KfsResult<()> {
    path::validate_name(path, name).map_err(|e| {
        KfsError::invalid_argument(format!(
            "bad attribute name '{name}' on '{path}': {}",
            e.reason()
        ))
    })
}
