//! Model check of durability: random ops are logged in batches (with checkpoints and segment
//! rotations at random points) and applied to a live namespace, whose state after every op is
//! kept (clones are O(1)). Then:
//! - recovery from disk gives exactly the live state;
//! - cutting the last segment at a random byte (a crash mid-write) recovers the state after some
//!   prefix of the ops that holds every op whose batch was fully written, and the log can then go
//!   on from there;
//! - damaging any byte of any segment (a flipped byte, or 4 KiB zeroed) either stops recovery
//!   with an error that names the file, leaving every file as it was, or (only when the damage
//!   lies in the last batch of the newest segment, which a crash may tear) recovers a prefix
//!   holding every earlier batch; never a state that lost an acknowledged op;
//! - a lost newest segment stops recovery.
//!
//! The ops include small files' (volumes made and freed, files packed, compactions' extent
//! moves with stale ones among them), so the volumes' use and every extent come back exactly.
//!
//! `PROPTEST_CASES=2000 cargo test -p kfs-master --test t30_recovery_model` for a long run.

mod support;

use kfs_common::FileId;
use kfs_master::namespace::Namespace;
use kfs_master::namespace::op::{ExtentMove, Op, Special};
use kfs_master::namespace::record::{Key, Val};
use kfs_master::storage::checkpoint::write_checkpoint;
use kfs_master::storage::log::{LogWriter, list_segments};
use kfs_master::storage::recovery::{prune, recover};
use proptest::prelude::*;
use serde_bytes::ByteBuf;
use std::fs::OpenOptions;
use std::path::Path;

#[derive(Clone, Debug)]
enum Step {
    /// Log and apply these ops as one batch.
    Batch(Vec<OpSeed>),
    /// Rotate the log and write a checkpoint of the live state.
    Checkpoint,
    /// Rotate the log without a checkpoint.
    Rotate,
}

#[derive(Clone, Debug)]
enum OpSeed {
    Mkdir(u8),
    Create(u8, u8),
    Rename(u8, u8, u8, u8),
    Remove(u8, u8),
    RemoveTree(u8),
    Xattr(u8, u8),
    /// Reserve chunk ids: recovery must restore the counter, never hand an id out twice.
    Reserve(u16),
    /// Small files: a volume made, a file packed into one, a volume's records moved to another
    /// (compaction, with a stale move among them), a volume freed.
    Volume(u8),
    Pack(u8, u8, u8, u16),
    Compact(u8, u8, u8),
    FreeVolume(u8),
    Link(u8, u8, u8, u8),
    /// A symbolic link, FIFO or device (by the third number).
    Special(u8, u8, u8),
}

fn volume(v: u8) -> kfs_common::ChunkId {
    kfs_common::ChunkId(1_000 + u64::from(v % 4))
}

fn dir(d: u8) -> String {
    format!("/d{}", d % 4)
}

fn file(d: u8, f: u8) -> String {
    format!("/d{}/f{}", d % 4, f % 6)
}

