//! Unit tests of the namespace state machine, one behaviour each. The random-sequence model check
//! against a reference file system is `master/tests/t10_namespace_model.rs`.

use super::op::{Applied, Op, Prepared, Reply};
use super::record::KeyView;
use super::*;
use kfs_common::proto::master::{MAX_XATTR_VALUE_LEN, MAX_XATTRS_PER_FILE, RemoveSummary, SetAttr};
use kfs_common::{ChunkVersion, KfsError, KfsResult};
use serde_bytes::ByteBuf;

/// A namespace with an id and clock source, checking every invariant after every op.
struct Ns {
    ns: Namespace,
    next_fid: u64,
    time: Timestamp,
}

impl Ns {
    fn new() -> Ns {
        Ns {
            ns: Namespace::new(1),
            next_fid: 2,
            time: 1,
        }
    }

    fn tick(&mut self) -> Timestamp {
        self.time += 1;
        self.time
    }

    fn fids(&mut self, n: u64) -> FileId {
        let first = FileId(self.next_fid);
        self.next_fid += n;
        first
    }

    fn apply(&mut self, op: Op) -> KfsResult<Applied> {
        let before: Vec<(Key, Val)> = self
            .ns
            .records()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let counters = self.ns.counters();
        let prepared = self.ns.prepare(&op);
        let result = self.ns.apply(&op);
        self.ns.check_invariants().unwrap();
        match (&prepared, &result) {
            (Err(a), Err(b)) => assert_eq!(a, b),
            (Ok(Prepared::Log), Ok(_)) => {}
            (Ok(Prepared::Unchanged(r)), Ok(applied)) => assert_eq!(r, &applied.reply),
            other => panic!("prepare and apply disagree: {other:?}"),
        }
        if result.is_err() || matches!(prepared, Ok(Prepared::Unchanged(_))) {
            let after: Vec<(Key, Val)> = self
                .ns
                .records()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert!(
                before == after,
                "{op:?} failed or changed nothing, yet changed the map"
            );
            assert_eq!(counters, self.ns.counters());
        }
        result
    }

    fn mkdir(&mut self, path: &str, parents: bool) -> KfsResult<Applied> {
        let (first_fid, time) = (self.fids(64), self.tick());
        self.apply(Op::Mkdir {
            path: path.into(),
            parents,
            mode: DEFAULT_DIR_MODE,
            owner: 0,
            group: 0,
            first_fid,
            time,
        })
    }

    fn create(&mut self, path: &str, exclusive: bool) -> KfsResult<Applied> {
        let (fid, time) = (self.fids(1), self.tick());
        self.apply(Op::Create {
            path: path.into(),
            exclusive,
            replication: 3,
            replication_given: false,
            mode: DEFAULT_FILE_MODE,
            owner: 0,
            group: 0,
            fid,
            time,
        })
    }

    fn rename(&mut self, src: &str, dst: &str) -> KfsResult<Applied> {
        let time = self.tick();
        self.apply(Op::Rename {
            src: src.into(),
            dst: dst.into(),
            time,
        })
    }

    fn fid(&self, path: &str) -> FileId {
        self.ns.stat(path).unwrap().fid
    }

    fn names(&self, path: &str) -> Vec<String> {
        let page = self.ns.readdir(path, None, 0, false).unwrap();
        page.entries.into_iter().map(|e| e.name).collect()
    }

    fn add_chunk(&mut self, path: &str, offset: u64, chunk: u64) {
        let fid = self.fid(path);
        self.apply(Op::AllocateChunk {
            fid,
            offset,
            chunk: ChunkId(chunk),
            version: ChunkVersion(1),
        })
        .unwrap();
    }
}

#[test]
fn mkdir_create_and_stat() {
    let mut t = Ns::new();
    t.mkdir("/photos", false).unwrap();
    let applied = t.create("/photos/cat.jpg", true).unwrap();
    let Reply::Attr(attr) = applied.reply else {
        panic!()
    };
    assert_eq!(attr.kind, FileKind::File);
    assert_eq!(attr.replication, 3);
    assert_eq!(attr.mode, DEFAULT_FILE_MODE);
    assert_eq!(t.ns.stat("/photos/cat.jpg").unwrap(), attr);
    assert_eq!(
        t.ns.stat("/photos").unwrap().mtime,
        attr.mtime,
        "creating touches the parent"
    );
    let c = t.ns.counters();
    assert_eq!((c.files, c.dirs), (1, 2));
}

