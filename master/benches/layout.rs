//! Master memory per file at 1M empty files: KFS's namespace (its B+ tree) beside the same
//! records in `im::OrdMap` and in std's `BTreeMap`, each measured in a fresh process as the growth
//! of resident memory.
//!
//! `cargo bench -p kfs-master --bench layout` (add `-- random` to create in random name order).

mod support;

use kfs_common::{FileId, FileKind};
use kfs_master::namespace::Namespace;
use kfs_master::namespace::record::{Fattr, Key, Val};
use std::hint::black_box;
use std::process::Command;
use support::{DIRS, create, file_path, with_dirs};

const FILES: usize = 1_000_000;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// File numbers in creation order: ascending, or shuffled.
fn order(random: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..FILES).collect();
    if random {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
    }
    order
}

/// The benchmark namespace after `FILES` creates in `order`.
fn build_namespace(order: &[usize]) -> Namespace {
    let mut ns = with_dirs();
    for &i in order {
        ns.apply(&create(file_path(i), 10_000 + i as u64)).unwrap();
    }
    ns
}

/// The two records a create adds, as the namespace would store them.
fn records_of(i: usize) -> [(Key, Val); 2] {
    let fid = FileId(10_000 + i as u64);
    let path = file_path(i);
    let name = path.rsplit('/').next().unwrap();
    [
        (
            Key::dentry(FileId(2 + (i % DIRS) as u64), name),
            Val::Child {
                fid,
                kind: FileKind::File,
            },
        ),
        (
            Key::fattr(fid),
            Val::Attr(Fattr {
                size: 0,
                mtime: 3,
                atime: 3,
                owner: 0,
                group: 0,
                mode: 0o644,
                replication: 3,
                kind: FileKind::File,
                ctime_after: 0,
            }),
        ),
    ]
}

/// Measures one layout in this process; prints bytes per file.
fn measure(layout: &str, random: bool) {
    let order = order(random);
    let before = rss_bytes();
    let per_file = |before: usize| (rss_bytes() - before) as f64 / FILES as f64;
    match layout {
        "kfs" => {
            let ns = build_namespace(&order);
            let per = per_file(before);
            let (leaves, branches, entries) = ns.tree_shape();
            println!(
                "{per:.0} B/file, {leaves} leaves ({:.0}% full), {branches} branches",
                100.0 * entries as f64 / (leaves * 64) as f64
            );
            black_box(ns);
        }
        "im" => {
            let mut map = im::OrdMap::new();
            for &i in &order {
                for (k, v) in records_of(i) {
                    map.insert(k, v);
                }
            }
            println!("{:.0} B/file", per_file(before));
            black_box(map);
        }
        "btreemap" => {
            let mut map = std::collections::BTreeMap::new();
            for &i in &order {
                for (k, v) in records_of(i) {
                    map.insert(k, v);
                }
            }
            println!("{:.0} B/file", per_file(before));
            black_box(map);
        }
        other => panic!("unknown layout {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let random = args.iter().any(|a| a == "random");
    if let Some(pos) = args.iter().position(|a| a == "--measure") {
        measure(&args[pos + 1], random);
        return;
    }
    println!(
        "Master memory per empty file at 1M files ({} creation order)",
        if random { "random" } else { "ascending" }
    );
    println!();
    println!("| layout | resident memory |");
    println!("|---|---|");
    for layout in ["kfs", "im", "btreemap"] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--measure", layout]);
        if random {
            cmd.arg("random");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let name = match layout {
            "kfs" => "KFS namespace (B+ tree, append-aware splits)",
            "im" => "im::OrdMap, same records",
            _ => "std BTreeMap, same records",
        };
        println!(
            "| {name} | {} |",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
}
