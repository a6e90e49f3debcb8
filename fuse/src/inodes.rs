//! [`Inodes`]: the kernel's inode numbers, and the KFS paths each one stands for.
//!
//! An inode number is the file's KFS id (`FileId`), except that the mounted directory is
//! always inode 1 (`FUSE_ROOT_ID`), whatever its id. The master names files by path for every
//! namespace change, so each inode the kernel holds remembers the names (directory and name) it
//! was seen under, the latest last; its path is found by walking the latest names up to the
//! mounted directory. A file has several names when it has hard links; a name this mount
//! removes goes, and the file's path is then one of the others.
//!
//! Invariants:
//! - every inode the kernel may still use (looked up and not yet forgotten, or open) is in the
//!   table; the root is always there, with no name;
//! - `lookups` counts the kernel's references (each `lookup`, `create`, `mkdir` and
//!   `readdirplus` entry adds one; `forget` takes them away); an inode at 0 is dropped unless a
//!   handle holds it open;
//! - an entry's names are where this mount last saw or put it (at most [`MAX_NAMES`]): a rename
//!   here moves one; an unlink here takes one away; with none left it is unlinked (its path is
//!   gone);
//! - the name index holds exactly the entries' names, one inode per (parent, name): an inode
//!   seen where another was takes that name from it.

use kfs_common::FileId;
use std::collections::HashMap;
use std::sync::Mutex;

/// The kernel's number for the mounted directory.
pub const ROOT_INO: u64 = 1;

/// Names remembered per inode (a file with more hard links is still found by the latest).
pub const MAX_NAMES: usize = 16;

struct Node {
    /// (directory, name) it was seen under, the latest last; empty once unlinked here.
    names: Vec<(u64, String)>,
    lookups: u64,
    open: u32,
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

/// The nodes, and which one each (directory, name) is: the index keeps `child`, `renamed` and
/// `unlinked` at O(1) whatever the number of inodes the kernel holds.
#[derive(Default)]
struct Table {
    nodes: HashMap<u64, Node>,
    /// (parent, name) -> the inode there, for every name of every node.
    names: HashMap<(u64, String), u64>,
}

impl Table {
    /// Gives `ino` (in the table) the name `name` in `parent`, as its latest; an inode that had
    /// it has lost it.
    fn add_name(&mut self, ino: u64, parent: u64, name: &str) {
        let key = (parent, name.to_string());
        if let Some(other) = self.names.insert(key.clone(), ino)
            && other != ino
            && let Some(displaced) = self.nodes.get_mut(&other)
        {
            displaced.names.retain(|n| *n != key);
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            self.names.remove(&key);
            return;
        };
        node.names.retain(|n| *n != key);
        node.names.push(key);
        if node.names.len() > MAX_NAMES {
            let oldest = node.names.remove(0);
            if self.names.get(&oldest) == Some(&ino) {
                self.names.remove(&oldest);
            }
        }
    }

    /// The name `name` in `parent` is gone; returns the inode it named.
    fn remove_name(&mut self, parent: u64, name: &str) -> Option<u64> {
        let key = (parent, name.to_string());
        let ino = self.names.remove(&key)?;
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.names.retain(|n| *n != key);
        }
        Some(ino)
    }

    /// Drops `ino` once the kernel holds no reference and no handle has it open.
    fn drop_if_unused(&mut self, ino: u64) {
        if ino != ROOT_INO
            && self
                .nodes
                .get(&ino)
                .is_some_and(|node| node.lookups == 0 && node.open == 0)
            && let Some(node) = self.nodes.remove(&ino)
        {
            for key in node.names {
                if self.names.get(&key) == Some(&ino) {
                    self.names.remove(&key);
                }
            }
        }
    }
}

/// The inode table.
pub struct Inodes {
    /// The mounted KFS directory (`/` or a directory below it, without a trailing `/`).
    root_path: String,
    root_fid: FileId,
    table: Mutex<Table>,
}

