//! Names: `lookup`, `mkdir`, `unlink`, `link`, `rmdir`, `rename`, and who owns what is created.

use crate::dir_attrs::Begun;
use crate::state::{HIDDEN_PREFIX, MountState, OpResult, fail};
use fuser::{Errno, FileAttr as KernelAttr, RenameFlags};
use kfs_common::proto::master::{FileAttr, MkdirOptions, NameChange, SetAttr};
use kfs_common::{FileKind, KfsError, KfsResult};
use std::ffi::OsStr;

impl MountState {
    pub async fn lookup(&self, parent: u64, name: &OsStr) -> OpResult<KernelAttr> {
        let (path, name) = self.child_path(parent, name)?;
        if self.known_names.absent(parent, &name) {
            return Err(Errno::ENOENT);
        }
        let fetch = self.dir_attrs.fetching();
        match self.client.stat(&path).await {
            Ok(attr) => {
                let kernel = self.entry(parent, &name, &attr);
                self.dir_attrs.store(kernel.ino.0, fetch, &attr);
                Ok(kernel)
            }
            Err(e @ KfsError::NotFound { .. }) => {
                if self.known_names.should_list(parent) {
                    self.list_names(parent).await;
                }
                Err(fail("lookup", e))
            }
            Err(e) => Err(fail("lookup", e)),
        }
    }

    /// Lists directory `parent`'s names for [`crate::known_names`] (one call; a directory
    /// of more names than it keeps is not kept).
    async fn list_names(&self, parent: u64) {
        let listed = match self.path(parent) {
            Ok(path) => self
                .client
                .list_names(&path, None, crate::known_names::MAX_NAMES as u32)
                .await
                .ok()
                .filter(|page| !page.more)
                .map(|page| page.entries.into_iter().map(|e| e.name).collect()),
            Err(_) => None,
        };
        self.known_names.listed(parent, listed);
    }

    /// After a change in `changed` (its directories, and a directory it moved or removed):
    /// forgets their attributes, then keeps the ones the master answered with (`dirs`).
    fn settle(&self, changed: &[u64], dirs: &[FileAttr]) {
        for ino in changed {
            self.dir_attrs.changing(*ino);
        }
        for dir in dirs {
            self.dir_attrs.changed_to(self.inodes.ino_of(dir.fid), dir);
        }
    }

    /// The answer to a change that makes a name in `parent`, begun at `begun`: the directory's
    /// attributes patched with it, or forgotten if it failed (it may have been made all the
    /// same, its answer lost).
    pub fn made_in(
        &self,
        parent: u64,
        begun: Begun,
        made: KfsResult<FileAttr>,
        what: &str,
    ) -> OpResult<FileAttr> {
        match made {
            Ok(attr) => {
                self.dir_attrs.made(parent, begun, &attr);
                Ok(attr)
            }
            Err(e) => {
                self.dir_attrs.changing(parent);
                Err(fail(what, e))
            }
        }
    }

    /// Registers the kernel's new reference to `attr`'s file, found (or made) as `name` in
    /// `parent`.
    pub fn entry(&self, parent: u64, name: &str, attr: &FileAttr) -> KernelAttr {
        let ino = self.inodes.ino_of(attr.fid);
        self.inodes.looked_up(ino, parent, name);
        self.known_names.add(parent, name);
        self.kernel_attr(attr)
    }

    /// Gives what the caller (`uid`, `gid`) created to it: the master made it the mount's
    /// user's. Left as it is when that user may not give files away (a mount by a user who
    /// is not an administrator: its files are its own).
    pub async fn own(&self, path: &str, attr: FileAttr, uid: u32, gid: u32) -> FileAttr {
        if attr.owner == uid && attr.group == gid {
            return attr;
        }
        let change = SetAttr {
            owner: Some(uid),
            group: Some(gid),
            ..SetAttr::default()
        };
        match self.client.set_attr(path, change).await {
            Ok(owned) => owned,
            Err(e) => {
                tracing::debug!(%path, error = %e, "cannot give a new file to its creator");
                attr
            }
        }
    }

