//! Version 6 of the stored op (log record version 7): every op of version 5, stored as it was,
//! and symbolic links and special files (FIFOs, sockets, devices), client protocol 10.
//!
//! Frozen once written: variants keep their order (bincode stores the variant's index), and
//! `Old` holds an [`op_v5::Op`], itself frozen. The conversions name every field of the new
//! variants, so a change to [`crate::namespace::op::Op`] is a compile error here.

use super::op_v5;
use crate::namespace::op::{Op as MemOp, Special as MemSpecial};
use kfs_common::FileId;
use serde::{Deserialize, Serialize};

/// A namespace mutation, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// An op version 5 knew.
    Old(op_v5::Op),
    MakeSpecial {
        path: String,
        special: Special,
        mode: u16,
        owner: u32,
        group: u32,
        fid: u64,
        time: i64,
    },
}

/// What a `MakeSpecial` makes, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Special {
    Symlink { target: String },
    Fifo,
    Socket,
    CharDevice { rdev: u64 },
    BlockDevice { rdev: u64 },
}

impl super::Migrate for Op {
    const VERSION: u8 = 6;
    type Previous = op_v5::Op;
    fn migrate(previous: op_v5::Op) -> Op {
        Op::Old(previous)
    }
}

impl From<&MemSpecial> for Special {
    fn from(special: &MemSpecial) -> Special {
        match special.clone() {
            MemSpecial::Symlink { target } => Special::Symlink { target },
            MemSpecial::Fifo => Special::Fifo,
            MemSpecial::Socket => Special::Socket,
            MemSpecial::CharDevice { rdev } => Special::CharDevice { rdev },
            MemSpecial::BlockDevice { rdev } => Special::BlockDevice { rdev },
        }
    }
}

impl From<Special> for MemSpecial {
    fn from(special: Special) -> MemSpecial {
        match special {
            Special::Symlink { target } => MemSpecial::Symlink { target },
            Special::Fifo => MemSpecial::Fifo,
            Special::Socket => MemSpecial::Socket,
            Special::CharDevice { rdev } => MemSpecial::CharDevice { rdev },
            Special::BlockDevice { rdev } => MemSpecial::BlockDevice { rdev },
        }
    }
}

impl From<&MemOp> for Op {
    fn from(op: &MemOp) -> Op {
        match op {
            MemOp::MakeSpecial {
                path,
                special,
                mode,
                owner,
                group,
                fid,
                time,
            } => Op::MakeSpecial {
                path: path.clone(),
                special: special.into(),
                mode: *mode,
                owner: *owner,
                group: *group,
                fid: fid.0,
                time: *time,
            },
            old => Op::Old(op_v5::Op::from(old)),
        }
    }
}

impl From<Op> for MemOp {
    fn from(op: Op) -> MemOp {
        match op {
            Op::Old(old) => MemOp::from(old),
            Op::MakeSpecial {
                path,
                special,
                mode,
                owner,
                group,
                fid,
                time,
            } => MemOp::MakeSpecial {
                path,
                special: special.into(),
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
    fn special_files_round_trip_and_version_5_ops_migrate_as_they_were() {
        for special in [
            MemSpecial::Symlink {
                target: "../a/b".into(),
            },
            MemSpecial::Fifo,
            MemSpecial::Socket,
            MemSpecial::CharDevice { rdev: 0x0102 },
            MemSpecial::BlockDevice { rdev: 7 },
        ] {
            let op = MemOp::MakeSpecial {
                path: "/l".into(),
                special,
                mode: 0o777,
                owner: 5,
                group: 6,
                fid: FileId(9),
                time: 11,
            };
            let bytes = codec().serialize(&Op::from(&op)).unwrap();
            let back: Op = codec().deserialize(&bytes).unwrap();
            assert_eq!(MemOp::from(back), op);
        }
        let rename = MemOp::Rename {
            src: "/a".into(),
            dst: "/b".into(),
            time: 3,
        };
        let bytes = codec().serialize(&op_v5::Op::from(&rename)).unwrap();
        let migrated: Op = super::super::decode_migrating(5, &bytes).unwrap();
        assert_eq!(MemOp::from(migrated), rename);
    }
}
