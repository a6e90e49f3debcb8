//! The checks in front of every client call: who the caller is ([`MasterServer::caller`], from
//! the connection's certificate and the user records) and whether the namespace lets it do
//! what it asks, by path ([`Path checks`](MasterServer::may_search)) or by file id.
//!
//! Paths: every directory from the caller's root down to the parent must be searchable; the
//! target readable or writable as the call needs; creating, removing or renaming needs write and
//! search on the parent (and the sticky bit's owner rule). A confined user may name only paths
//! in its subtree, and a file id only of a file it reached by path since the master started
//! (`grants`, bounded: one forgotten is answered `PermissionDenied`, open it again by path).
//! The administrator, a master and, on an insecure master, anyone pass every check without a
//! walk, so the checks cost nothing there.

use super::MasterServer;
use crate::users::access::{Caller, READ, SEARCH, WRITE};
use kfs_common::proto::master::{FileAttr, SetAttr};
use kfs_common::proto::users::ADMIN_USER;
use kfs_common::security::{Role, digest_hex};
use kfs_common::{FileId, KfsError, KfsResult, path};

/// File ids confined users reached by path, remembered at most (then the least used go).
pub(super) const MAX_GRANTS: u64 = 1 << 20;

/// The file ids each confined user reached by path: `(uid, fid)`.
pub(super) type Grants = moka::sync::Cache<(u32, FileId), ()>;

pub(super) fn new_grants() -> Grants {
    moka::sync::Cache::new(MAX_GRANTS)
}

impl MasterServer {
    /// Who this call comes from, or why it may not call at all.
    pub(super) fn caller(&self) -> KfsResult<Caller> {
        let Some(peer) = &self.peer else {
            return Ok(Caller::admin(
                "no certificate: this master runs --insecure".into(),
            ));
        };
        let who = &peer.identity;
        let identity = who.to_string();
        match who.role {
            Role::Master => Ok(Caller::admin(identity)),
            Role::User if who.name == ADMIN_USER => Ok(Caller::admin(identity)),
            Role::User | Role::Gateway => match self.state.users.get(&who.name) {
                Some(record) if record.certificate == digest_hex(&peer.certificate) => Ok(
                    Caller::user(record.info, identity, who.role == Role::Gateway),
                ),
                Some(_) => Err(KfsError::PermissionDenied(format!(
                    "{identity}: this certificate was replaced by a newer one (ask the \
                     administrator for the new credentials)"
                ))),
                None if who.role == Role::Gateway => Ok(Caller::gateway(&who.name, identity)),
                None => Err(KfsError::PermissionDenied(format!(
                    "{identity} is not a user of this cluster (kfs admin user add {})",
                    who.name
                ))),
            },
            Role::Chunkserver => Err(KfsError::PermissionDenied(format!(
                "{identity} may not use the namespace service"
            ))),
        }
    }

    /// The attributes along `path` after checking the caller may name it: in its subtree,
    /// every directory from its root to the parent searchable.
    fn walk(&self, caller: &Caller, path: &str) -> KfsResult<Vec<FileAttr>> {
        path::validate(path)?;
        caller.need_in_root(path)?;
        let attrs = self.read(|ns| ns.attrs_along(path))?;
        let root_depth = path::components(&caller.user.root)?.len();
        let target_depth = path::components(path)?.len();
        // attrs[i] is the directory at depth i; those from the root to the parent are searched.
        for (depth, dir) in attrs.iter().enumerate().take(target_depth).skip(root_depth) {
            caller.need(dir, SEARCH, &prefix(path, depth))?;
        }
        Ok(attrs)
    }

    /// `path` may be looked up (`stat`).
    pub(super) fn may_search(&self, caller: &Caller, path: &str) -> KfsResult<()> {
        if !caller.superuser() || caller.confined() {
            self.walk(caller, path)?;
        }
        Ok(())
    }

