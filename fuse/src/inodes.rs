//! [`Inodes`]: the kernel's inode numbers, and the KFS path each one stands for.
//!
//! An inode number is the file's KFS id (`FileId`), except that the mounted directory is
//! always inode 1 (`FUSE_ROOT_ID`), whatever its id. The master names files by path for every
//! namespace change, so each inode the kernel holds remembers the directory and name it was
//! last seen under; its path is found by walking those up to the mounted directory.
//!
//! Invariants:
//! - every inode the kernel may still use (looked up and not yet forgotten, or open) is in the
//!   table; the root is always there, with no parent;
//! - `lookups` counts the kernel's references (each `lookup`, `create`, `mkdir` and
//!   `readdirplus` entry adds one; `forget` takes them away); an inode at 0 is dropped unless a
//!   handle holds it open;
//! - an entry's `parent` and `name` are where this mount last saw or put it: a rename here
//!   moves it; an unlink here marks it `unlinked` (its path is then gone).

use kfs_common::FileId;
use std::collections::HashMap;
use std::sync::Mutex;

/// The kernel's number for the mounted directory.
pub const ROOT_INO: u64 = 1;

struct Node {
    parent: u64,
    name: String,
    lookups: u64,
    open: u32,
    unlinked: bool,
    /// Unlinked while open: kept under a hidden name until its last close.
    hidden: bool,
}

/// Why an inode's path cannot be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The kernel names an inode this table no longer holds (or one of its ancestors).
    Stale,
    /// The file was removed through this mount (it may still be open).
    Unlinked,
}

/// The inode table.
pub struct Inodes {
    /// The mounted KFS directory (`/` or a directory below it, without a trailing `/`).
    root_path: String,
    root_fid: FileId,
    nodes: Mutex<HashMap<u64, Node>>,
}

