//! Version 7 of the stored op (log record version 8): every op of version 6, stored as it was,
//! hard links, and attribute changes that move the change time (client protocol 11).
//!
//! Frozen once written: variants keep their order (bincode stores the variant's index), and
//! `Old` holds an [`op_v6::Op`], itself frozen. The conversions name every field of the new
//! variant, so a change to [`crate::namespace::op::Op`] is a compile error here.

use super::{op_v1, op_v6};
use crate::namespace::op::Op as MemOp;
use serde::{Deserialize, Serialize};

/// A namespace mutation, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// An op version 6 knew.
    Old(op_v6::Op),
    Link {
        src: String,
        dst: String,
        time: i64,
    },
    SetAttrAt {
        path: String,
        attr: op_v1::SetAttr,
        time: i64,
    },
}

impl super::Migrate for Op {
    const VERSION: u8 = 7;
    type Previous = op_v6::Op;
    fn migrate(previous: op_v6::Op) -> Op {
        Op::Old(previous)
    }
}

impl From<&MemOp> for Op {
    fn from(op: &MemOp) -> Op {
        match op {
            MemOp::Link { src, dst, time } => Op::Link {
                src: src.clone(),
                dst: dst.clone(),
                time: *time,
            },
            MemOp::SetAttrAt { path, attr, time } => Op::SetAttrAt {
                path: path.clone(),
                attr: attr.into(),
                time: *time,
            },
            old => Op::Old(op_v6::Op::from(old)),
        }
    }
}

impl From<Op> for MemOp {
    fn from(op: Op) -> MemOp {
        match op {
            Op::Old(old) => MemOp::from(old),
            Op::Link { src, dst, time } => MemOp::Link { src, dst, time },
            Op::SetAttrAt { path, attr, time } => MemOp::SetAttrAt {
                path,
                attr: attr.into(),
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
    fn links_round_trip_and_version_6_ops_migrate_as_they_were() {
        let link = MemOp::Link {
            src: "/a".into(),
            dst: "/d/b".into(),
            time: 7,
        };
        let chmod = MemOp::SetAttrAt {
            path: "/a".into(),
            attr: kfs_common::proto::master::SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
            time: 8,
        };
        for op in [link, chmod] {
            let bytes = codec().serialize(&Op::from(&op)).unwrap();
            let back: Op = codec().deserialize(&bytes).unwrap();
            assert_eq!(MemOp::from(back), op);
        }
        let rename = MemOp::Rename {
            src: "/a".into(),
            dst: "/b".into(),
            time: 3,
        };
        let bytes = codec().serialize(&op_v6::Op::from(&rename)).unwrap();
        let migrated: Op = super::super::decode_migrating(6, &bytes).unwrap();
        assert_eq!(MemOp::from(migrated), rename);
    }
}