#[test]
fn mkdir_parents_creates_the_chain_and_repeats_quietly() {
    let mut t = Ns::new();
    t.mkdir("/a/b/c", true).unwrap();
    assert_eq!(t.names("/a/b"), vec!["c"]);
    assert_eq!(t.ns.counters().dirs, 4);
    let op = Op::Mkdir {
        path: "/a/b".into(),
        parents: true,
        mode: 0o700,
        owner: 0,
        group: 0,
        first_fid: FileId(900),
        time: 5,
    };
    assert!(matches!(
        t.ns.prepare(&op),
        Ok(Prepared::Unchanged(Reply::Attr(_)))
    ));
    assert_eq!(
        t.mkdir("/a/b", false).unwrap_err(),
        KfsError::already_exists("/a/b")
    );
    assert!(matches!(t.mkdir("/", true).unwrap().reply, Reply::Attr(_)));
    assert_eq!(
        t.mkdir("/", false).unwrap_err(),
        KfsError::already_exists("/")
    );
}

#[test]
fn path_errors_name_the_path() {
    let mut t = Ns::new();
    t.create("/f", true).unwrap();
    assert_eq!(
        t.mkdir("/x/y", false).unwrap_err(),
        KfsError::not_found("/x/y")
    );
    assert_eq!(
        t.mkdir("/f/y", true).unwrap_err(),
        KfsError::not_a_directory("/f/y")
    );
    assert_eq!(
        t.create("/f/z/w", true).unwrap_err(),
        KfsError::not_a_directory("/f/z/w")
    );
    assert_eq!(
        t.create("/f", true).unwrap_err(),
        KfsError::already_exists("/f")
    );
    assert_eq!(
        t.ns.stat("/nope").unwrap_err(),
        KfsError::not_found("/nope")
    );
    assert!(matches!(
        t.ns.stat("relative"),
        Err(KfsError::InvalidPath { .. })
    ));
    assert!(matches!(
        t.create("/a//b", true),
        Err(KfsError::InvalidPath { .. })
    ));
    t.mkdir("/d", false).unwrap();
    assert_eq!(
        t.create("/d", false).unwrap_err(),
        KfsError::is_a_directory("/d")
    );
    assert_eq!(
        t.create("/", false).unwrap_err(),
        KfsError::is_a_directory("/")
    );
}

#[test]
fn create_truncates_unless_exclusive() {
    let mut t = Ns::new();
    t.create("/f", true).unwrap();
    let fid = t.fid("/f");
    t.add_chunk("/f", 0, 10);
    t.add_chunk("/f", 64, 11);
    t.apply(Op::ExtendLength {
        fid,
        size: 100,
        time: 9,
    })
    .unwrap();
    assert_eq!(t.ns.counters().bytes, 100);
    let time = t.tick();
    let applied = t
        .apply(Op::Create {
            path: "/f".into(),
            exclusive: false,
            replication: 5,
            replication_given: true,
            mode: 0o600,
            owner: 0,
            group: 0,
            fid: FileId(999),
            time,
        })
        .unwrap();
    assert_eq!(applied.freed_chunks, vec![ChunkId(10), ChunkId(11)]);
    let attr = t.ns.stat("/f").unwrap();
    assert_eq!(
        (attr.fid, attr.size, attr.replication, attr.mode),
        (fid, 0, 5, DEFAULT_FILE_MODE)
    );
    let c = t.ns.counters();
    assert_eq!((c.files, c.chunks, c.bytes), (1, 0, 0));
    assert!(t.ns.chunks(fid).is_empty());
}

