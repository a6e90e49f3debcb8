//! `kfs admin` as an operator meets it, one-shot against an in-process cluster: decommission
//! marks that survive a master restart, safe mode read, waited for and left, checkpoints on
//! demand.

use assert_cmd::Command;
use kfs_tests::{ClusterOptions, TestCluster, wait_until};
use predicates::prelude::*;
use std::time::Duration;

fn kfs(cluster: &TestCluster) -> Command {
    let mut cmd = Command::cargo_bin("kfs").unwrap();
    cmd.env("KFS_MASTER", cluster.master_addr().to_string())
        .env("KFS_CREDENTIALS", cluster.credentials())
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(120));
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn write_some(cluster: &TestCluster, files: usize) {
    let client = cluster.unpacked_client().await;
    for i in 0..files {
        let f = client.create(&format!("/f{i}")).await.unwrap();
        f.write_at(0, &kfs_tests::content(i as u64, 100_000))
            .await
            .unwrap();
        f.close().await.unwrap();
    }
}

/// The state `servers --json` shows for the chunkserver at `addr`.
fn state_of(cluster: &TestCluster, addr: &str) -> String {
    let servers: serde_json::Value =
        serde_json::from_str(&stdout(kfs(cluster).args(["servers", "--json"]))).unwrap();
    servers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == addr)
        .map(|s| s["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommission_mark_survives_a_master_restart() {
    let mut cluster = TestCluster::start(ClusterOptions {
        chunkservers: 4,
        ..Default::default()
    })
    .await;
    write_some(&cluster, 2).await;
    let addr = cluster.chunkserver(3).local_addr().to_string();
    kfs(&cluster)
        .args(["admin", "decommission", &addr])
        .assert()
        .success()
        .stdout(predicate::str::contains("draining").or(predicate::str::contains("drained")));

    cluster.restart_master().await;
    // Every server says hello again; the marked one drains from its first hello on.
    let others: Vec<String> = (0..3)
        .map(|i| cluster.chunkserver(i).local_addr().to_string())
        .collect();
    wait_until(
        "the servers back, one draining",
        Duration::from_secs(20),
        || {
            let (cluster, addr, others) = (&cluster, &addr, &others);
            async move {
                state_of(cluster, addr).starts_with("drain")
                    && others.iter().all(|o| state_of(cluster, o) == "alive")
            }
        },
    )
    .await;

    kfs(&cluster)
        .args(["admin", "decommission", "--cancel", &addr])
        .assert()
        .success()
        .stdout(predicate::str::contains("alive"));
    cluster.restart_master().await;
    cluster.wait_for_alive(4).await;
    assert_eq!(state_of(&cluster, &addr), "alive");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_mode_is_shown_waited_for_and_left() {
    let mut cluster = TestCluster::start(ClusterOptions {
        safe_mode_max_secs: 3600,
        ..Default::default()
    })
    .await;
    write_some(&cluster, 3).await;
    kfs(&cluster)
        .args(["admin", "safemode", "get"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("safe mode is OFF"));

    // A master restarted with no chunkserver running hears of no chunk: safe mode holds.
    for i in 0..3 {
        cluster.stop_chunkserver(i).await;
    }
    cluster.restart_master().await;
    kfs(&cluster)
        .args(["admin", "safemode", "get"])
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(
                r"^safe mode is ON: 0 of 3 chunks reported \(0%, it ends at 99\.9%\)",
            )
            .unwrap(),
        );
    // `wait` returns once the chunkservers are back and have reported.
    let wait = std::process::Command::new(assert_cmd::cargo::cargo_bin("kfs"))
        .args(["admin", "safemode", "wait"])
        .env("KFS_MASTER", cluster.master_addr().to_string())
        .env("KFS_CREDENTIALS", cluster.credentials())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for i in 0..3 {
        cluster.start_chunkserver(i).await;
    }
    let waited = tokio::task::spawn_blocking(move || wait.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(waited.status.success());
    assert!(
        String::from_utf8_lossy(&waited.stdout).starts_with("safe mode is OFF (3 chunks)"),
        "{waited:?}"
    );

    // Without its servers, an operator can end it.
    for i in 0..3 {
        cluster.stop_chunkserver(i).await;
    }
    cluster.restart_master().await;
    kfs(&cluster)
        .args(["admin", "safemode", "leave"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("safe mode is OFF"));
    // Out of safe mode, fsck says the chunks are missing (no server holds them), and fails.
    let out = kfs(&cluster).args(["fsck", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let fsck: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fsck["safe_mode"], false, "{fsck}");
    assert_eq!(fsck["status"], "CORRUPT", "{fsck}");
    assert_eq!(fsck["missing"], 3, "{fsck}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_is_written_on_demand() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    write_some(&cluster, 2).await;
    let said = stdout(kfs(&cluster).args(["admin", "checkpoint"]));
    let seq: u64 = said
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sequence number in {said:?}"));
    assert!(said.starts_with("checkpoint written"), "{said}");
    assert!(seq > 0);
    // Durable when the command returns.
    let file = cluster
        .meta_dir()
        .join(kfs_master::storage::checkpoint::checkpoint_name(seq));
    assert!(file.exists(), "{} is missing", file.display());
    // Nothing logged since: the same checkpoint answers.
    assert_eq!(stdout(kfs(&cluster).args(["admin", "checkpoint"])), said);
    cluster.shutdown().await;
}
