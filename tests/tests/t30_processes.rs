//! Real `kfs-master` and `kfs-chunkserver` processes on loopback: a chunkserver registers, stops
//! cleanly on SIGTERM and is declared dead, comes back under the same identity, and finds a
//! master restarted after `kill -9`.

use kfs_common::proto::master::{self, ServerState};
use kfs_common::security::Security;
use kfs_tests::{Process, ctx, wait_until};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// The cluster's secrets (shared by every test of this file: one CA), and the admin's
/// credentials the tests connect with.
fn secrets() -> &'static (tempfile::TempDir, Security) {
    static SECRETS: std::sync::OnceLock<(tempfile::TempDir, Security)> = std::sync::OnceLock::new();
    SECRETS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let files = kfs_common::security::ClusterFiles::new(dir.path());
        files.init("t30").unwrap();
        let admin = kfs_common::security::files::load_credentials(
            &files.path(kfs_common::security::ADMIN_CREDENTIALS),
        )
        .unwrap();
        (dir, Security::Tls(std::sync::Arc::new(admin)))
    })
}

fn secrets_dir() -> String {
    secrets().0.path().display().to_string()
}

fn master_args(meta: &std::path::Path, listen: &str) -> Vec<String> {
    vec![
        "--secrets".into(),
        secrets_dir(),
        "--listen".into(),
        listen.into(),
        "--meta-dir".into(),
        meta.display().to_string(),
        "--heartbeat-interval-ms".into(),
        "100".into(),
        "--chunkserver-timeout-ms".into(),
        "1000".into(),
    ]
}

async fn servers_in(addr: std::net::SocketAddr, state: ServerState) -> usize {
    let Ok(client) = master::connect(addr, &secrets().1).await else {
        return 0;
    };
    match client.chunkservers(ctx()).await {
        Ok(Ok(list)) => list.iter().filter(|s| s.state == state).count(),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunkserver_and_master_processes_find_each_other_through_restarts() {
    let meta = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut master = Process::spawn("kfs-master", &master_args(meta.path(), "127.0.0.1:0"));
    let addr = master.addr;
    let cs_args = vec![
        "--secrets".to_string(),
        secrets_dir(),
        "--master".to_string(),
        addr.to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data".into(),
        data.path().display().to_string(),
    ];
    let mut cs = Process::spawn("kfs-chunkserver", &cs_args);
    wait_until("the chunkserver registered", WAIT, || async move {
        servers_in(addr, ServerState::Alive).await == 1
    })
    .await;
    let client = master::connect(addr, &secrets().1).await.unwrap();
    let listed = client.chunkservers(ctx()).await.unwrap().unwrap();
    assert_eq!(listed[0].addr, cs.addr);
    let id = listed[0].server;

    let status = cs.terminate();
    assert!(status.success(), "chunkserver exit status {status}");
    wait_until(
        "the stopped chunkserver declared dead",
        WAIT,
        || async move { servers_in(addr, ServerState::Dead).await == 1 },
    )
    .await;

    let cs = Process::spawn("kfs-chunkserver", &cs_args);
    wait_until("the chunkserver back", WAIT, || async move {
        servers_in(addr, ServerState::Alive).await == 1
    })
    .await;
    let listed = client.chunkservers(ctx()).await.unwrap().unwrap();
    assert_eq!(listed.len(), 1, "the same server, not a second one");
    assert_eq!(listed[0].server, id);
    assert_eq!(listed[0].addr, cs.addr);

    master.kill9();
    let _master = Process::spawn("kfs-master", &master_args(meta.path(), &addr.to_string()));
    wait_until(
        "the chunkserver registered with the restarted master",
        WAIT,
        || async move { servers_in(addr, ServerState::Alive).await == 1 },
    )
    .await;
}