#[test]
fn readdir_pages_through_a_directory_in_name_order() {
    let mut t = Ns::new();
    t.mkdir("/d", false).unwrap();
    for i in (0..25).rev() {
        t.create(&format!("/d/f{i:02}"), true).unwrap();
    }
    t.mkdir("/d/sub", false).unwrap();
    t.create("/e", true).unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = t.ns.readdir("/d", after.as_deref(), 10, true).unwrap();
        assert!(page.entries.len() <= 10);
        assert!(
            page.entries
                .iter()
                .all(|e| e.attr.as_ref().unwrap().fid == e.fid)
        );
        seen.extend(page.entries.iter().map(|e| e.name.clone()));
        after = page.entries.last().map(|e| e.name.clone());
        if !page.more {
            break;
        }
    }
    let mut expect: Vec<String> = (0..25).map(|i| format!("f{i:02}")).collect();
    expect.push("sub".into());
    assert_eq!(seen, expect);
    assert_eq!(
        t.ns.readdir("/e", None, 0, false).unwrap_err(),
        KfsError::not_a_directory("/e")
    );
    let empty = t.ns.readdir("/d/sub", None, 5, false).unwrap();
    assert!(empty.entries.is_empty() && !empty.more);
    let tail = t.ns.readdir("/d", Some("f24"), 5, false).unwrap();
    assert_eq!(tail.entries.len(), 1);
    assert!(!tail.more);
}

#[test]
fn rename_moves_files_and_directories() {
    let mut t = Ns::new();
    t.mkdir("/a/b", true).unwrap();
    t.create("/a/b/f", true).unwrap();
    let fid = t.fid("/a/b/f");
    t.mkdir("/z", false).unwrap();
    t.rename("/a/b", "/z/b2").unwrap();
    assert_eq!(t.fid("/z/b2/f"), fid);
    assert!(t.names("/a").is_empty());
    t.rename("/z/b2/f", "/g").unwrap();
    assert_eq!(t.fid("/g"), fid);
    assert!(
        t.rename("/g", "/g").is_ok(),
        "renaming onto itself does nothing"
    );
}

#[test]
fn rename_replaces_files_and_empty_directories_only() {
    let mut t = Ns::new();
    t.create("/f1", true).unwrap();
    t.create("/f2", true).unwrap();
    t.add_chunk("/f2", 0, 7);
    t.mkdir("/d1", false).unwrap();
    t.mkdir("/d2/x", true).unwrap();
    t.mkdir("/empty", false).unwrap();
    let f1 = t.fid("/f1");

    let applied = t.rename("/f1", "/f2").unwrap();
    assert_eq!(applied.freed_chunks, vec![ChunkId(7)]);
    assert_eq!(t.fid("/f2"), f1);
    assert_eq!(t.ns.counters().files, 1);

    assert_eq!(
        t.rename("/f2", "/d1").unwrap_err(),
        KfsError::is_a_directory("/d1")
    );
    assert_eq!(
        t.rename("/d1", "/f2").unwrap_err(),
        KfsError::not_a_directory("/f2")
    );
    assert_eq!(
        t.rename("/d1", "/d2").unwrap_err(),
        KfsError::directory_not_empty("/d2")
    );
    t.rename("/d1", "/empty").unwrap();
    assert_eq!(t.ns.counters().dirs, 4, "the empty directory was replaced");
    assert!(matches!(
        t.rename("/d2", "/d2/x/y"),
        Err(KfsError::InvalidArgument(_))
    ));
    assert!(t.rename("/d2", "/d2").is_ok());
    assert!(matches!(
        t.rename("/", "/q"),
        Err(KfsError::InvalidArgument(_))
    ));
    assert!(matches!(
        t.rename("/f2", "/"),
        Err(KfsError::InvalidArgument(_))
    ));
    assert_eq!(
        t.rename("/nope", "/q").unwrap_err(),
        KfsError::not_found("/nope")
    );
    assert_eq!(
        t.rename("/f2", "/nope/q").unwrap_err(),
        KfsError::not_found("/nope/q")
    );
}

