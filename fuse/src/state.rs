//! [`MountState`]: what every request of one mount works on: the client, the inode table, the
//! open files and directories, and the settings the mount was made with.

use crate::convert;
use crate::dir_attrs::DirAttrs;
use crate::dirs::DirHandles;
use crate::inodes::{Inodes, PathError};
use crate::known_names::KnownNames;
use crate::open_files::OpenFiles;
use fuser::{Errno, FileAttr as KernelAttr};
use kfs_client::Client;
use kfs_common::proto::master::FileAttr;
use kfs_common::{FileId, KfsError};
use std::sync::Mutex;
use std::time::Duration;

/// Prefix of the name an open file is hidden under when it is unlinked through the mount; it
/// is removed when its last handle is released. Listings through the mount skip these names.
pub const HIDDEN_PREFIX: &str = ".kfs-open-";

/// How the mount caches and what it allows: from the mount options.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long the kernel may keep a file's attributes without asking again.
    pub attr_ttl: Duration,
    /// How long the kernel may keep a name's lookup without asking again.
    pub entry_ttl: Duration,
    /// How long a listing of a directory may answer that a name is not in it (0, the default:
    /// every lookup of a missing name asks the master, so a file another client has just
    /// closed opens at once, as close-to-open promises).
    pub negative_ttl: Duration,
    /// Refuse every change (`-o ro`).
    pub read_only: bool,
    /// Every namespace change durable when answered (`-o sync`); by default a change is
    /// answered once in the master's log file (it survives a crash of any process) and made
    /// durable against power loss by `fsync` of the file or its directory, as POSIX promises.
    pub synced: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            attr_ttl: Duration::from_secs(1),
            entry_ttl: Duration::from_secs(1),
            negative_ttl: Duration::ZERO,
            read_only: false,
            synced: false,
        }
    }
}

/// The state every request of one mount shares.
pub struct MountState {
    pub client: Client,
    pub inodes: Inodes,
    pub files: OpenFiles,
    pub dirs: DirHandles,
    /// Names of recently listed directories, for answering lookups of names they lack.
    pub known_names: KnownNames,
    /// Directories' attributes, for the `getattr` the kernel sends after each change in one.
    pub dir_attrs: DirAttrs,
    pub settings: Settings,
    /// The modification time and length each inode had when the kernel was last told them:
    /// an open that finds them unchanged keeps the kernel's cached pages.
    seen: Mutex<lru::LruCache<u64, (i64, u64)>>,
    /// Held while a name of an open file is hidden (unlink, or a rename over it) and while a
    /// last release decides whether to remove the hidden name: so a file closed while it is
    /// being unlinked is either hidden and then removed by that release, or removed at once,
    /// never hidden and left behind.
    pub hiding: tokio::sync::Mutex<()>,
}

/// Files whose last-seen attributes are remembered (for keeping cached pages across opens).
const SEEN_CAPACITY: usize = 65_536;

pub type OpResult<T> = Result<T, Errno>;

/// A KFS error as the `errno` the caller gets; logged at debug level with what failed.
pub fn fail(what: &str, e: KfsError) -> Errno {
    let errno = convert::errno(&e);
    tracing::debug!(%what, error = %e, ?errno, "request failed");
    errno
}

impl MountState {
    pub fn new(client: Client, root_path: &str, root_fid: FileId, settings: Settings) -> Self {
        MountState {
            client,
            inodes: Inodes::new(root_path, root_fid),
            files: OpenFiles::default(),
            dirs: DirHandles::default(),
            known_names: KnownNames::new(settings.negative_ttl),
            dir_attrs: DirAttrs::new(settings.attr_ttl),
            settings,
            seen: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(SEEN_CAPACITY).expect("non-zero"),
            )),
            hiding: tokio::sync::Mutex::new(()),
        }
    }

    /// The KFS path of inode `ino`.
    pub fn path(&self, ino: u64) -> OpResult<String> {
        self.inodes.path(ino).map_err(path_errno)
    }

    /// The KFS path of `name` in directory `parent`.
    pub fn child_path(&self, parent: u64, name: &std::ffi::OsStr) -> OpResult<(String, String)> {
        let name = name_str(name)?;
        let path = self.inodes.child_path(parent, name).map_err(path_errno)?;
        Ok((path, name.to_string()))
    }

    pub fn check_writable(&self) -> OpResult<()> {
        if self.settings.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// The kernel's attributes for a KFS file, with the length this mount knows if it has the
    /// file open (its writes may not have reached the master yet), remembered for the next open.
    pub fn kernel_attr(&self, attr: &FileAttr) -> KernelAttr {
        let ino = self.inodes.ino_of(attr.fid);
        let size = match self.files.of_inode(ino) {
            Some(open) => attr.size.max(open.end()),
            None => attr.size,
        };
        self.seen
            .lock()
            .expect("seen lock")
            .put(ino, (attr.mtime, size));
        let mut kernel = convert::kernel_attr(ino, attr, size);
        if self.inodes.is_hidden(ino) {
            kernel.nlink = 0;
        }
        kernel
    }

    /// Whether the kernel was last told these attributes of `attr`'s file (its cached pages
    /// are then still good).
    pub fn unchanged(&self, attr: &FileAttr) -> bool {
        let ino = self.inodes.ino_of(attr.fid);
        self.seen.lock().expect("seen lock").get(&ino) == Some(&(attr.mtime, attr.size))
    }

    /// Asks the master for inode `ino`'s attributes.
    pub async fn stat_ino(&self, ino: u64) -> OpResult<FileAttr> {
        let fid = self.inodes.fid_of(ino);
        self.client
            .stat_fid(fid)
            .await
            .map_err(|e| fail("getattr", e))
    }
}

fn path_errno(e: PathError) -> Errno {
    match e {
        PathError::Stale => Errno::ESTALE,
        PathError::Unlinked => Errno::ENOENT,
    }
}

/// A name from the kernel as a KFS name (UTF-8, at most 255 bytes).
pub fn name_str(name: &std::ffi::OsStr) -> OpResult<&str> {
    let name = name.to_str().ok_or(Errno::EINVAL)?;
    if name.len() > kfs_common::path::MAX_NAME_LEN {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(name)
}
