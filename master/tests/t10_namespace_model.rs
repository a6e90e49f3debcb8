//! Model check: random op sequences run on the namespace and on a plain reference file system (a
//! `BTreeMap` of full paths) give the same results, the same errors and the same listings, and
//! the namespace's invariants hold after every step. Small files are in it: volumes made and
//! freed, files packed into them, compactions moving records (with stale moves among them), and
//! every other op on packed files.
//!
//! `PROPTEST_CASES=5000 cargo test -p kfs-master --test t10_namespace_model` for a long run.

mod support;

use kfs_common::path;
use kfs_common::proto::Timestamp;
use kfs_common::proto::master::{FileAttr, REPLICATION_RANGE, RemoveSummary, SetAttr};
use kfs_common::{ChunkId, ChunkVersion, FileId, FileKind, KfsError, KfsResult};
use kfs_master::namespace::op::{ExtentMove, Op, Prepared, Reply, Special};
use kfs_master::namespace::{DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, Namespace};
use proptest::prelude::*;
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

// ------------------------------------------------------------------ the reference model

/// The volumes the model check makes.
fn volume_id(v: u8) -> ChunkId {
    ChunkId(1_000 + u64::from(v))
}

#[derive(Clone, Debug, PartialEq)]
struct MNode {
    kind: FileKind,
    size: u64,
    mode: u16,
    replication: u8,
    mtime: Timestamp,
    atime: Timestamp,
    xattrs: BTreeMap<String, Vec<u8>>,
    chunks: BTreeMap<u64, u64>,
    /// A packed file's record: `(volume, at, len)`.
    extent: Option<(u64, u64, u32)>,
    /// A symbolic link's target.
    target: Option<String>,
    /// Which file it is: the paths of one file's hard links share it (and every field above).
    ino: u64,
}

