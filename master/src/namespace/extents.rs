//! Small files packed into volumes: the volumes the namespace holds, files' extents, and what
//! each volume's live records add up to.
//!
//! - A volume is a chunk owned by the volume set of its replication (`record::volume_set`), a
//!   reserved file id with no name and no attributes; its chunk records sit with the files'
//!   chunks, so the chunk map knows volumes as it knows chunks.
//! - A file's extent is its `Chunk` key at `EXTENT_OFFSET`. A file holds an extent or chunks;
//!   both only while a writer moves a packed file to chunks of its own (it grew past the packing
//!   threshold): readers then still read the extent, and the writer's `ExtendLength` (its data
//!   now durable in the chunks) drops the extent.
//! - Dropping a file's extent (a truncate, a remove, a replacement) frees that record only: the
//!   volume's use goes down by one record. A volume that holds no record any more, and takes no
//!   appends, is freed (`FreeVolume`, the master's volume reclaimer); one with dead records among
//!   live ones stays until it is compacted: its live records are copied to another volume and
//!   the files' extents switched to the copies in one logged step (`MoveExtents`), each only if
//!   the file's extent is still the record copied, after which it holds no record and is freed.
//!
//! Invariants (checked by `check_extents`): every extent names a volume the namespace holds;
//! `volume_use` equals a recount of the extents; a packed file without chunks is as long as
//! its extent.

use super::Namespace;
use super::op::{Op, Reply};
use super::plan::Change;
use super::record::{self, Extent, Key, KeyView, Val};
use kfs_common::proto::Timestamp;
use kfs_common::proto::master::REPLICATION_RANGE;
use kfs_common::{ChunkId, ChunkVersion, FileId, KfsError, KfsResult};
use std::ops::Bound;

/// The live records of one volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VolumeUse {
    /// Files whose extent is in it.
    pub records: u64,
    /// Bytes of their data.
    pub bytes: u64,
}

impl Namespace {
    /// The extent of small file `fid`, if it is packed.
    pub fn extent_of(&self, fid: FileId) -> Option<Extent> {
        match self.map.get(&Key::extent(fid)) {
            Some(Val::Extent(e)) => Some(*e),
            _ => None,
        }
    }

    /// The replication factor the chunks of `fid` want: the file's, or a volume set's.
    pub fn replication_of(&self, fid: FileId) -> u8 {
        record::volume_set_replication(fid)
            .or_else(|| self.stat_fid(fid).ok().map(|a| a.replication))
            .unwrap_or(0)
    }

    /// The volume `chunk` (its version and replication), if the namespace holds it.
    pub fn volume(&self, chunk: ChunkId) -> Option<(ChunkVersion, u8)> {
        (1..=16u8).find_map(
            |r| match self.map.get(&Key::chunk(record::volume_set(r), chunk.0)) {
                Some(Val::Chunk { version, .. }) => Some((*version, r)),
                _ => None,
            },
        )
    }

    /// What the live records of volume `chunk` add up to, if the namespace holds it.
    pub fn volume_use(&self, chunk: ChunkId) -> Option<VolumeUse> {
        self.volume_use.get(&chunk).copied()
    }

    /// The volumes, and the files packed into them with their bytes (one pass over the volumes,
    /// not the files).
    pub fn packed_totals(&self) -> (u64, VolumeUse) {
        let mut total = VolumeUse::default();
        let mut volumes = 0;
        for (_, u) in self.volume_use.iter() {
            volumes += 1;
            total.records += u.records;
            total.bytes += u.bytes;
        }
        (volumes, total)
    }

    /// Every volume, as `(chunk, version, replication)`.
    pub fn volumes(&self) -> Vec<(ChunkId, ChunkVersion, u8)> {
        let start = Key::chunks_start(record::volume_set(1));
        self.map
            .range_from(Bound::Included(&start))
            .map_while(|(k, v)| match (k.view(), v) {
                (KeyView::Chunk { fid, .. }, Val::Chunk { id, version }) => {
                    record::volume_set_replication(fid).map(|r| (*id, *version, r))
                }
                _ => None,
            })
            .collect()
    }

