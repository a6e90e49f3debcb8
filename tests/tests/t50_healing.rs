//! Self-healing in an in-process cluster (5 chunkservers, 256 KiB chunks, repairs every 100 ms):
//! a lost server's replicas are copied back to the replication factor, extra replicas are trimmed,
//! a raised or lowered factor is followed, a corrupt replica is replaced, a decommissioned server
//! is drained, and a restarted master copies and deletes nothing while in safe mode.
//!
//! Every wait is bounded (20 s: a few dozen repair rounds of 100 ms each, with room for a loaded
//! machine) and names what it waited for.
//!
//! Its clients give every file chunks of its own (`unpacked_client`): the suite is about chunks;
//! small files packed into volumes have theirs (`t92_small_files`, `t93_volume_appends`).

use kfs_client::Client;
use kfs_common::proto::master::{FsckReport, ServerState};
use kfs_common::{ChunkId, ServerId};
use kfs_tests::{ClusterOptions, TestCluster, content, wait_until};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const CHUNK: usize = 256 * 1024;
const BOUND: Duration = Duration::from_secs(20);

fn five() -> ClusterOptions {
    ClusterOptions {
        chunkservers: 5,
        ..Default::default()
    }
}

/// Writes `files` files of 2.5 chunks each; returns their contents by path.
async fn write_files(client: &Client, files: u64) -> HashMap<String, Vec<u8>> {
    let mut written = HashMap::new();
    for i in 0..files {
        let path = format!("/f{i}");
        let data = content(i, 2 * CHUNK + CHUNK / 2);
        let mut f = client.create(&path).await.unwrap();
        f.write_all(&data).await.unwrap();
        f.close().await.unwrap();
        written.insert(path, data);
    }
    written
}

async fn read_back(client: &Client, files: &HashMap<String, Vec<u8>>) {
    for (path, data) in files {
        let back = client
            .open(path)
            .await
            .unwrap()
            .read_at(0, data.len() + 1)
            .await
            .unwrap();
        assert!(back == *data, "{path} read back differently");
    }
}

/// Replica holders of every chunk of the files.
async fn holders(
    client: &Client,
    files: &HashMap<String, Vec<u8>>,
) -> Vec<(ChunkId, Vec<ServerId>)> {
    let mut all = Vec::new();
    for path in files.keys() {
        for c in client.file_chunks(path).await.unwrap() {
            all.push((c.chunk, c.replicas.iter().map(|r| r.server).collect()));
        }
    }
    all
}