#[test]
fn removes_files_empty_dirs_and_trees() {
    let mut t = Ns::new();
    t.mkdir("/t/a/b", true).unwrap();
    t.create("/t/a/f", true).unwrap();
    t.create("/t/a/b/g", true).unwrap();
    t.add_chunk("/t/a/b/g", 0, 3);
    t.add_chunk("/t/a/f", 0, 4);
    let time = t.tick();
    assert_eq!(
        t.apply(Op::Remove {
            path: "/t/a".into(),
            time
        })
        .unwrap_err(),
        KfsError::is_a_directory("/t/a")
    );
    assert_eq!(
        t.apply(Op::Rmdir {
            path: "/t/a".into(),
            time
        })
        .unwrap_err(),
        KfsError::directory_not_empty("/t/a")
    );
    assert_eq!(
        t.apply(Op::Rmdir {
            path: "/t/a/f".into(),
            time
        })
        .unwrap_err(),
        KfsError::not_a_directory("/t/a/f")
    );
    assert!(matches!(
        t.apply(Op::RemoveRecursive {
            path: "/".into(),
            time
        }),
        Err(KfsError::InvalidArgument(_))
    ));
    let applied = t
        .apply(Op::RemoveRecursive {
            path: "/t/a".into(),
            time,
        })
        .unwrap();
    assert_eq!(
        applied.reply,
        Reply::Removed(RemoveSummary { files: 2, dirs: 2 })
    );
    let mut freed = applied.freed_chunks;
    freed.sort();
    assert_eq!(freed, vec![ChunkId(3), ChunkId(4)]);
    let c = t.ns.counters();
    assert_eq!((c.files, c.dirs, c.chunks), (0, 2, 0));
    t.apply(Op::Rmdir {
        path: "/t".into(),
        time,
    })
    .unwrap();
    assert_eq!(t.ns.counters().dirs, 1);
}

#[test]
fn replication_mode_and_times_are_set() {
    let mut t = Ns::new();
    t.create("/f", true).unwrap();
    t.mkdir("/d", false).unwrap();
    for bad in [0, 17] {
        assert!(matches!(
            t.apply(Op::SetReplication {
                path: "/f".into(),
                replication: bad
            }),
            Err(KfsError::InvalidArgument(_))
        ));
    }
    assert_eq!(
        t.apply(Op::SetReplication {
            path: "/d".into(),
            replication: 2
        })
        .unwrap_err(),
        KfsError::is_a_directory("/d")
    );
    t.apply(Op::SetReplication {
        path: "/f".into(),
        replication: 2,
    })
    .unwrap();
    let attr = SetAttr {
        mode: Some(0o600),
        owner: Some(1000),
        mtime: Some(77),
        ..Default::default()
    };
    t.apply(Op::SetAttr {
        path: "/f".into(),
        attr,
    })
    .unwrap();
    let a = t.ns.stat("/f").unwrap();
    assert_eq!(
        (a.replication, a.mode, a.owner, a.group, a.mtime),
        (2, 0o600, 1000, 0, 77)
    );
    let bad_mode = SetAttr {
        mode: Some(0o10000),
        ..Default::default()
    };
    assert!(
        t.apply(Op::SetAttr {
            path: "/f".into(),
            attr: bad_mode
        })
        .is_err()
    );
}

#[test]
fn the_change_time_follows_attributes_names_and_data() {
    const S: Timestamp = 1_000_000_000;
    let mut t = Ns::new();
    t.create("/f", true).unwrap();
    let made = t.ns.stat("/f").unwrap();
    assert_eq!(made.ctime, made.mtime);
    // An attribute set 2 s later moves the change time, not the modification time.
    let chmod = |path: &str, mode, time| Op::SetAttrAt {
        path: path.into(),
        attr: SetAttr {
            mode: Some(mode),
            ..Default::default()
        },
        time,
    };
    t.apply(chmod("/f", 0o600, made.mtime + 2 * S)).unwrap();
    let a = t.ns.stat("/f").unwrap();
    assert_eq!((a.mtime, a.ctime), (made.mtime, made.mtime + 2 * S));
    // Nothing set changes nothing.
    t.apply(Op::SetAttrAt {
        path: "/f".into(),
        attr: SetAttr::default(),
        time: made.mtime + 9 * S,
    })
    .unwrap();
    assert_eq!(t.ns.stat("/f").unwrap().ctime, made.mtime + 2 * S);
    // A link, and a name removed while another is left, move it too.
    t.apply(Op::Link {
        src: "/f".into(),
        dst: "/g".into(),
        time: made.mtime + 4 * S,
    })
    .unwrap();
    assert_eq!(t.ns.stat("/g").unwrap().ctime, made.mtime + 4 * S);
    t.apply(Op::Remove {
        path: "/f".into(),
        time: made.mtime + 6 * S,
    })
    .unwrap();
    assert_eq!(t.ns.stat("/g").unwrap().ctime, made.mtime + 6 * S);
    // A write moves both; a change before the modification time does not go back.
    let fid = t.ns.stat("/g").unwrap().fid;
    t.apply(Op::ExtendLength {
        fid,
        size: 10,
        time: made.mtime + 7 * S,
    })
    .unwrap();
    let a = t.ns.stat("/g").unwrap();
    assert_eq!((a.mtime, a.ctime), (made.mtime + 7 * S, made.mtime + 7 * S));
    t.apply(chmod("/g", 0o644, made.mtime)).unwrap();
    assert_eq!(t.ns.stat("/g").unwrap().ctime, made.mtime + 7 * S);
}

