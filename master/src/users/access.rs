//! Who a call comes from ([`Caller`]) and the permission rules the master checks it by: POSIX
//! owner/group/other bits (uid 0 passes them all, as root does), the sticky bit, read-only
//! users, users confined to a subtree, and the administrator's calls.
//!
//! Pure functions of a caller and attributes; the server (`server/authorize.rs`) finds the
//! attributes in the namespace.

use kfs_common::proto::master::FileAttr;
use kfs_common::proto::users::{ADMIN_USER, UserInfo};
use kfs_common::{KfsError, KfsResult, path};

/// Permission bits, as in a mode's "other" triple.
pub const READ: u16 = 4;
pub const WRITE: u16 = 2;
pub const SEARCH: u16 = 1;
const STICKY: u16 = 0o1000;

/// The caller of one RPC, and the rights it is checked against.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: UserInfo,
    /// The certificate's role and name, or why there is none (for `whoami` and errors).
    pub identity: String,
    /// A gateway's certificate (it may report itself for the status page).
    pub gateway: bool,
}

impl Caller {
    /// Every right: the built-in administrator, a master, or anyone on an insecure master.
    pub fn admin(identity: String) -> Caller {
        Caller {
            user: UserInfo {
                name: ADMIN_USER.into(),
                uid: 0,
                gid: 0,
                groups: Vec::new(),
                read_only: false,
                root: "/".into(),
                admin: true,
            },
            identity,
            gateway: false,
        }
    }

    /// A gateway with no user record: uid 0 for files (it serves many users and checks them
    /// itself), but none of the administrator's calls.
    pub fn gateway(name: &str, identity: String) -> Caller {
        let mut caller = Caller::admin(identity);
        caller.user.name = name.into();
        caller.user.admin = false;
        caller.gateway = true;
        caller
    }

    pub fn user(user: UserInfo, identity: String, gateway: bool) -> Caller {
        Caller {
            user,
            identity,
            gateway,
        }
    }

    /// Whether permission bits are skipped (uid 0).
    pub fn superuser(&self) -> bool {
        self.user.uid == 0
    }

    /// Whether file ids are checked against what the caller reached by path.
    pub fn confined(&self) -> bool {
        self.user.root != "/"
    }

    /// The gid of what the caller creates.
    pub fn gid(&self) -> u32 {
        self.user.gid
    }

    fn in_group(&self, gid: u32) -> bool {
        self.user.gid == gid || self.user.groups.contains(&gid)
    }

    fn denied(&self, why: String) -> KfsError {
        KfsError::PermissionDenied(format!("user '{}': {why}", self.user.name))
    }

    /// An operator's call (`what`): the administrator only.
    pub fn need_admin(&self, what: &str) -> KfsResult<()> {
        if self.user.admin {
            Ok(())
        } else {
            Err(self.denied(format!("{what} is for administrators")))
        }
    }

    /// A change (`what`): not for a read-only user.
    pub fn need_writer(&self, what: &str) -> KfsResult<()> {
        if self.user.read_only {
            Err(self.denied(format!("{what}: the user is read-only")))
        } else {
            Ok(())
        }
    }

    /// `path` must be in the caller's subtree.
    pub fn need_in_root(&self, path: &str) -> KfsResult<()> {
        if path::is_same_or_below(path, &self.user.root) {
            Ok(())
        } else {
            Err(self.denied(format!(
                "{path} is outside the user's subtree {}",
                self.user.root
            )))
        }
    }

    /// Whether the caller has all of `want` (`READ | WRITE | SEARCH` bits) on `attr`.
    pub fn may(&self, attr: &FileAttr, want: u16) -> bool {
        if self.superuser() {
            return true;
        }
        let bits = if attr.owner == self.user.uid {
            attr.mode >> 6
        } else if self.in_group(attr.group) {
            attr.mode >> 3
        } else {
            attr.mode
        } & 0o7;
        bits & want == want
    }

