//! Model check of the store's volumes against a map of extents: random appends (concurrent
//! ones queued together), record reads, restarts, appends torn by a crash, a disk that fills,
//! and bits flipped on disk. Property: a read of an acknowledged record returns exactly its
//! bytes or a corruption error (only when a bit of it was flipped), never other bytes; an append
//! lands at the volume's end or is refused; a volume seals at a restart; the scrubber's check
//! finds damage to an acknowledged record and takes a torn tail for none.
//!
//! `PROPTEST_CASES=2000 cargo test -p kfs-chunkserver store::volume_tests` for a long run.

use super::io::{FaultyIo, FileIo};
use super::volume_file::{self, HEADER_LEN, record_len};
use super::*;
use kfs_common::FileId;
use proptest::prelude::*;
use std::collections::BTreeMap;

const VOLUMES: u8 = 3;

#[derive(Clone, Debug)]
enum Step {
    /// Appends to one volume, all queued before the dir's thread takes any.
    Appends {
        volume: u8,
        lens: Vec<u16>,
        seed: u8,
    },
    /// An append naming another offset than the volume's end.
    AppendElsewhere {
        volume: u8,
        back: u64,
    },
    Read {
        volume: u8,
        pick: usize,
    },
    Reopen,
    /// An append torn after `keep` bytes by a crash; then a restart.
    TornAppend {
        volume: u8,
        len: u16,
        keep: u64,
    },
    /// The disk fills: an append finds room for `room` more bytes only.
    DiskFull {
        volume: u8,
        len: u16,
        room: u64,
    },
    /// A bit of an acknowledged record flipped on disk.
    FlipOnDisk {
        volume: u8,
        pick: usize,
        at: u64,
    },
    Scrub {
        volume: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let volume = || 0u8..VOLUMES;
    let len = || prop_oneof![Just(0u16), 1u16..200, Just(6144u16), 6000u16..9000];
    prop_oneof![
        6 => (volume(), prop::collection::vec(len(), 1..12), any::<u8>()).prop_map(|(volume, lens, seed)| Step::Appends { volume, lens, seed }),
        1 => (volume(), 1u64..100).prop_map(|(volume, back)| Step::AppendElsewhere { volume, back }),
        6 => (volume(), any::<usize>()).prop_map(|(volume, pick)| Step::Read { volume, pick }),
        1 => Just(Step::Reopen),
        1 => (volume(), len(), any::<u64>()).prop_map(|(volume, len, keep)| Step::TornAppend { volume, len, keep }),
        1 => (volume(), len(), 0u64..9000).prop_map(|(volume, len, room)| Step::DiskFull { volume, len, room }),
        1 => (volume(), any::<usize>(), any::<u64>()).prop_map(|(volume, pick, at)| Step::FlipOnDisk { volume, pick, at }),
        2 => volume().prop_map(|volume| Step::Scrub { volume }),
    ]
}

/// One acknowledged record.
#[derive(Clone, Debug)]
struct MRecord {
    fid: FileId,
    data: Vec<u8>,
    /// The bits of it flipped on disk, as `(byte, bit)`: a second flip of one bit restores it.
    flips: std::collections::BTreeSet<(u64, u64)>,
}

impl MRecord {
    /// Whether it differs from what was acknowledged.
    fn flipped(&self) -> bool {
        !self.flips.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
struct MVolume {
    /// Acknowledged records by offset.
    records: BTreeMap<u64, MRecord>,
    /// The volume's end as the store holds it (torn bytes included once a crash left them).
    end: u64,
    /// Sealed by a restart.
    sealed: bool,
    /// Found corrupt: refused from then on.
    corrupt: bool,
}

struct Harness {
    dir: tempfile::TempDir,
    io: Arc<FaultyIo>,
    store: ChunkStore,
    rt: tokio::runtime::Runtime,
    model: Vec<MVolume>,
    next_fid: u64,
}

const V: ChunkVersion = ChunkVersion(1);

fn id(volume: u8) -> ChunkId {
    ChunkId(100 + volume as u64)
}

fn bytes(len: u16, seed: u8, fid: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(131) ^ fid ^ seed as u64) as u8)
        .collect()
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let io = Arc::new(FaultyIo::new());
        let store =
            ChunkStore::open(&[dir.path().to_path_buf()], io.clone() as Arc<dyn FileIo>).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for v in 0..VOLUMES {
            rt.block_on(store.create_volume(id(v), V)).unwrap();
        }
        Harness {
            dir,
            io,
            store,
            rt,
            model: vec![MVolume::default(); VOLUMES as usize],
            next_fid: 1,
        }
    }