#[test]
fn extended_attributes() {
    let mut t = Ns::new();
    t.create("/img.jpg", true).unwrap();
    let set = |name: &str, value: &[u8]| Op::SetXattr {
        path: "/img.jpg".into(),
        name: name.into(),
        value: ByteBuf::from(value.to_vec()),
    };
    t.apply(set("width", b"1024")).unwrap();
    t.apply(set("height", b"768")).unwrap();
    t.apply(set("width", b"2048")).unwrap();
    assert_eq!(t.ns.get_xattr("/img.jpg", "width").unwrap(), b"2048");
    assert_eq!(
        t.ns.list_xattrs("/img.jpg").unwrap(),
        vec!["height", "width"]
    );
    assert!(matches!(
        t.apply(set("", b"x")),
        Err(KfsError::InvalidArgument(_))
    ));
    assert!(matches!(
        t.apply(set("a/b", b"x")),
        Err(KfsError::InvalidArgument(_))
    ));
    assert!(matches!(
        t.apply(set("big", &vec![0u8; MAX_XATTR_VALUE_LEN + 1])),
        Err(KfsError::InvalidArgument(_))
    ));
    t.apply(Op::RemoveXattr {
        path: "/img.jpg".into(),
        name: "width".into(),
    })
    .unwrap();
    assert_eq!(
        t.ns.get_xattr("/img.jpg", "width").unwrap_err(),
        KfsError::NoSuchXattr {
            path: "/img.jpg".into(),
            name: "width".into()
        }
    );
    assert!(
        t.apply(Op::RemoveXattr {
            path: "/img.jpg".into(),
            name: "width".into()
        })
        .is_err()
    );
    for i in 0..MAX_XATTRS_PER_FILE - 1 {
        t.apply(set(&format!("k{i}"), b"")).unwrap();
    }
    assert!(matches!(
        t.apply(set("one-too-many", b"")),
        Err(KfsError::InvalidArgument(_))
    ));
    t.apply(set("k0", b"replacing is fine")).unwrap();
    // Removing the file takes its attributes along (invariants are checked on every apply).
    let time = t.tick();
    t.apply(Op::Remove {
        path: "/img.jpg".into(),
        time,
    })
    .unwrap();
}

#[test]
fn chunk_records_and_length() {
    let mut t = Ns::new();
    t.create("/f", true).unwrap();
    t.mkdir("/d", false).unwrap();
    let fid = t.fid("/f");
    t.add_chunk("/f", 0, 5);
    t.add_chunk("/f", 128, 9);
    assert_eq!(
        t.ns.chunks(fid),
        vec![
            (0, ChunkId(5), ChunkVersion(1)),
            (128, ChunkId(9), ChunkVersion(1))
        ]
    );
    assert_eq!(t.ns.next_chunk_id(), ChunkId(10));
    // A reservation moves the counter up, never down (replayed the same way).
    t.apply(Op::ReserveChunkIds {
        below: ChunkId(100),
    })
    .unwrap();
    assert_eq!(t.ns.next_chunk_id(), ChunkId(100));
    assert!(matches!(
        t.ns.prepare(&Op::ReserveChunkIds { below: ChunkId(50) }),
        Ok(Prepared::Unchanged(_))
    ));
    assert_eq!(t.ns.next_chunk_id(), ChunkId(100));
    let dup = Op::AllocateChunk {
        fid,
        offset: 0,
        chunk: ChunkId(11),
        version: ChunkVersion(1),
    };
    assert!(matches!(t.apply(dup), Err(KfsError::AlreadyExists { .. })));
    let dir = t.fid("/d");
    let on_dir = Op::AllocateChunk {
        fid: dir,
        offset: 0,
        chunk: ChunkId(12),
        version: ChunkVersion(1),
    };
    assert!(matches!(
        t.apply(on_dir),
        Err(KfsError::IsADirectory { .. })
    ));
    let missing = Op::SetLength {
        fid: FileId(4242),
        size: 1,
        time: 1,
    };
    assert!(matches!(t.apply(missing), Err(KfsError::NotFound { .. })));
    t.apply(Op::SetLength {
        fid,
        size: 200,
        time: 50,
    })
    .unwrap();
    t.apply(Op::SetLength {
        fid,
        size: 150,
        time: 51,
    })
    .unwrap();
    assert_eq!(t.ns.counters().bytes, 150);
    assert_eq!(t.ns.stat("/f").unwrap().mtime, 51);
}