static NEXT_INO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl MNode {
    fn new(kind: FileKind, mode: u16, replication: u8, time: Timestamp) -> MNode {
        MNode {
            kind,
            size: 0,
            mode,
            replication,
            mtime: time,
            atime: time,
            xattrs: BTreeMap::new(),
            chunks: BTreeMap::new(),
            extent: None,
            target: None,
            ino: NEXT_INO.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// What the model answers; fids are the namespace's business and are not compared.
#[derive(Clone, Debug, PartialEq)]
enum MReply {
    Attr(MNode),
    Done,
    Removed(RemoveSummary),
}

struct Model {
    nodes: BTreeMap<String, MNode>,
    /// The volumes of small files the namespace holds.
    volumes: std::collections::BTreeSet<u64>,
}

fn is_dir(n: &MNode) -> bool {
    n.kind == FileKind::Dir
}

/// The error of a data op (chunks, lengths, extents) on `n`, addressed by `fid`, if it is not a
/// regular file.
fn not_regular(n: &MNode, fid: FileId) -> Option<KfsError> {
    match n.kind {
        FileKind::File => None,
        FileKind::Dir => Some(KfsError::is_a_directory(fid.to_string())),
        _ => Some(KfsError::invalid_argument("not a regular file")),
    }
}

impl Model {
    fn new() -> Model {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "/".to_string(),
            MNode::new(FileKind::Dir, DEFAULT_DIR_MODE, 0, 1),
        );
        Model {
            nodes,
            volumes: Default::default(),
        }
    }

    /// Walks from the root: every ancestor must be a directory, the path must exist.
    fn resolve(&self, p: &str) -> KfsResult<&MNode> {
        let mut cur = "/".to_string();
        for name in path::components(p)? {
            if !is_dir(&self.nodes[&cur]) {
                return Err(KfsError::not_a_directory(p));
            }
            cur = path::join(&cur, name);
            if !self.nodes.contains_key(&cur) {
                return Err(KfsError::not_found(p));
            }
        }
        Ok(&self.nodes[&cur])
    }

    /// The parent directory of `p` (must exist and be a directory); `None` for the root.
    fn parent(&self, p: &str) -> KfsResult<Option<(String, String)>> {
        let Some((parent, name)) = path::split_parent(p)? else {
            return Ok(None);
        };
        match self.resolve(parent) {
            Ok(n) if is_dir(n) => Ok(Some((parent.to_string(), name.to_string()))),
            Ok(_) | Err(KfsError::NotADirectory { .. }) => Err(KfsError::not_a_directory(p)),
            Err(KfsError::NotFound { .. }) => Err(KfsError::not_found(p)),
            Err(e) => Err(e),
        }
    }

    /// An existing non-root entry.
    fn entry(&self, p: &str) -> KfsResult<Option<&MNode>> {
        if self.parent(p)?.is_none() {
            return Ok(None);
        }
        self.nodes
            .get(p)
            .map(Some)
            .ok_or_else(|| KfsError::not_found(p))
    }

    fn touch(&mut self, dir: &str, time: Timestamp) {
        self.nodes.get_mut(dir).unwrap().mtime = time;
    }

    fn below<'a>(&'a self, p: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.nodes
            .keys()
            .filter(move |k| path::is_same_or_below(k, p))
    }

    fn is_empty_dir(&self, p: &str) -> bool {
        self.below(p).count() == 1
    }

    /// Removes `p` and everything below; returns the summary and the chunks freed.
    fn take_subtree(&mut self, p: &str) -> (RemoveSummary, Vec<u64>) {
        let doomed: Vec<String> = self.below(p).cloned().collect();
        let mut summary = RemoveSummary::default();
        let mut freed = Vec::new();
        for k in doomed {
            let n = self.nodes.remove(&k).unwrap();
            match n.kind {
                FileKind::Dir => summary.dirs += 1,
                _ => summary.files += 1,
            }
            // A file's chunks go with its last name.
            if !self.nodes.values().any(|other| other.ino == n.ino) {
                freed.extend(n.chunks.values());
            }
        }
        (summary, freed)
    }

    /// Gives every other name of `p`'s file what `p` has now (hard links share everything).
    fn propagate(&mut self, p: &str) {
        let Some(n) = self.nodes.get(p).cloned() else {
            return;
        };
        for (k, v) in self.nodes.iter_mut() {
            if v.ino == n.ino && k != p {
                *v = n.clone();
            }
        }
    }

    /// The names `p`'s file has (a directory: 2 and one per subdirectory).
    fn nlink(&self, p: &str) -> u32 {
        let n = &self.nodes[p];
        if is_dir(n) {
            let subdirs = self
                .children(p)
                .iter()
                .filter(|(_, k)| *k == FileKind::Dir)
                .count();
            return 2 + subdirs as u32;
        }
        self.nodes.values().filter(|o| o.ino == n.ino).count() as u32
    }

    /// One node per file: each hard-linked file once.
    fn files(&self) -> impl Iterator<Item = &MNode> {
        let mut seen = std::collections::BTreeSet::new();
        self.nodes.values().filter(move |n| seen.insert(n.ino))
    }

    fn children(&self, dir: &str) -> Vec<(String, FileKind)> {
        self.nodes
            .iter()
            .filter(|(k, _)| k.as_str() != "/" && path::split_parent(k).unwrap().unwrap().0 == dir)
            .map(|(k, n)| {
                (
                    path::split_parent(k).unwrap().unwrap().1.to_string(),
                    n.kind,
                )
            })
            .collect()
    }

    fn counters(&self) -> (u64, u64, u64, u64) {
        let files = self.files().filter(|n| !is_dir(n)).count() as u64;
        let dirs = self.nodes.values().filter(|n| is_dir(n)).count() as u64;
        let chunks = self.files().map(|n| n.chunks.len() as u64).sum();
        let bytes = self
            .files()
            .filter(|n| n.kind == FileKind::File)
            .map(|n| n.size)
            .sum();
        (files, dirs, chunks, bytes)
    }

    fn apply(&mut self, action: &Action, time: Timestamp) -> KfsResult<(MReply, Vec<u64>)> {
        let done = |r| Ok((r, Vec::new()));
        match action {
            Action::Mkdir { path: p, parents } => {
                let names = path::components(p)?;
                let mut cur = "/".to_string();
                for (i, name) in names.iter().enumerate() {
                    let last = i + 1 == names.len();
                    let next = path::join(&cur, name);
                    match self.nodes.get(&next) {
                        Some(n) if is_dir(n) => {
                            if last {
                                return if *parents {
                                    done(MReply::Attr(n.clone()))
                                } else {
                                    Err(KfsError::already_exists(p.as_str()))
                                };
                            }
                            cur = next;
                        }
                        Some(_) if last => return Err(KfsError::already_exists(p.as_str())),
                        Some(_) => return Err(KfsError::not_a_directory(p.as_str())),
                        None if last || *parents => {
                            self.touch(&cur, time);
                            for name in &names[i..] {
                                cur = path::join(&cur, name);
                                self.nodes.insert(
                                    cur.clone(),
                                    MNode::new(FileKind::Dir, DEFAULT_DIR_MODE, 0, time),
                                );
                            }
                            return done(MReply::Attr(self.nodes[&cur].clone()));
                        }
                        None => return Err(KfsError::not_found(p.as_str())),
                    }
                }
                if *parents {
                    done(MReply::Attr(self.nodes["/"].clone()))
                } else {
                    Err(KfsError::already_exists("/"))
                }
            }
            Action::Create {
                path: p,
                exclusive,
                replication,
                given,
            } => {
                if !REPLICATION_RANGE.contains(replication) {
                    return Err(KfsError::invalid_argument("replication"));
                }
                let Some((parent, _)) = self.parent(p)? else {
                    return Err(KfsError::is_a_directory(p.as_str()));
                };
                match self.nodes.get_mut(p) {
                    Some(n) if is_dir(n) => Err(KfsError::is_a_directory(p.as_str())),
                    Some(_) if *exclusive => Err(KfsError::already_exists(p.as_str())),
                    Some(n) if n.kind != FileKind::File => {
                        Err(KfsError::invalid_argument("not a regular file"))
                    }
                    Some(n) => {
                        let freed = std::mem::take(&mut n.chunks).into_values().collect();
                        n.extent = None;
                        n.size = 0;
                        n.mtime = time;
                        if *given {
                            n.replication = *replication;
                        }
                        Ok((MReply::Attr(n.clone()), freed))
                    }
                    None => {
                        let n = MNode::new(FileKind::File, DEFAULT_FILE_MODE, *replication, time);
                        self.nodes.insert(p.clone(), n.clone());
                        self.touch(&parent, time);
                        done(MReply::Attr(n))
                    }
                }
            }
            Action::Rename { src, dst } => {
                let from = self
                    .entry(src)?
                    .ok_or_else(|| KfsError::invalid_argument("root"))?
                    .clone();
                path::validate(dst)?;
                if src == dst {
                    return done(MReply::Done);
                }
                if is_dir(&from) && path::is_same_or_below(dst, src) {
                    return Err(KfsError::invalid_argument("below itself"));
                }
                let Some((dst_parent, _)) = self.parent(dst)? else {
                    return Err(KfsError::invalid_argument("root"));
                };
                let mut freed = Vec::new();
                if self.nodes.get(dst).is_some_and(|old| old.ino == from.ino) {
                    return done(MReply::Done);
                }
                if let Some(old) = self.nodes.get(dst) {
                    match (is_dir(&from), is_dir(old)) {
                        (false, true) => {
                            return Err(KfsError::is_a_directory(dst.as_str()));
                        }
                        (true, false) => {
                            return Err(KfsError::not_a_directory(dst.as_str()));
                        }
                        (true, true) if !self.is_empty_dir(dst) => {
                            return Err(KfsError::directory_not_empty(dst.as_str()));
                        }
                        _ => freed = self.take_subtree(dst).1,
                    }
                }
                let moved: Vec<String> = self.below(src).cloned().collect();
                for old_path in moved {
                    let n = self.nodes.remove(&old_path).unwrap();
                    let new_path = format!("{dst}{}", &old_path[src.len()..]);
                    self.nodes.insert(new_path, n);
                }
                let (src_parent, _) = path::split_parent(src).unwrap().unwrap();
                self.touch(src_parent, time);
                self.touch(&dst_parent, time);
                Ok((MReply::Done, freed))
            }
            Action::Remove { path: p } => {
                let n = self
                    .entry(p)?
                    .ok_or_else(|| KfsError::is_a_directory(p.as_str()))?;
                if is_dir(n) {
                    return Err(KfsError::is_a_directory(p.as_str()));
                }
                let (summary, freed) = self.take_subtree(p);
                self.touch(path::split_parent(p).unwrap().unwrap().0, time);
                Ok((MReply::Removed(summary), freed))
            }
            Action::Rmdir { path: p } => {
                let n = self
                    .entry(p)?
                    .ok_or_else(|| KfsError::invalid_argument("root"))?;
                if !is_dir(n) {
                    return Err(KfsError::not_a_directory(p.as_str()));
                }
                if !self.is_empty_dir(p) {
                    return Err(KfsError::directory_not_empty(p.as_str()));
                }
                let (summary, freed) = self.take_subtree(p);
                self.touch(path::split_parent(p).unwrap().unwrap().0, time);
                Ok((MReply::Removed(summary), freed))
            }
            Action::RemoveRecursive { path: p } => {
                self.entry(p)?
                    .ok_or_else(|| KfsError::invalid_argument("root"))?;
                let (summary, freed) = self.take_subtree(p);
                self.touch(path::split_parent(p).unwrap().unwrap().0, time);
                Ok((MReply::Removed(summary), freed))
            }
            Action::SetReplication {
                path: p,
                replication,
            } => {
                if !REPLICATION_RANGE.contains(replication) {
                    return Err(KfsError::invalid_argument("replication"));
                }
                match self.resolve(p)?.kind {
                    FileKind::File => {}
                    FileKind::Dir => return Err(KfsError::is_a_directory(p.as_str())),
                    _ => return Err(KfsError::invalid_argument("not a regular file")),
                }
                let n = self.nodes.get_mut(p).unwrap();
                n.replication = *replication;
                done(MReply::Attr(n.clone()))
            }
            Action::SetMode { path: p, mode } => {
                if *mode > 0o7777 {
                    return Err(KfsError::invalid_argument("mode"));
                }
                self.resolve(p)?;
                let n = self.nodes.get_mut(p).unwrap();
                n.mode = *mode;
                done(MReply::Attr(n.clone()))
            }
            Action::SetXattr {
                path: p,
                name,
                value,
            } => {
                if path::validate_name(p, name).is_err() {
                    return Err(KfsError::invalid_argument("name"));
                }
                self.resolve(p)?;
                self.nodes
                    .get_mut(p)
                    .unwrap()
                    .xattrs
                    .insert(name.clone(), value.clone());
                done(MReply::Done)
            }
            Action::RemoveXattr { path: p, name } => {
                self.resolve(p)?;
                match self.nodes.get_mut(p).unwrap().xattrs.remove(name) {
                    Some(_) => done(MReply::Done),
                    None => Err(KfsError::NoSuchXattr {
                        path: p.clone(),
                        name: name.clone(),
                    }),
                }
            }
            Action::Link { src, dst } => {
                let from = self
                    .entry(src)?
                    .ok_or_else(|| KfsError::is_a_directory(src.as_str()))?
                    .clone();
                if is_dir(&from) {
                    return Err(KfsError::is_a_directory(src.as_str()));
                }
                let Some((parent, _)) = self.parent(dst)? else {
                    return Err(KfsError::already_exists(dst.as_str()));
                };
                if self.nodes.contains_key(dst) {
                    return Err(KfsError::already_exists(dst.as_str()));
                }
                self.nodes.insert(dst.clone(), from.clone());
                self.touch(&parent, time);
                done(MReply::Attr(from))
            }
            Action::MakeSpecial { path: p, which } => {
                let (kind, size, target) = special_of(*which);
                let mode = if kind == FileKind::Symlink {
                    0o777
                } else {
                    DEFAULT_FILE_MODE
                };
                let Some((parent, _)) = self.parent(p)? else {
                    return Err(KfsError::already_exists(p.as_str()));
                };
                if self.nodes.contains_key(p) {
                    return Err(KfsError::already_exists(p.as_str()));
                }
                let mut n = MNode::new(kind, mode, 0, time);
                n.size = size;
                n.target = target;
                self.nodes.insert(p.clone(), n.clone());
                self.touch(&parent, time);
                done(MReply::Attr(n))
            }
            // The fid-addressed ops are checked in `run`, where the fid is known.
            Action::AllocateChunk { .. }
            | Action::SetLength { .. }
            | Action::Volume { .. }
            | Action::Pack { .. }
            | Action::Compact { .. }
            | Action::FreeVolume { .. } => unreachable!(),
            Action::Stat { .. }
            | Action::Readdir { .. }
            | Action::GetXattr { .. }
            | Action::ListXattrs { .. }
            | Action::Readlink { .. } => unreachable!("reads are compared in `run`"),
        }
    }
}

// ------------------------------------------------------------------ actions

#[derive(Clone, Debug)]
enum Action {
    Mkdir {
        path: String,
        parents: bool,
    },
    Create {
        path: String,
        exclusive: bool,
        replication: u8,
        given: bool,
    },
    Rename {
        src: String,
        dst: String,
    },
    Remove {
        path: String,
    },
    Rmdir {
        path: String,
    },
    RemoveRecursive {
        path: String,
    },
    SetReplication {
        path: String,
        replication: u8,
    },
    SetMode {
        path: String,
        mode: u16,
    },
    SetXattr {
        path: String,
        name: String,
        value: Vec<u8>,
    },
    RemoveXattr {
        path: String,
        name: String,
    },
    AllocateChunk {
        path: String,
        offset: u64,
    },
    /// `SetLength` (the old op, replayed from old logs: chunks stay) or, with `truncate`,
    /// `Truncate` (chunks past the shorter length freed).
    SetLength {
        path: String,
        size: u64,
        truncate: bool,
    },
    /// Small files: a volume made, a file packed into one, a volume's records moved to another
    /// (with a stale move among them), a volume freed.
    Volume {
        v: u8,
    },
    Pack {
        path: String,
        v: u8,
        len: u16,
    },
    Compact {
        from: u8,
        to: u8,
    },
    FreeVolume {
        v: u8,
    },
    Stat {
        path: String,
    },
    Readdir {
        path: String,
        page: u32,
    },
    GetXattr {
        path: String,
        name: String,
    },
    ListXattrs {
        path: String,
    },
    Link {
        src: String,
        dst: String,
    },
    /// A symbolic link (`which` 0, to "a/b"), a FIFO (1) or a character device (2).
    MakeSpecial {
        path: String,
        which: u8,
    },
    Readlink {
        path: String,
    },
}

/// The path whose file an action may change (its other names then follow it).
fn touched(action: &Action) -> Option<&str> {
    match action {
        Action::Create { path, .. }
        | Action::SetReplication { path, .. }
        | Action::SetMode { path, .. }
        | Action::SetXattr { path, .. }
        | Action::RemoveXattr { path, .. }
        | Action::Pack { path, .. }
        | Action::AllocateChunk { path, .. }
        | Action::SetLength { path, .. } => Some(path),
        _ => None,
    }
}

/// The kind, attribute size and target of the special file `which` of `Action::MakeSpecial`.
fn special_of(which: u8) -> (FileKind, u64, Option<String>) {
    match which {
        0 => (FileKind::Symlink, 3, Some("a/b".to_string())),
        1 => (FileKind::Fifo, 0, None),
        _ => (FileKind::CharDevice, 0x0102, None),
    }
}

fn special_op(which: u8) -> Special {
    match which {
        0 => Special::Symlink {
            target: "a/b".into(),
        },
        1 => Special::Fifo,
        _ => Special::CharDevice { rdev: 0x0102 },
    }
}

/// Mostly valid paths over a tiny alphabet (so ops collide), sometimes invalid ones.
fn a_path() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..4)
            .prop_map(|names| format!("/{}", names.join("/"))),
        1 => Just("/".to_string()),
        1 => prop_oneof![
            Just("a".to_string()),
            Just("/a/".to_string()),
            Just("/a/../b".to_string()),
            Just(format!("/{}", "x".repeat(256))),
        ],
    ]
}

