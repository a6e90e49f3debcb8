//! Issue 15, item 10: full chunkserver disks. A disk that fills is a clear, immediate error that
//! names the full servers, never a hang or "no live replica", and it costs nothing already
//! written: no half-made replica files, no corrupt reports after a restart, no acknowledged byte.
//!
//! - every server full: a put fails at once with `No space left on device (chunkservers A, B, C
//!   are full)`, whether the master already knew (from heartbeats) or learns it from the
//!   refused creates; nothing is left on any disk, and `fsck` stays healthy across restarts;
//! - disks that fill under a writer: the write fails the same way, the bytes synced before stay
//!   readable (the master keeps the last replica), and once there is room again the chunk is
//!   copied back to its factor and the file can be written again;
//! - one server full: new chunks and the healer's copies go only to the others, and it gets the
//!   copies once it has room.
//!
//! A full disk is injected under the chunkservers' own I/O (`Faults::space_left`): what fits is
//! written, then `ENOSPC`, and the free space they measure is what is left, as with a real
//! file system that fills.
//!
//! Its clients give every file chunks of its own (`unpacked_client`): the suite is about chunks;
//! small files packed into volumes have theirs (`t92_small_files`, `t93_volume_appends`).

use kfs_client::Client;
use kfs_common::KfsError;
use kfs_common::proto::master::FsckReport;
use kfs_tests::{ClusterOptions, TestCluster, content, wait_until};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(30);

/// Fills (or frees) the disks of servers `which`.
fn set_full(cluster: &TestCluster, which: &[usize], full: bool) {
    for &i in which {
        cluster.servers[i]
            .io
            .set(|f| f.space_left = full.then_some(0));
    }
}

fn addr(cluster: &TestCluster, i: usize) -> String {
    cluster.chunkserver(i).local_addr().to_string()
}

/// Waits until the master's view of each server in `which` has room (or none).
async fn wait_for_view(cluster: &TestCluster, client: &Client, which: &[usize], room: bool) {
    let addrs: Vec<String> = which.iter().map(|&i| addr(cluster, i)).collect();
    wait_until("the master sees the servers' space", BOUND, || {
        let (c, addrs) = (client.clone(), addrs.clone());
        async move {
            let servers = c.chunkservers().await.unwrap();
            addrs.iter().all(|a| {
                servers
                    .iter()
                    .any(|s| s.addr.to_string() == *a && (s.space.available > 0) == room)
            })
        }
    })
    .await;
}

