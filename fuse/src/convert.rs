//! What the kernel is told: KFS attributes as `stat` fields, KFS errors as `errno` values.
//!
//! KFS keeps a file's modification, access and change times (the change time to the second
//! after the modification time). Link counts are the master's: a directory's 2 and one per
//! subdirectory, a file's one per hard link.

use fuser::{Errno, FileAttr as KernelAttr, FileType, INodeNo};
use kfs_common::proto::Timestamp;
use kfs_common::proto::master::FileAttr;
use kfs_common::{FileKind, KfsError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What `stat` shows as a file's preferred I/O size: writes of this size go out as one.
pub const BLOCK_SIZE: u32 = 1 << 20;

/// A KFS timestamp (ns since the epoch) as a `SystemTime`.
pub fn system_time(ts: Timestamp) -> SystemTime {
    if ts >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ts as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ts.unsigned_abs())
    }
}

/// A `SystemTime` as a KFS timestamp (saturating far from the epoch).
pub fn timestamp(time: SystemTime) -> Timestamp {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// The kernel's attributes of inode `ino`, from KFS's; `size` overrides the master's length
/// (what this mount has written and not yet told it).
pub fn kernel_attr(ino: u64, attr: &FileAttr, size: u64) -> KernelAttr {
    let (kind, size) = match attr.kind {
        FileKind::Dir => (FileType::Directory, 0),
        FileKind::File => (FileType::RegularFile, size),
        // A link's length is its target's; a device's `size` is its number.
        special => (file_type(special), attr.length()),
    };
    let mtime = system_time(attr.mtime);
    KernelAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: system_time(attr.atime),
        mtime,
        ctime: system_time(attr.ctime),
        crtime: mtime,
        kind,
        perm: attr.mode & 0o7777,
        nlink: attr.nlink,
        uid: attr.owner,
        gid: attr.group,
        rdev: u32::try_from(attr.rdev()).unwrap_or(0),
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

/// The file type a listing entry shows.
pub fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

/// The `errno` a KFS error stands for.
pub fn errno(e: &KfsError) -> Errno {
    match e {
        KfsError::NotFound { .. } => Errno::ENOENT,
        KfsError::AlreadyExists { .. } => Errno::EEXIST,
        KfsError::NotADirectory { .. } => Errno::ENOTDIR,
        KfsError::IsADirectory { .. } => Errno::EISDIR,
        KfsError::DirectoryNotEmpty { .. } => Errno::ENOTEMPTY,
        KfsError::InvalidPath { reason, .. } if reason.contains("longer than") => {
            Errno::ENAMETOOLONG
        }
        KfsError::InvalidPath { .. } | KfsError::InvalidArgument(_) => Errno::EINVAL,
        KfsError::NoSuchXattr { .. } => Errno::ENODATA,
        KfsError::NoSpace(_) => Errno::ENOSPC,
        KfsError::PermissionDenied(_) => Errno::EACCES,
        KfsError::Unavailable(_) => Errno::EAGAIN,
        _ => Errno::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_on_both_sides_of_the_epoch() {
        for ts in [0, 1, 1_700_000_000_123_456_789, -5_000_000_001] {
            assert_eq!(timestamp(system_time(ts)), ts);
        }
    }

    #[test]
    fn errors_name_the_errno_programs_expect() {
        assert_eq!(errno(&KfsError::not_found("/x")), Errno::ENOENT);
        assert_eq!(
            errno(&KfsError::invalid_path("/x", "name longer than 255 bytes")),
            Errno::ENAMETOOLONG
        );
        assert_eq!(errno(&KfsError::Io("disk".into())), Errno::EIO);
    }
}