    pub async fn mkdir(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> OpResult<KernelAttr> {
        self.check_writable()?;
        let (path, name) = self.child_path(parent, name)?;
        let options = MkdirOptions {
            parents: false,
            mode: Some((mode & 0o7777) as u16),
        };
        self.known_names.add(parent, &name);
        let begun = self.dir_attrs.begin(parent);
        let made = self.client.mkdir_with(&path, options).await;
        let attr = self.made_in(parent, begun, made, "mkdir")?;
        let attr = self.own(&path, attr, uid, gid).await;
        let kernel = self.entry(parent, &name, &attr);
        // The new directory as the master has it (owned by its maker).
        self.dir_attrs.changed_to(kernel.ino.0, &attr);
        Ok(kernel)
    }

    pub async fn unlink(&self, parent: u64, name: &OsStr) -> OpResult<()> {
        self.check_writable()?;
        let (path, name) = self.child_path(parent, name)?;
        self.dir_attrs.changing(parent);
        let hidden = {
            // Only an open file's unlink holds the lock (it serializes them): the others go on
            // in parallel.
            let _hiding = self.hiding.lock().await;
            self.hide_if_open(parent, &name, &path, "unlink").await
        };
        if !matches!(hidden, Ok(false)) {
            self.settle(&[parent], &[]);
            return hidden.map(drop);
        }
        let removed = self.client.change_names(NameChange::Remove { path }).await;
        let dirs = removed.as_deref().unwrap_or_default();
        self.settle(&[parent], dirs);
        removed.map_err(|e| fail("unlink", e))?;
        self.inodes.unlinked(parent, &name);
        self.known_names.removed(parent, &name);
        Ok(())
    }

    /// If `name` in `parent` (at `path`) is a file open on this mount, moves it to a hidden
    /// name, where reads and writes go on until its last release removes it; `true` if so.
    /// Called with [`MountState::hiding`] held.
    async fn hide_if_open(
        &self,
        parent: u64,
        name: &str,
        path: &str,
        what: &str,
    ) -> OpResult<bool> {
        let Some((ino, true)) = self.inodes.child(parent, name) else {
            return Ok(false);
        };
        let hidden_name = format!("{HIDDEN_PREFIX}{ino}");
        let hidden = self
            .inodes
            .child_path(parent, &hidden_name)
            .map_err(|_| Errno::ESTALE)?;
        match self.client.stat(path).await {
            // A directory is not held open by a handle; a name now another file's (replaced
            // by another client) is not this one's to hide.
            Ok(attr) if attr.kind == FileKind::Dir || attr.fid != self.inodes.fid_of(ino) => {
                return Ok(false);
            }
            // Another name this mount knows keeps the file (and gives its handles a path).
            Ok(attr) if attr.nlink > 1 && self.inodes.has_other_name(ino, parent, name) => {
                return Ok(false);
            }
            Ok(_) => {}
            Err(e) => return Err(fail(what, e)),
        }
        self.known_names.add(parent, &hidden_name);
        self.client
            .rename(path, &hidden)
            .await
            .map_err(|e| fail(what, e))?;
        self.inodes.hide(ino, parent, name, &hidden_name);
        self.known_names.removed(parent, name);
        Ok(true)
    }

    /// A hard link: `ino` gets the name `new_name` in `new_parent` too.
    pub async fn link(&self, ino: u64, new_parent: u64, new_name: &OsStr) -> OpResult<KernelAttr> {
        self.check_writable()?;
        let src = self.path(ino)?;
        let (dst, name) = self.child_path(new_parent, new_name)?;
        self.known_names.add(new_parent, &name);
        self.dir_attrs.changing(new_parent);
        let linked = self.client.link(&src, &dst).await;
        self.settle(&[new_parent], &[]);
        let attr = linked.map_err(|e| fail("link", e))?;
        Ok(self.entry(new_parent, &name, &attr))
    }

    pub async fn rmdir(&self, parent: u64, name: &OsStr) -> OpResult<()> {
        self.check_writable()?;
        let (path, name) = self.child_path(parent, name)?;
        let mut changed = vec![parent];
        changed.extend(self.inodes.child(parent, &name).map(|(ino, _)| ino));
        self.settle(&changed, &[]);
        let removed = self.client.change_names(NameChange::Rmdir { path }).await;
        self.settle(&changed, removed.as_deref().unwrap_or_default());
        removed.map_err(|e| fail("rmdir", e))?;
        self.inodes.unlinked(parent, &name);
        self.known_names.removed(parent, &name);
        Ok(())
    }

    pub async fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> OpResult<()> {
        self.check_writable()?;
        let (src, name) = self.child_path(parent, name)?;
        let (dst, new_name) = self.child_path(new_parent, new_name)?;
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return Err(Errno::EINVAL);
        }
        if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            match self.client.stat(&dst).await {
                Ok(_) => return Err(Errno::EEXIST),
                Err(KfsError::NotFound { .. }) => {}
                Err(e) => return Err(fail("rename", e)),
            }
        }
        if src == dst {
            return Ok(());
        }
        let moved = self.inodes.child(parent, &name).map(|(ino, _)| ino);
        let replaced = self.inodes.child(new_parent, &new_name).map(|(ino, _)| ino);
        // Both directories change, and so do a directory moved (its ctime, its `..`) and one
        // replaced (removed).
        let mut changed = vec![parent, new_parent];
        changed.extend(moved);
        changed.extend(replaced);
        // A file open here that the rename replaces keeps working for its handles (as it
        // would on a local disk): it is hidden first, then the rename finds nothing to replace.
        // (`hide_if_open` checks again under the lock: the file may be released meanwhile.)
        let target_open = matches!(self.inodes.child(new_parent, &new_name), Some((_, true)));
        let _hiding = match target_open {
            true => Some(self.hiding.lock().await),
            false => None,
        };
        self.settle(&changed, &[]);
        let renamed = self
            .rename_on_master(new_parent, &new_name, target_open, src, dst)
            .await;
        self.settle(&changed, renamed.as_deref().unwrap_or_default());
        renamed?;
        self.inodes.renamed(parent, &name, new_parent, &new_name);
        self.known_names.removed(parent, &name);
        Ok(())
    }

    /// The master's part of a rename: hides the open file it replaces (`target_open`, with
    /// [`MountState::hiding`] held), then renames; the directories' attributes after it.
    async fn rename_on_master(
        &self,
        new_parent: u64,
        new_name: &str,
        target_open: bool,
        src: String,
        dst: String,
    ) -> OpResult<Vec<FileAttr>> {
        if target_open {
            // Checked before hiding it: a directory cannot replace a file, nor can nothing.
            match self.client.stat(&src).await {
                Ok(attr) if attr.kind == FileKind::Dir => return Err(Errno::ENOTDIR),
                Ok(_) => {}
                Err(e) => return Err(fail("rename", e)),
            }
            self.hide_if_open(new_parent, new_name, &dst, "rename")
                .await?;
        }
        self.known_names.add(new_parent, new_name);
        self.client
            .change_names(NameChange::Rename { src, dst })
            .await
            .map_err(|e| fail("rename", e))
    }
}