fn an_xattr_name() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just("k1".to_string()), 4 => Just("k2".to_string()), 1 => Just(String::new())]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (a_path(), any::<bool>()).prop_map(|(path, parents)| Action::Mkdir { path, parents }),
        6 => (a_path(), any::<bool>(), prop_oneof![Just(0u8), Just(1), Just(3), Just(17)], any::<bool>())
            .prop_map(|(path, exclusive, replication, given)| Action::Create { path, exclusive, replication, given }),
        4 => (a_path(), a_path()).prop_map(|(src, dst)| Action::Rename { src, dst }),
        2 => a_path().prop_map(|path| Action::Remove { path }),
        2 => a_path().prop_map(|path| Action::Rmdir { path }),
        1 => a_path().prop_map(|path| Action::RemoveRecursive { path }),
        1 => (a_path(), prop_oneof![Just(0u8), Just(2), Just(16)])
            .prop_map(|(path, replication)| Action::SetReplication { path, replication }),
        1 => (a_path(), prop_oneof![Just(0o600u16), Just(0o10000)]).prop_map(|(path, mode)| Action::SetMode { path, mode }),
        2 => (a_path(), an_xattr_name(), proptest::collection::vec(any::<u8>(), 0..4))
            .prop_map(|(path, name, value)| Action::SetXattr { path, name, value }),
        1 => (a_path(), an_xattr_name()).prop_map(|(path, name)| Action::RemoveXattr { path, name }),
        2 => (a_path(), 0u64..3).prop_map(|(path, i)| Action::AllocateChunk { path, offset: i * 64 }),
        3 => (a_path(), 0u64..300, any::<bool>())
            .prop_map(|(path, size, truncate)| Action::SetLength { path, size, truncate }),
        3 => (0u8..2).prop_map(|v| Action::Volume { v }),
        8 => (a_path(), 0u8..2, 0u16..300).prop_map(|(path, v, len)| Action::Pack { path, v, len }),
        3 => (0u8..2, 0u8..2).prop_map(|(from, to)| Action::Compact { from, to }),
        1 => (0u8..2).prop_map(|v| Action::FreeVolume { v }),
        3 => a_path().prop_map(|path| Action::Stat { path }),
        3 => (a_path(), 1u32..4).prop_map(|(path, page)| Action::Readdir { path, page }),
        1 => (a_path(), an_xattr_name()).prop_map(|(path, name)| Action::GetXattr { path, name }),
        1 => a_path().prop_map(|path| Action::ListXattrs { path }),
        3 => (a_path(), 0u8..3).prop_map(|(path, which)| Action::MakeSpecial { path, which }),
        4 => (a_path(), a_path()).prop_map(|(src, dst)| Action::Link { src, dst }),
        1 => a_path().prop_map(|path| Action::Readlink { path }),
    ]
}

