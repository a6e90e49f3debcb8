//! Version 2 of the stored checkpoint: every record of version 1, stored as it was, and small
//! files' extents.
//!
//! Frozen once written: variants keep their order, and `Old` holds a [`v1::Record`], itself
//! frozen. The header is version 1's [`v1::CheckpointHeader`], with `format` 2.

use super::checkpoint_v1 as v1;
use crate::namespace::record::{EXTENT_OFFSET, Extent, Key, KeyView, Val};
use kfs_common::{ChunkId, FileId};
use serde::{Deserialize, Serialize};

/// The checkpoint format this module stores (the header's `format`).
pub const FORMAT: u32 = 2;

/// One entry of the namespace map, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A record version 1 knew.
    Old(v1::Record),
    /// A small file's extent: its record at `at` in volume `volume`, `len` bytes.
    Extent {
        fid: u64,
        volume: u64,
        at: u64,
        len: u32,
    },
}

impl super::Migrate for Record {
    const VERSION: u8 = 2;
    type Previous = v1::Record;
    fn migrate(previous: v1::Record) -> Record {
        Record::Old(previous)
    }
}

/// The stored record of one entry of the namespace map.
pub fn to_record(key: &Key, val: &Val) -> Record {
    match (key.view(), val) {
        (
            KeyView::Chunk {
                fid,
                offset: EXTENT_OFFSET,
            },
            Val::Extent(Extent { volume, at, len }),
        ) => Record::Extent {
            fid: fid.0,
            volume: volume.0,
            at: *at,
            len: *len,
        },
        _ => Record::Old(v1::to_record(key, val)),
    }
}

/// The entry of the namespace map a stored record holds.
pub fn from_record(record: Record) -> (Key, Val) {
    match record {
        Record::Old(old) => v1::from_record(old),
        Record::Extent {
            fid,
            volume,
            at,
            len,
        } => (
            Key::extent(FileId(fid)),
            Val::Extent(Extent {
                volume: ChunkId(volume),
                at,
                len,
            }),
        ),
    }
}