    pub(super) fn plan_extent_op<'p>(&self, op: &'p Op) -> KfsResult<Change<'p>> {
        match op {
            Op::CreateVolume {
                chunk,
                version,
                replication,
            } => {
                if !REPLICATION_RANGE.contains(replication) {
                    return Err(KfsError::invalid_argument(format!(
                        "a volume's replication must be in {REPLICATION_RANGE:?}, not {replication}"
                    )));
                }
                if self.volume_use.contains_key(chunk) {
                    return Err(KfsError::already_exists(format!("volume {chunk}")));
                }
                Ok(Change::CreateVolume {
                    chunk: *chunk,
                    version: *version,
                    replication: *replication,
                })
            }
            Op::SetExtent {
                fid,
                volume,
                at,
                len,
                time,
            } => {
                self.existing_file(*fid)?;
                if !self.volume_use.contains_key(volume) {
                    return Err(KfsError::NoSuchChunk { chunk: *volume });
                }
                Ok(Change::SetExtent {
                    fid: *fid,
                    extent: Extent {
                        volume: *volume,
                        at: *at,
                        len: *len,
                    },
                    time: *time,
                })
            }
            Op::FreeVolume { chunk } => {
                let Some((_, replication)) = self.volume(*chunk) else {
                    return Err(KfsError::NoSuchChunk { chunk: *chunk });
                };
                match self.volume_use.get(chunk) {
                    Some(u) if u.records == 0 => Ok(Change::FreeVolume {
                        chunk: *chunk,
                        replication,
                    }),
                    Some(u) => Err(KfsError::invalid_argument(format!(
                        "volume {chunk} still holds {} files' records",
                        u.records
                    ))),
                    None => Err(KfsError::NoSuchChunk { chunk: *chunk }),
                }
            }
            Op::MoveExtents { from, moves } => {
                if !self.volume_use.contains_key(from) {
                    return Err(KfsError::NoSuchChunk { chunk: *from });
                }
                let mut seen = std::collections::HashSet::new();
                let moves: Vec<_> = moves
                    .iter()
                    .filter_map(|m| {
                        let old = Extent {
                            volume: *from,
                            at: m.at,
                            len: m.len,
                        };
                        let new = Extent {
                            volume: m.to,
                            at: m.to_at,
                            len: m.len,
                        };
                        (m.to != *from
                            && self.volume_use.contains_key(&m.to)
                            && self.extent_of(m.fid) == Some(old)
                            && seen.insert(m.fid))
                        .then_some((m.fid, old, new))
                    })
                    .collect();
                if moves.is_empty() {
                    return Ok(Change::Unchanged(Reply::Done));
                }
                Ok(Change::MoveExtents { moves })
            }
            _ => unreachable!("only extent ops are planned here"),
        }
    }

    pub(super) fn commit_create_volume(
        &mut self,
        chunk: ChunkId,
        version: ChunkVersion,
        replication: u8,
    ) -> Reply {
        self.map.insert(
            Key::chunk(record::volume_set(replication), chunk.0),
            Val::Chunk { id: chunk, version },
        );
        self.volume_use.insert(chunk, VolumeUse::default());
        self.next_chunk_id = self.next_chunk_id.max(ChunkId(chunk.0 + 1));
        Reply::Done
    }

    pub(super) fn commit_free_volume(&mut self, chunk: ChunkId, replication: u8) {
        self.map
            .remove(&Key::chunk(record::volume_set(replication), chunk.0));
        self.volume_use.remove(&chunk);
    }

    /// Moves each file's extent from the record it is (`from`, checked by the plan) to its
    /// copy (`to`); sizes and times stay, the volumes' use follows.
    pub(super) fn commit_move_extents(&mut self, moves: Vec<(FileId, Extent, Extent)>) {
        for (fid, from, to) in moves {
            self.map.insert(Key::extent(fid), Val::Extent(to));
            self.extent_dropped(from);
            self.extent_added(to);
        }
    }

    /// The extents of every file packed into one of `volumes`, as `(fid, extent)`.
    pub fn extents_in(
        &self,
        volumes: &std::collections::HashSet<ChunkId>,
    ) -> Vec<(FileId, Extent)> {
        if volumes.is_empty() {
            return Vec::new();
        }
        self.map
            .iter()
            .filter_map(|(k, v)| match (k.view(), v) {
                (KeyView::Chunk { fid, .. }, Val::Extent(e)) if volumes.contains(&e.volume) => {
                    Some((fid, *e))
                }
                _ => None,
            })
            .collect()
    }

    /// Makes `extent` the file's data; returns the chunks it held (freed).
    pub(super) fn commit_set_extent(
        &mut self,
        fid: FileId,
        extent: Extent,
        time: Timestamp,
    ) -> (Reply, Vec<ChunkId>) {
        let freed = self.drop_chunks(fid);
        self.map.insert(Key::extent(fid), Val::Extent(extent));
        self.extent_added(extent);
        let attr = self.fattr_mut(fid);
        let old = std::mem::replace(&mut attr.size, u64::from(extent.len));
        attr.modified(time);
        self.counters.bytes = self.counters.bytes - old + u64::from(extent.len);
        (Reply::Attr(self.stat_fid(fid).expect("exists")), freed)
    }

    /// Drops the extent of a file whose chunks now hold its data: a writer moving it to chunks
    /// (the only one that gets chunks of a packed file: `lease_unpacking`) wrote the whole
    /// extent to them first, then more, and extends the file to `size`, at least the extent.
    pub(super) fn drop_extent_if_chunked(&mut self, fid: FileId, size: u64) {
        let has_chunks = self
            .map
            .range_from(Bound::Included(&Key::chunks_start(fid)))
            .next()
            .is_some_and(|(k, v)| matches!((k.view(), v), (KeyView::Chunk { fid: f, .. }, Val::Chunk { .. }) if f == fid));
        let covered = self
            .extent_of(fid)
            .is_some_and(|e| size >= u64::from(e.len));
        if has_chunks
            && covered
            && let Some(Val::Extent(e)) = self.map.remove(&Key::extent(fid))
        {
            self.extent_dropped(e);
        }
    }

    pub(super) fn extent_added(&mut self, e: Extent) {
        if self.volume_use.get(&e.volume).is_none() {
            self.volume_use.insert(e.volume, VolumeUse::default());
        }
        let u = self.volume_use.get_mut(&e.volume).expect("just made");
        u.records += 1;
        u.bytes += u64::from(e.len);
    }

    pub(super) fn extent_dropped(&mut self, e: Extent) {
        if let Some(u) = self.volume_use.get_mut(&e.volume) {
            u.records -= 1;
            u.bytes -= u64::from(e.len);
        }
    }

    /// `volume_use` recounted from the map.
    pub(super) fn recount_volume_use(&self) -> crate::tree::PMap<ChunkId, VolumeUse> {
        let mut uses: std::collections::BTreeMap<ChunkId, VolumeUse> = self
            .volumes()
            .into_iter()
            .map(|(chunk, _, _)| (chunk, VolumeUse::default()))
            .collect();
        for (_, v) in self.map.iter() {
            if let Val::Extent(e) = v {
                let u = uses.entry(e.volume).or_default();
                u.records += 1;
                u.bytes += u64::from(e.len);
            }
        }
        crate::tree::PMap::from_sorted(uses).expect("a BTreeMap is sorted")
    }

    /// The invariants of the module docs.
    pub(super) fn check_extents(&self) -> Result<(), String> {
        let volumes: std::collections::HashSet<ChunkId> =
            self.volumes().into_iter().map(|(c, _, _)| c).collect();
        for (k, v) in self.map.iter() {
            let (KeyView::Chunk { fid, offset }, Val::Extent(e)) = (k.view(), v) else {
                continue;
            };
            if offset != record::EXTENT_OFFSET {
                return Err(format!("{fid} holds an extent at offset {offset}"));
            }
            if !volumes.contains(&e.volume) {
                return Err(format!("{fid}'s extent names {}, not a volume", e.volume));
            }
            let chunked = self
                .map
                .range_from(Bound::Included(&Key::chunks_start(fid)))
                .next()
                .is_some_and(|(k, v)| matches!((k.view(), v), (KeyView::Chunk { fid: f, .. }, Val::Chunk { .. }) if f == fid));
            let size = self.stat_fid(fid).map(|a| a.size).unwrap_or(0);
            if !chunked && size != u64::from(e.len) {
                return Err(format!(
                    "{fid} is {size} bytes long, its extent {} bytes",
                    e.len
                ));
            }
        }
        let recount: Vec<_> = self
            .recount_volume_use()
            .iter()
            .map(|(c, u)| (*c, *u))
            .collect();
        let kept: Vec<_> = self.volume_use.iter().map(|(c, u)| (*c, *u)).collect();
        if recount != kept {
            return Err(format!("volume use {kept:?} but recount {recount:?}"));
        }
        Ok(())
    }
}