    /// `path` may be looked up and, if it exists, has `want` (`READ`, `WRITE`...) for the
    /// caller. A wanted write also needs a writer.
    pub(super) fn may_access(&self, caller: &Caller, path: &str, want: u16) -> KfsResult<()> {
        if want & WRITE != 0 {
            caller.need_writer(&format!("writing {path}"))?;
        }
        if caller.superuser() && !caller.confined() {
            return Ok(());
        }
        let attrs = self.walk(caller, path)?;
        if attrs.len() == path::components(path)?.len() + 1 {
            caller.need(attrs.last().expect("the root is there"), want, path)?;
        }
        Ok(())
    }

    /// `path` may be created in (or, when it exists, removed from or renamed out of) its
    /// parent: write and search there; with `existing`, the sticky bit's rule too.
    pub(super) fn may_change_entry(
        &self,
        caller: &Caller,
        path: &str,
        what: &str,
    ) -> KfsResult<()> {
        caller.need_writer(&format!("{what} {path}"))?;
        if caller.superuser() && !caller.confined() {
            return Ok(());
        }
        let attrs = self.walk(caller, path)?;
        let Some((parent, _)) = path::split_parent(path)? else {
            return Err(caller_denied(
                caller,
                format!("{what} {path}: it is the root"),
            ));
        };
        if parent.len() < caller.user.root.len() {
            return Err(caller_denied(
                caller,
                format!("{what} {path}: it is the user's root"),
            ));
        }
        let depth = path::components(path)?.len();
        if let Some(entry) = attrs.get(depth) {
            let dir = &attrs[depth - 1];
            caller.need(dir, WRITE | SEARCH, parent)?;
            caller.need_unlink(dir, entry, path)?;
        } else if let Some(dir) = attrs.last()
            && dir.kind == kfs_common::FileKind::Dir
        {
            // Missing: whatever is made (`mkdir -p` makes the missing parents too) is made in
            // the deepest directory that exists.
            caller.need(dir, WRITE | SEARCH, &prefix(path, attrs.len() - 1))?;
        }
        Ok(())
    }

    /// A create: of a new file, as a new entry; of an existing one (truncated), a write.
    pub(super) fn may_create(&self, caller: &Caller, path: &str) -> KfsResult<()> {
        caller.need_writer(&format!("creating {path}"))?;
        if caller.superuser() && !caller.confined() {
            return Ok(());
        }
        if self.walk(caller, path)?.len() == path::components(path)?.len() + 1 {
            self.may_access(caller, path, WRITE)
        } else {
            self.may_change_entry(caller, path, "creating")
        }
    }

    /// A rename: `src` may leave its parent and `dst` be made (or replaced) in its; a directory
    /// moved to another parent must itself be writable (its `..` changes).
    pub(super) fn may_rename(&self, caller: &Caller, src: &str, dst: &str) -> KfsResult<()> {
        self.may_change_entry(caller, src, "renaming")?;
        self.may_change_entry(caller, dst, "renaming onto")?;
        if !caller.superuser()
            && path::split_parent(src)?.map(|p| p.0) != path::split_parent(dst)?.map(|p| p.0)
            && let Some(moved) = self.walk(caller, src)?.get(path::components(src)?.len())
            && moved.kind == kfs_common::FileKind::Dir
        {
            caller.need(moved, WRITE, src)?;
        }
        Ok(())
    }

    /// A recursive remove: `path` may leave its parent, and every directory below may be
    /// listed and emptied.
    pub(super) fn may_remove_tree(&self, caller: &Caller, path: &str) -> KfsResult<()> {
        self.may_change_entry(caller, path, "removing")?;
        if !caller.superuser() {
            for (dir_path, dir) in self.read(|ns| ns.dirs_below(path))? {
                caller.need(&dir, READ | WRITE | SEARCH, &dir_path)?;
            }
        }
        Ok(())
    }

