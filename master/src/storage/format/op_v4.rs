//! Version 4 of the stored op (log record version 5): every op of version 3, stored as it was,
//! and truncates (`Op::Truncate`: a new length that frees the chunks past it, unlike the old
//! `SetLength`, which an older master would replay without freeing them).
//!
//! Frozen once written: variants keep their order (bincode stores the variant's index), and
//! `Old` holds an [`op_v3::Op`], itself frozen. The conversions name every field of the new
//! variants, so a change to [`crate::namespace::op::Op`] is a compile error here.

use super::op_v3;
use crate::namespace::op::Op as MemOp;
use kfs_common::FileId;
use serde::{Deserialize, Serialize};

/// A namespace mutation, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// An op version 3 knew.
    Old(op_v3::Op),
    Truncate {
        fid: u64,
        size: u64,
        time: i64,
    },
}

impl super::Migrate for Op {
    const VERSION: u8 = 4;
    type Previous = op_v3::Op;
    fn migrate(previous: op_v3::Op) -> Op {
        Op::Old(previous)
    }
}

impl From<&MemOp> for Op {
    fn from(op: &MemOp) -> Op {
        match op {
            MemOp::Truncate { fid, size, time } => Op::Truncate {
                fid: fid.0,
                size: *size,
                time: *time,
            },
            old => Op::Old(op_v3::Op::from(old)),
        }
    }
}

impl From<Op> for MemOp {
    fn from(op: Op) -> MemOp {
        match op {
            Op::Old(old) => MemOp::from(old),
            Op::Truncate { fid, size, time } => MemOp::Truncate {
                fid: FileId(fid),
                size,
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
    fn truncates_round_trip_and_version_3_ops_migrate() {
        let op = MemOp::Truncate {
            fid: FileId(7),
            size: 123_456,
            time: 99,
        };
        let bytes = codec().serialize(&Op::from(&op)).unwrap();
        let back: Op = codec().deserialize(&bytes).unwrap();
        assert_eq!(MemOp::from(back), op);
        let old = MemOp::SetLength {
            fid: FileId(7),
            size: 5,
            time: 1,
        };
        let v3 = op_v3::Op::from(&old);
        let bytes = codec().serialize(&v3).unwrap();
        let migrated: Op = super::super::decode_migrating(3, &bytes).unwrap();
        assert_eq!(MemOp::from(migrated), old);
    }
}
