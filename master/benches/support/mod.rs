//! Helpers shared by the master's benchmarks: the 1M-file namespace they measure.
#![allow(dead_code)] // each benchmark uses some of these

use kfs_common::FileId;
use kfs_master::namespace::Namespace;
use kfs_master::namespace::op::Op;

/// Directories of the benchmark namespace; files are spread over them in turn.
pub const DIRS: usize = 1000;

/// File `n` of the benchmark namespace: `/dDDDD/IMG_NNNNNN.jpg`, round robin over the directories,
/// in ascending name order within each.
pub fn file_path(n: usize) -> String {
    file_in(n % DIRS, n / DIRS)
}

/// File `f` of directory `d`.
pub fn file_in(d: usize, f: usize) -> String {
    format!("/d{d:04}/IMG_{f:06}.jpg")
}

/// A fresh namespace holding the root and the `DIRS` directories (file ids 2..).
pub fn with_dirs() -> Namespace {
    let mut ns = Namespace::new(1);
    for d in 0..DIRS {
        let op = Op::Mkdir {
            path: format!("/d{d:04}"),
            parents: false,
            mode: 0o755,
            owner: 0,
            group: 0,
            first_fid: FileId(2 + d as u64),
            time: 2,
        };
        ns.apply(&op)
            .expect("a fresh namespace takes the directories");
    }
    ns
}

/// The create of a new file, as a client's `create` would log it.
pub fn create(path: String, fid: u64) -> Op {
    Op::Create {
        path,
        exclusive: true,
        replication: 3,
        replication_given: false,
        mode: 0o644,
        owner: 0,
        group: 0,
        fid: FileId(fid),
        time: 3,
    }
}

pub fn median(runs: &[f64]) -> f64 {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}
