//! In-process namespace throughput at 1M files, one core, no log (the state machine alone).
//!
//! `cargo bench -p kfs-master --bench namespace` prints ops/s for create, stat, readdir, rename
//! and remove: the median of 3 runs, each on a fresh namespace of 1,000 directories x 1,000 files.

mod support;

use kfs_master::namespace::Namespace;
use kfs_master::namespace::op::Op;
use std::hint::black_box;
use std::time::Instant;
use support::{DIRS, create, file_in, file_path, median, with_dirs};

const FILES: usize = 1_000_000;

/// Builds the namespace; returns it and the create rate.
fn build() -> (Namespace, f64) {
    let mut ns = with_dirs();
    let ops: Vec<Op> = (0..FILES)
        .map(|i| create(file_path(i), 10_000 + i as u64))
        .collect();
    let started = Instant::now();
    for op in &ops {
        ns.apply(op).unwrap();
    }
    (ns, rate_since(FILES, started))
}

fn rate_since(n: usize, started: Instant) -> f64 {
    n as f64 / started.elapsed().as_secs_f64()
}

fn rate(n: usize, f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    rate_since(n, started)
}

fn main() {
    let names = [
        "create",
        "stat (random over 1M)",
        "stat (hot set of 1,000)",
        "readdir (entries, pages of 1,000)",
        "rename",
        "remove",
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    // Random probes, the same for every run.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let probes: Vec<String> = (0..FILES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            file_path((x % FILES as u64) as usize)
        })
        .collect();
    // A hot set: 1,000 files (one per directory), cycled through.
    let hot: Vec<String> = (0..FILES).map(|n| file_in(n % DIRS, 17)).collect();
    let n = 100_000;
    let renames: Vec<Op> = (0..n)
        .map(|i| Op::Rename {
            src: file_path(i),
            dst: format!("{}.renamed", file_path(i)),
            time: 4,
        })
        .collect();
    let removes: Vec<Op> = (0..n)
        .map(|i| Op::Remove {
            path: file_in((i + 7) % DIRS, 999 - i / DIRS),
            time: 5,
        })
        .collect();
    for run in 0..3 {
        let (mut ns, create_rate) = build();
        results[0].push(create_rate);
        results[1].push(rate(probes.len(), || {
            for p in &probes {
                black_box(ns.stat(p).unwrap());
            }
        }));
        results[2].push(rate(hot.len(), || {
            for p in &hot {
                black_box(ns.stat(p).unwrap());
            }
        }));
        results[3].push(rate(FILES, || {
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
        results[4].push(rate(n, || {
            for op in &renames {
                ns.apply(op).unwrap();
            }
        }));
        results[5].push(rate(n, || {
            for op in &removes {
                ns.apply(op).unwrap();
            }
        }));
        eprintln!("run {} done", run + 1);
    }
    println!("| op (1M files, in process, one core) | median ops/s | runs |");
    println!("|---|---:|---|");
    for (name, runs) in names.iter().zip(results) {
        let shown: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
        println!("| {name} | {:.0} | {} |", median(&runs), shown.join(", "));
    }
}
