//! Files whose writer is gone: a `kfs put` killed with `kill -9` leaves its temporary upload
//! file, which `kfs fsck --open-files` lists and the master removes with its chunks once the
//! writer has been quiet for `abandoned_upload_ms`; a file whose writer died is closed at the
//! length it last recorded.

use assert_cmd::Command;
use kfs_tests::{ClusterOptions, TestCluster, wait_until};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(60);

fn kfs(cluster: &TestCluster) -> Command {
    let mut cmd = Command::cargo_bin("kfs").unwrap();
    cmd.env("KFS_MASTER", cluster.master_addr().to_string())
        .env("KFS_CREDENTIALS", cluster.credentials())
        .timeout(Duration::from_secs(60));
    cmd
}

fn open_files(cluster: &TestCluster) -> Vec<serde_json::Value> {
    let out = kfs(cluster)
        .args(["fsck", "--open-files", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_put_leaves_nothing_once_its_upload_is_abandoned() {
    let cluster = TestCluster::start(ClusterOptions {
        lease_ms: 500,
        abandoned_upload_ms: 1_000,
        links: true,
        ..Default::default()
    })
    .await;
    let local = tempfile::tempdir().unwrap();
    let big = local.path().join("big.bin");
    std::fs::write(&big, kfs_tests::content(7, 64 << 20)).unwrap();
    kfs(&cluster).args(["mkdir", "/up"]).assert().success();
    // Slow chunkservers: the put is still writing when it is killed.
    for i in 0..3 {
        cluster.slow(i, Duration::from_millis(30));
    }
    let mut put = std::process::Command::new(assert_cmd::cargo::cargo_bin("kfs"))
        .env("KFS_MASTER", cluster.master_addr().to_string())
        .env("KFS_CREDENTIALS", cluster.credentials())
        .arg("put")
        .arg(&big)
        .arg("/up/big.bin")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let c = &cluster;
    let client = cluster.client().await;
    let watcher = client.clone();
    wait_until("the upload open for write, with chunks", BOUND, || {
        let watcher = watcher.clone();
        async move {
            open_files(c).iter().any(|f| {
                f["path"].as_str().unwrap().starts_with("/up/.kfs-upload-")
                    && f["state"] == "writing"
            }) && watcher.counters().await.unwrap().chunks > 0
        }
    })
    .await;
    put.kill().unwrap(); // SIGKILL: nothing of the put runs after this
    put.wait().unwrap();
    for i in 0..3 {
        cluster.heal(i);
    }
    assert_eq!(
        client.list_all("/up").await.unwrap().len(),
        1,
        "the temporary file is left"
    );
    assert!(client.counters().await.unwrap().chunks > 0);

    // Quiet for two leases: listed as a file whose writer is gone; then removed with its chunks.
    wait_until("the abandoned upload removed", BOUND, || {
        let client = client.clone();
        async move { client.list_all("/up").await.unwrap().is_empty() }
    })
    .await;
    assert_eq!(client.counters().await.unwrap().chunks, 0);
    wait_until("its replicas deleted", BOUND, || async move {
        (0..3).all(|i| c.chunkserver(i).store().chunk_count() == 0)
    })
    .await;
    kfs(&cluster)
        .args(["fsck", "--open-files"])
        .assert()
        .success()
        .stdout("no file is open for write\n");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_whose_writer_died_is_closed_at_its_last_recorded_length() {
    let cluster = TestCluster::start(ClusterOptions {
        lease_ms: 500,
        abandoned_upload_ms: 1_000,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    // 600,000 bytes flushed (acknowledged: the length the master records), then 100,000 more
    // on the replicas but never flushed: the writer dies.
    let data = kfs_tests::content(3, 700_000);
    let mut file = client.create("/log").await.unwrap();
    file.write_at(0, &data[..600_000]).await.unwrap();
    tokio::io::AsyncWriteExt::flush(&mut file).await.unwrap();
    file.write_at(600_000, &data[600_000..]).await.unwrap();
    file.abandon();
    let listed = open_files(&cluster);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["path"], "/log");
    assert_eq!(listed[0]["size"], 600_000);

    let c = &cluster;
    wait_until("the file no longer open", BOUND, || async move {
        open_files(c).is_empty()
    })
    .await;
    // Closed at what was acknowledged: the unflushed tail is not made part of it (a later write
    // could have landed while an earlier one did not).
    assert_eq!(client.stat("/log").await.unwrap().size, 600_000);
    let back = client
        .open("/log")
        .await
        .unwrap()
        .read_at(0, 800_000)
        .await
        .unwrap();
    assert_eq!(back, &data[..600_000]);
    cluster.shutdown().await;
}