fn to_op(seed: &OpSeed, live: &Namespace, fid: &mut u64, time: i64) -> Op {
    let fid_of = |d: u8, f: u8| live.stat(&file(d, f)).map_or(FileId(999_999), |a| a.fid);
    let mut next = || {
        *fid += 1;
        FileId(*fid)
    };
    match seed {
        OpSeed::Mkdir(d) => Op::Mkdir {
            path: dir(*d),
            parents: true,
            mode: 0o755,
            owner: 0,
            group: 0,
            first_fid: next(),
            time,
        },
        OpSeed::Create(d, f) => Op::Create {
            path: file(*d, *f),
            exclusive: false,
            replication: 3,
            replication_given: false,
            mode: 0o644,
            owner: 0,
            group: 0,
            fid: next(),
            time,
        },
        OpSeed::Rename(a, b, c, d) => Op::Rename {
            src: file(*a, *b),
            dst: file(*c, *d),
            time,
        },
        OpSeed::Remove(d, f) => Op::Remove {
            path: file(*d, *f),
            time,
        },
        OpSeed::RemoveTree(d) => Op::RemoveRecursive {
            path: dir(*d),
            time,
        },
        OpSeed::Xattr(d, f) => Op::SetXattr {
            path: file(*d, *f),
            name: "k".into(),
            value: ByteBuf::from(vec![*f; (*d as usize) * 50]),
        },
        OpSeed::Reserve(n) => Op::ReserveChunkIds {
            below: kfs_common::ChunkId(u64::from(*n)),
        },
        OpSeed::Volume(v) => Op::CreateVolume {
            chunk: volume(*v),
            version: kfs_common::ChunkVersion(1),
            replication: 3,
        },
        OpSeed::Pack(d, f, v, len) => Op::SetExtent {
            fid: fid_of(*d, *f),
            volume: volume(*v),
            at: u64::from(*len) * 8,
            len: u32::from(*len),
            time,
        },
        OpSeed::Compact(from, to, stale) => {
            let mut moves: Vec<ExtentMove> = live
                .extents_in(&std::collections::HashSet::from([volume(*from)]))
                .into_iter()
                .enumerate()
                .map(|(i, (fid, e))| ExtentMove {
                    fid,
                    at: e.at,
                    to: volume(*to),
                    to_at: 1 << 20 | (i as u64) << 12,
                    len: e.len,
                })
                .collect();
            // A file changed since its record was copied: its move must be passed over.
            moves.push(ExtentMove {
                fid: fid_of(*stale, *stale),
                at: 7,
                to: volume(*to),
                to_at: 1 << 30,
                len: 1,
            });
            Op::MoveExtents {
                from: volume(*from),
                moves,
            }
        }
        OpSeed::FreeVolume(v) => Op::FreeVolume { chunk: volume(*v) },
        OpSeed::Link(a, b, c, d) => Op::Link {
            src: file(*a, *b),
            dst: file(*c, *d),
            time,
        },
        OpSeed::Special(d, f, which) => Op::MakeSpecial {
            path: file(*d, *f),
            special: match which % 3 {
                0 => Special::Symlink {
                    target: file(*f, *d),
                },
                1 => Special::Fifo,
                _ => Special::BlockDevice {
                    rdev: u64::from(*which),
                },
            },
            mode: 0o640,
            owner: 1,
            group: 2,
            fid: next(),
            time,
        },
    }
}

fn op_seed() -> impl Strategy<Value = OpSeed> {
    let n = || any::<u8>();
    prop_oneof![
        3 => n().prop_map(OpSeed::Mkdir),
        5 => (n(), n()).prop_map(|(d, f)| OpSeed::Create(d, f)),
        2 => (n(), n(), n(), n()).prop_map(|(a, b, c, d)| OpSeed::Rename(a, b, c, d)),
        2 => (n(), n()).prop_map(|(d, f)| OpSeed::Remove(d, f)),
        1 => n().prop_map(OpSeed::RemoveTree),
        2 => (n(), n()).prop_map(|(d, f)| OpSeed::Xattr(d, f)),
        1 => any::<u16>().prop_map(OpSeed::Reserve),
        1 => n().prop_map(OpSeed::Volume),
        4 => (n(), n(), n(), any::<u16>()).prop_map(|(d, f, v, len)| OpSeed::Pack(d, f, v, len)),
        1 => (n(), n(), n()).prop_map(|(a, b, c)| OpSeed::Compact(a, b, c)),
        1 => n().prop_map(OpSeed::FreeVolume),
        2 => (n(), n(), n(), n()).prop_map(|(a, b, c, d)| OpSeed::Link(a, b, c, d)),
        1 => (n(), n(), n()).prop_map(|(d, f, w)| OpSeed::Special(d, f, w)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => proptest::collection::vec(op_seed(), 1..6).prop_map(Step::Batch),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Rotate),
    ]
}

