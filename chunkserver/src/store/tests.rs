//! Model check of the chunk store against in-memory byte arrays: random creates, writes at any
//! offset, reads, version changes, deletes and restarts, with injected faults: bits flipped in a
//! read or on disk, torn writes, a data dir whose disk fails, a disk that fills, and files
//! deleted behind the store's back. Property: a read returns exactly the model's bytes or a
//! checksum error, never wrong data; damage is found where it lies, and a replica found corrupt
//! stays corrupt across restarts.
//!
//! `PROPTEST_CASES=2000 cargo test -p kfs-chunkserver store::tests` for a long run.

use super::chunk_file::{BLOCK_LEN, HEADER_LEN};
use super::io::{FaultyIo, FileIo};
use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const B: u64 = BLOCK_LEN as u64;

#[derive(Clone, Debug)]
enum Step {
    Create(u8),
    Write {
        chunk: u8,
        offset: u64,
        len: u64,
        seed: u8,
    },
    Read {
        chunk: u8,
        offset: u64,
        len: u64,
    },
    SetVersion {
        chunk: u8,
        stale: bool,
    },
    Delete(u8),
    Reopen,
    /// Flip a bit of the next read (it lands in the first checksum the read loads).
    FlipInRead {
        chunk: u8,
        offset: u64,
        bit: u8,
    },
    /// Flip a bit of a chunk file on disk: `at` picks a place among its data and checksums.
    FlipOnDisk {
        chunk: u8,
        at: u64,
        in_checksum: bool,
    },
    /// A write torn after `keep` bytes by a crash; then a restart.
    TornWrite {
        chunk: u8,
        offset: u64,
        len: u64,
        keep: u64,
    },
    /// The disk of one data dir fails during a write; then a restart with the disk back.
    DiskFails {
        chunk: u8,
    },
    /// The disks fill: a write finds room for `room` more bytes only.
    DiskFull {
        chunk: u8,
        offset: u64,
        len: u64,
        room: u64,
    },
    /// A replica's file is deleted behind the store's back; then it is scrubbed.
    FileDeleted {
        chunk: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let chunk = || 0u8..5;
    let offset = || prop_oneof![Just(0u64), Just(B), 0u64..4 * B];
    let len = || prop_oneof![Just(B), 0u64..2 * B + 100];
    prop_oneof![
        3 => chunk().prop_map(Step::Create),
        8 => (chunk(), offset(), len(), any::<u8>()).prop_map(|(chunk, offset, len, seed)| Step::Write { chunk, offset, len, seed }),
        6 => (chunk(), offset(), len()).prop_map(|(chunk, offset, len)| Step::Read { chunk, offset, len }),
        2 => (chunk(), any::<bool>()).prop_map(|(chunk, stale)| Step::SetVersion { chunk, stale }),
        1 => chunk().prop_map(Step::Delete),
        1 => Just(Step::Reopen),
        1 => (chunk(), 0u64..4 * B, 0u8..32).prop_map(|(chunk, offset, bit)| Step::FlipInRead { chunk, offset, bit }),
        1 => (chunk(), any::<u64>(), any::<bool>()).prop_map(|(chunk, at, in_checksum)| Step::FlipOnDisk { chunk, at, in_checksum }),
        1 => (chunk(), offset(), len(), any::<u64>()).prop_map(|(chunk, offset, len, keep)| Step::TornWrite { chunk, offset, len, keep }),
        1 => chunk().prop_map(|chunk| Step::DiskFails { chunk }),
        1 => (chunk(), offset(), len(), 0u64..2 * B).prop_map(|(chunk, offset, len, room)| Step::DiskFull { chunk, offset, len, room }),
        1 => chunk().prop_map(|chunk| Step::FileDeleted { chunk }),
    ]
}

#[derive(Clone, Debug, Default)]
struct MChunk {
    version: u64,
    data: Vec<u8>,
    /// Blocks damaged on disk.
    bad: BTreeSet<u64>,
    /// Found corrupt: refused from then on, across restarts.
    corrupt: bool,
    /// Its file was deleted behind the store's back: gone after a restart.
    gone: bool,
}

impl MChunk {
    /// The first damaged block a write of `len` bytes at `offset` must verify first (one whose
    /// old bytes it keeps: see `chunk_file::write`).
    fn bad_block_kept_by(&self, offset: u64, len: u64) -> Option<u64> {
        let length = self.data.len() as u64;
        let end = offset + len;
        let new_length = length.max(end);
        (offset.min(length) / B..=(end - 1) / B).find(|b| {
            let (bs, be) = (b * B, ((b + 1) * B).min(new_length));
            bs < length && !(offset <= bs && end >= be) && self.bad.contains(b)
        })
    }