#[test]
fn records_rebuild_the_same_namespace() {
    let mut t = Ns::new();
    t.mkdir("/a/b", true).unwrap();
    t.create("/a/b/f", true).unwrap();
    t.add_chunk("/a/b/f", 0, 3);
    let records: Vec<(Key, Val)> =
        t.ns.records()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    let rebuilt =
        Namespace::from_records(records.clone(), t.ns.next_fid(), t.ns.next_chunk_id()).unwrap();
    assert_eq!(rebuilt.counters(), t.ns.counters());
    assert_eq!(
        rebuilt.stat("/a/b/f").unwrap(),
        t.ns.stat("/a/b/f").unwrap()
    );
    // A damaged set of records is refused, naming what is wrong.
    let orphan: Vec<(Key, Val)> = records
        .into_iter()
        .filter(|(k, _)| !matches!(k.view(), KeyView::Dentry { name: "a", .. }))
        .collect();
    let err = Namespace::from_records(orphan, t.ns.next_fid(), t.ns.next_chunk_id())
        .err()
        .unwrap();
    assert!(err.contains("has no name"), "{err}");
}

#[test]
fn a_truncate_frees_the_chunks_past_the_shorter_length() {
    let mut t = Ns::new();
    t.create("/f", true).unwrap();
    let fid = t.fid("/f");
    for (i, chunk) in [20, 21, 22].into_iter().enumerate() {
        t.add_chunk("/f", i as u64 * 64, chunk);
    }
    t.apply(Op::ExtendLength {
        fid,
        size: 150,
        time: 5,
    })
    .unwrap();
    // Cut inside the second chunk: the third goes, the second stays (its tail is the
    // client's to zero).
    let cut = t
        .apply(Op::Truncate {
            fid,
            size: 100,
            time: 6,
        })
        .unwrap();
    assert_eq!(cut.freed_chunks, vec![ChunkId(22)]);
    assert_eq!(t.ns.counters().chunks, 2);
    assert_eq!(t.ns.counters().bytes, 100);
    // Growing frees what lay past the old end (never-committed bytes), not below it.
    t.add_chunk("/f", 192, 23);
    let grown = t
        .apply(Op::Truncate {
            fid,
            size: 1000,
            time: 7,
        })
        .unwrap();
    assert_eq!(grown.freed_chunks, vec![ChunkId(23)]);
    // To zero: every chunk.
    let emptied = t
        .apply(Op::Truncate {
            fid,
            size: 0,
            time: 8,
        })
        .unwrap();
    assert_eq!(emptied.freed_chunks, vec![ChunkId(20), ChunkId(21)]);
    assert_eq!(t.ns.counters().chunks, 0);
    // Past the largest file: refused, nothing changed.
    let huge = Op::Truncate {
        fid,
        size: crate::namespace::op::MAX_FILE_SIZE + 1,
        time: 9,
    };
    assert!(matches!(t.apply(huge), Err(KfsError::InvalidArgument(_))));
    // The old SetLength (replayed from old logs) frees nothing.
    t.add_chunk("/f", 0, 30);
    let set = t
        .apply(Op::SetLength {
            fid,
            size: 0,
            time: 10,
        })
        .unwrap();
    assert!(set.freed_chunks.is_empty());
    t.ns.check_invariants().unwrap();
}
