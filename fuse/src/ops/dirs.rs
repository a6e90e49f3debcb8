//! Directory listings: `opendir`, `readdir`, `readdirplus`, `releasedir` (see `dirs.rs`).

use crate::convert;
use crate::state::{MountState, OpResult, fail};
use fuser::{Errno, FileAttr as KernelAttr, FileType};
use kfs_common::FileKind;

/// One entry of a listing as the kernel gets it.
pub struct Entry {
    pub ino: u64,
    /// The offset the kernel asks for to read on after this entry.
    pub next: u64,
    pub kind: FileType,
    pub name: String,
    /// With `readdirplus`: the attributes (for `.` and `..`, a placeholder the kernel ignores).
    pub attr: Option<KernelAttr>,
}

impl MountState {
    pub async fn opendir(&self, ino: u64) -> OpResult<u64> {
        let path = self.path(ino)?;
        Ok(self.dirs.open(path))
    }

    /// Up to `max` entries of the listing of handle `fh` from `offset` on; with `plus`, each
    /// with its attributes (the caller registers each one it passes to the kernel).
    pub async fn read_dir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        max: usize,
        plus: bool,
    ) -> OpResult<Vec<Entry>> {
        let listing = self.dirs.get(fh).ok_or(Errno::EBADF)?;
        let mut listing = listing.lock().await;
        if offset == 0 {
            listing.rewind();
        }
        let mut out = Vec::new();
        let mut at = offset;
        while out.len() < max {
            match at {
                0 | 1 => {
                    let (name, of) = if at == 0 {
                        (".", ino)
                    } else {
                        ("..", self.inodes.parent(ino))
                    };
                    out.push(Entry {
                        ino: of,
                        next: at + 1,
                        kind: FileType::Directory,
                        name: name.to_string(),
                        attr: plus.then(|| placeholder(of)),
                    });
                }
                _ => {
                    let index = (at - 2) as usize;
                    let Some(entry) = listing
                        .entry(&self.client, index)
                        .await
                        .map_err(|e| fail("readdir", e))?
                    else {
                        break;
                    };
                    let attr = match (&entry.attr, plus) {
                        (Some(attr), true) => Some(self.kernel_attr(attr)),
                        _ => None,
                    };
                    // Seen in the directory: never answered missing (`negative_timeout`).
                    self.known_names.add(ino, &entry.name);
                    out.push(Entry {
                        ino: self.inodes.ino_of(entry.fid),
                        next: at + 1,
                        kind: convert::file_type(entry.kind),
                        name: entry.name.clone(),
                        attr,
                    });
                }
            }
            at += 1;
        }
        Ok(out)
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.release(fh);
    }
}

/// Attributes for `.` and `..` in a `readdirplus` answer (the kernel does not use them).
fn placeholder(ino: u64) -> KernelAttr {
    let attr = kfs_common::proto::master::FileAttr {
        fid: kfs_common::FileId(ino),
        kind: FileKind::Dir,
        size: 0,
        mode: 0o755,
        owner: 0,
        group: 0,
        replication: 0,
        mtime: 0,
        atime: 0,
        nlink: 2,
        ctime: 0,
    };
    convert::kernel_attr(ino, &attr, 0)
}
