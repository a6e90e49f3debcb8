//! Checkpoint and recovery at 1M files: the time to write a checkpoint of a 1M-file namespace,
//! and the time to recover from it plus 100k log records (written in batches of 64, as group
//! commit writes them). Files live on the disk under the system temp dir.
//!
//! `cargo bench -p kfs-master --bench recovery` prints the median of 3 runs.

mod support;

use kfs_master::namespace::op::Op;
use kfs_master::storage::checkpoint::write_checkpoint;
use kfs_master::storage::log::LogWriter;
use kfs_master::storage::recovery::recover;
use std::time::Instant;
use support::{DIRS, create, file_path, median, with_dirs};

const FILES: usize = 1_000_000;
const LOGGED: usize = 100_000;

fn main() {
    let mut ns = with_dirs();
    for i in 0..FILES {
        ns.apply(&create(file_path(i), 10_000 + i as u64)).unwrap();
    }
    let mut write_s = Vec::new();
    let mut recover_s = Vec::new();
    let mut size = 0;
    for run in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let path = write_checkpoint(dir.path(), 0, &ns, 1).unwrap();
        write_s.push(started.elapsed().as_secs_f64());
        size = std::fs::metadata(&path).unwrap().len();

        let mut writer = LogWriter::create(dir.path(), 1, 64 << 20).unwrap();
        let ops: Vec<Op> = (0..LOGGED)
            .map(|i| {
                create(
                    format!("/d{:04}/new_{i:06}.jpg", i % DIRS),
                    2_000_000 + i as u64,
                )
            })
            .collect();
        for batch in ops.chunks(64) {
            writer.append(batch).unwrap();
        }
        drop(writer);
        // Recovery reads what a restarted master would: from the page cache after a clean stop.
        let started = Instant::now();
        let recovered = recover(dir.path(), 9).unwrap();
        recover_s.push(started.elapsed().as_secs_f64());
        assert_eq!(recovered.replayed, LOGGED as u64);
        assert_eq!(recovered.ns.counters().files, (FILES + LOGGED) as u64);
        eprintln!("run {} done", run + 1);
    }
    println!("| 1M files | median | runs |");
    println!("|---|---:|---|");
    let show = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| checkpoint write ({:.0} MB, fsynced) | {:.2} s | {} |",
        size as f64 / 1e6,
        median(&write_s),
        show(&write_s)
    );
    println!(
        "| recovery: checkpoint + {LOGGED} log records | {:.2} s | {} |",
        median(&recover_s),
        show(&recover_s)
    );
}
