//! Unit tests of packed small files in the namespace: volumes, extents, what freeing an extent
//! frees, moving a packed file to chunks, and extents through a checkpoint's records.

use super::extents::VolumeUse;
use super::op::{Applied, Op, Reply};
use super::record::{Extent, volume_set};
use super::*;
use kfs_common::{ChunkVersion, KfsError, KfsResult};

fn apply(ns: &mut Namespace, op: Op) -> KfsResult<Applied> {
    let result = ns.apply(&op);
    ns.check_invariants().unwrap();
    result
}

fn create(ns: &mut Namespace, path: &str, fid: u64) -> FileId {
    apply(
        ns,
        Op::Create {
            path: path.into(),
            exclusive: false,
            replication: 3,
            replication_given: false,
            mode: DEFAULT_FILE_MODE,
            owner: 0,
            group: 0,
            fid: FileId(fid),
            time: 2,
        },
    )
    .unwrap();
    ns.stat(path).unwrap().fid
}

fn volume(ns: &mut Namespace, chunk: u64) -> ChunkId {
    apply(
        ns,
        Op::CreateVolume {
            chunk: ChunkId(chunk),
            version: ChunkVersion(1),
            replication: 3,
        },
    )
    .unwrap();
    ChunkId(chunk)
}

fn pack(ns: &mut Namespace, fid: FileId, volume: ChunkId, at: u64, len: u32) -> KfsResult<Applied> {
    apply(
        ns,
        Op::SetExtent {
            fid,
            volume,
            at,
            len,
            time: 9,
        },
    )
}

#[test]
fn a_packed_file_has_its_extent_its_size_and_counts_in_its_volume() {
    let mut ns = Namespace::new(1);
    let v = volume(&mut ns, 10);
    assert_eq!(ns.volume(v), Some((ChunkVersion(1), 3)));
    assert_eq!(ns.next_chunk_id(), ChunkId(11));
    let a = create(&mut ns, "/a.jpg", 2);
    let b = create(&mut ns, "/b.jpg", 3);
    let applied = pack(&mut ns, a, v, 0, 6144).unwrap();
    assert!(matches!(applied.reply, Reply::Attr(ref attr) if attr.size == 6144 && attr.mtime == 9));
    pack(&mut ns, b, v, 6168, 100).unwrap();
    assert_eq!(
        ns.extent_of(a),
        Some(Extent {
            volume: v,
            at: 0,
            len: 6144
        })
    );
    assert_eq!(ns.stat("/b.jpg").unwrap().size, 100);
    assert_eq!(
        ns.volume_use(v),
        Some(VolumeUse {
            records: 2,
            bytes: 6244
        })
    );
    // A volume is a chunk of its volume set, not a file's chunk.
    assert_eq!(ns.counters().chunks, 0);
    assert_eq!(ns.counters().bytes, 6244);
    let all: Vec<_> = ns.all_chunks().collect();
    assert_eq!(all, vec![(volume_set(3), v.0, v, ChunkVersion(1))]);
    assert_eq!(ns.replication_of(volume_set(3)), 3);
    assert!(ns.chunks(a).is_empty());

    // Removing one file frees its record only.
    apply(
        &mut ns,
        Op::Remove {
            path: "/a.jpg".into(),
            time: 10,
        },
    )
    .unwrap();
    assert_eq!(
        ns.volume_use(v),
        Some(VolumeUse {
            records: 1,
            bytes: 100
        })
    );
    assert_eq!(
        ns.extent_of(b),
        Some(Extent {
            volume: v,
            at: 6168,
            len: 100
        })
    );
    // A truncate (create over it) drops the extent; repacking replaces it.
    pack(&mut ns, b, v, 7000, 50).unwrap();
    assert_eq!(
        ns.volume_use(v),
        Some(VolumeUse {
            records: 1,
            bytes: 50
        })
    );
    create(&mut ns, "/b.jpg", 4);
    assert_eq!(ns.extent_of(b), None);
    assert_eq!(ns.stat("/b.jpg").unwrap().size, 0);
    assert_eq!(ns.volume_use(v), Some(VolumeUse::default()));
    assert_eq!(ns.volumes(), vec![(v, ChunkVersion(1), 3)]);
    // Empty now: it can be freed, and its chunk goes.
    let freed = apply(&mut ns, Op::FreeVolume { chunk: v }).unwrap();
    assert_eq!(freed.freed_chunks, vec![v]);
    assert_eq!(ns.volume(v), None);
    assert!(ns.volumes().is_empty());
    assert!(matches!(
        apply(&mut ns, Op::FreeVolume { chunk: v }),
        Err(KfsError::NoSuchChunk { .. })
    ));
}

#[test]
fn bad_extents_are_refused_and_change_nothing() {
    let mut ns = Namespace::new(1);
    let a = create(&mut ns, "/a", 2);
    let missing = pack(&mut ns, a, ChunkId(77), 0, 1);
    assert!(
        matches!(missing, Err(KfsError::NoSuchChunk { .. })),
        "{missing:?}"
    );
    let v = volume(&mut ns, 5);
    assert!(pack(&mut ns, FileId(999), v, 0, 1).is_err());
    assert!(pack(&mut ns, FileId::ROOT, v, 0, 1).is_err());
    let twice = apply(
        &mut ns,
        Op::CreateVolume {
            chunk: v,
            version: ChunkVersion(1),
            replication: 3,
        },
    );
    assert!(
        matches!(twice, Err(KfsError::AlreadyExists { .. })),
        "{twice:?}"
    );
    let bad = apply(
        &mut ns,
        Op::CreateVolume {
            chunk: ChunkId(6),
            version: ChunkVersion(1),
            replication: 0,
        },
    );
    assert!(matches!(bad, Err(KfsError::InvalidArgument(_))), "{bad:?}");
    assert_eq!(ns.extent_of(a), None);
    // A volume holding a record is not freed.
    pack(&mut ns, a, v, 0, 1).unwrap();
    let busy = apply(&mut ns, Op::FreeVolume { chunk: v });
    assert!(
        matches!(busy, Err(KfsError::InvalidArgument(_))),
        "{busy:?}"
    );
    assert!(ns.volume(v).is_some());
}