impl Inodes {
    pub fn new(root_path: &str, root_fid: FileId) -> Inodes {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_INO,
            Node {
                parent: 0,
                name: String::new(),
                lookups: 1,
                open: 0,
                unlinked: false,
                hidden: false,
            },
        );
        Inodes {
            root_path: root_path.trim_end_matches('/').to_string(),
            root_fid,
            nodes: Mutex::new(nodes),
        }
    }

    /// The kernel's inode number for file `fid`.
    pub fn ino_of(&self, fid: FileId) -> u64 {
        if fid == self.root_fid {
            ROOT_INO
        } else {
            fid.0
        }
    }

    /// The file id of inode `ino`.
    pub fn fid_of(&self, ino: u64) -> FileId {
        if ino == ROOT_INO {
            self.root_fid
        } else {
            FileId(ino)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Node>> {
        self.nodes.lock().expect("inode table lock")
    }

    /// The KFS path of inode `ino`.
    pub fn path(&self, ino: u64) -> Result<String, PathError> {
        let nodes = self.lock();
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT_INO {
            let node = nodes.get(&at).ok_or(PathError::Stale)?;
            if node.unlinked {
                return Err(PathError::Unlinked);
            }
            names.push(node.name.as_str());
            at = node.parent;
            if names.len() > kfs_common::path::MAX_PATH_LEN {
                return Err(PathError::Stale);
            }
        }
        let mut path = self.root_path.clone();
        for name in names.iter().rev() {
            path.push('/');
            path.push_str(name);
        }
        if path.is_empty() {
            path.push('/');
        }
        Ok(path)
    }

    /// The directory `ino` was last seen in (the root for the root, or an inode not held).
    pub fn parent(&self, ino: u64) -> u64 {
        self.lock()
            .get(&ino)
            .map_or(ROOT_INO, |n| n.parent.max(ROOT_INO))
    }

    /// The KFS path of `name` in directory `parent`.
    pub fn child_path(&self, parent: u64, name: &str) -> Result<String, PathError> {
        let dir = self.path(parent)?;
        Ok(kfs_common::path::join(&dir, name))
    }

    /// Records that the kernel got a reference to `ino`, found as `name` in `parent`.
    pub fn looked_up(&self, ino: u64, parent: u64, name: &str) {
        if ino == ROOT_INO {
            return;
        }
        let mut nodes = self.lock();
        let node = nodes.entry(ino).or_insert_with(|| Node {
            parent,
            name: String::new(),
            lookups: 0,
            open: 0,
            unlinked: false,
            hidden: false,
        });
        node.lookups += 1;
        node.parent = parent;
        node.name = name.to_string();
        node.unlinked = false;
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut nodes = self.lock();
        if let Some(node) = nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 && node.open == 0 {
                nodes.remove(&ino);
            }
        }
    }

    /// A handle on `ino` was opened (`true`) or released (`false`).
    pub fn set_open(&self, ino: u64, opened: bool) {
        let mut nodes = self.lock();
        if let Some(node) = nodes.get_mut(&ino) {
            if opened {
                node.open += 1;
            } else {
                node.open = node.open.saturating_sub(1);
                if node.lookups == 0 && node.open == 0 && ino != ROOT_INO {
                    nodes.remove(&ino);
                }
            }
        }
    }

    /// The inode this mount knows as `name` in `parent`, if any, and whether a handle holds it
    /// open.
    pub fn child(&self, parent: u64, name: &str) -> Option<(u64, bool)> {
        self.lock()
            .iter()
            .find(|(_, n)| n.parent == parent && n.name == name && !n.unlinked)
            .map(|(ino, n)| (*ino, n.open > 0))
    }

    /// `name` in `parent` was renamed to `new_name` in `new_parent`: the inode there (if known)
    /// moves; one it replaced is gone from its path.
    pub fn renamed(&self, parent: u64, name: &str, new_parent: u64, new_name: &str) {
        let mut nodes = self.lock();
        let mut moved = None;
        for (ino, node) in nodes.iter_mut() {
            if node.unlinked {
                continue;
            }
            if node.parent == new_parent && node.name == new_name {
                node.unlinked = true;
            } else if node.parent == parent && node.name == name {
                moved = Some(*ino);
            }
        }
        if let Some(node) = moved.and_then(|ino| nodes.get_mut(&ino)) {
            node.parent = new_parent;
            node.name = new_name.to_string();
        }
    }

    /// `name` in `parent` was removed through this mount.
    pub fn unlinked(&self, parent: u64, name: &str) {
        for node in self.lock().values_mut() {
            if node.parent == parent && node.name == name {
                node.unlinked = true;
            }
        }
    }

    /// Moves `ino` to a new name in the same directory (an open file hidden when unlinked).
    pub fn hide(&self, ino: u64, hidden: &str) {
        if let Some(node) = self.lock().get_mut(&ino) {
            node.name = hidden.to_string();
            node.unlinked = false;
            node.hidden = true;
        }
    }

    /// Whether `ino` is an open file unlinked through this mount (it has no name: `nlink` 0).
    pub fn is_hidden(&self, ino: u64) -> bool {
        self.lock().get(&ino).is_some_and(|node| node.hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_renames_and_forgets() {
        let inodes = Inodes::new("/", FileId(1));
        inodes.looked_up(10, ROOT_INO, "a");
        inodes.looked_up(11, 10, "b");
        assert_eq!(inodes.path(11).unwrap(), "/a/b");
        inodes.renamed(ROOT_INO, "a", ROOT_INO, "c");
        assert_eq!(inodes.path(11).unwrap(), "/c/b");
        inodes.unlinked(10, "b");
        assert_eq!(inodes.path(11), Err(PathError::Unlinked));
        inodes.forget(11, 1);
        assert_eq!(inodes.path(11), Err(PathError::Stale));
        assert_eq!(inodes.path(ROOT_INO).unwrap(), "/");
    }

    #[test]
    fn a_subdirectory_mount_maps_its_id_to_inode_one() {
        let inodes = Inodes::new("/photos/", FileId(7));
        assert_eq!(inodes.ino_of(FileId(7)), ROOT_INO);
        assert_eq!(inodes.fid_of(ROOT_INO), FileId(7));
        inodes.looked_up(9, ROOT_INO, "x.jpg");
        assert_eq!(inodes.path(9).unwrap(), "/photos/x.jpg");
        assert_eq!(inodes.path(ROOT_INO).unwrap(), "/photos");
    }

    #[test]
    fn an_open_inode_outlives_its_last_forget() {
        let inodes = Inodes::new("/", FileId(1));
        inodes.looked_up(5, ROOT_INO, "f");
        inodes.set_open(5, true);
        inodes.forget(5, 1);
        assert_eq!(inodes.path(5).unwrap(), "/f");
        inodes.set_open(5, false);
        assert_eq!(inodes.path(5), Err(PathError::Stale));
    }

    #[test]
    fn a_rename_over_a_known_name_unlinks_the_replaced_inode() {
        let inodes = Inodes::new("/", FileId(1));
        inodes.looked_up(5, ROOT_INO, "old");
        inodes.looked_up(6, ROOT_INO, "new");
        inodes.renamed(ROOT_INO, "old", ROOT_INO, "new");
        assert_eq!(inodes.path(5).unwrap(), "/new");
        assert_eq!(inodes.path(6), Err(PathError::Unlinked));
        assert_eq!(inodes.child(ROOT_INO, "new"), Some((5, false)));
    }
}