    /// Applies a write that succeeded: its bytes, and fresh checksums on the blocks it covers
    /// whole.
    fn apply_write(&mut self, offset: u64, data: &[u8]) {
        let length = self.data.len() as u64;
        let end = offset + data.len() as u64;
        let new_length = length.max(end);
        if self.data.len() < end as usize {
            self.data.resize(end as usize, 0);
        }
        self.data[offset as usize..end as usize].copy_from_slice(data);
        for b in offset.min(length) / B..=(end - 1) / B {
            let (bs, be) = (b * B, ((b + 1) * B).min(new_length));
            if offset <= bs && end >= be {
                self.bad.remove(&b);
            }
        }
    }
}

fn pattern(seed: u8, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i * 7 % 251) as u8))
        .collect()
}

struct Harness {
    dirs: Vec<tempfile::TempDir>,
    io: Arc<FaultyIo>,
    store: ChunkStore,
    model: BTreeMap<u8, MChunk>,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn new() -> Harness {
        let dirs = vec![tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let io = Arc::new(FaultyIo::new());
        let store = Self::open(&dirs, &io);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Harness {
            dirs,
            io,
            store,
            model: BTreeMap::new(),
            rt,
        }
    }

    fn open(dirs: &[tempfile::TempDir], io: &Arc<FaultyIo>) -> ChunkStore {
        let roots: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
        ChunkStore::open(&roots, io.clone()).unwrap()
    }

    fn reopen(&mut self) {
        self.store = Self::open(&self.dirs, &self.io);
        self.model.retain(|_, m| !m.gone);
    }

    fn id(chunk: u8) -> ChunkId {
        ChunkId(100 + chunk as u64)
    }

    /// The store's list matches the model's: ids, versions, lengths, corrupt ones apart.
    fn check_report(&self) -> Result<(), TestCaseError> {
        let (good, corrupt) = self.store.report();
        let want_good: Vec<(ChunkId, ChunkVersion, u64)> = self
            .model
            .iter()
            .filter(|(_, m)| !m.corrupt)
            .map(|(c, m)| (Self::id(*c), ChunkVersion(m.version), m.data.len() as u64))
            .collect();
        let got_good: Vec<(ChunkId, ChunkVersion, u64)> = good
            .iter()
            .map(|r| (r.chunk, r.version, r.length))
            .collect();
        prop_assert_eq!(got_good, want_good);
        let want_corrupt: Vec<ChunkId> = self
            .model
            .iter()
            .filter(|(_, m)| m.corrupt)
            .map(|(c, _)| Self::id(*c))
            .collect();
        prop_assert_eq!(corrupt, want_corrupt);
        Ok(())
    }

    /// The path of a chunk's file, wherever the store put it (by its corrupt name once found
    /// corrupt).
    fn file_of(&self, chunk: u8, version: u64) -> PathBuf {
        let (id, v) = (Self::id(chunk), ChunkVersion(version));
        let names = [
            chunk_file::file_name(id, v),
            chunk_file::corrupt_file_name(id, v),
        ];
        self.dirs
            .iter()
            .flat_map(|d| {
                let file = data_dir::replica_path(d.path(), id, v);
                names.iter().map(move |n| file.with_file_name(n))
            })
            .find(|p| p.exists())
            .expect("the chunk's file exists")
    }

    fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match step.clone() {
            Step::Create(c) => {
                let got = self
                    .rt
                    .block_on(self.store.create(Self::id(c), ChunkVersion(1)));
                match self.model.entry(c) {
                    std::collections::btree_map::Entry::Occupied(_) => prop_assert!(
                        matches!(got, Err(KfsError::AlreadyExists { .. })),
                        "{got:?}"
                    ),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        prop_assert!(got.is_ok(), "{got:?}");
                        slot.insert(MChunk {
                            version: 1,
                            ..Default::default()
                        });
                    }
                }
            }
            Step::Write {
                chunk,
                offset,
                len,
                seed,
            } => {
                let data = pattern(seed, len);
                let version = self.model.get(&chunk).map_or(1, |m| m.version);
                let got = self.rt.block_on(self.store.write(
                    Self::id(chunk),
                    ChunkVersion(version),
                    offset,
                    data.clone(),
                ));
                let Some(m) = self.model.get_mut(&chunk) else {
                    prop_assert!(matches!(got, Err(KfsError::NoSuchChunk { .. })), "{got:?}");
                    return Ok(());
                };
                if m.corrupt {
                    prop_assert!(
                        matches!(got, Err(KfsError::CorruptReplica { .. })),
                        "{got:?}"
                    );
                    return Ok(());
                }
                if len == 0 {
                    prop_assert_eq!(got.ok(), Some(m.data.len() as u64));
                    return Ok(());
                }
                let new_length = (m.data.len() as u64).max(offset + len);
                if let Some(b) = m.bad_block_kept_by(offset, len) {
                    prop_assert!(
                        matches!(got, Err(KfsError::ChecksumMismatch { offset: o, .. }) if o == b * B),
                        "{got:?}"
                    );
                    m.corrupt = true;
                    return Ok(());
                }
                prop_assert_eq!(got.ok(), Some(new_length));
                m.apply_write(offset, &data);
            }
            Step::Read { chunk, offset, len } => self.check_read(chunk, offset, len)?,
            Step::SetVersion { chunk, stale } => {
                let Some(m) = self.model.get(&chunk).cloned() else {
                    let got = self.rt.block_on(self.store.set_version(
                        Self::id(chunk),
                        ChunkVersion(1),
                        ChunkVersion(2),
                    ));
                    prop_assert!(matches!(got, Err(KfsError::NoSuchChunk { .. })), "{got:?}");
                    return Ok(());
                };
                let from = if stale { m.version + 7 } else { m.version };
                let got = self.rt.block_on(self.store.set_version(
                    Self::id(chunk),
                    ChunkVersion(from),
                    ChunkVersion(m.version + 1),
                ));
                if m.corrupt {
                    prop_assert!(
                        matches!(got, Err(KfsError::CorruptReplica { .. })),
                        "{got:?}"
                    );
                } else if stale {
                    prop_assert!(matches!(got, Err(KfsError::StaleVersion { .. })), "{got:?}");
                } else {
                    prop_assert!(got.is_ok(), "{got:?}");
                    self.model.get_mut(&chunk).unwrap().version += 1;
                }
            }
            Step::Delete(c) => {
                prop_assert!(self.rt.block_on(self.store.delete(Self::id(c))).is_ok());
                self.model.remove(&c);
            }
            Step::Reopen => {
                self.reopen();
                self.check_report()?;
            }
            Step::FlipInRead { chunk, offset, bit } => {
                let Some(m) = self.model.get(&chunk) else {
                    return Ok(());
                };
                if m.corrupt || offset >= m.data.len() as u64 {
                    return Ok(());
                }
                self.io
                    .set(|f| f.flip_bit_in_next_read = Some(bit as usize));
                let got = self.rt.block_on(self.store.read(
                    Self::id(chunk),
                    ChunkVersion(m.version),
                    offset,
                    10,
                ));
                self.io.set(|f| f.flip_bit_in_next_read = None);
                let block = offset / B * B;
                prop_assert!(
                    matches!(got, Err(KfsError::ChecksumMismatch { offset: o, .. }) if o == block),
                    "{got:?}"
                );
                self.model.get_mut(&chunk).unwrap().corrupt = true;
            }
            Step::FlipOnDisk {
                chunk,
                at,
                in_checksum,
            } => {
                let Some(m) = self.model.get(&chunk) else {
                    return Ok(());
                };
                if m.data.is_empty() || m.gone {
                    return Ok(());
                }
                let blocks = (m.data.len() as u64).div_ceil(B);
                let (pos, block) = if in_checksum {
                    let block = at % blocks;
                    (64 + block * 4 + at % 4, block)
                } else {
                    let o = at % m.data.len() as u64;
                    (HEADER_LEN + o, o / B)
                };
                let path = self.file_of(chunk, m.version);
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[pos as usize] ^= 1 << (at % 8);
                std::fs::write(&path, &bytes).unwrap();
                self.model.get_mut(&chunk).unwrap().bad.insert(block);
            }
            Step::TornWrite {
                chunk,
                offset,
                len,
                keep,
            } => {
                let Some(m) = self.model.get(&chunk).cloned() else {
                    return Ok(());
                };
                if m.corrupt || len == 0 {
                    return Ok(());
                }
                self.io
                    .set(|f| f.tear_next_write_after = Some((keep % len) as usize));
                let got = self.rt.block_on(self.store.write(
                    Self::id(chunk),
                    ChunkVersion(m.version),
                    offset,
                    pattern(9, len),
                ));
                self.io.set(|f| f.tear_next_write_after = None);
                if got.is_ok() {
                    // The write did not reach the disk (an old block failed first, say).
                    return Ok(());
                }
                // The crash: restart, then every read of the chunk gives its old bytes or an
                // error; the master would then have the replica deleted.
                self.reopen();
                let old = m.data.clone();
                for start in (0..old.len().max(1) as u64).step_by(B as usize / 2) {
                    let got = self.rt.block_on(self.store.read(
                        Self::id(chunk),
                        ChunkVersion(m.version),
                        start,
                        B,
                    ));
                    match got {
                        Ok(bytes) => {
                            let end = (start + B).min(old.len() as u64);
                            prop_assert!(start < end || bytes.is_empty());
                            if start < end {
                                prop_assert!(
                                    *bytes == old[start as usize..end as usize],
                                    "a torn write served wrong bytes"
                                );
                            }
                        }
                        Err(e) => prop_assert!(
                            matches!(
                                e,
                                KfsError::ChecksumMismatch { .. } | KfsError::CorruptReplica { .. }
                            ),
                            "{e:?}"
                        ),
                    }
                }
                prop_assert!(self.rt.block_on(self.store.delete(Self::id(chunk))).is_ok());
                self.model.remove(&chunk);
            }
            Step::DiskFails { chunk } => {
                let Some(m) = self.model.get(&chunk).cloned() else {
                    return Ok(());
                };
                if m.corrupt {
                    return Ok(());
                }
                self.io
                    .set(|f| f.fail_everything = Some(std::io::ErrorKind::Other));
                let got = self.rt.block_on(self.store.write(
                    Self::id(chunk),
                    ChunkVersion(m.version),
                    0,
                    vec![1],
                ));
                self.io.set(|f| f.fail_everything = None);
                prop_assert!(matches!(got, Err(KfsError::Io(_))), "{got:?}");
                prop_assert_eq!(self.store.failed_dirs().len(), 1);
                prop_assert!(
                    self.store.replica(Self::id(chunk)).is_none(),
                    "a failed dir's replicas leave the index"
                );
                // The disk comes back with a restart; nothing of the failed write was written.
                self.reopen();
                self.check_report()?;
            }
            Step::DiskFull {
                chunk,
                offset,
                len,
                room,
            } => {
                let Some(m) = self.model.get(&chunk).cloned() else {
                    return Ok(());
                };
                if m.corrupt || len == 0 {
                    return Ok(());
                }
                let end = offset + len;
                let length = m.data.len() as u64;
                // A damaged block the write must verify fails it before any byte is written
                // (the Write step checks that case).
                if m.bad_block_kept_by(offset, len).is_some() {
                    return Ok(());
                }
                self.io.set(|f| f.space_left = Some(room));
                let got = self.rt.block_on(self.store.write(
                    Self::id(chunk),
                    ChunkVersion(m.version),
                    offset,
                    pattern(11, len),
                ));
                self.io.set(|f| f.space_left = None);
                let grows = end.saturating_sub(length);
                if grows <= room {
                    prop_assert_eq!(got.ok(), Some(length.max(end)));
                    let m = self.model.get_mut(&chunk).unwrap();
                    m.apply_write(offset, &pattern(11, len));
                } else {
                    // Refused whole: the replica keeps its old bytes, and is not corrupt.
                    prop_assert!(matches!(got, Err(KfsError::NoSpace(_))), "{got:?}");
                    prop_assert!(self.store.failed_dirs().is_empty());
                }
            }
            Step::FileDeleted { chunk } => {
                let Some(m) = self.model.get(&chunk).cloned().filter(|m| !m.gone) else {
                    return Ok(());
                };
                std::fs::remove_file(self.file_of(chunk, m.version)).unwrap();
                let got = self
                    .rt
                    .block_on(self.store.verify(Self::id(chunk), ChunkVersion(m.version)));
                prop_assert!(
                    matches!(got, Err(KfsError::CorruptReplica { .. })),
                    "{got:?}"
                );
                let m = self.model.get_mut(&chunk).unwrap();
                m.corrupt = true;
                m.gone = true;
            }
        }
        Ok(())
    }

    fn check_read(&mut self, chunk: u8, offset: u64, len: u64) -> Result<(), TestCaseError> {
        let version = self.model.get(&chunk).map_or(1, |m| m.version);
        let got =
            self.rt.block_on(
                self.store
                    .read(Self::id(chunk), ChunkVersion(version), offset, len),
            );
        let Some(m) = self.model.get_mut(&chunk) else {
            prop_assert!(matches!(got, Err(KfsError::NoSuchChunk { .. })), "{got:?}");
            return Ok(());
        };
        if m.corrupt {
            prop_assert!(
                matches!(got, Err(KfsError::CorruptReplica { .. })),
                "{got:?}"
            );
            return Ok(());
        }
        let length = m.data.len() as u64;
        let end = (offset + len).min(length);
        if offset >= length || len == 0 {
            prop_assert_eq!(got.ok().map(|b| b.to_vec()), Some(Vec::new()));
            return Ok(());
        }
        if let Some(b) = (offset / B..=(end - 1) / B).find(|b| m.bad.contains(b)) {
            prop_assert!(
                matches!(got, Err(KfsError::ChecksumMismatch { offset: o, .. }) if o == b * B),
                "{got:?}"
            );
            m.corrupt = true;
            return Ok(());
        }
        let got = got.map_err(|e| TestCaseError::fail(format!("read failed: {e}")))?;
        prop_assert!(
            *got == m.data[offset as usize..end as usize],
            "wrong bytes read"
        );
        Ok(())
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn chunk_store_agrees_with_byte_arrays(steps in proptest::collection::vec(step(), 1..40)) {
        let mut h = Harness::new();
        for step in &steps {
            h.run(step)?;
        }
        h.reopen();
        h.check_report()?;
        for c in h.model.keys().copied().collect::<Vec<_>>() {
            h.check_read(c, 0, 8 * B)?;
        }
    }
}