// ------------------------------------------------------------------ running both

fn same_error(ns: &KfsError, model: &KfsError) -> bool {
    match (ns, model) {
        // Messages of these are prose; the variant is the contract.
        (KfsError::InvalidArgument(_), KfsError::InvalidArgument(_)) => true,
        (KfsError::InvalidPath { path: a, .. }, KfsError::InvalidPath { path: b, .. }) => a == b,
        _ => ns == model,
    }
}

/// A read gives what the model gives: the same value, or the same error.
fn same_read<T: std::fmt::Debug + PartialEq>(
    action: &Action,
    got: KfsResult<T>,
    want: KfsResult<T>,
) -> Result<(), TestCaseError> {
    match (&got, &want) {
        (Err(a), Err(b)) => prop_assert!(same_error(a, b), "{action:?}: {a:?} vs {b:?}"),
        _ => prop_assert_eq!(got, want, "{:?}", action),
    }
    Ok(())
}

fn same_attr(attr: &FileAttr, n: &MNode) -> bool {
    (
        attr.kind,
        attr.size,
        attr.mode,
        attr.replication,
        attr.mtime,
        attr.atime,
    ) == (n.kind, n.size, n.mode, n.replication, n.mtime, n.atime)
}

fn check_result(
    action: &Action,
    got: KfsResult<(Reply, Vec<ChunkId>)>,
    want: KfsResult<(MReply, Vec<u64>)>,
) -> Result<(), TestCaseError> {
    match (got, want) {
        (Ok((reply, mut freed)), Ok((mreply, mut mfreed))) => {
            let same = match (&reply, &mreply) {
                (Reply::Attr(a), MReply::Attr(n)) => same_attr(a, n),
                (Reply::Done, MReply::Done) => true,
                (Reply::Removed(a), MReply::Removed(b)) => a == b,
                _ => false,
            };
            prop_assert!(same, "{action:?}: namespace {reply:?}, model {mreply:?}");
            freed.sort();
            mfreed.sort();
            prop_assert_eq!(
                freed.iter().map(|c| c.0).collect::<Vec<_>>(),
                mfreed,
                "{:?}",
                action
            );
        }
        (Err(a), Err(b)) => prop_assert!(
            same_error(&a, &b),
            "{action:?}: namespace {a:?}, model {b:?}"
        ),
        (got, want) => prop_assert!(false, "{action:?}: namespace {got:?}, model {want:?}"),
    }
    Ok(())
}

