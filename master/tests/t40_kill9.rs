//! Crash test with the real binary: `kill -9` of a `kfs-master` under a create load from 16
//! concurrent clients; after a restart on the same metadata directory every acknowledged create
//! is there, whether answered once synced or (a mount's connection) once logged. Also: SIGTERM
//! stops the master cleanly with exit code 0.
//!
//! Bounds: start-up 30 s, the load until the kill 60 s, the clients' end after the kill 30 s.

mod support;

use kfs_common::proto::master::{
    self, CreateOptions, Durability, MasterServiceClient, MkdirOptions,
};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::ctx;

fn spawn_master(meta_dir: &Path) -> (Child, SocketAddr) {
    support::spawn_master(env!("CARGO_BIN_EXE_kfs-master"), meta_dir)
}

async fn connect(addr: SocketAddr) -> MasterServiceClient {
    master::connect(addr, &kfs_common::security::Security::Insecure)
        .await
        .expect("connect to the master")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_create_load_loses_no_acknowledged_create() {
    kill_9_under_load(Durability::Synced).await;
}

/// The same with half the clients on a connection whose changes are answered once logged
/// (written, not yet synced: a mount's): `kill -9` of the master loses none of those either,
/// since the kernel holds what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_create_answered_once_logged() {
    kill_9_under_load(Durability::Logged).await;
}

async fn kill_9_under_load(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_master(dir.path());
    let client = connect(addr).await;
    client
        .mkdir(ctx(), "/load".into(), MkdirOptions::default())
        .await
        .unwrap()
        .unwrap();
    let other = connect(addr).await;
    other
        .set_durability(ctx(), durability)
        .await
        .unwrap()
        .unwrap();

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let client = if w % 2 == 0 {
                client.clone()
            } else {
                other.clone()
            };
            let acked = acked.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let path = format!("/load/w{w}-{i}");
                    match client
                        .create(ctx(), path.clone(), CreateOptions::default())
                        .await
                    {
                        Ok(Ok(_)) => acked.lock().unwrap().push(path),
                        // The master was killed: this and every later call fails.
                        _ => return,
                    }
                }
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 2000 {
        assert!(
            Instant::now() < deadline,
            "the load made too little progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL the master");
    child.wait().unwrap();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("clients notice the dead master")
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let (mut child, addr) = spawn_master(dir.path());
    let client = connect(addr).await;
    let mut missing = Vec::new();
    for path in &acked {
        if client.stat(ctx(), path.clone()).await.unwrap().is_err() {
            missing.push(path.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged creates lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let counters = client.counters(ctx()).await.unwrap().unwrap();
    assert!(counters.files >= acked.len() as u64);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sigterm_stops_the_master_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_master(dir.path());
    let client = connect(addr).await;
    client
        .mkdir(ctx(), "/kept".into(), MkdirOptions::default())
        .await
        .unwrap()
        .unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "kfs-master did not stop within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit}");

    let (mut child, addr) = spawn_master(dir.path());
    let client = connect(addr).await;
    assert!(client.stat(ctx(), "/kept".into()).await.unwrap().is_ok());
    child.kill().unwrap();
    child.wait().unwrap();
}