    /// `may`, or a `PermissionDenied` naming `path`, what was wanted and the mode.
    pub fn need(&self, attr: &FileAttr, want: u16, path: &str) -> KfsResult<()> {
        if self.may(attr, want) {
            return Ok(());
        }
        let wanted: String = [(READ, "read"), (WRITE, "write"), (SEARCH, "search")]
            .iter()
            .filter(|(bit, _)| want & bit != 0)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join("+");
        Err(self.denied(format!(
            "no {wanted} permission on {path} (mode {:04o}, owner {}, group {})",
            attr.mode, attr.owner, attr.group
        )))
    }

    /// Whether the caller owns `attr` (or is uid 0).
    pub fn owns(&self, attr: &FileAttr) -> bool {
        self.superuser() || attr.owner == self.user.uid
    }

    /// Removing or renaming `entry` out of `dir`: the sticky bit lets only the owner of the
    /// entry or of the directory do it.
    pub fn need_unlink(&self, dir: &FileAttr, entry: &FileAttr, path: &str) -> KfsResult<()> {
        if dir.mode & STICKY != 0 && !self.owns(dir) && !self.owns(entry) {
            return Err(self.denied(format!(
                "{path} is in a sticky directory and the user owns neither"
            )));
        }
        Ok(())
    }

    /// Whether the caller may give a file the group `gid`: uid 0, or its owner in that group.
    pub fn may_chgrp(&self, attr: &FileAttr, gid: u32) -> bool {
        self.superuser() || (attr.owner == self.user.uid && self.in_group(gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kfs_common::{FileId, FileKind};

    fn attr(mode: u16, owner: u32, group: u32) -> FileAttr {
        FileAttr {
            fid: FileId(5),
            kind: FileKind::File,
            size: 0,
            mode,
            owner,
            group,
            replication: 3,
            mtime: 0,
            atime: 0,
            nlink: 1,
            ctime: 0,
        }
    }

    fn alice() -> Caller {
        Caller::user(
            UserInfo {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                groups: vec![50],
                read_only: false,
                root: "/home/alice".into(),
                admin: false,
            },
            "user 'alice'".into(),
            false,
        )
    }

    #[test]
    fn owner_group_and_other_bits_are_read_as_posix_reads_them() {
        let a = alice();
        assert!(a.may(&attr(0o600, 1000, 0), READ | WRITE));
        assert!(
            !a.may(&attr(0o077, 1000, 1000), READ),
            "the owner's bits win"
        );
        assert!(a.may(&attr(0o040, 1, 50), READ), "a further group counts");
        assert!(
            !a.may(&attr(0o004, 1, 50), READ),
            "a member gets the group bits only"
        );
        assert!(a.may(&attr(0o001, 1, 2), SEARCH));
        assert!(Caller::admin("admin".into()).may(&attr(0, 1, 2), READ | WRITE));
        let e = a
            .need(&attr(0o644, 1, 2), WRITE, "/x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("alice") && e.contains("write") && e.contains("/x") && e.contains("0644"),
            "{e}"
        );
    }

    #[test]
    fn roots_read_only_users_admin_calls_and_sticky_directories() {
        let mut a = alice();
        assert!(a.need_in_root("/home/alice/x").is_ok() && a.need_in_root("/home/alice").is_ok());
        assert!(a.need_in_root("/home/alicex").is_err() && a.need_in_root("/").is_err());
        assert!(a.confined() && !Caller::admin(String::new()).confined());
        assert!(a.need_admin("fsck").is_err() && a.need_writer("mkdir").is_ok());
        a.user.read_only = true;
        assert!(
            a.need_writer("mkdir")
                .unwrap_err()
                .to_string()
                .contains("read-only")
        );
        let tmp = attr(0o1777, 0, 0);
        assert!(
            a.need_unlink(&tmp, &attr(0o644, 1000, 1000), "/tmp/a")
                .is_ok()
        );
        assert!(a.need_unlink(&tmp, &attr(0o644, 7, 7), "/tmp/b").is_err());
        assert!(
            a.need_unlink(&attr(0o777, 0, 0), &attr(0o644, 7, 7), "/c")
                .is_ok()
        );
        assert!(
            a.may_chgrp(&attr(0o644, 1000, 1000), 50) && !a.may_chgrp(&attr(0o644, 1000, 1000), 51)
        );
        let gw = Caller::gateway("gw", String::new());
        assert!(gw.superuser() && gw.need_admin("fsck").is_err());
    }
}