/// Lists a directory page by page.
fn list_all(ns: &Namespace, p: &str, page: u32) -> KfsResult<Vec<(String, FileKind, FileAttr)>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let got = ns.readdir(p, after.as_deref(), page, true)?;
        out.extend(
            got.entries
                .iter()
                .map(|e| (e.name.clone(), e.kind, e.attr.clone().unwrap())),
        );
        after = got.entries.last().map(|e| e.name.clone());
        if !got.more {
            return Ok(out);
        }
    }
}

fn compare_everything(ns: &Namespace, model: &Model) -> Result<(), TestCaseError> {
    ns.check_invariants().map_err(TestCaseError::fail)?;
    let volumes: Vec<u64> = ns.volumes().iter().map(|(c, _, _)| c.0).collect();
    prop_assert_eq!(volumes, model.volumes.iter().copied().collect::<Vec<_>>());
    let c = ns.counters();
    prop_assert_eq!((c.files, c.dirs, c.chunks, c.bytes), model.counters());
    for (p, n) in &model.nodes {
        let attr = ns.stat(p).unwrap();
        prop_assert!(same_attr(&attr, n), "{p}: {attr:?} vs {n:?}");
        prop_assert_eq!(attr.nlink, model.nlink(p), "{}", p);
        let xattrs: Vec<String> = n.xattrs.keys().cloned().collect();
        prop_assert_eq!(ns.list_xattrs(p).unwrap(), xattrs);
        let extent = ns.extent_of(attr.fid).map(|e| (e.volume.0, e.at, e.len));
        prop_assert_eq!(extent, n.extent, "{}", p);
        let chunks: Vec<u64> = ns.chunks(attr.fid).iter().map(|(_, id, _)| id.0).collect();
        prop_assert_eq!(
            chunks,
            n.chunks.values().copied().collect::<Vec<_>>(),
            "{}",
            p
        );
        if is_dir(n) {
            let listed: Vec<(String, FileKind)> = list_all(ns, p, 2)
                .unwrap()
                .into_iter()
                .map(|(name, kind, _)| (name, kind))
                .collect();
            prop_assert_eq!(listed, model.children(p), "{}", p);
        }
    }
    Ok(())
}

