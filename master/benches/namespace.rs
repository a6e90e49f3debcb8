//! In-process namespace throughput at 1M files, one core, no log (the state machine alone).
//!
//! `cargo bench -p kfs-master --bench namespace` prints ops/s for create, stat, readdir, rename
//! and remove: the median of 3 runs, each on a fresh namespace of 1,000 directories x 1,000 files.

use kfs_common::FileId;
use kfs_master::namespace::Namespace;
use kfs_master::namespace::op::Op;
use std::hint::black_box;
use std::time::Instant;

const DIRS: usize = 1000;
const FILES_PER_DIR: usize = 1000;

fn file_path(d: usize, f: usize) -> String {
    format!("/d{d:04}/IMG_{f:06}.jpg")
}

/// Builds the namespace; returns it and the create rate.
fn build() -> (Namespace, f64) {
    let mut ns = Namespace::new(1);
    let mut fid = 2u64;
    for d in 0..DIRS {
        let op = Op::Mkdir {
            path: format!("/d{d:04}"),
            parents: false,
            mode: 0o755,
            first_fid: FileId(fid),
            time: 2,
        };
        ns.apply(&op).unwrap();
        fid += 1;
    }
    let ops: Vec<Op> = (0..DIRS * FILES_PER_DIR)
        .map(|i| Op::Create {
            path: file_path(i / FILES_PER_DIR, i % FILES_PER_DIR),
            exclusive: true,
            replication: 3,
            replication_given: false,
            mode: 0o644,
            fid: FileId(fid + i as u64),
            time: 3,
        })
        .collect();
    let started = Instant::now();
    for op in &ops {
        ns.apply(op).unwrap();
    }
    let rate = ops.len() as f64 / started.elapsed().as_secs_f64();
    (ns, rate)
}

fn rate(n: usize, f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let total = DIRS * FILES_PER_DIR;
    let mut results: Vec<(&str, Vec<f64>)> = [
        "create",
        "stat (random over 1M)",
        "stat (hot set of 1,000)",
        "readdir (entries)",
        "rename",
        "remove",
    ]
    .iter()
    .map(|n| (*n, Vec::new()))
    .collect();
    // Random probes, the same for every run.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let probes: Vec<String> = (0..total)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % total as u64) as usize;
            file_path(i / FILES_PER_DIR, i % FILES_PER_DIR)
        })
        .collect();
    // A hot set: 1,000 files (one per directory), cycled through.
    let hot: Vec<String> = probes
        .iter()
        .enumerate()
        .map(|(n, _)| file_path(n % DIRS, 17))
        .collect();
    for run in 0..3 {
        let (mut ns, create) = build();
        results[0].1.push(create);
        results[1].1.push(rate(probes.len(), || {
            for p in &probes {
                black_box(ns.stat(p).unwrap());
            }
        }));
        results[2].1.push(rate(hot.len(), || {
            for p in &hot {
                black_box(ns.stat(p).unwrap());
            }
        }));
        results[3].1.push(rate(total, || {
            for d in 0..DIRS {
                let mut after: Option<String> = None;
                loop {
                    let page = ns
                        .readdir(&format!("/d{d:04}"), after.as_deref(), 1000, false)
                        .unwrap();
                    after = page.entries.last().map(|e| e.name.clone());
                    if !page.more {
                        break;
                    }
                }
            }
        }));
        let n = 100_000;
        let renames: Vec<Op> = (0..n)
            .map(|i| Op::Rename {
                src: file_path(i % DIRS, i / DIRS),
                dst: format!("{}.renamed", file_path(i % DIRS, i / DIRS)),
                time: 4,
            })
            .collect();
        results[4].1.push(rate(n, || {
            for op in &renames {
                ns.apply(op).unwrap();
            }
        }));
        let removes: Vec<Op> = (0..n)
            .map(|i| Op::Remove {
                path: file_path((i + 7) % DIRS, 999 - i / DIRS),
                time: 5,
            })
            .collect();
        results[5].1.push(rate(n, || {
            for op in &removes {
                ns.apply(op).unwrap();
            }
        }));
        eprintln!("run {} done", run + 1);
    }
    println!("| op (1M files, in process, one core) | median ops/s | runs |");
    println!("|---|---:|---|");
    for (name, runs) in results {
        let shown: Vec<String> = runs.iter().map(|r| format!("{:.0}", r)).collect();
        println!(
            "| {name} | {:.0} | {} |",
            median(runs.clone()),
            shown.join(", ")
        );
    }
}
