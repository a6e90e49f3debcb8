//! The namespace's records: the keys and values of its one ordered map.
//!
//! | key | value |
//! |---|---|
//! | `Dentry { parent, name }` | `Child { fid, kind }` |
//! | `Fattr { fid }` | `Attr(Fattr)`: kind, mode, owner, group, times (the change time as seconds after the modification time), size, replication |
//! | `Chunk { fid, offset }` | `Chunk { id, version }` |
//! | `Chunk { fid, EXTENT_OFFSET }` | `Extent { volume, at, len }`: a small file's data, packed |
//! | `Chunk { VOLUME_SETS + r, id }` | `Chunk { id, version }`: a volume of replication `r` |
//! | `Xattr { fid, name }` | `Xattr(value)` |
//! | `Xattr { fid, "" }` | `Xattr(target)`: a symbolic link's target (no attribute's name is empty) |
//! | `Xattr { fid, "\0links" }` | `Xattr(n as u32 LE)`: the names of a file with more than one (hard links; no attribute's name holds a NUL) |
//!
//! Keys sort by kind first, then id, then name or offset, so a directory's entries, a file's
//! chunks and a file's extended attributes are each one contiguous range.
//!
//! A directory's `Fattr::size` is its number of subdirectories (its link count is 2 more); it
//! shows as 0.
//!
//! Layout (the master's memory budget is 200 bytes per file): a [`Key`] is 32 bytes (the kind in
//! the top two bits of the id, names inline up to 23 bytes) and a [`Val`] is 40 (attributes inline,
//! the enum tag hidden in `FileKind`'s spare values). A file is two entries: its `Dentry` and its
//! `Fattr`.

use super::name::Name;
use kfs_common::proto::Timestamp;
use kfs_common::proto::master::FileAttr;
use kfs_common::{ChunkId, ChunkVersion, FileId, FileKind};
use std::cmp::Ordering;

const KIND_SHIFT: u32 = 62;
const ID_MASK: u64 = (1 << KIND_SHIFT) - 1;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u64)]
enum KeyKind {
    Dentry = 0,
    Fattr = 1,
    Chunk = 2,
    Xattr = 3,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Sub {
    None,
    Offset(u64),
    Name(Name),
}

/// A key of the namespace map.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Key {
    /// `KeyKind` in the top two bits, a file id below.
    tagged_id: u64,
    sub: Sub,
}

