//! The commit step: [`Namespace::apply`] plans an op (`plan.rs`), then commits the `Change`.
//!
//! Committing cannot fail: it touches only what the plan checked, so a record missing here is a
//! bug (`unreachable!`), never an error. It keeps the counters and `next_fid` / `next_chunk_id`
//! in step with every record it adds or removes, and hands back the chunks no file references any
//! more (`Applied::freed_chunks`): a truncated, removed or replaced file's.

use super::op::{Applied, Op, Reply, Special};
use super::plan::{Change, FattrUpdate};
use super::record::{Fattr, Key, Val};
use super::{Namespace, Node};
use kfs_common::proto::Timestamp;
use kfs_common::proto::master::{RemoveSummary, SetAttr};
use kfs_common::{ChunkId, FileId, FileKind, KfsResult};
use std::ops::Bound;

impl Namespace {
    /// Applies `op`. On error the namespace is unchanged.
    pub fn apply(&mut self, op: &Op) -> KfsResult<Applied> {
        let change = self.plan(op)?;
        Ok(self.commit(change))
    }

    fn commit(&mut self, change: Change<'_>) -> Applied {
        let mut freed = Vec::new();
        let reply = match change {
            Change::Unchanged(reply) => reply,
            Change::CreateVolume {
                chunk,
                version,
                replication,
            } => self.commit_create_volume(chunk, version, replication),
            Change::FreeVolume { chunk, replication } => {
                self.commit_free_volume(chunk, replication);
                freed = vec![chunk];
                Reply::Done
            }
            Change::MoveExtents { moves } => {
                self.commit_move_extents(moves);
                Reply::Done
            }
            Change::SetExtent { fid, extent, time } => {
                let (reply, dropped) = self.commit_set_extent(fid, extent, time);
                freed = dropped;
                reply
            }
            Change::Mkdir {
                mut parent,
                names,
                first_fid,
                mode,
                owner,
                time,
            } => {
                self.touch_dir(parent, time);
                let mut fid = first_fid;
                for name in names {
                    self.link(parent, name, fid, FileKind::Dir);
                    self.map
                        .insert(Key::fattr(fid), Val::Attr(dir_attr(mode, owner, time)));
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
                owner: (owner, group),
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
                        owner,
                        group,
                        mode,
                        replication,
                        kind: FileKind::File,
                        ctime_after: 0,
                    }),
                );
                self.counters.files += 1;
                self.bump_next_fid(fid);
                Reply::Attr(self.stat_fid(fid).expect("just created"))
            }
            Change::MakeSpecial {
                parent,
                name,
                fid,
                special,
                mode,
                owner: (owner, group),
                time,
            } => {
                let kind = special.kind();
                self.touch_dir(parent, time);
                self.link(parent, name, fid, kind);
                self.map.insert(
                    Key::fattr(fid),
                    Val::Attr(Fattr {
                        size: special.size(),
                        mtime: time,
                        atime: time,
                        owner,
                        group,
                        mode,
                        replication: 0,
                        kind,
                        ctime_after: 0,
                    }),
                );
                if let Special::Symlink { target } = special {
                    self.map.insert(
                        Key::symlink_target(fid),
                        Val::Xattr(target.as_bytes().into()),
                    );
                }
                self.counters.files += 1;
                self.bump_next_fid(fid);
                Reply::Attr(self.stat_fid(fid).expect("just created"))
            }
            Change::Link {
                node,
                to_parent,
                to_name,
                time,
            } => {
                self.touch_dir(to_parent, time);
                self.link(to_parent, to_name, node.fid, node.kind);
                let links = self.links_of(node.fid) + 1;
                self.set_links(node.fid, links);
                self.fattr_mut(node.fid).changed(time);
                Reply::Attr(self.stat_fid(node.fid).expect("exists"))
            }
            Change::Truncate {
                fid,
                replication,
                time,
            } => {
                freed = self.drop_chunks(fid);
                let attr = self.fattr_mut(fid);
                let old_size = std::mem::take(&mut attr.size);
                attr.modified(time);
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
                self.unlink(from.parent, from.name, from.node.kind);
                if let Some(old) = replaced {
                    self.unlink(to_parent, to_name, old.kind);
                    match old.kind {
                        FileKind::Dir => self.drop_dir(old.fid),
                        _ => freed = self.drop_name_of(old.fid, time),
                    }
                }
                self.fattr_mut(from.node.fid).changed(time);
                self.link(to_parent, to_name, from.node.fid, from.node.kind);
                self.touch_dir(from.parent, time);
                self.touch_dir(to_parent, time);
                Reply::Done
            }
            Change::Remove { entry, time } => {
                self.unlink(entry.parent, entry.name, entry.node.kind);
                self.touch_dir(entry.parent, time);
                let summary = self.drop_subtree(entry.node, &mut freed, time);
                Reply::Removed(summary)
            }
            Change::SetFattr { fid, update } => {
                let attr = self.fattr_mut(fid);
                let mut size_change = None;
                let mut cut = None;
                let mut extended = None;
                match update {
                    FattrUpdate::Replication(r) => attr.replication = r,
                    FattrUpdate::Attr(set, time) => {
                        let SetAttr {
                            mode,
                            owner,
                            group,
                            mtime,
                            atime,
                        } = set;
                        let ctime = attr.ctime();
                        let any = mode.is_some()
                            || owner.is_some()
                            || group.is_some()
                            || mtime.is_some()
                            || atime.is_some();
                        attr.mode = mode.unwrap_or(attr.mode);
                        attr.owner = owner.unwrap_or(attr.owner);
                        attr.group = group.unwrap_or(attr.group);
                        attr.mtime = mtime.unwrap_or(attr.mtime);
                        attr.atime = atime.unwrap_or(attr.atime);
                        // Nothing set changes nothing; replayed from an old log, the change
                        // time stays where it was.
                        if any {
                            attr.changed(time.unwrap_or(ctime));
                        }
                    }
                    FattrUpdate::Length(size, time) => {
                        size_change = Some((attr.size, size));
                        attr.size = size;
                        attr.modified(time);
                    }
                    FattrUpdate::Cut(size, time) => {
                        size_change = Some((attr.size, size));
                        cut = Some(attr.size.min(size));
                        attr.size = size;
                        attr.modified(time);
                    }
                    FattrUpdate::AtLeast(size, time) => {
                        extended = Some(size);
                        attr.modified(time);
                    }
                }
                if let Some((old, new)) = size_change {
                    self.counters.bytes = self.counters.bytes - old + new;
                }
                if let Some(cut) = cut {
                    // Chunks wholly past the shorter of the two lengths hold nothing the file
                    // may show: bytes a shrink cut off, or bytes written past the end and never
                    // committed, which a growth would otherwise expose.
                    freed = self.drop_chunks_from(fid, cut);
                }
                if let Some(size) = extended {
                    // A writer moving a packed file to chunks extends it once they hold it all;
                    // a packed file is otherwise as long as its extent.
                    self.drop_extent_if_chunked(fid, size);
                    if self.extent_of(fid).is_none() {
                        let attr = self.fattr_mut(fid);
                        let old = attr.size;
                        attr.size = old.max(size);
                        let new = attr.size;
                        self.counters.bytes = self.counters.bytes - old + new;
                    }
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

    pub(super) fn fattr_mut(&mut self, fid: FileId) -> &mut Fattr {
        match self.map.get_mut(&Key::fattr(fid)) {
            Some(Val::Attr(a)) => a,
            _ => unreachable!("planned changes name existing files"),
        }
    }

    fn touch_dir(&mut self, dir: FileId, time: Timestamp) {
        self.fattr_mut(dir).modified(time);
    }

    /// Names `fid` `name` in `parent` (a directory counts its subdirectories).
    fn link(&mut self, parent: FileId, name: &str, fid: FileId, kind: FileKind) {
        self.map
            .insert(Key::dentry(parent, name), Val::Child { fid, kind });
        if kind == FileKind::Dir {
            self.fattr_mut(parent).size += 1;
        }
    }

    /// Removes the name `name` in `parent` (of a `kind`), not what it names.
    fn unlink(&mut self, parent: FileId, name: &str, kind: FileKind) {
        self.map.remove(&Key::dentry(parent, name));
        if kind == FileKind::Dir {
            let dir = self.fattr_mut(parent);
            dir.size = dir.size.saturating_sub(1);
        }
    }

    /// Sets the link count of a non-directory (a `LINKS` record only above 1).
    fn set_links(&mut self, fid: FileId, links: u32) {
        if links > 1 {
            self.map.insert(
                Key::links(fid),
                Val::Xattr(links.to_le_bytes().to_vec().into_boxed_slice()),
            );
        } else {
            self.map.remove(&Key::links(fid));
        }
    }

    /// One name of a non-directory went at `time`: the file goes with its last name (its
    /// chunks are returned); otherwise it has one name fewer.
    fn drop_name_of(&mut self, fid: FileId, time: Timestamp) -> Vec<ChunkId> {
        match self.links_of(fid) {
            0 | 1 => self.drop_file(fid),
            links => {
                self.set_links(fid, links - 1);
                self.fattr_mut(fid).changed(time);
                Vec::new()
            }
        }
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

    /// Removes a file's chunks and extent; returns the chunks (its extent's record is freed
    /// in its volume's use).
    pub(super) fn drop_chunks(&mut self, fid: FileId) -> Vec<ChunkId> {
        let mut chunks = Vec::new();
        for (_, v) in self.take_range(Key::chunks_start(fid)) {
            match v {
                Val::Chunk { id, .. } => chunks.push(id),
                Val::Extent(e) => self.extent_dropped(e),
                _ => {}
            }
        }
        self.counters.chunks -= chunks.len() as u64;
        chunks
    }

    /// Removes a chunked file's chunks at offsets `from` and above; returns them.
    fn drop_chunks_from(&mut self, fid: FileId, from: u64) -> Vec<ChunkId> {
        let start = Key::chunk(fid, from);
        let taken: Vec<Key> = self
            .map
            .range_from(Bound::Included(&start))
            .take_while(|(k, v)| k.same_range(&start) && matches!(v, Val::Chunk { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        let mut chunks = Vec::with_capacity(taken.len());
        for k in &taken {
            if let Some(Val::Chunk { id, .. }) = self.map.remove(k) {
                chunks.push(id);
            }
        }
        self.counters.chunks -= chunks.len() as u64;
        chunks
    }

    /// Removes a file's (or a symbolic link's or special file's) attributes, chunks and xattrs
    /// (a link's target among them), not its name; returns its chunks.
    fn drop_file(&mut self, fid: FileId) -> Vec<ChunkId> {
        let chunks = self.drop_chunks(fid);
        self.take_range(Key::xattrs_start(fid));
        if let Some(Val::Attr(a)) = self.map.remove(&Key::fattr(fid))
            && a.kind == FileKind::File
        {
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
    fn drop_subtree(
        &mut self,
        node: Node,
        freed: &mut Vec<ChunkId>,
        time: Timestamp,
    ) -> RemoveSummary {
        let mut summary = RemoveSummary::default();
        if node.kind != FileKind::Dir {
            freed.extend(self.drop_name_of(node.fid, time));
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
                        freed.extend(self.drop_name_of(fid, time));
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
}

fn dir_attr(mode: u16, (owner, group): (u32, u32), time: Timestamp) -> Fattr {
    Fattr {
        size: 0,
        mtime: time,
        atime: time,
        owner,
        group,
        mode,
        replication: 0,
        kind: FileKind::Dir,
        ctime_after: 0,
    }
}
