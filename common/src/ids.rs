//! Identifiers shared by every process.
//!
//! Invariants:
//! - [`FileId`] 0 is never a file; [`FileId::ROOT`] (1) is the root directory and always exists.
//! - File ids and chunk ids are allocated by the master from counters that only grow: an id is never
//!   reused, even after its file or chunk is gone.
//! - A chunk replica is named by `(ChunkId, ChunkVersion)`; a replica whose version is below the
//!   master's is stale and is never served.
//! - A [`ServerId`] is chosen once by a chunkserver and stored in its data dirs; it never changes.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! u64_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

u64_id!(
    /// Inode number of a file or directory.
    FileId,
    "fid:"
);
u64_id!(
    /// Cluster-wide chunk number; never reused.
    ChunkId,
    "chunk:"
);
u64_id!(
    /// Version of a chunk; bumped by the master whenever a new write lease is granted.
    ChunkVersion,
    "v"
);

impl FileId {
    /// The root directory.
    pub const ROOT: FileId = FileId(1);
    /// The first id handed out to a file or directory created by a user.
    pub const FIRST_USER: FileId = FileId(2);
    /// Largest file id the master may allocate (the top bits are reserved by the master's key layout).
    pub const MAX: FileId = FileId((1 << 60) - 1);
}

/// Stable identity of a chunkserver, chosen at random on its first start and kept in its data dirs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServerId(pub u128);

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl ServerId {
    /// The first 8 hex digits: how every table a person reads names a server (`kfs servers`,
    /// the status page; `kfs admin decommission` takes it as a prefix). Logs and JSON carry
    /// all 32.
    pub fn short(&self) -> String {
        format!("{:08x}", self.0 >> 96)
    }
}

impl std::str::FromStr for ServerId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u128::from_str_radix(s.trim(), 16).map(ServerId)
    }
}

/// What an inode is: a regular file, a directory, or (since client protocol 10) a symbolic
/// link or a special file. Only regular files hold data; encoded for a client of an older
/// protocol ([`crate::proto::encoding`]), every kind it does not know is a `File` (and its
/// `FileAttr` has length 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[repr(u8)]
pub enum FileKind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    Socket = 5,
    CharDevice = 6,
    BlockDevice = 7,
}

/// The first client protocol that knows symbolic links and special files.
pub const SPECIAL_FILES_PROTOCOL: u32 = 10;

impl Serialize for FileKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind =
            if self.is_special() && !crate::proto::encoding::peer_speaks(SPECIAL_FILES_PROTOCOL) {
                FileKind::File
            } else {
                *self
            };
        let name = match kind {
            FileKind::File => "File",
            FileKind::Dir => "Dir",
            FileKind::Symlink => "Symlink",
            FileKind::Fifo => "Fifo",
            FileKind::Socket => "Socket",
            FileKind::CharDevice => "CharDevice",
            FileKind::BlockDevice => "BlockDevice",
        };
        // As `derive` numbers variants: in declaration order, from 0.
        s.serialize_unit_variant("FileKind", kind as u32 - 1, name)
    }
}

impl FileKind {
    /// A symbolic link, FIFO, socket or device: no data, no chunks, never a directory.
    pub fn is_special(self) -> bool {
        !matches!(self, FileKind::File | FileKind::Dir)
    }

    /// A character or block device, whose attributes carry a device number.
    pub fn is_device(self) -> bool {
        matches!(self, FileKind::CharDevice | FileKind::BlockDevice)
    }
}

impl FileKind {
    /// What it is, in words ("file", "directory", "symbolic link", ...).
    pub fn name(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "directory",
            FileKind::Symlink => "symbolic link",
            FileKind::Fifo => "FIFO",
            FileKind::Socket => "socket",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_with_their_kind() {
        assert_eq!(FileId(7).to_string(), "fid:7");
        assert_eq!(ChunkId(9).to_string(), "chunk:9");
        assert_eq!(ChunkVersion(3).to_string(), "v3");
    }

    #[test]
    fn server_id_round_trips_through_hex() {
        let id = ServerId(0x1234_5678_9abc_def0_0fed_cba9_8765_4321);
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<ServerId>().unwrap(), id);
        assert!("not hex".parse::<ServerId>().is_err());
    }
}
