//! Version 3 of the stored checkpoint: every record of version 2, stored as it was, the
//! entries and attributes of symbolic links and special files (FIFOs, sockets, devices), whose
//! kinds versions 1 and 2 cannot store, and attributes whose change time is after their
//! modification time (`Changed`: the attribute record as it would be stored, and how many
//! seconds after). A link's target and a link count are xattr records (version 1's).
//!
//! Frozen once written: variants keep their order, and `Old` holds a [`v2::Record`], itself
//! frozen. The header is version 1's [`super::checkpoint_v1::CheckpointHeader`], with `format` 3.

use super::checkpoint_v2 as v2;
use crate::namespace::record::{Fattr, Key, KeyView, Val};
use kfs_common::{FileId, FileKind};
use serde::{Deserialize, Serialize};

/// The checkpoint format this module stores (the header's `format`).
pub const FORMAT: u32 = 3;

/// The kind of a symbolic link or special file, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpecialKind {
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// One entry of the namespace map, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A record version 2 knew.
    Old(v2::Record),
    /// The entry naming a symbolic link or special file.
    SpecialDentry {
        parent: u64,
        name: String,
        child: u64,
        kind: SpecialKind,
    },
    /// A symbolic link's or special file's attributes (`size`: a link's target length, a
    /// device's number).
    SpecialFattr {
        fid: u64,
        kind: SpecialKind,
        size: u64,
        mtime: i64,
        atime: i64,
        owner: u32,
        group: u32,
        mode: u16,
    },
    /// Attributes (an `Old` or `SpecialFattr` record) whose change time is `ctime_after`
    /// seconds after their modification time.
    Changed { attr: Box<Record>, ctime_after: u32 },
}

impl super::Migrate for Record {
    const VERSION: u8 = 3;
    type Previous = v2::Record;
    fn migrate(previous: v2::Record) -> Record {
        Record::Old(previous)
    }
}

fn special_kind(kind: FileKind) -> Option<SpecialKind> {
    match kind {
        FileKind::File | FileKind::Dir => None,
        FileKind::Symlink => Some(SpecialKind::Symlink),
        FileKind::Fifo => Some(SpecialKind::Fifo),
        FileKind::Socket => Some(SpecialKind::Socket),
        FileKind::CharDevice => Some(SpecialKind::CharDevice),
        FileKind::BlockDevice => Some(SpecialKind::BlockDevice),
    }
}

impl From<SpecialKind> for FileKind {
    fn from(kind: SpecialKind) -> FileKind {
        match kind {
            SpecialKind::Symlink => FileKind::Symlink,
            SpecialKind::Fifo => FileKind::Fifo,
            SpecialKind::Socket => FileKind::Socket,
            SpecialKind::CharDevice => FileKind::CharDevice,
            SpecialKind::BlockDevice => FileKind::BlockDevice,
        }
    }
}

/// The stored record of one entry of the namespace map.
pub fn to_record(key: &Key, val: &Val) -> Record {
    let record = to_plain_record(key, val);
    match val {
        Val::Attr(a) if a.ctime_after != 0 => Record::Changed {
            attr: Box::new(record),
            ctime_after: a.ctime_after,
        },
        _ => record,
    }
}

/// [`to_record`] without the change time.
fn to_plain_record(key: &Key, val: &Val) -> Record {
    match (key.view(), val) {
        (KeyView::Dentry { parent, name }, Val::Child { fid, kind }) => {
            if let Some(kind) = special_kind(*kind) {
                return Record::SpecialDentry {
                    parent: parent.0,
                    name: name.to_string(),
                    child: fid.0,
                    kind,
                };
            }
        }
        (KeyView::Fattr { fid }, Val::Attr(a)) => {
            let Fattr {
                size,
                mtime,
                atime,
                owner,
                group,
                mode,
                replication: _,
                kind,
                ctime_after: _,
            } = *a;
            if let Some(kind) = special_kind(kind) {
                return Record::SpecialFattr {
                    fid: fid.0,
                    kind,
                    size,
                    mtime,
                    atime,
                    owner,
                    group,
                    mode,
                };
            }
        }
        _ => {}
    }
    Record::Old(v2::to_record(key, val))
}

/// The entry of the namespace map a stored record holds.
pub fn from_record(record: Record) -> (Key, Val) {
    match record {
        Record::Old(old) => v2::from_record(old),
        Record::Changed { attr, ctime_after } => {
            let (key, mut val) = from_record(*attr);
            if let Val::Attr(a) = &mut val {
                a.ctime_after = ctime_after;
            }
            (key, val)
        }
        Record::SpecialDentry {
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
        Record::SpecialFattr {
            fid,
            kind,
            size,
            mtime,
            atime,
            owner,
            group,
            mode,
        } => (
            Key::fattr(FileId(fid)),
            Val::Attr(Fattr {
                size,
                mtime,
                atime,
                owner,
                group,
                mode,
                replication: 0,
                kind: kind.into(),
                ctime_after: 0,
            }),
        ),
    }
}