impl Inodes {
    pub fn new(root_path: &str, root_fid: FileId) -> Inodes {
        let mut table = Table::default();
        table.nodes.insert(
            ROOT_INO,
            Node {
                names: Vec::new(),
                lookups: 1,
                open: 0,
                hidden: false,
            },
        );
        Inodes {
            root_path: root_path.trim_end_matches('/').to_string(),
            root_fid,
            table: Mutex::new(table),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("inode table lock")
    }

    /// The KFS path of inode `ino`.
    pub fn path(&self, ino: u64) -> Result<String, PathError> {
        let table = self.lock();
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT_INO {
            let node = table.nodes.get(&at).ok_or(PathError::Stale)?;
            let (parent, name) = node.names.last().ok_or(PathError::Unlinked)?;
            names.push(name.as_str());
            at = *parent;
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
            .nodes
            .get(&ino)
            .and_then(|n| n.names.last())
            .map_or(ROOT_INO, |(parent, _)| (*parent).max(ROOT_INO))
    }

    /// The KFS path of `name` in directory `parent`.
    pub fn child_path(&self, parent: u64, name: &str) -> Result<String, PathError> {
        let dir = self.path(parent)?;
        Ok(kfs_common::path::join(&dir, name))
    }

    /// Records that the kernel got a reference to `ino`, found as `name` in `parent` (an inode
    /// this mount knew there before is no longer there; `ino`'s other names stay).
    pub fn looked_up(&self, ino: u64, parent: u64, name: &str) {
        if ino == ROOT_INO {
            return;
        }
        let mut table = self.lock();
        let node = table.nodes.entry(ino).or_insert_with(|| Node {
            names: Vec::new(),
            lookups: 0,
            open: 0,
            hidden: false,
        });
        node.lookups += 1;
        table.add_name(ino, parent, name);
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut table = self.lock();
        if let Some(node) = table.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            table.drop_if_unused(ino);
        }
    }

    /// A handle on `ino` was opened (`true`) or released (`false`).
    pub fn set_open(&self, ino: u64, opened: bool) {
        let mut table = self.lock();
        if let Some(node) = table.nodes.get_mut(&ino) {
            if opened {
                node.open += 1;
            } else {
                node.open = node.open.saturating_sub(1);
                table.drop_if_unused(ino);
            }
        }
    }

    /// The inode this mount knows as `name` in `parent`, if any, and whether a handle holds it
    /// open.
    pub fn child(&self, parent: u64, name: &str) -> Option<(u64, bool)> {
        let table = self.lock();
        let ino = *table.names.get(&(parent, name.to_string()))?;
        table.nodes.get(&ino).map(|n| (ino, n.open > 0))
    }

    /// `name` in `parent` was renamed to `new_name` in `new_parent`: the inode there (if known)
    /// moves; one it replaced is gone from its path.
    pub fn renamed(&self, parent: u64, name: &str, new_parent: u64, new_name: &str) {
        let mut table = self.lock();
        let moved = table.remove_name(parent, name);
        table.remove_name(new_parent, new_name);
        if let Some(ino) = moved {
            table.add_name(ino, new_parent, new_name);
        }
    }

    /// `name` in `parent` was removed through this mount.
    pub fn unlinked(&self, parent: u64, name: &str) {
        self.lock().remove_name(parent, name);
    }

    /// Moves `ino`'s name `name` in `parent` to `hidden` in the same directory (an open file
    /// hidden when unlinked).
    pub fn hide(&self, ino: u64, parent: u64, name: &str, hidden: &str) {
        let mut table = self.lock();
        table.remove_name(parent, name);
        table.add_name(ino, parent, hidden);
        if let Some(node) = table.nodes.get_mut(&ino) {
            node.hidden = true;
        }
    }

    /// Whether this mount knows `ino` by a name other than `name` in `parent`.
    pub fn has_other_name(&self, ino: u64, parent: u64, name: &str) -> bool {
        self.lock().nodes.get(&ino).is_some_and(|node| {
            node.names
                .iter()
                .any(|(p, n)| (*p, n.as_str()) != (parent, name))
        })
    }

    /// Whether `ino` is an open file unlinked through this mount (it has no name: `nlink` 0).
    pub fn is_hidden(&self, ino: u64) -> bool {
        self.lock().nodes.get(&ino).is_some_and(|node| node.hidden)
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

    #[test]
    fn a_name_seen_on_another_inode_displaces_the_one_known_there() {
        let inodes = Inodes::new("/", FileId(1));
        inodes.looked_up(5, ROOT_INO, "f");
        // Replaced by another client: the master now names inode 6 there.
        inodes.looked_up(6, ROOT_INO, "f");
        assert_eq!(inodes.child(ROOT_INO, "f"), Some((6, false)));
        assert_eq!(inodes.path(5), Err(PathError::Unlinked));
        // The displaced inode's forget does not take the name from the new one.
        inodes.forget(5, 1);
        assert_eq!(inodes.child(ROOT_INO, "f"), Some((6, false)));
        // Seen under a new name (renamed elsewhere, or a hard link): its path is the latest,
        // and the name before stays its until it is seen on another inode or removed.
        inodes.looked_up(6, ROOT_INO, "g");
        assert_eq!(inodes.path(6).unwrap(), "/g");
        assert_eq!(inodes.child(ROOT_INO, "f"), Some((6, false)));
        // Its latest name removed here: the one before is its path again.
        inodes.unlinked(ROOT_INO, "g");
        assert_eq!(inodes.path(6).unwrap(), "/f");
        inodes.unlinked(ROOT_INO, "f");
        assert_eq!(inodes.path(6), Err(PathError::Unlinked));
    }

    #[test]
    fn a_hidden_inode_keeps_its_handles_path_under_the_hidden_name() {
        let inodes = Inodes::new("/", FileId(1));
        inodes.looked_up(5, ROOT_INO, "f");
        inodes.set_open(5, true);
        inodes.hide(5, ROOT_INO, "f", ".kfs-open-5");
        assert!(inodes.is_hidden(5));
        assert_eq!(inodes.child(ROOT_INO, "f"), None);
        assert_eq!(inodes.child(ROOT_INO, ".kfs-open-5"), Some((5, true)));
        assert_eq!(inodes.path(5).unwrap(), "/.kfs-open-5");
        inodes.forget(5, 1);
        inodes.set_open(5, false);
        assert_eq!(inodes.child(ROOT_INO, ".kfs-open-5"), None);
    }
}