fn records(ns: &Namespace) -> Vec<(Key, Val)> {
    ns.records().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// What the run left behind, to check recovery against.
struct Run {
    /// `states[seq]` is the live state after op `seq` (`states[0]` the formatted one).
    states: Vec<Namespace>,
    /// For each append to the newest segment: the file's length after it and its last seq.
    last_segment_appends: Vec<(u64, u64)>,
}

fn run(dir: &Path, steps: &[Step]) -> Run {
    let recovered = recover(dir, 1).unwrap();
    let mut live = recovered.ns;
    let mut writer = LogWriter::create(dir, 1, 1 << 30).unwrap();
    let mut states = vec![live.clone()];
    let mut appends = Vec::new();
    let mut fid = 100;
    for s in steps {
        match s {
            Step::Batch(seeds) => {
                let time = states.len() as i64;
                let ops: Vec<Op> = seeds
                    .iter()
                    .map(|seed| to_op(seed, &live, &mut fid, time))
                    .collect();
                writer.append(&ops).unwrap();
                for op in &ops {
                    let _ = live.apply(op);
                    states.push(live.clone());
                }
                let newest = list_segments(dir).unwrap().pop().unwrap();
                appends.push((
                    std::fs::metadata(&newest.path).unwrap().len(),
                    writer.last_seq(),
                ));
            }
            Step::Checkpoint => {
                writer.rotate().unwrap();
                appends.clear();
                write_checkpoint(dir, writer.last_seq(), &live, 5).unwrap();
                prune(dir, 2).unwrap();
            }
            Step::Rotate => {
                writer.rotate().unwrap();
                appends.clear();
            }
        }
    }
    Run {
        states,
        last_segment_appends: appends,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: support::cases(64), ..ProptestConfig::default() })]

    #[test]
    fn recovery_gives_exactly_the_live_state(steps in proptest::collection::vec(step(), 1..60)) {
        let tmp = tempfile::tempdir().unwrap();
        let run = run(tmp.path(), &steps);
        let recovered = recover(tmp.path(), 99).unwrap();
        let last = run.states.len() as u64 - 1;
        prop_assert_eq!(recovered.last_seq, last);
        prop_assert!(recovered.torn_tail.is_none());
        prop_assert!(records(&recovered.ns) == records(&run.states[last as usize]));
        prop_assert_eq!(recovered.ns.counters(), run.states[last as usize].counters());
        prop_assert_eq!(recovered.ns.next_chunk_id(), run.states[last as usize].next_chunk_id());
        recovered.ns.check_invariants().map_err(TestCaseError::fail)?;
    }

    #[test]
    fn a_cut_log_recovers_a_prefix_with_every_acknowledged_op(
        steps in proptest::collection::vec(step(), 1..60),
        cut in any::<prop::sample::Index>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let run = run(tmp.path(), &steps);
        let newest = list_segments(tmp.path()).unwrap().pop().unwrap();
        let len = std::fs::metadata(&newest.path).unwrap().len();
        let cut_at = cut.index(len as usize + 1) as u64;
        OpenOptions::new().write(true).open(&newest.path).unwrap().set_len(cut_at).unwrap();

        // Every batch whose bytes all lie before the cut was acknowledged and must survive.
        let acknowledged = run
            .last_segment_appends
            .iter()
            .filter(|(end, _)| *end <= cut_at)
            .map(|(_, seq)| *seq)
            .max()
            .unwrap_or(newest.first_seq - 1);
        let recovered = recover(tmp.path(), 99).unwrap();
        let seq = recovered.last_seq;
        prop_assert!(seq >= acknowledged, "recovered up to {} but {} was acknowledged", seq, acknowledged);
        prop_assert!(seq < run.states.len() as u64);
        prop_assert!(records(&recovered.ns) == records(&run.states[seq as usize]));
        recovered.ns.check_invariants().map_err(TestCaseError::fail)?;

        // The torn tail is gone for good: the next start sees a clean log and can append to it.
        let again = recover(tmp.path(), 99).unwrap();
        prop_assert_eq!(again.last_seq, seq);
        prop_assert!(again.torn_tail.is_none());
        let mut writer = LogWriter::create(tmp.path(), seq + 1, 1 << 30).unwrap();
        let op = Op::Mkdir { path: "/after".into(), parents: true, mode: 0o755, owner: 0, group: 0, first_fid: FileId(1_000_000), time: 7 };
        writer.append([&op]).unwrap();
        let third = recover(tmp.path(), 99).unwrap();
        prop_assert_eq!(third.last_seq, seq + 1);
        prop_assert!(third.ns.stat("/after").is_ok());
    }
}

