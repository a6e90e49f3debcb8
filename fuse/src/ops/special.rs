//! Symbolic links and special files: `symlink`, `readlink`, `mknod` (FIFOs, sockets, devices,
//! and regular files made by `mknod(2)`).
//!
//! The kernel follows links itself (KFS's master never does), and opens FIFOs, sockets and
//! devices without asking the mount, so nothing else here knows about them: they are names
//! with attributes.

use crate::state::{MountState, OpResult, fail};
use fuser::{Errno, FileAttr as KernelAttr};
use kfs_common::FileKind;
use kfs_common::proto::master::{CreateOptions, MknodOptions};
use std::ffi::OsStr;
use std::path::Path;

impl MountState {
    pub async fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        uid: u32,
        gid: u32,
    ) -> OpResult<KernelAttr> {
        self.check_writable()?;
        let (path, name) = self.child_path(parent, name)?;
        // KFS keeps names and targets as UTF-8 text.
        let target = target.to_str().ok_or(Errno::EINVAL)?;
        self.known_names.add(parent, &name);
        let begun = self.dir_attrs.begin(parent);
        let made = self.client.symlink(&path, target).await;
        let attr = self.made_in(parent, begun, made, "symlink")?;
        let attr = self.own(&path, attr, uid, gid).await;
        Ok(self.entry(parent, &name, &attr))
    }

    pub async fn readlink(&self, ino: u64) -> OpResult<Vec<u8>> {
        let path = self.path(ino)?;
        let target = self
            .client
            .readlink(&path)
            .await
            .map_err(|e| fail("readlink", e))?;
        Ok(target.into_bytes())
    }

    /// `mknod(2)`: `mode` holds the file type (`S_IFIFO`, `S_IFSOCK`, `S_IFCHR`, `S_IFBLK`,
    /// or `S_IFREG` for an empty regular file) and the permission bits.
    pub async fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
    ) -> OpResult<KernelAttr> {
        self.check_writable()?;
        let (path, name) = self.child_path(parent, name)?;
        let perm = (mode & 0o7777) as u16;
        let kind = match mode & libc::S_IFMT {
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            0 | libc::S_IFREG => FileKind::File,
            _ => return Err(Errno::EINVAL),
        };
        self.known_names.add(parent, &name);
        let begun = self.dir_attrs.begin(parent);
        let made = if kind == FileKind::File {
            let options = CreateOptions {
                exclusive: true,
                replication: None,
                mode: Some(perm),
            };
            self.client
                .create_with_attr(&path, options)
                .await
                .map(|(_, attr)| attr)
        } else {
            let options = MknodOptions {
                kind,
                mode: Some(perm),
                rdev: u64::from(rdev),
            };
            self.client.mknod(&path, options).await
        };
        let attr = self.made_in(parent, begun, made, "mknod")?;
        let attr = self.own(&path, attr, uid, gid).await;
        Ok(self.entry(parent, &name, &attr))
    }
}