    fn reopen(&mut self) {
        let roots = [self.dir.path().to_path_buf()];
        // (The old store's threads end as it drops; the new one scans what is on disk.)
        self.store = ChunkStore::open(&roots, self.io.clone() as Arc<dyn FileIo>).unwrap();
        for m in &mut self.model {
            m.sealed = true;
        }
    }

    fn path(&self, volume: u8) -> std::path::PathBuf {
        data_dir::replica_path(self.dir.path(), id(volume), V)
    }

    fn fid(&mut self) -> FileId {
        self.next_fid += 1;
        FileId(self.next_fid)
    }

    /// The error an append must get from a volume in this state, if any.
    fn refusal(&self, volume: u8) -> Option<&'static str> {
        let m = &self.model[volume as usize];
        if m.corrupt {
            Some("corrupt")
        } else if m.sealed {
            Some("sealed")
        } else {
            None
        }
    }

    fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match step {
            Step::Appends { volume, lens, seed } => {
                let v = *volume as usize;
                let mut at = self.model[v].end;
                let mut planned = Vec::new();
                for &len in lens {
                    let fid = self.fid();
                    planned.push((at, fid, bytes(len, *seed, fid.0)));
                    at += record_len(len as u64);
                }
                let store = &self.store;
                let appends = planned
                    .iter()
                    .map(|(at, fid, data)| store.append(id(*volume), V, *at, *fid, data.clone()))
                    .collect();
                let got = self
                    .rt
                    .block_on(super::batch_tests::queued_together(store, appends));
                for ((at, fid, data), got) in planned.into_iter().zip(got) {
                    match (self.refusal(*volume), got) {
                        (None, Ok(end)) => {
                            prop_assert_eq!(end, at + record_len(data.len() as u64));
                            let m = &mut self.model[v];
                            m.end = end;
                            m.records.insert(
                                at,
                                MRecord {
                                    fid,
                                    data,
                                    flips: Default::default(),
                                },
                            );
                        }
                        (Some("sealed"), Err(KfsError::AppendRefused { .. })) => {}
                        (Some("corrupt"), Err(KfsError::CorruptReplica { .. })) => {}
                        (expected, got) => {
                            prop_assert!(
                                false,
                                "append at {at}: expected {expected:?}, got {got:?}"
                            )
                        }
                    }
                }
            }
            Step::AppendElsewhere { volume, back } => {
                let end = self.model[*volume as usize].end;
                let asked = if end >= 8 * back {
                    end - 8 * back
                } else {
                    end + 8 * back
                };
                let fid = self.fid();
                let got =
                    self.rt
                        .block_on(self.store.append(id(*volume), V, asked, fid, vec![1u8; 10]));
                match (self.refusal(*volume), got) {
                    (Some("corrupt"), Err(KfsError::CorruptReplica { .. })) => {}
                    (_, Err(KfsError::AppendRefused { .. })) => {}
                    (_, other) => {
                        prop_assert!(false, "an append at {asked}, the end at {end}: {other:?}")
                    }
                }
            }
            Step::Read { volume, pick } => {
                let m = &self.model[*volume as usize];
                let Some((&at, r)) = m.records.iter().nth(pick % m.records.len().max(1)) else {
                    return Ok(());
                };
                let r = r.clone();
                let got = self.rt.block_on(self.store.read_record(
                    id(*volume),
                    V,
                    at,
                    r.fid,
                    r.data.len() as u64,
                ));
                match got {
                    Ok(data) => {
                        prop_assert!(!r.flipped() || m.corrupt, "a flipped record read back");
                        prop_assert_eq!(&data[..], &r.data[..]);
                    }
                    Err(KfsError::ChecksumMismatch { .. } | KfsError::CorruptReplica { .. }) => {
                        prop_assert!(r.flipped() || m.corrupt, "a good record refused");
                        self.model[*volume as usize].corrupt = true;
                    }
                    // A flipped header reads as no record of this file: refused, nothing condemned.
                    Err(KfsError::InvalidArgument(_)) => {
                        prop_assert!(r.flipped(), "a good record refused");
                    }
                    Err(e) => prop_assert!(false, "read: {e}"),
                }
            }
            Step::Reopen => self.reopen(),
            Step::TornAppend { volume, len, keep } => {
                let v = *volume as usize;
                if self.refusal(*volume).is_some() {
                    return Ok(());
                }
                let total = record_len(*len as u64);
                let keep = keep % total;
                self.io
                    .set(|f| f.tear_next_write_after = Some(keep as usize));
                let fid = self.fid();
                let end = self.model[v].end;
                let got = self.rt.block_on(self.store.append(
                    id(*volume),
                    V,
                    end,
                    fid,
                    bytes(*len, 0, fid.0),
                ));
                self.io.set(|f| f.tear_next_write_after = None);
                prop_assert!(got.is_err(), "a torn append acknowledged");
                // The crash: the torn bytes stay on disk (the store cut them back; put them there
                // again as a crash before the cut would have left them).
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(self.path(*volume))
                    .unwrap();
                use std::os::unix::fs::FileExt;
                file.write_all_at(&vec![0xA5u8; keep as usize], HEADER_LEN + end)
                    .unwrap();
                self.reopen();
                self.model[v].end = end + keep;
            }
            Step::DiskFull { volume, len, room } => {
                let v = *volume as usize;
                if self.refusal(*volume).is_some() {
                    return Ok(());
                }
                self.io.set(|f| f.space_left = Some(*room));
                let fid = self.fid();
                let end = self.model[v].end;
                let data = bytes(*len, 1, fid.0);
                let got =
                    self.rt
                        .block_on(self.store.append(id(*volume), V, end, fid, data.clone()));
                self.io.set(|f| f.space_left = None);
                match got {
                    Ok(new_end) => {
                        prop_assert!(record_len(*len as u64) <= *room);
                        let m = &mut self.model[v];
                        m.records.insert(
                            end,
                            MRecord {
                                fid,
                                data,
                                flips: Default::default(),
                            },
                        );
                        m.end = new_end;
                    }
                    Err(KfsError::NoSpace(_)) => {
                        prop_assert_eq!(
                            self.store.replica(id(*volume)).map(|r| r.1),
                            Some(end),
                            "a failed append left the volume as it was"
                        );
                    }
                    Err(e) => prop_assert!(false, "a full disk: {e}"),
                }
            }
            Step::FlipOnDisk { volume, pick, at } => {
                let v = *volume as usize;
                let m = &self.model[v];
                if m.corrupt {
                    // (Its file was set aside under its corrupt name.)
                    return Ok(());
                }
                let Some((&start, r)) = m.records.iter().nth(pick % m.records.len().max(1)) else {
                    return Ok(());
                };
                // Anywhere in the record's header or data.
                let span = volume_file::RECORD_HEADER_LEN + r.data.len() as u64;
                let byte = HEADER_LEN + start + at % span;
                let path = self.path(*volume);
                let mut all = std::fs::read(&path).unwrap();
                all[byte as usize] ^= 1 << (at % 8);
                std::fs::write(&path, &all).unwrap();
                let flips = &mut self.model[v].records.get_mut(&start).unwrap().flips;
                if !flips.insert((byte, at % 8)) {
                    flips.remove(&(byte, at % 8));
                }
            }
            Step::Scrub { volume } => {
                let v = *volume as usize;
                // A pass from the start finds a damaged record that has a good one after it; the
                // last record damaged looks like a torn tail to it (its read still fails).
                let records: Vec<&MRecord> = self.model[v].records.values().collect();
                let damaged = records.iter().enumerate().any(|(i, r)| {
                    r.flipped() && records[i + 1..].iter().any(|later| !later.flipped())
                });
                let got = self.rt.block_on(self.store.verify(id(*volume), V));
                match got {
                    Ok(()) => prop_assert!(!damaged, "damage not found"),
                    Err(KfsError::ChecksumMismatch { .. } | KfsError::CorruptReplica { .. }) => {
                        prop_assert!(
                            damaged || self.model[v].corrupt,
                            "a torn tail or good volume taken for damage"
                        );
                        self.model[v].corrupt = true;
                    }
                    Err(e) => prop_assert!(false, "scrub: {e}"),
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn volumes_hold_every_acknowledged_record(steps in prop::collection::vec(step(), 1..40)) {
        let mut h = Harness::new();
        for step in &steps {
            h.run(step)?;
        }
        // Every acknowledged, undamaged record of a volume not found corrupt reads back.
        for v in 0..VOLUMES {
            let m = h.model[v as usize].clone();
            if m.corrupt {
                continue;
            }
            for (at, r) in m.records.iter().filter(|(_, r)| !r.flipped()) {
                let got = h.rt.block_on(h.store.read_record(id(v), V, *at, r.fid, r.data.len() as u64));
                match got {
                    Ok(data) => prop_assert_eq!(&data[..], &r.data[..]),
                    Err(e) => prop_assert!(false, "record {} of volume {v} at {at}: {e}", r.fid),
                }
            }
        }
    }
}