/// Every file of `dir` and its bytes.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "LOCK")
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[derive(Clone, Debug)]
enum Damage {
    Flip(u8),
    Zero4k,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: support::cases(128), ..ProptestConfig::default() })]

    #[test]
    fn damage_anywhere_in_the_log_is_refused_unless_it_is_a_torn_last_batch(
        steps in proptest::collection::vec(step(), 1..40),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        damage in prop_oneof![any::<u8>().prop_map(|b| Damage::Flip(b | 1)), Just(Damage::Zero4k)],
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let run = run(tmp.path(), &steps);
        let segments = list_segments(tmp.path()).unwrap();
        let index = which.index(segments.len());
        let segment = &segments[index];
        let is_newest = index + 1 == segments.len();
        let mut bytes = std::fs::read(&segment.path).unwrap();
        let offset = at.index(bytes.len());
        let before = bytes.clone();
        match damage {
            Damage::Flip(mask) => bytes[offset] ^= mask,
            Damage::Zero4k => {
                let end = (offset + 4096).min(bytes.len());
                bytes[offset..end].fill(0);
            }
        }
        prop_assume!(bytes != before);
        std::fs::write(&segment.path, &bytes).unwrap();

        // The last batch of the newest segment starts where the append before it ended.
        let appends = &run.last_segment_appends;
        let last_batch_start = match appends.len() {
            0 => u64::MAX,
            1 => kfs_master::storage::log::HEADER_LEN,
            n => appends[n - 2].0,
        };
        let everything = run.states.len() as u64 - 1;
        let in_last_batch = is_newest && offset as u64 >= last_batch_start;
        // What proves damage is not a torn write is an intact record of a later batch after it.
        // Damage that reaches into the last batch may leave none (zeros from some byte to the
        // end of the newest segment look exactly like a crash that left the file longer than
        // its data): it can lose what it covers, like a cut there (docs/failures.md).
        let damage_end = match damage {
            Damage::Flip(_) => offset + 1,
            Damage::Zero4k => (offset + 4096).min(before.len()),
        };
        let reaches_last_batch = is_newest && damage_end as u64 > last_batch_start;
        let acknowledged = if reaches_last_batch {
            appends
                .iter()
                .filter(|(end, _)| *end <= offset as u64)
                .map(|(_, seq)| *seq)
                .max()
                .unwrap_or(segment.first_seq - 1)
        } else {
            everything
        };
        let files = snapshot(tmp.path());
        match recover(tmp.path(), 99) {
            Ok(recovered) => {
                let seq = recovered.last_seq;
                prop_assert!(seq >= acknowledged, "recovered up to {} but {} was acknowledged", seq, acknowledged);
                prop_assert!(seq <= everything);
                prop_assert!(records(&recovered.ns) == records(&run.states[seq as usize]));
            }
            Err(e) => {
                prop_assert!(!in_last_batch, "damage in the last batch must read as torn: {}", e);
                let text = e.to_string();
                prop_assert!(text.contains(&segment.path.display().to_string()), "{}", text);
                prop_assert!(snapshot(tmp.path()) == files, "a refused recovery changed the files");
            }
        }
    }
}

#[test]
fn a_lost_newest_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds: Vec<OpSeed> = (0..3).map(OpSeed::Mkdir).collect();
    run(
        tmp.path(),
        &[
            Step::Batch(seeds.clone()),
            Step::Checkpoint,
            Step::Batch(seeds.clone()),
            Step::Rotate,
            Step::Batch(seeds),
        ],
    );
    let newest = list_segments(tmp.path()).unwrap().pop().unwrap();
    std::fs::remove_file(&newest.path).unwrap();
    let err = recover(tmp.path(), 9)
        .err()
        .expect("a lost newest segment must stop recovery")
        .to_string();
    assert!(
        err.contains("LOG_HEAD") && err.contains("log-00000000000000000007.kfslog"),
        "{err}"
    );
}