/// A decoded [`Key`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeyView<'a> {
    Dentry { parent: FileId, name: &'a str },
    Fattr { fid: FileId },
    Chunk { fid: FileId, offset: u64 },
    Xattr { fid: FileId, name: &'a str },
}

const _: () = assert!(std::mem::size_of::<Key>() == 32);
const _: () = assert!(std::mem::size_of::<Val>() == 40);

fn tag(kind: KeyKind, id: FileId) -> u64 {
    debug_assert!(id.0 <= ID_MASK, "file id {id} does not fit the key layout");
    ((kind as u64) << KIND_SHIFT) | (id.0 & ID_MASK)
}

impl Key {
    pub fn dentry(parent: FileId, name: &str) -> Key {
        Key {
            tagged_id: tag(KeyKind::Dentry, parent),
            sub: Sub::Name(Name::new(name)),
        }
    }

    pub fn fattr(fid: FileId) -> Key {
        Key {
            tagged_id: tag(KeyKind::Fattr, fid),
            sub: Sub::None,
        }
    }

    pub fn chunk(fid: FileId, offset: u64) -> Key {
        Key {
            tagged_id: tag(KeyKind::Chunk, fid),
            sub: Sub::Offset(offset),
        }
    }

    /// The key holding a small file's extent.
    pub fn extent(fid: FileId) -> Key {
        Key::chunk(fid, EXTENT_OFFSET)
    }

    pub fn xattr(fid: FileId, name: &str) -> Key {
        Key {
            tagged_id: tag(KeyKind::Xattr, fid),
            sub: Sub::Name(Name::new(name)),
        }
    }

    /// The key holding the link count of `fid` when it has more than one name.
    pub fn links(fid: FileId) -> Key {
        Key::xattr(fid, LINKS)
    }

    /// The key holding symbolic link `fid`'s target.
    pub fn symlink_target(fid: FileId) -> Key {
        Key::xattr(fid, SYMLINK_TARGET)
    }

    /// The first key of the range holding `fid`'s dentries (if a directory), chunks or xattrs:
    /// every key of that kind and id sorts at or after it.
    fn range_start(kind: KeyKind, fid: FileId) -> Key {
        Key {
            tagged_id: tag(kind, fid),
            sub: Sub::None,
        }
    }

    pub fn dir_start(dir: FileId) -> Key {
        Key::range_start(KeyKind::Dentry, dir)
    }

    pub fn chunks_start(fid: FileId) -> Key {
        Key::range_start(KeyKind::Chunk, fid)
    }

    pub fn xattrs_start(fid: FileId) -> Key {
        Key::range_start(KeyKind::Xattr, fid)
    }

    /// Orders this key against the dentry `(parent, name)` without building a key for it (so a
    /// long name costs no allocation on lookup).
    pub fn cmp_dentry(&self, parent: FileId, name: &str) -> Ordering {
        self.tagged_id
            .cmp(&tag(KeyKind::Dentry, parent))
            .then_with(|| match &self.sub {
                Sub::Name(n) => n.as_bytes().cmp(name.as_bytes()),
                _ => Ordering::Less,
            })
    }

    /// Whether this key belongs to the range of `start` (same kind and id).
    pub fn same_range(&self, start: &Key) -> bool {
        self.tagged_id == start.tagged_id
    }

    pub fn view(&self) -> KeyView<'_> {
        let id = FileId(self.tagged_id & ID_MASK);
        let name = || match &self.sub {
            Sub::Name(n) => n.as_str(),
            _ => "",
        };
        match self.tagged_id >> KIND_SHIFT {
            0 => KeyView::Dentry {
                parent: id,
                name: name(),
            },
            1 => KeyView::Fattr { fid: id },
            2 => KeyView::Chunk {
                fid: id,
                offset: match self.sub {
                    Sub::Offset(o) => o,
                    _ => 0,
                },
            },
            _ => KeyView::Xattr {
                fid: id,
                name: name(),
            },
        }
    }
}

/// Attributes of a file or directory, inline in the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fattr {
    pub size: u64,
    pub mtime: Timestamp,
    pub atime: Timestamp,
    pub owner: u32,
    pub group: u32,
    pub mode: u16,
    /// Replication factor of a file; 0 for a directory.
    pub replication: u8,
    pub kind: FileKind,
    /// Whole seconds its change time is after `mtime` (0: the same): kept to the second, in
    /// the four bytes a `Val` has to spare.
    pub ctime_after: u32,
}

impl Fattr {
    /// Its data (or a directory's entries) changed at `time`: modification and change time.
    pub fn modified(&mut self, time: Timestamp) {
        self.mtime = time;
        self.ctime_after = 0;
    }

    /// Its attributes or names changed at `time`: the change time moves there (in whole
    /// seconds after the modification time, rounded down, so it is never later than `time`
    /// and never goes back; not before the modification time).
    pub fn changed(&mut self, time: Timestamp) {
        let after = time.saturating_sub(self.mtime).max(0) as u64;
        self.ctime_after = u32::try_from(after / 1_000_000_000).unwrap_or(u32::MAX);
    }

    /// Its change time.
    pub fn ctime(&self) -> Timestamp {
        self.mtime
            .saturating_add(i64::from(self.ctime_after).saturating_mul(1_000_000_000))
    }

    /// The attributes a client sees, with `nlink` names.
    pub fn to_attr(&self, fid: FileId, nlink: u32) -> FileAttr {
        FileAttr {
            fid,
            kind: self.kind,
            // A directory's `size` counts its subdirectories.
            size: if self.kind == FileKind::Dir {
                0
            } else {
                self.size
            },
            mode: self.mode,
            owner: self.owner,
            group: self.group,
            replication: self.replication,
            mtime: self.mtime,
            atime: self.atime,
            nlink,
            ctime: self.ctime(),
        }
    }
}

