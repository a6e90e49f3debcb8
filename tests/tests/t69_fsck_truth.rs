//! Issue 15, item 11: `fsck` says healthy only when it is. A replica that cannot be read, for
//! whatever reason, is reported and replaced, and what a chunkserver found stays found.
//!
//! - a replica found corrupt stays corrupt when its chunkserver restarts (the start-up scan
//!   checks only headers; the mark is kept in the file's name), so `fsck` keeps saying the chunk
//!   is missing instead of calling it healthy while every read fails;
//! - a replica file deleted behind a chunkserver's back is found by the scrubber (nobody reads
//!   it) or by the first read of it, reported with the next heartbeat, and replaced: afterwards
//!   every replica the master lists can be read from its server.
//!
//! Its clients give every file chunks of its own (`unpacked_client`): the suite is about chunks;
//! small files packed into volumes have theirs (`t92_small_files`, `t93_volume_appends`).

use kfs_client::Client;
use kfs_common::proto::master::CreateOptions;
use kfs_common::{ChunkId, KfsError};
use kfs_tests::{ClusterOptions, TestCluster, content, ctx, wait_until};
use std::sync::atomic::Ordering;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(30);

async fn write(client: &Client, path: &str, data: &[u8], replication: u8) -> ChunkId {
    let f = client
        .create_with(
            path,
            CreateOptions {
                replication: Some(replication),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    f.write_at(0, data).await.unwrap();
    f.close().await.unwrap();
    client.file_chunks(path).await.unwrap()[0].chunk
}

/// Whether `fsck` is healthy and every replica of the file's first chunk that the master lists
/// (three) reads back `data` from its server: what healthy must mean.
async fn truly_healthy(cluster: &TestCluster, client: &Client, path: &str, data: &[u8]) -> bool {
    let r = client.fsck().await.unwrap();
    if r.healthy != r.chunks || r.missing != 0 || r.corrupt_replicas != 0 {
        return false;
    }
    let loc = client.file_chunks(path).await.unwrap().remove(0);
    if loc.replicas.len() != 3 {
        return false;
    }
    for r in &loc.replicas {
        let i = cluster.chunkserver_at(r.addr);
        let got = cluster
            .chunk_client(i)
            .await
            .read(ctx(), loc.chunk, loc.version, 0, data.len() as u32)
            .await
            .unwrap();
        match got {
            Ok(bytes) => assert_eq!(&bytes[..], data, "server {i} served wrong bytes"),
            Err(_) => return false,
        }
    }
    true
}

async fn wait_truly_healthy(cluster: &TestCluster, client: &Client, path: &str, data: &[u8]) {
    wait_until(
        "fsck healthy, and every listed replica readable",
        BOUND,
        || truly_healthy(cluster, client, path, data),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_mark_survives_a_chunkserver_restart() {
    let mut cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    let data = content(1, 100_000);
    let chunk = write(&client, "/only-copy", &data, 1).await;
    cluster.corrupt_replica(0, chunk, 70_000);
    let read = client
        .open("/only-copy")
        .await
        .unwrap()
        .read_at(0, data.len())
        .await;
    assert!(read.is_err(), "the damaged block is not served");
    wait_until("the damage reported", BOUND, || async {
        client.fsck().await.unwrap().missing == 1
    })
    .await;

    cluster.restart_chunkserver(0).await;
    // Its new hello (a restart is on a new port) reports the replica corrupt again.
    let addr = cluster.chunkserver(0).local_addr();
    wait_until("the restarted server's hello", BOUND, || async {
        let servers = client.chunkservers().await.unwrap();
        servers.iter().any(|s| s.addr == addr)
    })
    .await;
    let servers = client.chunkservers().await.unwrap();
    assert_eq!(servers.len(), 1, "the same server, at its new address");
    assert_eq!(servers[0].corrupt, 1, "reported corrupt again at its hello");
    let report = client.fsck().await.unwrap();
    assert_eq!((report.missing, report.healthy), (1, 0), "{report:?}");
    match client
        .open("/only-copy")
        .await
        .unwrap()
        .read_at(0, 10)
        .await
    {
        Err(KfsError::ChunkUnavailable { .. }) => {}
        other => panic!("a read of the only, corrupt replica answered {other:?}"),
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_replica_file_is_found_by_the_scrubber_and_replaced() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 4,
        scrub_bytes_per_sec: 256 << 20,
        scrub_pause_secs: 0,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    let data = content(2, 150_000);
    let chunk = write(&client, "/cold", &data, 3).await;
    wait_truly_healthy(&cluster, &client, "/cold", &data).await;
    let victim = (0..4)
        .find(|&i| cluster.chunkserver(i).store().replica(chunk).is_some())
        .unwrap();
    std::fs::remove_file(cluster.replica_file(victim, chunk).unwrap()).unwrap();

    let stats = cluster.chunkserver(victim).scrub_stats();
    wait_until("the scrubber to find the missing file", BOUND, || async {
        stats.corrupt_found.load(Ordering::Relaxed) >= 1
    })
    .await;
    wait_truly_healthy(&cluster, &client, "/cold", &data).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_replica_file_found_by_a_read_is_reported_and_replaced() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 4,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    let data = content(3, 150_000);
    let chunk = write(&client, "/hot", &data, 3).await;
    wait_truly_healthy(&cluster, &client, "/hot", &data).await;
    let loc = client.file_chunks("/hot").await.unwrap().remove(0);
    let victim = cluster.chunkserver_at(loc.replicas[0].addr);
    std::fs::remove_file(cluster.replica_file(victim, chunk).unwrap()).unwrap();

    let got = cluster
        .chunk_client(victim)
        .await
        .read(ctx(), chunk, loc.version, 0, 10)
        .await
        .unwrap();
    match got {
        Err(KfsError::CorruptReplica { reason, .. }) => {
            assert!(reason.contains("missing"), "{reason}")
        }
        other => panic!("a read of a deleted replica answered {other:?}"),
    }
    // Readers fail over meanwhile.
    let read = client
        .open("/hot")
        .await
        .unwrap()
        .read_at(0, data.len())
        .await
        .unwrap();
    assert_eq!(read, data);
    wait_truly_healthy(&cluster, &client, "/hot", &data).await;
    let store = cluster.chunkserver(victim).store();
    wait_until(
        "the master to have the lost replica dropped from the server's list",
        BOUND,
        || async { store.corrupt().is_empty() },
    )
    .await;
    cluster.shutdown().await;
}

/// Issue 18, item 8: `fsck`, the status page and `/metrics` count the same chunks. A
/// chunkserver goes down: chunks that had a replica on it and are still under their writers'
/// leases are counted as waiting for them, everywhere; chunks that want more replicas than
/// there are live servers cannot be repaired, and the page says so instead of "repairing".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_the_status_page_and_metrics_count_the_same_chunks() {
    let mut cluster = TestCluster::start(ClusterOptions {
        chunkservers: 4,
        http: true,
        lease_ms: 60_000,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    for i in 0..3 {
        write(&client, &format!("/f{i}"), &content(i, 300_000), 3).await;
    }
    write(&client, "/wide", &content(9, 1000), 4).await;
    let gone = cluster.chunkserver(3).local_addr();
    let mut waiting = 0;
    for i in 0..3 {
        for c in client.file_chunks(&format!("/f{i}")).await.unwrap() {
            waiting += c.replicas.iter().any(|r| r.addr == gone) as u64;
        }
    }
    cluster.kill_chunkserver(3);
    let under = waiting + 1;
    let c = &client;
    wait_until(
        "fsck counts the chunks under-replicated",
        BOUND,
        || async move { c.fsck_path("/", 0).await.unwrap().under_replicated == under },
    )
    .await;
    let fsck = client.fsck_path("/", 0).await.unwrap();
    assert_eq!(
        (fsck.waiting, fsck.short_of_servers),
        (waiting, 1),
        "{fsck:?}"
    );
    let below = client.fsck_path("/wide", 0).await.unwrap();
    assert_eq!((below.files, below.chunks), (1, 1), "{below:?}");
    assert_eq!(below.problems[0].state, "short_of_servers");

    let master = format!("http://{}", cluster.master().http_addr().unwrap());
    let http = reqwest::Client::new();
    let status = || async {
        http.get(format!("{master}/status.json"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let s = &status;
    wait_until("the status page counts them too", BOUND, || async move {
        s().await["replication"]["under_replicated"] == under
    })
    .await;
    let s = status().await;
    assert_eq!(s["replication"]["waiting"], waiting, "{s}");
    assert_eq!(s["replication"]["short_of_servers"], 1, "{s}");
    let metrics = http
        .get(format!("{master}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        format!("kfs_under_replicated_chunks {under}"),
        format!("kfs_under_replicated_waiting_chunks {waiting}"),
        "kfs_under_replicated_unrepairable_chunks 1".to_string(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
    let page = http
        .get(&master)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("too few chunkservers alive"), "{page}");
    assert!(!page.contains("degraded: repairing"), "{page}");
    cluster.shutdown().await;
}