fn run(actions: &[Action]) -> Result<(), TestCaseError> {
    let mut ns = Namespace::new(1);
    let mut model = Model::new();
    let mut next_fid = FileId::FIRST_USER.0;
    let mut next_chunk = 1u64;
    for (step, action) in actions.iter().enumerate() {
        let time = step as Timestamp + 2;
        let op = match action {
            Action::Stat { path: p } => {
                match (ns.stat(p), model.resolve(p)) {
                    (Ok(a), Ok(n)) => {
                        prop_assert!(same_attr(&a, n), "{action:?}: {a:?} vs {n:?}");
                        prop_assert_eq!(a.nlink, model.nlink(&path::normalize("/", p).unwrap()));
                    }
                    (Err(a), Err(b)) => {
                        prop_assert!(same_error(&a, &b), "{action:?}: {a:?} vs {b:?}")
                    }
                    (a, b) => prop_assert!(false, "{action:?}: namespace {a:?}, model {b:?}"),
                }
                continue;
            }
            Action::Readdir { path: p, page } => {
                let want = model.resolve(p).and_then(|n| {
                    if is_dir(n) {
                        Ok(model.children(p))
                    } else {
                        Err(KfsError::not_a_directory(p.as_str()))
                    }
                });
                match (list_all(&ns, p, *page), want) {
                    (Ok(got), Ok(want)) => {
                        for (name, _, attr) in &got {
                            prop_assert!(same_attr(attr, &model.nodes[&path::join(p, name)]));
                        }
                        let got: Vec<(String, FileKind)> =
                            got.into_iter().map(|(n, k, _)| (n, k)).collect();
                        prop_assert_eq!(got, want);
                    }
                    (Err(a), Err(b)) => {
                        prop_assert!(same_error(&a, &b), "{action:?}: {a:?} vs {b:?}")
                    }
                    (a, b) => prop_assert!(false, "{action:?}: namespace {a:?}, model {b:?}"),
                }
                continue;
            }
            Action::GetXattr { path: p, name } => {
                let want = model.resolve(p).and_then(|n| {
                    n.xattrs.get(name).cloned().ok_or(KfsError::NoSuchXattr {
                        path: p.clone(),
                        name: name.clone(),
                    })
                });
                same_read(action, ns.get_xattr(p, name), want)?;
                continue;
            }
            Action::ListXattrs { path: p } => {
                let want = model
                    .resolve(p)
                    .map(|n| n.xattrs.keys().cloned().collect::<Vec<_>>());
                same_read(action, ns.list_xattrs(p), want)?;
                continue;
            }
            Action::Readlink { path: p } => {
                let want = model.resolve(p).and_then(|n| {
                    n.target
                        .clone()
                        .ok_or_else(|| KfsError::invalid_argument("not a symbolic link"))
                });
                same_read(action, ns.readlink(p), want)?;
                continue;
            }
            Action::MakeSpecial { path: p, which } => {
                let fid = FileId(next_fid);
                next_fid += 1;
                let special = special_op(*which);
                let mode = if special.kind() == FileKind::Symlink {
                    0o777
                } else {
                    DEFAULT_FILE_MODE
                };
                Op::MakeSpecial {
                    path: p.clone(),
                    special,
                    mode,
                    owner: 0,
                    group: 0,
                    fid,
                    time,
                }
            }
            Action::Mkdir { path: p, parents } => {
                let first_fid = FileId(next_fid);
                next_fid += 4;
                Op::Mkdir {
                    path: p.clone(),
                    parents: *parents,
                    mode: DEFAULT_DIR_MODE,
                    owner: 0,
                    group: 0,
                    first_fid,
                    time,
                }
            }
            Action::Create {
                path: p,
                exclusive,
                replication,
                given,
            } => {
                let fid = FileId(next_fid);
                next_fid += 1;
                Op::Create {
                    path: p.clone(),
                    exclusive: *exclusive,
                    replication: *replication,
                    replication_given: *given,
                    mode: DEFAULT_FILE_MODE,
                    owner: 0,
                    group: 0,
                    fid,
                    time,
                }
            }
            Action::Rename { src, dst } => Op::Rename {
                src: src.clone(),
                dst: dst.clone(),
                time,
            },
            Action::Link { src, dst } => Op::Link {
                src: src.clone(),
                dst: dst.clone(),
                time,
            },
            Action::Remove { path: p } => Op::Remove {
                path: p.clone(),
                time,
            },
            Action::Rmdir { path: p } => Op::Rmdir {
                path: p.clone(),
                time,
            },
            Action::RemoveRecursive { path: p } => Op::RemoveRecursive {
                path: p.clone(),
                time,
            },
            Action::SetReplication {
                path: p,
                replication,
            } => Op::SetReplication {
                path: p.clone(),
                replication: *replication,
            },
            Action::SetMode { path: p, mode } => Op::SetAttr {
                path: p.clone(),
                attr: SetAttr {
                    mode: Some(*mode),
                    ..Default::default()
                },
            },
            Action::SetXattr {
                path: p,
                name,
                value,
            } => Op::SetXattr {
                path: p.clone(),
                name: name.clone(),
                value: ByteBuf::from(value.clone()),
            },
            Action::RemoveXattr { path: p, name } => Op::RemoveXattr {
                path: p.clone(),
                name: name.clone(),
            },
            Action::Volume { v } => {
                let chunk = volume_id(*v);
                let want = if model.volumes.insert(chunk.0) {
                    Ok((MReply::Done, Vec::new()))
                } else {
                    Err(KfsError::already_exists(format!("volume {chunk}")))
                };
                let op = Op::CreateVolume {
                    chunk,
                    version: ChunkVersion(1),
                    replication: 3,
                };
                let got = ns.apply(&op).map(|a| (a.reply, a.freed_chunks));
                check_result(action, got, want)?;
                ns.check_invariants().map_err(TestCaseError::fail)?;
                continue;
            }
            Action::Pack { path: p, v, len } => {
                let fid = ns.stat(p).map(|a| a.fid).unwrap_or(FileId(999_999));
                let volume = volume_id(*v);
                let at = step as u64 * 8;
                let want = match model.resolve(p) {
                    Err(_) => Err(KfsError::not_found(fid.to_string())),
                    Ok(n) if not_regular(n, fid).is_some() => Err(not_regular(n, fid).unwrap()),
                    Ok(_) if !model.volumes.contains(&volume.0) => {
                        Err(KfsError::NoSuchChunk { chunk: volume })
                    }
                    Ok(_) => {
                        let n = model.nodes.get_mut(p).unwrap();
                        let freed = std::mem::take(&mut n.chunks).into_values().collect();
                        n.extent = Some((volume.0, at, u32::from(*len)));
                        n.size = u64::from(*len);
                        n.mtime = time;
                        Ok((MReply::Attr(n.clone()), freed))
                    }
                };
                model.propagate(p);
                let op = Op::SetExtent {
                    fid,
                    volume,
                    at,
                    len: u32::from(*len),
                    time,
                };
                let got = ns.apply(&op).map(|a| (a.reply, a.freed_chunks));
                check_result(action, got, want)?;
                ns.check_invariants().map_err(TestCaseError::fail)?;
                continue;
            }
            Action::Compact { from, to } => {
                let (from, to) = (volume_id(*from), volume_id(*to));
                let mut moves = Vec::new();
                let want = if model.volumes.contains(&from.0) {
                    Ok((MReply::Done, Vec::new()))
                } else {
                    Err(KfsError::NoSuchChunk { chunk: from })
                };
                let mut moved = std::collections::BTreeSet::new();
                for (i, (p, n)) in model.nodes.iter_mut().enumerate() {
                    let Some((volume, at, len)) = n.extent else {
                        continue;
                    };
                    if volume != from.0 || !moved.insert(n.ino) {
                        continue;
                    }
                    let to_at = (1 << 32) + step as u64 * 100_000 + i as u64 * 8;
                    moves.push(ExtentMove {
                        fid: ns.stat(p).unwrap().fid,
                        at,
                        to,
                        to_at,
                        len,
                    });
                    if want.is_ok() && to != from && model.volumes.contains(&to.0) {
                        n.extent = Some((to.0, to_at, len));
                    }
                }
                // A file changed since its record was copied: passed over.
                moves.push(ExtentMove {
                    fid: FileId(999_999),
                    at: 7,
                    to,
                    to_at: 1,
                    len: 1,
                });
                let moved_paths: Vec<String> = model
                    .nodes
                    .iter()
                    .filter(|(_, n)| moved.contains(&n.ino))
                    .map(|(p, _)| p.clone())
                    .collect();
                for p in &moved_paths {
                    // The first name of each file moved holds what the others get.
                    if model.nodes[p].extent.is_some_and(|(v, _, _)| v != from.0) {
                        model.propagate(p);
                    }
                }
                let op = Op::MoveExtents { from, moves };
                let got = ns.apply(&op).map(|a| (a.reply, a.freed_chunks));
                check_result(action, got, want)?;
                ns.check_invariants().map_err(TestCaseError::fail)?;
                continue;
            }
            Action::FreeVolume { v } => {
                let chunk = volume_id(*v);
                let holding = model
                    .nodes
                    .values()
                    .filter(|n| n.extent.is_some_and(|(volume, _, _)| volume == chunk.0))
                    .count();
                let want = if !model.volumes.contains(&chunk.0) {
                    Err(KfsError::NoSuchChunk { chunk })
                } else if holding > 0 {
                    Err(KfsError::invalid_argument("holds records"))
                } else {
                    model.volumes.remove(&chunk.0);
                    Ok((MReply::Done, vec![chunk.0]))
                };
                let got = ns
                    .apply(&Op::FreeVolume { chunk })
                    .map(|a| (a.reply, a.freed_chunks));
                check_result(action, got, want)?;
                ns.check_invariants().map_err(TestCaseError::fail)?;
                continue;
            }
            Action::AllocateChunk { path: p, offset }
            | Action::SetLength {
                path: p,
                size: offset,
                ..
            } => {
                // Addressed by fid: an unknown path stands for a fid that does not exist.
                let fid = ns.stat(p).map(|a| a.fid).unwrap_or(FileId(999_999));
                let expect = match model.resolve(p) {
                    Err(_) => Err(KfsError::not_found(fid.to_string())),
                    Ok(n) => not_regular(n, fid).map_or(Ok(()), Err),
                };
                let (op, want) = if let Action::AllocateChunk { .. } = action {
                    let chunk = next_chunk;
                    next_chunk += 1;
                    let want = expect.and_then(|()| {
                        let n = model.nodes.get_mut(p).unwrap();
                        if n.chunks.contains_key(offset) {
                            return Err(KfsError::already_exists(format!(
                                "{fid} chunk at {offset}"
                            )));
                        }
                        n.chunks.insert(*offset, chunk);
                        Ok((MReply::Done, Vec::new()))
                    });
                    (
                        Op::AllocateChunk {
                            fid,
                            offset: *offset,
                            chunk: ChunkId(chunk),
                            version: ChunkVersion(1),
                        },
                        want,
                    )
                } else {
                    let truncate = matches!(action, Action::SetLength { truncate: true, .. });
                    let want = expect.and_then(|()| {
                        let n = model.nodes.get_mut(p).unwrap();
                        if n.extent.is_some() {
                            return Err(KfsError::invalid_argument("packed"));
                        }
                        // A truncate frees the chunks wholly past the shorter length.
                        let freed: Vec<u64> = if truncate {
                            let cut = n.size.min(*offset);
                            n.chunks.split_off(&cut).into_values().collect()
                        } else {
                            Vec::new()
                        };
                        n.size = *offset;
                        n.mtime = time;
                        Ok((MReply::Attr(n.clone()), freed))
                    });
                    let (fid, size) = (fid, *offset);
                    let op = if truncate {
                        Op::Truncate { fid, size, time }
                    } else {
                        Op::SetLength { fid, size, time }
                    };
                    (op, want)
                };
                model.propagate(p);
                let got = ns.apply(&op).map(|a| (a.reply, a.freed_chunks));
                check_result(action, got, want)?;
                ns.check_invariants().map_err(TestCaseError::fail)?;
                continue;
            }
        };
        let prepared = ns.prepare(&op);
        let got = ns.apply(&op).map(|a| (a.reply, a.freed_chunks));
        if let Ok(Prepared::Unchanged(reply)) = &prepared {
            prop_assert_eq!(
                Some(reply),
                got.as_ref().ok().map(|(r, _)| r),
                "{:?}",
                action
            );
        }
        prop_assert_eq!(
            prepared.is_err(),
            got.is_err(),
            "prepare and apply disagree on {:?}",
            action
        );
        let want = model.apply(action, time);
        if let Some(p) = touched(action) {
            model.propagate(p);
        }
        check_result(action, got, want)?;
        ns.check_invariants().map_err(TestCaseError::fail)?;
    }
    compare_everything(&ns, &model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: support::cases(256), ..ProptestConfig::default() })]

    #[test]
    fn namespace_agrees_with_reference_model(actions in proptest::collection::vec(action(), 1..120)) {
        run(&actions)?;
    }
}