#[test]
fn packing_frees_chunks_and_moving_to_chunks_keeps_the_extent_until_extended() {
    let mut ns = Namespace::new(1);
    let v = volume(&mut ns, 5);
    let a = create(&mut ns, "/a", 2);
    apply(
        &mut ns,
        Op::AllocateChunk {
            fid: a,
            offset: 0,
            chunk: ChunkId(20),
            version: ChunkVersion(1),
        },
    )
    .unwrap();
    let applied = pack(&mut ns, a, v, 0, 10).unwrap();
    assert_eq!(applied.freed_chunks, vec![ChunkId(20)]);
    assert_eq!(ns.counters().chunks, 0);

    // A writer moves it to chunks: the extent stays while the chunk fills, and an extend with
    // no chunk keeps it too.
    apply(
        &mut ns,
        Op::ExtendLength {
            fid: a,
            size: 5,
            time: 11,
        },
    )
    .unwrap();
    assert!(ns.extent_of(a).is_some());
    apply(
        &mut ns,
        Op::AllocateChunk {
            fid: a,
            offset: 0,
            chunk: ChunkId(21),
            version: ChunkVersion(1),
        },
    )
    .unwrap();
    assert!(ns.extent_of(a).is_some(), "readers still read the extent");
    apply(
        &mut ns,
        Op::ExtendLength {
            fid: a,
            size: 70_000,
            time: 12,
        },
    )
    .unwrap();
    assert_eq!(ns.extent_of(a), None);
    assert_eq!(ns.stat("/a").unwrap().size, 70_000);
    assert_eq!(ns.volume_use(v), Some(VolumeUse::default()));
}

#[test]
fn extents_and_volume_use_survive_a_rebuild_from_records() {
    let mut ns = Namespace::new(1);
    let v = volume(&mut ns, 5);
    for i in 0..10u64 {
        let fid = create(&mut ns, &format!("/f{i}"), 2 + i);
        pack(&mut ns, fid, v, i * 128, 100 + i as u32).unwrap();
    }
    let records: Vec<(Key, Val)> = ns.records().map(|(k, v)| (k.clone(), v.clone())).collect();
    let back = Namespace::from_records(records, ns.next_fid(), ns.next_chunk_id()).unwrap();
    assert_eq!(back.volume_use(v), ns.volume_use(v));
    assert_eq!(back.counters(), ns.counters());
    let f3 = back.stat("/f3").unwrap().fid;
    assert_eq!(
        back.extent_of(f3),
        Some(Extent {
            volume: v,
            at: 384,
            len: 103
        })
    );
}

#[test]
fn a_compaction_moves_only_extents_still_at_the_record_copied() {
    use super::op::ExtentMove;
    let mut ns = Namespace::new(1);
    let old = volume(&mut ns, 10);
    let new = volume(&mut ns, 11);
    let a = create(&mut ns, "/a", 2);
    let b = create(&mut ns, "/b", 3);
    let c = create(&mut ns, "/c", 4);
    pack(&mut ns, a, old, 0, 100).unwrap();
    pack(&mut ns, b, old, 128, 200).unwrap();
    pack(&mut ns, c, old, 352, 300).unwrap();
    let mtime = ns.stat("/a").unwrap().mtime;
    // After the copies were made: b was rewritten elsewhere, c removed.
    pack(&mut ns, b, new, 0, 50).unwrap();
    apply(
        &mut ns,
        Op::Remove {
            path: "/c".into(),
            time: 10,
        },
    )
    .unwrap();
    let to = |fid, at, to_at, len| ExtentMove {
        fid,
        at,
        to: new,
        to_at,
        len,
    };
    apply(
        &mut ns,
        Op::MoveExtents {
            from: old,
            moves: vec![
                to(a, 0, 64, 100),
                to(b, 128, 192, 200),
                to(c, 352, 424, 300),
            ],
        },
    )
    .unwrap();
    assert_eq!(
        ns.extent_of(a),
        Some(Extent {
            volume: new,
            at: 64,
            len: 100
        })
    );
    assert_eq!(ns.stat("/a").unwrap().mtime, mtime, "a move is not a write");
    assert_eq!(ns.extent_of(b).unwrap().at, 0, "b keeps its own rewrite");
    assert_eq!(
        ns.volume_use(old),
        Some(VolumeUse::default()),
        "the old volume holds nothing"
    );
    assert_eq!(
        ns.volume_use(new),
        Some(VolumeUse {
            records: 2,
            bytes: 150
        })
    );
    // Nothing left to move: nothing is logged; a move into a volume that is gone is refused.
    let again = Op::MoveExtents {
        from: old,
        moves: vec![to(a, 0, 64, 100)],
    };
    assert!(matches!(ns.prepare(&again), Ok(op::Prepared::Unchanged(_))));
    apply(&mut ns, Op::FreeVolume { chunk: old }).unwrap();
    assert!(matches!(
        ns.apply(&again),
        Err(KfsError::NoSuchChunk { .. })
    ));
}
