//! Version 1 of the stored op: the op of log records of versions 1 and 2 (segment formats 1-3),
//! and of version 3 inside `op_v2::Op::Old`.
//!
//! Frozen: this encoding is on disk. Ids are plain `u64`s, times `i64` nanoseconds since the
//! epoch, and attribute changes are this module's own [`SetAttr`]. Variants keep their order
//! (bincode stores the variant's index). The conversions to and from
//! [`crate::namespace::op::Op`] name every field, so a change there is a compile error here.

use crate::namespace::op::Op as MemOp;
use kfs_common::proto::master::SetAttr as MemSetAttr;
use kfs_common::{ChunkId, ChunkVersion, FileId};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// A namespace mutation, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Mkdir {
        path: String,
        parents: bool,
        mode: u16,
        first_fid: u64,
        time: i64,
    },
    Create {
        path: String,
        exclusive: bool,
        replication: u8,
        replication_given: bool,
        mode: u16,
        fid: u64,
        time: i64,
    },
    Rename {
        src: String,
        dst: String,
        time: i64,
    },
    Remove {
        path: String,
        time: i64,
    },
    Rmdir {
        path: String,
        time: i64,
    },
    RemoveRecursive {
        path: String,
        time: i64,
    },
    SetReplication {
        path: String,
        replication: u8,
    },
    SetAttr {
        path: String,
        attr: SetAttr,
    },
    SetXattr {
        path: String,
        name: String,
        value: ByteBuf,
    },
    RemoveXattr {
        path: String,
        name: String,
    },
    AllocateChunk {
        fid: u64,
        offset: u64,
        chunk: u64,
        version: u64,
    },
    SetLength {
        fid: u64,
        size: u64,
        time: i64,
    },
    BumpVersion {
        fid: u64,
        offset: u64,
        chunk: u64,
        version: u64,
    },
    ExtendLength {
        fid: u64,
        size: u64,
        time: i64,
    },
    ReserveChunkIds {
        below: u64,
    },
}

/// Attribute changes, as stored; `None` leaves a field as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttr {
    pub mode: Option<u16>,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub mtime: Option<i64>,
    pub atime: Option<i64>,
}

impl super::Migrate for Op {
    const VERSION: u8 = 1;
    type Previous = Op;
    fn migrate(previous: Op) -> Op {
        previous
    }
}

impl From<&MemSetAttr> for SetAttr {
    fn from(a: &MemSetAttr) -> SetAttr {
        let MemSetAttr {
            mode,
            owner,
            group,
            mtime,
            atime,
        } = *a;
        SetAttr {
            mode,
            owner,
            group,
            mtime,
            atime,
        }
    }
}

impl From<SetAttr> for MemSetAttr {
    fn from(a: SetAttr) -> MemSetAttr {
        let SetAttr {
            mode,
            owner,
            group,
            mtime,
            atime,
        } = a;
        MemSetAttr {
            mode,
            owner,
            group,
            mtime,
            atime,
        }
    }
}