/// A value of the namespace map; its variant always matches the key's kind (a `Chunk` key at
/// [`EXTENT_OFFSET`] holds an `Extent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    Child {
        fid: FileId,
        kind: FileKind,
    },
    Attr(Fattr),
    Chunk {
        id: ChunkId,
        version: ChunkVersion,
    },
    Xattr(Box<[u8]>),
    /// A small file's data: the record at `at` in the volume `volume`, `len` bytes.
    Extent(Extent),
}

/// Where a small file's data lies: its record in a volume (`chunkserver/src/store/volume_file.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub volume: ChunkId,
    /// The record's offset in the volume.
    pub at: u64,
    /// Bytes of data.
    pub len: u32,
}

/// The name of the `Xattr` record holding a symbolic link's target: empty, which no extended
/// attribute's name may be, so listings and lookups of attributes pass over it.
pub const SYMLINK_TARGET: &str = "";

/// The name of the `Xattr` record holding a file's link count when it has more than one name
/// (a NUL, which no extended attribute's name may hold, first).
pub const LINKS: &str = "\0links";

/// Whether `name` is one of the names the namespace keeps its own records under (a link's
/// target, a link count), which listings and lookups of attributes pass over.
pub fn is_reserved_xattr(name: &str) -> bool {
    name == SYMLINK_TARGET || name == LINKS
}

/// The offset, among a file's `Chunk` keys, of the key holding its extent (no chunk is there:
/// chunks lie at multiples of the chunk size).
pub const EXTENT_OFFSET: u64 = u64::MAX;

/// The first of the reserved file ids that own volumes: the volumes of files with replication
/// `r` are the `Chunk` keys of file id `VOLUME_SETS + r`, at offsets equal to their chunk ids.
/// No file gets these ids (ids are handed out counting up from 2), no dentry names them, and
/// they have no attributes.
pub const VOLUME_SETS: u64 = ID_MASK - 32;

/// The file id owning the volumes of replication `r`.
pub fn volume_set(replication: u8) -> FileId {
    FileId(VOLUME_SETS + replication as u64)
}

/// The replication of the volumes `fid` owns, if it is a volume set.
pub fn volume_set_replication(fid: FileId) -> Option<u8> {
    (fid.0 > VOLUME_SETS && fid.0 <= VOLUME_SETS + 16).then(|| (fid.0 - VOLUME_SETS) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_kind_then_id_then_name_or_offset() {
        let keys = [
            Key::dentry(FileId(1), "a"),
            Key::dentry(FileId(1), "b"),
            Key::dentry(FileId(2), ""),
            Key::fattr(FileId(1)),
            Key::fattr(FileId(9)),
            Key::chunk(FileId(3), 0),
            Key::chunk(FileId(3), 1 << 40),
            Key::chunk(FileId(4), 0),
            Key::xattr(FileId(3), "user.a"),
        ];
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert!(Key::dir_start(FileId(1)) < Key::dentry(FileId(1), ""));
        assert!(Key::chunks_start(FileId(3)) < Key::chunk(FileId(3), 0));
    }

    #[test]
    fn views_decode_what_was_built() {
        assert_eq!(
            Key::dentry(FileId(5), "x").view(),
            KeyView::Dentry {
                parent: FileId(5),
                name: "x"
            }
        );
        assert_eq!(
            Key::fattr(FileId::MAX).view(),
            KeyView::Fattr { fid: FileId::MAX }
        );
        assert_eq!(
            Key::chunk(FileId(5), 77).view(),
            KeyView::Chunk {
                fid: FileId(5),
                offset: 77
            }
        );
        assert_eq!(
            Key::xattr(FileId(5), "k").view(),
            KeyView::Xattr {
                fid: FileId(5),
                name: "k"
            }
        );
    }

    #[test]
    fn dentry_comparison_without_a_key_agrees_with_keys() {
        let probe = ("photo-of-a-very-long-name.jpg", FileId(7));
        for key in [
            Key::dentry(FileId(7), "a"),
            Key::dentry(FileId(7), probe.0),
            Key::dentry(FileId(7), "zz"),
            Key::dentry(FileId(8), "a"),
            Key::fattr(FileId(1)),
            Key::dir_start(FileId(7)),
        ] {
            assert_eq!(
                key.cmp_dentry(probe.1, probe.0),
                key.cmp(&Key::dentry(probe.1, probe.0))
            );
        }
    }
}