/// Waits until fsck reports every chunk at its factor, with nothing in flight.
async fn wait_healthy(client: &Client, what: &str) -> FsckReport {
    let c = client.clone();
    wait_until(what, BOUND, || {
        let c = c.clone();
        async move {
            let r = c.fsck().await.unwrap();
            r.healthy == r.chunks
                && r.under_replicated == 0
                && r.over_replicated == 0
                && r.missing == 0
                && r.corrupt_replicas == 0
                && r.copies_in_flight == 0
        }
    })
    .await;
    client.fsck().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_is_replaced_and_its_return_trimmed() {
    let mut cluster = TestCluster::start(five()).await;
    let client = cluster.unpacked_client().await;
    let files = write_files(&client, 6).await;
    wait_healthy(&client, "the written chunks healthy").await;

    let victim = cluster.chunkserver(0).store().server_id();
    cluster.stop_chunkserver(0).await;
    cluster.wait_for_alive(4).await;
    let report = wait_healthy(&client, "every chunk back at 3 replicas without server 0").await;
    assert_eq!(report.chunks, 18);
    for (chunk, servers) in holders(&client, &files).await {
        assert_eq!(servers.len(), 3, "{chunk}");
        assert!(
            !servers.contains(&victim),
            "{chunk} still counted on the lost server"
        );
    }
    read_back(&client, &files).await;

    // The server comes back with its old replicas: they are extra now, and trimmed.
    cluster.start_chunkserver(0).await;
    cluster.wait_for_alive(5).await;
    let c = client.clone();
    let f = files.clone();
    wait_until("no chunk over-replicated after the return", BOUND, || {
        let (c, f) = (c.clone(), f.clone());
        async move {
            holders(&c, &f).await.iter().all(|(_, s)| s.len() == 3)
                && c.fsck().await.unwrap().over_replicated == 0
        }
    })
    .await;
    read_back(&client, &files).await;
    cluster.master().check_invariants().unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_or_lowered_factor_is_followed() {
    let cluster = TestCluster::start(five()).await;
    let client = cluster.unpacked_client().await;
    let files = write_files(&client, 2).await;
    for factor in [5u8, 1, 2] {
        for path in files.keys() {
            client.set_replication(path, factor).await.unwrap();
        }
        let c = client.clone();
        let f = files.clone();
        wait_until(&format!("every chunk at {factor} replicas"), BOUND, || {
            let (c, f) = (c.clone(), f.clone());
            async move {
                holders(&c, &f)
                    .await
                    .iter()
                    .all(|(_, s)| s.len() == factor as usize)
            }
        })
        .await;
        wait_healthy(&client, &format!("fsck healthy at factor {factor}")).await;
        read_back(&client, &files).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_replica_is_replaced_from_a_good_one() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 3,
        // The scrubber finds the damage by itself, quickly.
        scrub_bytes_per_sec: 64 << 20,
        scrub_pause_secs: 0,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    let files = write_files(&client, 1).await;
    let chunk = client.file_chunks("/f0").await.unwrap()[0].chunk;
    // Two of the three replicas damaged: only one good one is left to copy from.
    cluster.corrupt_replica(0, chunk, 5000);
    cluster.corrupt_replica(1, chunk, 70_000);
    let c = client.clone();
    // Found (reported, or already replaced) on both servers: repair may overtake the count.
    wait_until("the damage found", BOUND, || {
        let c = c.clone();
        async move { c.fsck().await.unwrap().corrupt_replicas >= 1 }
    })
    .await;
    wait_healthy(&client, "both damaged replicas replaced").await;
    for i in 0..3 {
        let store = cluster.chunkserver(i).store();
        assert!(
            !store.corrupt().contains(&chunk),
            "server {i} still holds a bad replica"
        );
        assert!(
            store.replica(chunk).is_some(),
            "server {i} holds a good copy again"
        );
    }
    read_back(&client, &files).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_server_is_drained_then_safe_to_remove() {
    let cluster = TestCluster::start(five()).await;
    let client = cluster.unpacked_client().await;
    let files = write_files(&client, 4).await;
    wait_healthy(&client, "the written chunks healthy").await;
    let addr = cluster.chunkserver(2).local_addr().to_string();
    let held = cluster.chunkserver(2).store().chunk_count();
    assert!(held > 0, "server 2 holds replicas to drain");
    let info = client.decommission(&addr, true).await.unwrap();
    assert_eq!(info.state, ServerState::Draining);

    let c = client.clone();
    let a = addr.clone();
    wait_until("server 2 drained", BOUND, || {
        let (c, a) = (c.clone(), a.clone());
        async move {
            c.chunkservers()
                .await
                .unwrap()
                .iter()
                .any(|s| s.addr.to_string() == a && s.state == ServerState::Drained)
        }
    })
    .await;
    wait_healthy(&client, "every chunk at 3 replicas off the drained server").await;
    let drained = cluster.chunkserver(2).store().server_id();
    for (chunk, servers) in holders(&client, &files).await {
        assert!(
            !servers.contains(&drained),
            "{chunk} still on the drained server"
        );
    }
    let store = cluster.chunkserver(2).store();
    wait_until("the drained server's disk emptied", BOUND, || async {
        store.chunk_count() == 0
    })
    .await;
    read_back(&client, &files).await;
    // A name that matches nothing is a clear error.
    let e = client.decommission("10.9.9.9:1", true).await.unwrap_err();
    assert!(e.to_string().contains("no chunkserver '10.9.9.9:1'"), "{e}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_copies_and_deletes_nothing_in_safe_mode() {
    let mut cluster = TestCluster::start(ClusterOptions {
        chunkservers: 4,
        safe_mode_max_secs: 3600,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    let files = write_files(&client, 4).await;
    for path in files.keys() {
        client.set_replication(path, 2).await.unwrap();
    }
    wait_healthy(&client, "every chunk at 2 replicas").await;
    // The master forgets a trimmed replica at once, but the disk lets go of it at the next
    // heartbeat: wait for that, or a server would report the third replica after the restart.
    let chunks: Vec<ChunkId> = holders(&client, &files)
        .await
        .iter()
        .map(|(c, _)| *c)
        .collect();
    wait_until("the trimmed replicas deleted from disk", BOUND, || async {
        chunks.iter().all(|&c| {
            (0..4)
                .filter(|&i| cluster.chunkserver(i).store().replica(c).is_some())
                .count()
                == 2
        })
    })
    .await;
    // Both servers of one chunk are down across the master's restart: that chunk has not
    // reported, so safe mode holds, although other chunks (one replica down) could be copied.
    let (unreported, pair) = holders(&client, &files).await.swap_remove(0);
    let down: Vec<usize> = (0..4)
        .filter(|&i| pair.contains(&cluster.chunkserver(i).store().server_id()))
        .collect();
    let up: Vec<usize> = (0..4).filter(|i| !down.contains(i)).collect();
    for &i in &down {
        cluster.stop_chunkserver(i).await;
    }
    cluster.restart_master().await;
    cluster.wait_for_alive(2).await;
    let client = cluster.unpacked_client().await;
    let report = client.fsck().await.unwrap();
    assert!(report.safe_mode && report.missing > 0, "{report:?}");
    let under = report.under_replicated;
    assert!(under > 0, "{report:?}");
    // A file removed in safe mode leaves its metadata at once, but its replicas stay on disk.
    let on_disk = |cluster: &TestCluster, chunks: &[ChunkId]| {
        up.iter()
            .map(|&i| {
                let store = cluster.chunkserver(i).store();
                chunks
                    .iter()
                    .filter(|&&c| store.replica(c).is_some())
                    .count()
            })
            .sum::<usize>()
    };
    let mut gone = None;
    for path in files.keys() {
        let chunks: Vec<ChunkId> = client
            .file_chunks(path)
            .await
            .unwrap()
            .iter()
            .map(|c| c.chunk)
            .collect();
        // Not the file of the unreported chunk: removing it would end safe mode.
        if on_disk(&cluster, &chunks) > 0 && !chunks.contains(&unreported) {
            gone = Some((path.clone(), chunks));
            break;
        }
    }
    let (gone, gone_chunks) = gone.expect("a file with replicas on the live servers");
    let kept = on_disk(&cluster, &gone_chunks);
    client.remove(&gone).await.unwrap();
    // Absence is only observable over time: ten repair rounds and heartbeats pass.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let report = client.fsck().await.unwrap();
    assert!(
        report.safe_mode && report.copies_in_flight == 0,
        "{report:?}"
    );
    assert!(
        report.under_replicated >= under.saturating_sub(gone_chunks.len() as u64),
        "nothing copied: {report:?}"
    );
    assert_eq!(
        on_disk(&cluster, &gone_chunks),
        kept,
        "nothing deleted in safe mode"
    );

    // Every chunk reports once the servers are back: safe mode ends, deletions go out.
    for &i in &down {
        cluster.start_chunkserver(i).await;
    }
    let report = wait_healthy(&client, "safe mode over, all healthy").await;
    assert!(!report.safe_mode);
    wait_until("the removed file's replicas deleted", BOUND, || async {
        on_disk(&cluster, &gone_chunks) == 0
    })
    .await;
    let mut files = files;
    files.remove(&gone);
    read_back(&client, &files).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_empty_servers_take_replicas_from_full_ones() {
    // Each server offers 8 MiB: two servers holding ~3.8 MiB each are near 47% used, two new
    // ones at 0%; rebalancing moves replicas until the spread is within the 10% threshold.
    let mut cluster = TestCluster::start(ClusterOptions {
        chunkservers: 4,
        capacity_bytes: 8 << 20,
        ..Default::default()
    })
    .await;
    cluster.stop_chunkserver(2).await;
    cluster.stop_chunkserver(3).await;
    cluster.wait_for_alive(2).await;
    let client = cluster.unpacked_client().await;
    let files = write_files(&client, 5).await;
    for path in files.keys() {
        client.set_replication(path, 2).await.unwrap();
    }
    wait_healthy(
        &client,
        "every chunk at 2 replicas on the first two servers",
    )
    .await;
    cluster.start_chunkserver(2).await;
    cluster.start_chunkserver(3).await;
    cluster.wait_for_alive(4).await;
    let c = client.clone();
    wait_until(
        "space use within the threshold on all four servers",
        BOUND,
        || {
            let c = c.clone();
            async move {
                let servers = c.chunkservers().await.unwrap();
                let uses: Vec<f64> = servers
                    .iter()
                    .map(|s| s.space.used as f64 / s.space.capacity as f64)
                    .collect();
                let spread = uses.iter().cloned().fold(0.0, f64::max)
                    - uses.iter().cloned().fold(1.0, f64::min);
                servers.iter().all(|s| s.chunks > 0) && spread <= 0.10
            }
        },
    )
    .await;
    wait_healthy(&client, "every chunk at 2 replicas after rebalancing").await;
    read_back(&client, &files).await;
    cluster.shutdown().await;
}
