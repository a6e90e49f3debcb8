//! Version 1 of the stored checkpoint: its header and the records of the namespace map.
//!
//! Frozen: this encoding is on disk. Ids are plain `u64`s, times `i64` nanoseconds since the
//! epoch, and a file's kind is this module's own [`Kind`]. The conversions to and from the
//! namespace map's keys and values name every field, so a change there is a compile error here.

use crate::namespace::record::{Fattr, Key, KeyView, Val};
use kfs_common::{ChunkId, ChunkVersion, FileId, FileKind};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The checkpoint format this module stores (the header's `format`).
pub const FORMAT: u32 = 1;

/// First frame of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    pub format: u32,
    /// The checkpoint holds every op up to and including this sequence number.
    pub seq: u64,
    pub next_fid: u64,
    pub next_chunk_id: u64,
    pub records: u64,
    pub written_at: i64,
}

/// A file's kind, as stored (the variant's index: 0 a file, 1 a directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
}

/// One entry of the namespace map, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    Dentry {
        parent: u64,
        name: String,
        child: u64,
        kind: Kind,
    },
    Fattr {
        fid: u64,
        kind: Kind,
        size: u64,
        mtime: i64,
        atime: i64,
        owner: u32,
        group: u32,
        mode: u16,
        replication: u8,
    },
    Chunk {
        fid: u64,
        offset: u64,
        id: u64,
        version: u64,
    },
    Xattr {
        fid: u64,
        name: String,
        value: ByteBuf,
    },
}

impl super::Migrate for Record {
    const VERSION: u8 = 1;
    type Previous = Record;
    fn migrate(previous: Record) -> Record {
        previous
    }
}

impl From<FileKind> for Kind {
    fn from(kind: FileKind) -> Kind {
        match kind {
            FileKind::File => Kind::File,
            FileKind::Dir => Kind::Dir,
            special => unreachable!("a {special} is stored as checkpoint_v3's own record"),
        }
    }
}

impl From<Kind> for FileKind {
    fn from(kind: Kind) -> FileKind {
        match kind {
            Kind::File => FileKind::File,
            Kind::Dir => FileKind::Dir,
        }
    }
}

/// The stored record of one entry of the namespace map.
pub fn to_record(key: &Key, val: &Val) -> Record {
    match (key.view(), val) {
        (KeyView::Dentry { parent, name }, Val::Child { fid, kind }) => Record::Dentry {
            parent: parent.0,
            name: name.to_string(),
            child: fid.0,
            kind: (*kind).into(),
        },
        (KeyView::Fattr { fid }, Val::Attr(a)) => {
            let Fattr {
                size,
                mtime,
                atime,
                owner,
                group,
                mode,
                replication,
                kind,
                ctime_after: _,
            } = *a;
            Record::Fattr {
                fid: fid.0,
                kind: kind.into(),
                size,
                mtime,
                atime,
                owner,
                group,
                mode,
                replication,
            }
        }
        (KeyView::Chunk { fid, offset }, Val::Chunk { id, version }) => Record::Chunk {
            fid: fid.0,
            offset,
            id: id.0,
            version: version.0,
        },
        (KeyView::Xattr { fid, name }, Val::Xattr(value)) => Record::Xattr {
            fid: fid.0,
            name: name.to_string(),
            value: ByteBuf::from(value.to_vec()),
        },
        (view, val) => unreachable!("namespace invariant: {view:?} holds {val:?}"),
    }
}

/// The entry of the namespace map a stored record holds.
pub fn from_record(record: Record) -> (Key, Val) {
    match record {
        Record::Dentry {
            parent,
            name,
            child,
            kind,
        } => (
            Key::dentry(FileId(parent), &name),
            Val::Child {
                fid: FileId(child),
                kind: kind.into(),
            },
        ),
        Record::Fattr {
            fid,
            kind,
            size,
            mtime,
            atime,
            owner,
            group,
            mode,
            replication,
        } => (
            Key::fattr(FileId(fid)),
            Val::Attr(Fattr {
                size,
                mtime,
                atime,
                owner,
                group,
                mode,
                replication,
                kind: kind.into(),
                ctime_after: 0,
            }),
        ),
        Record::Chunk {
            fid,
            offset,
            id,
            version,
        } => (
            Key::chunk(FileId(fid), offset),
            Val::Chunk {
                id: ChunkId(id),
                version: ChunkVersion(version),
            },
        ),
        Record::Xattr { fid, name, value } => (
            Key::xattr(FileId(fid), &name),
            Val::Xattr(value.into_vec().into_boxed_slice()),
        ),
    }
}
