//! A real directory tree (this repository's master crate: sources, tests, benchmarks) put into
//! KFS and got back, compared byte for byte.

use assert_cmd::Command;
use kfs_tests::{ClusterOptions, TestCluster};
use std::path::Path;

fn files_below(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_tree_round_trips_byte_for_byte() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../master");
    let back = tempfile::tempdir().unwrap();
    let kfs = || {
        let mut cmd = Command::cargo_bin("kfs").unwrap();
        cmd.env("KFS_MASTER", cluster.master_addr().to_string())
            .env("KFS_CREDENTIALS", cluster.credentials());
        cmd
    };
    kfs()
        .arg("put")
        .arg(&source)
        .arg("/master")
        .assert()
        .success();
    kfs()
        .arg("get")
        .arg("/master")
        .arg(back.path().join("master"))
        .assert()
        .success();
    let want = files_below(&source);
    assert!(want.len() > 20, "the tree has files: {}", want.len());
    assert_eq!(files_below(&back.path().join("master")), want);
    for file in &want {
        let a = std::fs::read(source.join(file)).unwrap();
        let b = std::fs::read(back.path().join("master").join(file)).unwrap();
        assert!(a == b, "{} differs after the round trip", file.display());
    }
    cluster.shutdown().await;
}