#[test]
fn a_torn_tail_is_set_aside_before_it_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds: Vec<OpSeed> = (0..3).map(OpSeed::Mkdir).collect();
    run(
        tmp.path(),
        &[Step::Batch(seeds.clone()), Step::Batch(seeds)],
    );
    let newest = list_segments(tmp.path()).unwrap().pop().unwrap();
    let bytes = std::fs::read(&newest.path).unwrap();
    let cut = bytes.len() - 5;
    std::fs::write(&newest.path, &bytes[..cut]).unwrap();
    let recovered = recover(tmp.path(), 9).unwrap();
    assert_eq!(
        recovered.last_seq, 5,
        "the one record cut short is the only one lost"
    );
    let kept = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(".kfslog.torn-"))
        .expect("the torn bytes are kept");
    let offset: usize = kept
        .to_string_lossy()
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(std::fs::read(&kept).unwrap(), &bytes[offset..cut]);
    assert_eq!(
        std::fs::metadata(&newest.path).unwrap().len(),
        offset as u64
    );
}

#[test]
fn a_corrupt_newest_checkpoint_falls_back_to_the_older_one() {
    let tmp = tempfile::tempdir().unwrap();
    let batch = |d| Step::Batch(vec![OpSeed::Mkdir(d), OpSeed::Create(d, 1)]);
    let run = run(
        tmp.path(),
        &[
            batch(0),
            Step::Checkpoint,
            batch(1),
            Step::Checkpoint,
            batch(2),
        ],
    );
    let newest = kfs_master::storage::checkpoint::list_checkpoints(tmp.path()).unwrap()[0].clone();
    let mut bytes = std::fs::read(&newest.path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&newest.path, bytes).unwrap();
    let recovered = recover(tmp.path(), 9).unwrap();
    assert_eq!(recovered.skipped_checkpoints.len(), 1);
    assert!(
        recovered.skipped_checkpoints[0]
            .to_string()
            .contains("corrupt at byte")
    );
    assert_eq!(recovered.last_seq, 6);
    assert!(records(&recovered.ns) == records(&run.states[6]));
}

#[test]
fn corruption_before_the_tail_stops_recovery_with_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds: Vec<OpSeed> = (0..4).map(OpSeed::Mkdir).collect();
    run(
        tmp.path(),
        &[Step::Batch(seeds.clone()), Step::Rotate, Step::Batch(seeds)],
    );
    let oldest = list_segments(tmp.path()).unwrap().remove(0);
    let mut bytes = std::fs::read(&oldest.path).unwrap();
    bytes[40] ^= 0x20;
    std::fs::write(&oldest.path, bytes).unwrap();
    let err = recover(tmp.path(), 9)
        .err()
        .expect("corruption must stop recovery")
        .to_string();
    assert!(
        err.contains(&oldest.path.display().to_string()) && err.contains("byte 32"),
        "{err}"
    );
}

#[test]
fn a_missing_segment_is_an_error_not_a_silent_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds: Vec<OpSeed> = (0..3).map(OpSeed::Mkdir).collect();
    run(
        tmp.path(),
        &[
            Step::Batch(seeds.clone()),
            Step::Rotate,
            Step::Batch(seeds.clone()),
            Step::Rotate,
            Step::Batch(seeds),
        ],
    );
    let middle = list_segments(tmp.path()).unwrap().remove(1);
    std::fs::remove_file(&middle.path).unwrap();
    let err = recover(tmp.path(), 9)
        .err()
        .expect("a gap must stop recovery")
        .to_string();
    assert!(
        err.contains("starts at record 7 but the previous segment ends at 3"),
        "{err}"
    );
}