#[test]
fn data_dirs_that_disagree_on_identity_refuse_to_open() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let io: Arc<dyn FileIo> = Arc::new(io::RealIo);
    let first = ChunkStore::open(&[a.path().to_path_buf()], io.clone())
        .unwrap()
        .server_id();
    let second = ChunkStore::open(&[b.path().to_path_buf()], io.clone())
        .unwrap()
        .server_id();
    assert_ne!(first, second);
    match ChunkStore::open(
        &[a.path().to_path_buf(), b.path().to_path_buf()],
        io.clone(),
    ) {
        Err(e @ StoreError::IdentityMismatch { .. }) => {
            assert!(e.to_string().contains("different servers"))
        }
        other => panic!("expected a refusal, got {:?}", other.map(|s| s.server_id())),
    }
    // A new, empty data dir joins the server of the existing one.
    let c = tempfile::tempdir().unwrap();
    let joined = ChunkStore::open(&[a.path().to_path_buf(), c.path().to_path_buf()], io).unwrap();
    assert_eq!(joined.server_id(), first);
}

/// Real I/O whose free space is fixed per data dir (by path prefix), so placement does not
/// depend on what other tests write to the shared temp file system meanwhile.
struct FixedSpaceIo {
    dirs: Vec<(std::path::PathBuf, u64)>,
}

