//! Attributes: `getattr`, `setattr`, `statfs` and extended attributes.
//!
//! Extended attributes: the `user.` namespace is KFS's own (`user.NAME` on the mount is `NAME`
//! to `kfs xattr` and the client library); other namespaces (`security.`, `system.`,
//! `trusted.`) are not kept: reading one finds nothing, setting one is refused with
//! `EOPNOTSUPP` (so no POSIX ACLs, no file capabilities, no SELinux labels).

use crate::convert;
use crate::state::{MountState, OpResult, fail};
use fuser::{Errno, FileAttr as KernelAttr, TimeOrNow};
use kfs_common::KfsError;
use kfs_common::proto::master::{FileAttr, MAX_XATTR_VALUE_LEN, ServerState, SetAttr};
use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

const USER_PREFIX: &str = "user.";

/// What `statfs` answers, in blocks of this size.
const STATFS_BLOCK: u64 = 4096;

/// `statfs`'s answer: blocks, free and available blocks, files, free files.
pub struct Space {
    pub blocks: u64,
    pub free: u64,
    pub files: u64,
    pub free_files: u64,
}

/// Changes `setattr` asks for.
#[derive(Default)]
pub struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
}

fn time_of(t: TimeOrNow) -> i64 {
    match t {
        TimeOrNow::SpecificTime(at) => convert::timestamp(at),
        TimeOrNow::Now => convert::timestamp(SystemTime::now()),
    }
}

/// A kernel xattr name as KFS's, or `None` for a namespace KFS does not keep.
fn kfs_xattr_name(name: &OsStr) -> OpResult<Option<&str>> {
    let name = name.to_str().ok_or(Errno::EINVAL)?;
    match name.strip_prefix(USER_PREFIX) {
        Some("") => Err(Errno::EINVAL),
        Some(rest) if rest.len() > kfs_common::path::MAX_NAME_LEN => Err(Errno::ERANGE),
        Some(rest) => Ok(Some(rest)),
        None => Ok(None),
    }
}

impl MountState {
    /// The attributes of `ino`, and how long the kernel may keep them.
    pub async fn getattr(&self, ino: u64) -> OpResult<(KernelAttr, Duration)> {
        if let Some((attr, left)) = self.dir_attrs.get(ino) {
            return Ok((self.kernel_attr(&attr), left));
        }
        let fetch = self.dir_attrs.fetching();
        let attr = self.stat_ino(ino).await?;
        self.dir_attrs.store(ino, fetch, &attr);
        Ok((self.kernel_attr(&attr), self.settings.attr_ttl))
    }

    pub async fn setattr(&self, ino: u64, change: AttrChange) -> OpResult<KernelAttr> {
        self.check_writable()?;
        self.dir_attrs.changing(ino);
        let changed = self.set_attrs(ino, change).await;
        match &changed {
            Ok(attr) => self.dir_attrs.changed_to(ino, attr),
            Err(_) => self.dir_attrs.changing(ino),
        }
        Ok(self.kernel_attr(&changed?))
    }

    /// The master's attributes of `ino` once `change` is made.
    async fn set_attrs(&self, ino: u64, change: AttrChange) -> OpResult<FileAttr> {
        if let Some(size) = change.size {
            self.truncate(ino, size).await?;
        }
        let set = SetAttr {
            mode: change.mode.map(|m| (m & 0o7777) as u16),
            owner: change.uid,
            group: change.gid,
            mtime: change.mtime.map(time_of),
            atime: change.atime.map(time_of),
        };
        if set == SetAttr::default() {
            self.stat_ino(ino).await
        } else {
            let path = self.path(ino)?;
            self.client
                .set_attr(&path, set)
                .await
                .map_err(|e| fail("setattr", e))
        }
    }

    /// The cluster's space (live chunkservers' disks, divided by the default replication: what
    /// files of that replication can still take) and the namespace's files.
    pub async fn statfs(&self) -> OpResult<Space> {
        let servers = self
            .client
            .chunkservers()
            .await
            .map_err(|e| fail("statfs", e))?;
        let counters = self
            .client
            .counters()
            .await
            .map_err(|e| fail("statfs", e))?;
        let replication = u64::from(self.client.master_info().default_replication.max(1));
        let (mut capacity, mut available) = (0u64, 0u64);
        for s in servers.iter().filter(|s| s.state == ServerState::Alive) {
            capacity += s.space.capacity;
            available += s.space.available;
        }
        let files = counters.files + counters.dirs;
        let free_files = u64::from(u32::MAX);
        Ok(Space {
            blocks: capacity / replication / STATFS_BLOCK,
            free: available / replication / STATFS_BLOCK,
            files: files + free_files,
            free_files,
        })
    }

    pub async fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> OpResult<()> {
        self.check_writable()?;
        let Some(name) = kfs_xattr_name(name)? else {
            return Err(Errno::EOPNOTSUPP);
        };
        if value.len() > MAX_XATTR_VALUE_LEN {
            return Err(Errno::E2BIG);
        }
        let path = self.path(ino)?;
        if flags & (libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
            let exists = match self.client.get_xattr(&path, name).await {
                Ok(_) => true,
                Err(KfsError::NoSuchXattr { .. }) => false,
                Err(e) => return Err(fail("setxattr", e)),
            };
            if exists && flags & libc::XATTR_CREATE != 0 {
                return Err(Errno::EEXIST);
            }
            if !exists && flags & libc::XATTR_REPLACE != 0 {
                return Err(Errno::ENODATA);
            }
        }
        self.client
            .set_xattr(&path, name, value)
            .await
            .map_err(|e| match e {
                KfsError::InvalidArgument(why) if why.contains("attributes") => Errno::ENOSPC,
                e => fail("setxattr", e),
            })
    }

    pub async fn getxattr(&self, ino: u64, name: &OsStr) -> OpResult<Vec<u8>> {
        let Some(name) = kfs_xattr_name(name)? else {
            return Err(Errno::ENODATA);
        };
        let path = self.path(ino)?;
        self.client
            .get_xattr(&path, name)
            .await
            .map_err(|e| fail("getxattr", e))
    }

    /// The names, each `user.`-prefixed and NUL-terminated, as `listxattr(2)` gives them.
    pub async fn listxattr(&self, ino: u64) -> OpResult<Vec<u8>> {
        let path = self.path(ino)?;
        let names = self
            .client
            .list_xattrs(&path)
            .await
            .map_err(|e| fail("listxattr", e))?;
        let mut out = Vec::new();
        for name in names {
            out.extend_from_slice(USER_PREFIX.as_bytes());
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    pub async fn removexattr(&self, ino: u64, name: &OsStr) -> OpResult<()> {
        self.check_writable()?;
        let Some(name) = kfs_xattr_name(name)? else {
            return Err(Errno::ENODATA);
        };
        let path = self.path(ino)?;
        self.client
            .remove_xattr(&path, name)
            .await
            .map_err(|e| fail("removexattr", e))
    }
}
