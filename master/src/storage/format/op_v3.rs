//! Version 3 of the stored op (log record version 4): every op of version 2, stored as it was,
//! and compaction's extent moves.
//!
//! Frozen once written: variants keep their order (bincode stores the variant's index), and
//! `Old` holds an [`op_v2::Op`], itself frozen. The conversions name every field of the new
//! variants, so a change to [`crate::namespace::op::Op`] is a compile error here.

use super::op_v2;
use crate::namespace::op::{ExtentMove, Op as MemOp};
use kfs_common::{ChunkId, FileId};
use serde::{Deserialize, Serialize};

/// A namespace mutation, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// An op version 2 knew.
    Old(op_v2::Op),
    MoveExtents {
        from: u64,
        moves: Vec<Move>,
    },
}

/// One extent move, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub fid: u64,
    pub at: u64,
    pub to: u64,
    pub to_at: u64,
    pub len: u32,
}

impl super::Migrate for Op {
    const VERSION: u8 = 3;
    type Previous = op_v2::Op;
    fn migrate(previous: op_v2::Op) -> Op {
        Op::Old(previous)
    }
}

impl From<&MemOp> for Op {
    fn from(op: &MemOp) -> Op {
        match op {
            MemOp::MoveExtents { from, moves } => Op::MoveExtents {
                from: from.0,
                moves: moves
                    .iter()
                    .map(|m| {
                        let ExtentMove {
                            fid,
                            at,
                            to,
                            to_at,
                            len,
                        } = *m;
                        Move {
                            fid: fid.0,
                            at,
                            to: to.0,
                            to_at,
                            len,
                        }
                    })
                    .collect(),
            },
            MemOp::Truncate { .. } => {
                unreachable!("ops new in version 4 are stored as op_v4's own variants")
            }
            old => Op::Old(op_v2::Op::from(old)),
        }
    }
}

impl From<Op> for MemOp {
    fn from(op: Op) -> MemOp {
        match op {
            Op::Old(old) => MemOp::from(old),
            Op::MoveExtents { from, moves } => MemOp::MoveExtents {
                from: ChunkId(from),
                moves: moves
                    .into_iter()
                    .map(|m| {
                        let Move {
                            fid,
                            at,
                            to,
                            to_at,
                            len,
                        } = m;
                        ExtentMove {
                            fid: FileId(fid),
                            at,
                            to: ChunkId(to),
                            to_at,
                            len,
                        }
                    })
                    .collect(),
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
    fn moves_round_trip_and_version_2_ops_migrate() {
        let op = MemOp::MoveExtents {
            from: ChunkId(3),
            moves: vec![ExtentMove {
                fid: FileId(7),
                at: 4096,
                to: ChunkId(9),
                to_at: 64,
                len: 6144,
            }],
        };
        let bytes = codec().serialize(&Op::from(&op)).unwrap();
        let back: Op = codec().deserialize(&bytes).unwrap();
        assert_eq!(MemOp::from(back), op);
        let v2 = op_v2::Op::from(&MemOp::FreeVolume { chunk: ChunkId(3) });
        let bytes = codec().serialize(&v2).unwrap();
        let migrated: Op = super::super::decode_migrating(2, &bytes).unwrap();
        assert_eq!(
            MemOp::from(migrated),
            MemOp::FreeVolume { chunk: ChunkId(3) }
        );
    }
}