impl FileIo for FixedSpaceIo {
    fn read_at(&self, file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        io::RealIo.read_at(file, buf, offset)
    }
    fn write_at(&self, file: &std::fs::File, buf: &[u8], offset: u64) -> std::io::Result<()> {
        io::RealIo.write_at(file, buf, offset)
    }
    fn sync(&self, file: &std::fs::File) -> std::io::Result<()> {
        io::RealIo.sync(file)
    }
    fn sync_dir(&self, dir: &std::fs::File) -> std::io::Result<()> {
        io::RealIo.sync_dir(dir)
    }
    fn allocate(&self, file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<()> {
        io::RealIo.allocate(file, offset, len)
    }
    fn space(&self, path: &std::path::Path) -> std::io::Result<(u64, u64)> {
        let (capacity, real) = io::RealIo.space(path)?;
        let fixed = self
            .dirs
            .iter()
            .find(|(dir, _)| path.starts_with(dir))
            .map_or(real, |&(_, available)| available);
        Ok((capacity, fixed))
    }
}

#[test]
fn new_chunks_go_to_the_data_dir_with_most_free_space() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    // The second dir has more room, so it takes the new chunk even though it is listed last.
    let io: Arc<dyn FileIo> = Arc::new(FixedSpaceIo {
        dirs: vec![
            (a.path().to_path_buf(), 10 << 30),
            (b.path().to_path_buf(), 20 << 30),
        ],
    });
    let store = ChunkStore::open(&[a.path().to_path_buf(), b.path().to_path_buf()], io).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(store.create(ChunkId(1), ChunkVersion(1)))
        .unwrap();
    assert!(data_dir::replica_path(b.path(), ChunkId(1), ChunkVersion(1)).exists());
    assert!(!data_dir::replica_path(a.path(), ChunkId(1), ChunkVersion(1)).exists());
    let space = store.space();
    assert!(space.capacity > 0 && space.available > 0);
    assert_eq!(space.used, HEADER_LEN);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn files_in(dir: &tempfile::TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("chunks"))
        .unwrap()
        .flat_map(|sub| std::fs::read_dir(sub.unwrap().path()).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn full_disks_refuse_new_replicas_and_writes_leaving_nothing_behind() {
    let a = tempfile::tempdir().unwrap();
    let io = Arc::new(FaultyIo::new());
    let store = ChunkStore::open(&[a.path().to_path_buf()], io.clone()).unwrap();
    let rt = runtime();
    // More kept free than the file system has: no new replica, and none offered.
    store.set_space_limits(0, u64::MAX);
    store.refresh_space();
    let refused = rt.block_on(store.create(ChunkId(1), ChunkVersion(1)));
    assert!(
        matches!(&refused, Err(KfsError::NoSpace(why)) if why.contains("reserve_bytes")),
        "{refused:?}"
    );
    assert_eq!(store.space().available, 0);
    assert!(files_in(&a).is_empty());

    // A disk that fills while the header is written: the create fails and leaves no file.
    store.set_space_limits(0, 0);
    io.set(|f| f.space_left = Some(10));
    let full = rt.block_on(store.create(ChunkId(1), ChunkVersion(1)));
    assert!(matches!(full, Err(KfsError::NoSpace(_))), "{full:?}");
    assert!(files_in(&a).is_empty(), "{:?}", files_in(&a));
    assert_eq!(store.chunk_count(), 0);
    assert!(
        store.failed_dirs().is_empty(),
        "a full disk is not a failed one"
    );

    // capacity_bytes caps what writes may add.
    io.set(|f| f.space_left = None);
    rt.block_on(store.create(ChunkId(2), ChunkVersion(1)))
        .unwrap();
    store.set_space_limits(HEADER_LEN + 1000, 0);
    rt.block_on(store.write(ChunkId(2), ChunkVersion(1), 0, vec![1u8; 1000]))
        .unwrap();
    let over = rt.block_on(store.write(ChunkId(2), ChunkVersion(1), 1000, vec![1u8; 1]));
    assert!(
        matches!(&over, Err(KfsError::NoSpace(why)) if why.contains("capacity_bytes")),
        "{over:?}"
    );
    let refused = rt.block_on(store.create(ChunkId(3), ChunkVersion(1)));
    assert!(matches!(refused, Err(KfsError::NoSpace(_))), "{refused:?}");
    assert_eq!(store.space().available, 0);
    // Overwrites still fit.
    rt.block_on(store.write(ChunkId(2), ChunkVersion(1), 0, vec![2u8; 10]))
        .unwrap();
}

#[test]
fn what_a_failed_create_left_is_removed_at_start_not_reported() {
    let a = tempfile::tempdir().unwrap();
    let io: Arc<dyn FileIo> = Arc::new(io::RealIo);
    drop(ChunkStore::open(&[a.path().to_path_buf()], io.clone()).unwrap());
    std::fs::write(
        data_dir::replica_path(a.path(), ChunkId(7), ChunkVersion(1)),
        b"",
    )
    .unwrap();
    std::fs::write(
        data_dir::replica_path(a.path(), ChunkId(8), ChunkVersion(2)),
        vec![0u8; HEADER_LEN as usize],
    )
    .unwrap();
    let store = ChunkStore::open(&[a.path().to_path_buf()], io).unwrap();
    assert_eq!(store.report(), (Vec::new(), Vec::new()));
    assert!(files_in(&a).is_empty(), "{:?}", files_in(&a));
}

#[test]
fn corrupt_and_missing_replicas_stay_reported_across_restarts() {
    let a = tempfile::tempdir().unwrap();
    let io: Arc<dyn FileIo> = Arc::new(io::RealIo);
    let roots = [a.path().to_path_buf()];
    let store = ChunkStore::open(&roots, io.clone()).unwrap();
    let rt = runtime();
    let v = ChunkVersion(1);
    for c in [1, 2, 3] {
        rt.block_on(store.create(ChunkId(c), v)).unwrap();
        rt.block_on(store.write(ChunkId(c), v, 0, vec![c as u8; 3 * BLOCK_LEN]))
            .unwrap();
    }
    // Chunk 1: a flipped bit on disk, found by a read.
    let path = data_dir::replica_path(a.path(), ChunkId(1), v);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_LEN as usize + 5] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(rt.block_on(store.read(ChunkId(1), v, 0, 10)).is_err());
    // Chunk 2: its file deleted; chunk 3: cut short. Both found by the scrubber's check.
    std::fs::remove_file(data_dir::replica_path(a.path(), ChunkId(2), v)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(data_dir::replica_path(a.path(), ChunkId(3), v))
        .unwrap()
        .set_len(HEADER_LEN + 10)
        .unwrap();
    for c in [2, 3] {
        let got = rt.block_on(store.verify(ChunkId(c), v));
        assert!(
            matches!(got, Err(KfsError::CorruptReplica { .. })),
            "{c}: {got:?}"
        );
    }
    assert_eq!(store.corrupt(), vec![ChunkId(1), ChunkId(2), ChunkId(3)]);
    assert!(store.failed_dirs().is_empty());
    drop(store);

    // After a restart: 1 and 3 are still corrupt (their files renamed), 2 is simply gone.
    let store = ChunkStore::open(&roots, io).unwrap();
    assert_eq!(store.report(), (Vec::new(), vec![ChunkId(1), ChunkId(3)]));
    for c in [1, 3] {
        let got = rt.block_on(store.read(ChunkId(c), v, 0, 10));
        assert!(
            matches!(got, Err(KfsError::CorruptReplica { .. })),
            "{got:?}"
        );
        rt.block_on(store.delete(ChunkId(c))).unwrap();
    }
    assert!(files_in(&a).is_empty(), "{:?}", files_in(&a));
}
