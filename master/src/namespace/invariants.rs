//! [`Namespace::check_invariants`]: checks every invariant listed in the
//! [namespace's docs](super), and `recount`, the counters recomputed from the map (which is also
//! how [`Namespace::from_records`] sets them).
//!
//! Linear in the number of records; it runs on every checkpoint load (`from_records`,
//! `kfs-master --verify-meta`) and after every step of the model checks. It only reads, and its
//! error says which invariant broke.

use super::Namespace;
use super::record::{Key, KeyView, Val};
use kfs_common::proto::master::NamespaceCounters;
use kfs_common::{FileId, FileKind};
use std::ops::Bound;

impl Namespace {
    pub(super) fn recount(&self) -> NamespaceCounters {
        let mut c = NamespaceCounters::default();
        for (_, v) in self.map.iter() {
            match v {
                Val::Attr(a) if a.kind == FileKind::Dir => c.dirs += 1,
                Val::Attr(a) if a.kind == FileKind::File => {
                    c.files += 1;
                    c.bytes += a.size;
                }
                Val::Attr(_) => c.files += 1,
                _ => {}
            }
        }
        // Files' chunks; volumes are not files' chunks.
        c.chunks = self
            .all_chunks()
            .filter(|(fid, ..)| super::record::volume_set_replication(*fid).is_none())
            .count() as u64;
        c
    }

    /// Sets every directory's count of subdirectories from its entries (a checkpoint written
    /// before directories counted them holds 0).
    pub(super) fn recount_subdirs(&mut self) {
        let mut counts: std::collections::HashMap<FileId, u64> = Default::default();
        let mut dirs = Vec::new();
        for (k, v) in self.map.iter() {
            match (k.view(), v) {
                (
                    KeyView::Dentry { parent, .. },
                    Val::Child {
                        kind: FileKind::Dir,
                        ..
                    },
                ) => *counts.entry(parent).or_default() += 1,
                (KeyView::Fattr { fid }, Val::Attr(a)) if a.kind == FileKind::Dir => {
                    dirs.push((fid, a.size))
                }
                _ => {}
            }
        }
        for (dir, size) in dirs {
            let want = counts.get(&dir).copied().unwrap_or(0);
            if size != want
                && let Some(Val::Attr(a)) = self.map.get_mut(&Key::fattr(dir))
            {
                a.size = want;
            }
        }
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
                (KeyView::Chunk { .. }, Val::Extent(_)) => {}
                (view, val) => return Err(format!("key {view:?} holds {val:?}")),
            }
        }
        let index = |fid: FileId| files.binary_search_by_key(&fid, |(f, _)| *f).ok();
        let kind = |fid: FileId| index(fid).map(|i| files[i].1);
        if kind(FileId::ROOT) != Some(FileKind::Dir) {
            return Err("the root directory is missing".into());
        }
        // Names of each file and directory, and subdirectories of each directory.
        let mut names = vec![0u32; files.len()];
        let mut subdirs = vec![0u64; files.len()];
        let mut dentries = 0usize;
        let mut targets = 0;
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
                    names[i] += 1;
                    if *child_kind == FileKind::Dir && names[i] > 1 {
                        return Err(format!("directory {fid} is named twice, once as {name:?}"));
                    }
                    if *child_kind == FileKind::Dir {
                        subdirs[index(parent).expect("checked above")] += 1;
                    }
                    dentries += 1;
                }
                (KeyView::Xattr { fid, name }, Val::Xattr(n)) if name == super::record::LINKS => {
                    let Some(kind) = kind(fid) else {
                        return Err(format!("a link count belongs to missing {fid}"));
                    };
                    if kind == FileKind::Dir || n.len() != 4 || self.links_of(fid) < 2 {
                        return Err(format!("{fid} ({kind}) has a bad link count {n:?}"));
                    }
                }
                (KeyView::Chunk { fid, .. }, _)
                    if kind(fid) != Some(FileKind::File)
                        && super::record::volume_set_replication(fid).is_none() =>
                {
                    return Err(format!("a chunk belongs to {fid}, which is not a file"));
                }
                (KeyView::Xattr { fid, .. }, _) if kind(fid).is_none() => {
                    return Err(format!("an xattr belongs to missing {fid}"));
                }
                (KeyView::Xattr { fid, name }, Val::Xattr(target))
                    if name == super::record::SYMLINK_TARGET =>
                {
                    if kind(fid) != Some(FileKind::Symlink) {
                        return Err(format!("{fid} has a link target but is no symbolic link"));
                    }
                    let size = self.fattr(fid).map(|a| a.size).unwrap_or(0);
                    if size != target.len() as u64 {
                        return Err(format!(
                            "symbolic link {fid} is {size} bytes long, its target {}",
                            target.len()
                        ));
                    }
                    targets += 1;
                }
                _ => {}
            }
        }
        let links = files
            .iter()
            .filter(|(_, k)| *k == FileKind::Symlink)
            .count();
        if links != targets {
            return Err(format!("{links} symbolic links but {targets} link targets"));
        }
        for (i, &(fid, kind)) in files.iter().enumerate() {
            if fid == FileId::ROOT {
                continue;
            }
            if names[i] == 0 {
                return Err(format!("{fid} has no name"));
            }
            if kind != FileKind::Dir && names[i] != self.links_of(fid) {
                return Err(format!(
                    "{fid} has {} names but a link count of {}",
                    names[i],
                    self.links_of(fid)
                ));
            }
            if kind == FileKind::Dir && self.fattr(fid).map(|a| a.size).ok() != Some(subdirs[i]) {
                return Err(format!(
                    "directory {fid} has {} subdirectories but counts {:?}",
                    subdirs[i],
                    self.fattr(fid).map(|a| a.size).ok()
                ));
            }
        }
        if let Some(i) = index(FileId::ROOT)
            && self.fattr(FileId::ROOT).map(|a| a.size).ok() != Some(subdirs[i])
        {
            return Err(format!(
                "the root has {} subdirectories but counts another number",
                subdirs[i]
            ));
        }
        // Every directory has exactly one name, so every entry is reachable from the root
        // unless a directory is in a cycle: count the entries a walk from the root reaches.
        let mut reached = 0;
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
                if reached > dentries {
                    return Err("the directory tree has a cycle".into());
                }
            }
        }
        if reached != dentries {
            return Err(format!(
                "{} entries are cut off from the root",
                dentries - reached
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
        self.check_extents()?;
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
