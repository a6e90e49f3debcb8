//! Version 2 of the stored op (log record version 3): every op of version 1, stored as it was,
//! and the ops of small files packed into volumes.
//!
//! Frozen once written: variants keep their order (bincode stores the variant's index), and
//! `Old` holds an [`op_v1::Op`], itself frozen. The conversions name every field of the new
//! variants, so a change to [`crate::namespace::op::Op`] is a compile error here.

use super::op_v1;
use crate::namespace::op::Op as MemOp;
use kfs_common::{ChunkId, ChunkVersion, FileId};
use serde::{Deserialize, Serialize};

/// A namespace mutation, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// An op version 1 knew.
    Old(op_v1::Op),
    CreateVolume {
        chunk: u64,
        version: u64,
        replication: u8,
    },
    SetExtent {
        fid: u64,
        volume: u64,
        at: u64,
        len: u32,
        time: i64,
    },
    FreeVolume {
        chunk: u64,
    },
}

impl super::Migrate for Op {
    const VERSION: u8 = 2;
    type Previous = op_v1::Op;
    fn migrate(previous: op_v1::Op) -> Op {
        Op::Old(previous)
    }
}

impl From<&MemOp> for Op {
    fn from(op: &MemOp) -> Op {
        match op {
            MemOp::CreateVolume {
                chunk,
                version,
                replication,
            } => Op::CreateVolume {
                chunk: chunk.0,
                version: version.0,
                replication: *replication,
            },
            MemOp::SetExtent {
                fid,
                volume,
                at,
                len,
                time,
            } => Op::SetExtent {
                fid: fid.0,
                volume: volume.0,
                at: *at,
                len: *len,
                time: *time,
            },
            MemOp::FreeVolume { chunk } => Op::FreeVolume { chunk: chunk.0 },
            MemOp::MoveExtents { .. } | MemOp::Truncate { .. } => {
                unreachable!("ops new since version 3 are stored as later versions' own variants")
            }
            old => Op::Old(op_v1::Op::from(old)),
        }
    }
}

impl From<Op> for MemOp {
    fn from(op: Op) -> MemOp {
        match op {
            Op::Old(old) => MemOp::from(old),
            Op::CreateVolume {
                chunk,
                version,
                replication,
            } => MemOp::CreateVolume {
                chunk: ChunkId(chunk),
                version: ChunkVersion(version),
                replication,
            },
            Op::FreeVolume { chunk } => MemOp::FreeVolume {
                chunk: ChunkId(chunk),
            },
            Op::SetExtent {
                fid,
                volume,
                at,
                len,
                time,
            } => MemOp::SetExtent {
                fid: FileId(fid),
                volume: ChunkId(volume),
                at,
                len,
                time,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::codec;
    use bincode::Options;

    #[test]
    fn old_and_new_ops_round_trip_and_version_1_migrates() {
        let ops = [
            MemOp::ReserveChunkIds { below: ChunkId(9) },
            MemOp::CreateVolume {
                chunk: ChunkId(3),
                version: ChunkVersion(1),
                replication: 3,
            },
            MemOp::SetExtent {
                fid: FileId(7),
                volume: ChunkId(3),
                at: 4096,
                len: 6144,
                time: 11,
            },
            MemOp::FreeVolume { chunk: ChunkId(3) },
        ];
        for op in ops {
            let bytes = codec().serialize(&Op::from(&op)).unwrap();
            let back: Op = codec().deserialize(&bytes).unwrap();
            assert_eq!(MemOp::from(back), op);
        }
        let v1 = op_v1::Op::ReserveChunkIds { below: 5 };
        let bytes = codec().serialize(&v1).unwrap();
        let migrated: Op = super::super::decode_migrating(1, &bytes).unwrap();
        assert_eq!(
            MemOp::from(migrated),
            MemOp::ReserveChunkIds { below: ChunkId(5) }
        );
    }
}