/// Chunk files on every disk of server `i`, whatever their state.
fn files_on(cluster: &TestCluster, i: usize) -> Vec<String> {
    cluster
        .data_dirs(i)
        .iter()
        .flat_map(|d| std::fs::read_dir(d.join("chunks")).unwrap())
        .flat_map(|sub| std::fs::read_dir(sub.unwrap().path()).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

async fn wait_healthy(client: &Client, what: &str) -> FsckReport {
    wait_until(what, BOUND, || {
        let c = client.clone();
        async move {
            let r = c.fsck().await.unwrap();
            r.healthy == r.chunks && r.under_replicated == 0 && r.missing == 0
        }
    })
    .await;
    client.fsck().await.unwrap()
}

fn assert_names_all_full(e: &KfsError, addrs: &[String]) {
    let text = e.to_string();
    assert!(
        matches!(e, KfsError::NoSpace(_))
            && text.starts_with("No space left on device (chunkservers ")
            && text.ends_with(" are full)")
            && addrs.iter().all(|a| text.contains(a.as_str())),
        "{e:?}"
    );
}

async fn read_all(client: &Client, path: &str) -> Vec<u8> {
    let f = client.open(path).await.unwrap();
    f.read_at(0, 1 << 20).await.unwrap()
}

async fn put(client: &Client, remote: &str, data: &[u8]) -> Result<u64, KfsError> {
    let local = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(local.path(), data).unwrap();
    kfs_client::copy::put_file(client, local.path(), remote, None, &|_: u64| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_full_fails_a_put_at_once_and_leaves_nothing() {
    // Slow heartbeats: the master still thinks the servers have room when the put comes, so
    // it is their refusals that tell it.
    let mut cluster = TestCluster::start(ClusterOptions {
        heartbeat_interval_ms: 60_000,
        chunkserver_timeout_ms: 600_000,
        ..Default::default()
    })
    .await;
    cluster.wait_for_alive(3).await;
    let client = cluster.unpacked_client().await;
    let addrs: Vec<String> = (0..3).map(|i| addr(&cluster, i)).collect();
    set_full(&cluster, &[0, 1, 2], true);
    let data = content(1, 600_000);
    // Bounded: a full cluster answers at once rather than retrying for the writer's patience.
    let refused = tokio::time::timeout(BOUND, put(&client, "/photo.jpg", &data))
        .await
        .expect("a put to a full cluster answers");
    assert_names_all_full(&refused.unwrap_err(), &addrs);
    // The master now knows: the next put is refused without asking the servers.
    let again = tokio::time::timeout(BOUND, put(&client, "/photo.jpg", &data))
        .await
        .unwrap();
    assert_names_all_full(&again.unwrap_err(), &addrs);

    assert!(client.stat("/photo.jpg").await.is_err());
    assert!(
        client.list_all("/").await.unwrap().is_empty(),
        "no upload left"
    );
    for i in 0..3 {
        assert_eq!(files_on(&cluster, i), Vec::<String>::new(), "server {i}");
    }
    // Room again, and restarted (they tell the master at once): the servers report nothing
    // corrupt, fsck is healthy, and the put goes through.
    set_full(&cluster, &[0, 1, 2], false);
    for i in 0..3 {
        cluster.restart_chunkserver(i).await;
    }
    // Their new hellos (each restart is on a new port) say they have room.
    wait_for_view(&cluster, &client, &[0, 1, 2], true).await;
    let servers = client.chunkservers().await.unwrap();
    assert!(servers.iter().all(|s| s.corrupt == 0), "{servers:?}");
    let report = client.fsck().await.unwrap();
    assert_eq!((report.chunks, report.missing), (0, 0), "{report:?}");

    put(&client, "/photo.jpg", &data).await.unwrap();
    assert_eq!(read_all(&client, "/photo.jpg").await, data);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disks_filling_under_a_writer_fail_the_write_and_keep_what_was_synced() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    cluster.wait_for_alive(3).await;
    let client = cluster.unpacked_client().await;
    let addrs: Vec<String> = (0..3).map(|i| addr(&cluster, i)).collect();
    let first = content(2, 100_000);
    let mut f = client.create("/log").await.unwrap();
    f.write_at(0, &first).await.unwrap();
    f.sync().await.unwrap();

    set_full(&cluster, &[0, 1, 2], true);
    let more = content(3, 50_000);
    let failed = tokio::time::timeout(BOUND, f.write_at(first.len() as u64, &more))
        .await
        .expect("a write to full disks answers");
    assert_names_all_full(&failed.unwrap_err(), &addrs);
    // What was synced is still there, and the chunk still has a live replica.
    f.abandon();
    let report = client.fsck().await.unwrap();
    assert_eq!(report.missing, 0, "{report:?}");
    let read = read_all(&client, "/log").await;
    assert_eq!(read, first);

    // Room again: back to three replicas, and the file takes writes.
    set_full(&cluster, &[0, 1, 2], false);
    wait_healthy(&client, "the chunk back at its factor").await;
    let f = client.open("/log").await.unwrap();
    f.write_at(first.len() as u64, &more).await.unwrap();
    f.close().await.unwrap();
    let read = read_all(&client, "/log").await;
    assert_eq!(read, [first, more].concat());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_gets_no_replicas_and_no_copies_until_it_has_room() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 4,
        http: true,
        ..Default::default()
    })
    .await;
    cluster.wait_for_alive(4).await;
    let client = cluster.unpacked_client().await;
    set_full(&cluster, &[3], true);
    wait_for_view(&cluster, &client, &[3], false).await;

    let mut files = Vec::new();
    for i in 0..6u64 {
        let data = content(10 + i, 300_000);
        put(&client, &format!("/f{i}"), &data).await.unwrap();
        files.push(data);
    }
    wait_healthy(&client, "every chunk at 3 replicas").await;
    assert_eq!(cluster.chunkserver(3).store().chunk_count(), 0);
    assert_eq!(files_on(&cluster, 3), Vec::<String>::new());

    // Four replicas wanted: the only server without one is full, so the healer waits rather
    // than fail a copy to it every round.
    for i in 0..6 {
        client.set_replication(&format!("/f{i}"), 4).await.unwrap();
    }
    let status = format!(
        "http://{}/status.json",
        cluster.master().http_addr().unwrap()
    );
    let healer = || async {
        let s: serde_json::Value = reqwest::get(&status).await.unwrap().json().await.unwrap();
        let h = &s["workers"]["healer"];
        (
            h["rounds"].as_u64().unwrap(),
            h["copies_started"].as_u64().unwrap(),
            h["copies_failed"].as_u64().unwrap(),
        )
    };
    let (rounds, started, failed) = healer().await;
    wait_until("twenty more repair rounds", BOUND, || async {
        healer().await.0 >= rounds + 20
    })
    .await;
    let (_, started_after, failed_after) = healer().await;
    assert_eq!(
        (started_after, failed_after),
        (started, failed),
        "no copy is sent to a full server"
    );
    assert_eq!(cluster.chunkserver(3).store().chunk_count(), 0);

    set_full(&cluster, &[3], false);
    wait_healthy(
        &client,
        "every chunk at 4 replicas once the server has room",
    )
    .await;
    assert!(cluster.chunkserver(3).store().chunk_count() > 0);
    for (i, data) in files.iter().enumerate() {
        let read = read_all(&client, &format!("/f{i}")).await;
        assert_eq!(&read, data);
    }
    cluster.shutdown().await;
}