impl From<&MemOp> for Op {
    fn from(op: &MemOp) -> Op {
        match op.clone() {
            // Owners are stored from version 5 on (`op_v5` takes these ops before they get here).
            MemOp::Mkdir {
                path,
                parents,
                mode,
                owner: _,
                group: _,
                first_fid,
                time,
            } => Op::Mkdir {
                path,
                parents,
                mode,
                first_fid: first_fid.0,
                time,
            },
            MemOp::Create {
                path,
                exclusive,
                replication,
                replication_given,
                mode,
                owner: _,
                group: _,
                fid,
                time,
            } => Op::Create {
                path,
                exclusive,
                replication,
                replication_given,
                mode,
                fid: fid.0,
                time,
            },
            MemOp::Rename { src, dst, time } => Op::Rename { src, dst, time },
            MemOp::Remove { path, time } => Op::Remove { path, time },
            MemOp::Rmdir { path, time } => Op::Rmdir { path, time },
            MemOp::RemoveRecursive { path, time } => Op::RemoveRecursive { path, time },
            MemOp::SetReplication { path, replication } => Op::SetReplication { path, replication },
            MemOp::SetAttr { path, attr } => Op::SetAttr {
                path,
                attr: SetAttr::from(&attr),
            },
            MemOp::SetXattr { path, name, value } => Op::SetXattr { path, name, value },
            MemOp::RemoveXattr { path, name } => Op::RemoveXattr { path, name },
            MemOp::AllocateChunk {
                fid,
                offset,
                chunk,
                version,
            } => Op::AllocateChunk {
                fid: fid.0,
                offset,
                chunk: chunk.0,
                version: version.0,
            },
            MemOp::SetLength { fid, size, time } => Op::SetLength {
                fid: fid.0,
                size,
                time,
            },
            MemOp::BumpVersion {
                fid,
                offset,
                chunk,
                version,
            } => Op::BumpVersion {
                fid: fid.0,
                offset,
                chunk: chunk.0,
                version: version.0,
            },
            MemOp::ExtendLength { fid, size, time } => Op::ExtendLength {
                fid: fid.0,
                size,
                time,
            },
            MemOp::ReserveChunkIds { below } => Op::ReserveChunkIds { below: below.0 },
            MemOp::CreateVolume { .. }
            | MemOp::SetExtent { .. }
            | MemOp::FreeVolume { .. }
            | MemOp::MoveExtents { .. }
            | MemOp::Truncate { .. }
            | MemOp::MakeSpecial { .. }
            | MemOp::Link { .. }
            | MemOp::SetAttrAt { .. } => {
                unreachable!("ops new since version 2 are stored as later versions' own variants")
            }
        }
    }
}

impl From<Op> for MemOp {
    fn from(op: Op) -> MemOp {
        match op {
            Op::Mkdir {
                path,
                parents,
                mode,
                first_fid,
                time,
            } => MemOp::Mkdir {
                path,
                parents,
                mode,
                owner: 0,
                group: 0,
                first_fid: FileId(first_fid),
                time,
            },
            Op::Create {
                path,
                exclusive,
                replication,
                replication_given,
                mode,
                fid,
                time,
            } => MemOp::Create {
                path,
                exclusive,
                replication,
                replication_given,
                mode,
                owner: 0,
                group: 0,
                fid: FileId(fid),
                time,
            },
            Op::Rename { src, dst, time } => MemOp::Rename { src, dst, time },
            Op::Remove { path, time } => MemOp::Remove { path, time },
            Op::Rmdir { path, time } => MemOp::Rmdir { path, time },
            Op::RemoveRecursive { path, time } => MemOp::RemoveRecursive { path, time },
            Op::SetReplication { path, replication } => MemOp::SetReplication { path, replication },
            Op::SetAttr { path, attr } => MemOp::SetAttr {
                path,
                attr: attr.into(),
            },
            Op::SetXattr { path, name, value } => MemOp::SetXattr { path, name, value },
            Op::RemoveXattr { path, name } => MemOp::RemoveXattr { path, name },
            Op::AllocateChunk {
                fid,
                offset,
                chunk,
                version,
            } => MemOp::AllocateChunk {
                fid: FileId(fid),
                offset,
                chunk: ChunkId(chunk),
                version: ChunkVersion(version),
            },
            Op::SetLength { fid, size, time } => MemOp::SetLength {
                fid: FileId(fid),
                size,
                time,
            },
            Op::BumpVersion {
                fid,
                offset,
                chunk,
                version,
            } => MemOp::BumpVersion {
                fid: FileId(fid),
                offset,
                chunk: ChunkId(chunk),
                version: ChunkVersion(version),
            },
            Op::ExtendLength { fid, size, time } => MemOp::ExtendLength {
                fid: FileId(fid),
                size,
                time,
            },
            Op::ReserveChunkIds { below } => MemOp::ReserveChunkIds {
                below: ChunkId(below),
            },
        }
    }
}
