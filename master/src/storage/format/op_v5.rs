//! Version 5 of the stored op (log record version 6): every op of version 4, stored as it was,
//! and creates and mkdirs that name their owner (the calling user's uid and gid, issue 19). An
//! op of an older version made its files owned by user and group 0, as they always were.
//!
//! Frozen once written: variants keep their order (bincode stores the variant's index), and
//! `Old` holds an [`op_v4::Op`], itself frozen. The conversions name every field of the new
//! variants, so a change to [`crate::namespace::op::Op`] is a compile error here.

use super::op_v4;
use crate::namespace::op::Op as MemOp;
use kfs_common::FileId;
use serde::{Deserialize, Serialize};

/// A namespace mutation, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// An op version 4 knew.
    Old(op_v4::Op),
    Mkdir {
        path: String,
        parents: bool,
        mode: u16,
        owner: u32,
        group: u32,
        first_fid: u64,
        time: i64,
    },
    Create {
        path: String,
        exclusive: bool,
        replication: u8,
        replication_given: bool,
        mode: u16,
        owner: u32,
        group: u32,
        fid: u64,
        time: i64,
    },
}

impl super::Migrate for Op {
    const VERSION: u8 = 5;
    type Previous = op_v4::Op;
    fn migrate(previous: op_v4::Op) -> Op {
        Op::Old(previous)
    }
}

impl From<&MemOp> for Op {
    fn from(op: &MemOp) -> Op {
        match op.clone() {
            MemOp::Mkdir {
                path,
                parents,
                mode,
                owner,
                group,
                first_fid,
                time,
            } => Op::Mkdir {
                path,
                parents,
                mode,
                owner,
                group,
                first_fid: first_fid.0,
                time,
            },
            MemOp::Create {
                path,
                exclusive,
                replication,
                replication_given,
                mode,
                owner,
                group,
                fid,
                time,
            } => Op::Create {
                path,
                exclusive,
                replication,
                replication_given,
                mode,
                owner,
                group,
                fid: fid.0,
                time,
            },
            old => Op::Old(op_v4::Op::from(&old)),
        }
    }
}

impl From<Op> for MemOp {
    fn from(op: Op) -> MemOp {
        match op {
            Op::Old(old) => MemOp::from(old),
            Op::Mkdir {
                path,
                parents,
                mode,
                owner,
                group,
                first_fid,
                time,
            } => MemOp::Mkdir {
                path,
                parents,
                mode,
                owner,
                group,
                first_fid: FileId(first_fid),
                time,
            },
            Op::Create {
                path,
                exclusive,
                replication,
                replication_given,
                mode,
                owner,
                group,
                fid,
                time,
            } => MemOp::Create {
                path,
                exclusive,
                replication,
                replication_given,
                mode,
                owner,
                group,
                fid: FileId(fid),
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
    fn owned_creates_round_trip_and_version_4_creates_migrate_owned_by_root() {
        let op = MemOp::Create {
            path: "/a".into(),
            exclusive: true,
            replication: 3,
            replication_given: false,
            mode: 0o600,
            owner: 1001,
            group: 1002,
            fid: FileId(7),
            time: 99,
        };
        let bytes = codec().serialize(&Op::from(&op)).unwrap();
        let back: Op = codec().deserialize(&bytes).unwrap();
        assert_eq!(MemOp::from(back), op);
        let v4 = op_v4::Op::from(&op);
        let bytes = codec().serialize(&v4).unwrap();
        let migrated: Op = super::super::decode_migrating(4, &bytes).unwrap();
        let MemOp::Create {
            owner, group, mode, ..
        } = MemOp::from(migrated)
        else {
            panic!("a create migrates to a create");
        };
        assert_eq!((owner, group, mode), (0, 0, 0o600));
    }
}
