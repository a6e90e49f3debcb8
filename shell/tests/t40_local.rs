//! `kfs local`: a whole cluster in one process, driven by commands on standard input; run again
//! on the same data directory, everything written is still there.

use assert_cmd::Command;
use predicates::prelude::*;

fn local(data: &std::path::Path, script: &str) -> assert_cmd::assert::Assert {
    Command::cargo_bin("kfs")
        .unwrap()
        .args([
            "local",
            "--listen",
            "127.0.0.1:0",
            "--chunkservers",
            "2",
            "--data",
        ])
        .arg(data)
        .write_stdin(script)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
}

#[test]
fn a_local_cluster_keeps_its_data_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kfs-data");
    let file = dir.path().join("greeting.txt");
    std::fs::write(&file, "hello again\n").unwrap();
    let script = format!("mkdir -p /docs\nput {} /docs/\nls /docs\n", file.display());
    local(&data, &script)
        .success()
        .stdout(predicate::str::contains(
            "KFS local cluster: master 127.0.0.1:",
        ))
        .stdout(predicate::str::contains("2 chunkservers"))
        .stdout(predicate::str::contains("greeting.txt"));
    local(&data, "cat /docs/greeting.txt\nservers\n")
        .success()
        .stdout(predicate::str::contains("hello again"))
        .stdout(predicate::str::contains("alive").count(2));
}

#[test]
fn a_script_stops_at_the_first_failure_unless_told_to_keep_going() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kfs-data");
    local(&data, "mkdir /a\nrmdir /nope\nmkdir /b\n")
        .code(1)
        .stderr(predicate::str::contains("cannot remove directory '/nope'"));
    Command::cargo_bin("kfs")
        .unwrap()
        .args([
            "local",
            "-k",
            "--listen",
            "127.0.0.1:0",
            "--chunkservers",
            "1",
            "--data",
        ])
        .arg(&data)
        .write_stdin("rmdir /nope\nmkdir /b\nls /\n")
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("a/\nb/\n"));
}