    /// An attribute change: the mode and times by the owner (times also by a writer), the
    /// owner by uid 0, the group by the owner to one of its groups.
    pub(super) fn may_set_attr(&self, caller: &Caller, path: &str, set: &SetAttr) -> KfsResult<()> {
        caller.need_writer(&format!("changing {path}"))?;
        if caller.superuser() && !caller.confined() {
            return Ok(());
        }
        let attrs = self.walk(caller, path)?;
        let Some(attr) = attrs.get(path::components(path)?.len()) else {
            return Ok(()); // missing: the namespace answers NotFound
        };
        let owner_only = |what: &str| {
            if caller.owns(attr) {
                Ok(())
            } else {
                Err(caller_denied(
                    caller,
                    format!("only the owner of {path} may change its {what}"),
                ))
            }
        };
        if set.mode.is_some() {
            owner_only("mode")?;
        }
        if set.owner.is_some_and(|o| o != attr.owner) && !caller.superuser() {
            return Err(caller_denied(
                caller,
                format!("only the administrator may change the owner of {path}"),
            ));
        }
        if let Some(gid) = set.group
            && gid != attr.group
            && !caller.may_chgrp(attr, gid)
        {
            return Err(caller_denied(
                caller,
                format!("may not give {path} the group {gid}"),
            ));
        }
        if (set.mtime.is_some() || set.atime.is_some()) && !caller.owns(attr) {
            caller.need(attr, WRITE, path)?;
        }
        Ok(())
    }

    /// A call naming file `fid` that needs `want` on it: a confined caller must have reached
    /// it by path; its owner always may write it (as an open file descriptor would).
    pub(super) fn may_use_fid(&self, caller: &Caller, fid: FileId, want: u16) -> KfsResult<()> {
        if want & WRITE != 0 {
            caller.need_writer(&format!("writing {fid}"))?;
        }
        if caller.superuser() && !caller.confined() {
            return Ok(());
        }
        if caller.confined() && !self.state.grants.contains_key(&(caller.user.uid, fid)) {
            return Err(caller_denied(
                caller,
                format!(
                    "{fid} was not reached through a path in the user's subtree since the master \
                     started; {}",
                    kfs_common::proto::users::REOPEN_BY_PATH
                ),
            ));
        }
        let attr = self.read(|ns| ns.stat_fid(fid))?;
        if want & WRITE != 0 && caller.owns(&attr) {
            return Ok(());
        }
        caller.need(&attr, want, &fid.to_string())
    }

    /// Remembers that a confined caller reached `fid` by path.
    pub(super) fn grant(&self, caller: &Caller, fid: FileId) {
        if caller.confined() {
            self.state.grants.insert((caller.user.uid, fid), ());
        }
    }
}

impl MasterServer {
    /// Refuses a call about `chunk`'s lease (`renew_lease`, `report_failure`) unless the caller
    /// may write the file holding it: a chunk id alone (learned by reading, or guessed) must not
    /// get a writer a lease or a version move of another's file. Volumes are the lease desk's to
    /// refuse.
    pub(super) fn may_write_chunk(&self, chunk: kfs_common::ChunkId, what: &str) -> KfsResult<()> {
        let caller = self.caller()?;
        caller.need_writer(what)?;
        let fid = self
            .state
            .chunks
            .lock()
            .expect("chunk map lock")
            .chunk(chunk)
            .map(|(fid, _, _)| fid)
            .ok_or(KfsError::NoSuchChunk { chunk })?;
        if crate::namespace::record::volume_set_replication(fid).is_some() {
            return Ok(());
        }
        self.may_use_fid(&caller, fid, WRITE)
    }
}

fn caller_denied(caller: &Caller, why: String) -> KfsError {
    KfsError::PermissionDenied(format!("user '{}': {why}", caller.user.name))
}

/// The first `depth` components of `path` as a path (`/` for 0).
fn prefix(path: &str, depth: usize) -> String {
    let names = path::components(path).unwrap_or_default();
    format!("/{}", names[..depth.min(names.len())].join("/"))
}
