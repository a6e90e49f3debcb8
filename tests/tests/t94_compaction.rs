//! Issue 17, item 3: compaction gives back the space of deleted small files and never loses a
//! live one. Sealed volumes whose dead fraction passes the threshold have their live records
//! copied to the open volume and the files switched in one logged step, then are freed; every
//! live file reads back byte for byte throughout, across `kill -9` of the master and of
//! chunkservers at every point of a compaction, and with a disk full under it.
//!
//! Every wait is bounded; nothing sleeps to synchronize.

use futures::future::join_all;
use kfs_client::Client;
use kfs_common::ChunkId;
use kfs_tests::{ClusterOptions, ProcessCluster, TestCluster, content, wait_until};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Files written per test: 4 KiB each, so the test clusters' 256 KiB volumes fill and seal.
const FILES: u64 = 150;

async fn put(client: &Client, path: &str, data: &[u8]) {
    let mut file = client.create(path).await.unwrap();
    file.write_all(data).await.unwrap();
    file.close().await.unwrap();
}

async fn get(client: &Client, path: &str) -> Vec<u8> {
    let file = client
        .open(path)
        .await
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    let len = file.len() as usize;
    file.read_at(0, len)
        .await
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Writes [`FILES`] small files; returns them.
async fn fill(client: &Client) -> BTreeMap<String, Vec<u8>> {
    fill_n(client, FILES).await
}

/// Writes `n` small files of 4 KiB; returns them.
async fn fill_n(client: &Client, n: u64) -> BTreeMap<String, Vec<u8>> {
    client.mkdir("/p").await.unwrap();
    // Eight at a time: with all 150 writers at once, a full suite on 2 cores once found every
    // kept file packed in the first volume (the test needs them across several).
    let ids: Vec<u64> = (0..n).collect();
    for batch in ids.chunks(8) {
        join_all(batch.iter().map(|&i| {
            let client = client.clone();
            async move { put(&client, &format!("/p/{i}"), &content(i, 4096)).await }
        }))
        .await;
    }
    (0..n)
        .map(|i| (format!("/p/{i}"), content(i, 4096)))
        .collect()
}

/// The files [`thin`] keeps.
fn keepers(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, (p, d))| (p.clone(), d.clone()))
        .collect()
}

/// Removes two files in three; returns the survivors.
async fn thin(client: &Client, files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    let mut kept = BTreeMap::new();
    for (i, (path, data)) in files.into_iter().enumerate() {
        if i % 3 == 0 {
            kept.insert(path, data);
        } else {
            client.remove(&path).await.unwrap();
        }
    }
    kept
}

/// Rounds the master's volume compactor has finished.
async fn compaction_rounds(client: &Client) -> u64 {
    client
        .workers()
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.name == "volume compactor")
        .map_or(0, |w| w.rounds)
}

async fn every_file_reads_back(client: &Client, kept: &BTreeMap<String, Vec<u8>>) {
    for (path, data) in kept {
        assert!(
            get(client, path).await == *data,
            "{path} read back differently"
        );
    }
}

/// The volumes files' extents name now.
async fn volumes_in_use(client: &Client, kept: &BTreeMap<String, Vec<u8>>) -> HashSet<ChunkId> {
    let mut volumes = HashSet::new();
    for path in kept.keys() {
        if let (_, kfs_common::proto::master::Layout::Packed(e)) =
            client.file_layout(path).await.unwrap()
        {
            volumes.insert(e.volume);
        }
    }
    volumes
}

fn quick_compaction() -> ClusterOptions {
    ClusterOptions {
        compact_interval_ms: 100,
        compact_dead_fraction: 0.5,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_moves_the_live_files_and_frees_the_volumes_of_dead_ones() {
    let cluster = TestCluster::start(ClusterOptions {
        http: true,
        ..quick_compaction()
    })
    .await;
    let client = cluster.client().await;
    let files = fill(&client).await;
    let before = volumes_in_use(&client, &keepers(&files)).await;
    assert!(
        before.len() >= 2,
        "the files fill several volumes: {before:?}"
    );
    let kept = thin(&client, files).await;
    let (c, k, b) = (&client, &kept, &before);
    wait_until(
        "the sealed volumes with dead records are compacted and freed",
        Duration::from_secs(60),
        || async move { volumes_in_use(c, k).await.len() < b.len() },
    )
    .await;
    every_file_reads_back(&client, &kept).await;
    cluster.master().check_invariants().unwrap();
    // The freed volumes' replicas are deleted on every server.
    let now = volumes_in_use(&client, &kept).await;
    let gone: Vec<ChunkId> = before.difference(&now).copied().collect();
    let held = |v: &ChunkId| {
        cluster
            .master()
            .volume_locations()
            .iter()
            .any(|(c, _)| c == v)
    };
    let cl = &cluster;
    let g = &gone;
    wait_until(
        "the freed volumes and their replicas are gone",
        Duration::from_secs(30),
        || async move {
            g.iter()
                .all(|v| !held(v) && (0..3).all(|i| cl.replica_file(i, *v).is_none()))
        },
    )
    .await;
    // The status page and the metrics say what compaction did.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = format!("http://{}", cluster.master().http_addr().unwrap());
    let status: serde_json::Value = http
        .get(format!("{base}/status.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let small = &status["small_files"];
    assert_eq!(small["packed_files"], kept.len() as u64, "{small}");
    assert!(small["compacted_volumes"].as_u64().unwrap() >= 1, "{small}");
    assert!(small["moved_records"].as_u64().unwrap() >= 1, "{small}");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("kfs_packed_files {}", kept.len())),
        "{metrics}"
    );
    assert!(
        metrics.contains("kfs_compacted_volumes_total "),
        "{metrics}"
    );
    let page = http.get(&base).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"small-files\""), "{page}");
    // Files written after compaction, and removals of moved files, work as ever.
    put(&client, "/after", b"after compaction").await;
    assert_eq!(get(&client, "/after").await, b"after compaction");
    let first = kept.keys().next().unwrap().clone();
    client.remove(&first).await.unwrap();
    cluster.master().check_invariants().unwrap();
    cluster.shutdown().await;
}

/// A handle opened before its file's volume was compacted and freed still reads the file: it
/// asks the master where the file is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_opened_before_compaction_reads_the_moved_file() {
    let cluster = TestCluster::start(quick_compaction()).await;
    let client = cluster.client().await;
    let files = fill(&client).await;
    let mut early = Vec::new();
    for (i, (path, data)) in files.iter().enumerate() {
        if i % 3 == 0 {
            let volume = volumes_in_use(&client, &BTreeMap::from([(path.clone(), data.clone())]))
                .await
                .into_iter()
                .next()
                .unwrap();
            early.push((path.clone(), volume, client.open(path).await.unwrap()));
        }
    }
    let before: HashSet<ChunkId> = early.iter().map(|(_, v, _)| *v).collect();
    let kept = thin(&client, files).await;
    let (c, k, b) = (&client, &kept, &before);
    wait_until(
        "a volume is compacted",
        Duration::from_secs(60),
        || async move { volumes_in_use(c, k).await.intersection(b).count() < b.len() },
    )
    .await;
    let now = volumes_in_use(&client, &kept).await;
    let moved: Vec<_> = early
        .into_iter()
        .filter(|(_, volume, _)| !now.contains(volume))
        .collect();
    assert!(!moved.is_empty(), "some files moved");
    let cl = &cluster;
    let m = &moved;
    wait_until(
        "their old volumes and replicas are gone",
        Duration::from_secs(30),
        || async move {
            m.iter().all(|(_, v, _)| {
                !cl.master().volume_locations().iter().any(|(c, _)| c == v)
                    && (0..3).all(|i| cl.replica_file(i, *v).is_none())
            })
        },
    )
    .await;
    for (path, _, handle) in &moved {
        let data = &kept[path];
        assert_eq!(
            handle.read_at(0, data.len()).await.unwrap(),
            *data,
            "{path}"
        );
    }
    cluster.shutdown().await;
}

/// A full disk under compaction: the appends of the copies fail, nothing is switched, and every
/// file reads back; once there is room, compaction finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_compaction_loses_nothing() {
    let cluster = TestCluster::start(quick_compaction()).await;
    let client = cluster.client().await;
    let files = fill(&client).await;
    let before = volumes_in_use(&client, &keepers(&files)).await;
    for slot in &cluster.servers {
        slot.io.set(|f| f.space_left = Some(0));
    }
    let kept = thin(&client, files).await;
    // Rounds of compaction run against the full disks.
    let rounds = compaction_rounds(&client).await;
    let c = &client;
    wait_until(
        "compaction rounds ran",
        Duration::from_secs(30),
        || async move { compaction_rounds(c).await >= rounds + 3 },
    )
    .await;
    assert_eq!(
        volumes_in_use(&client, &kept).await.len(),
        before.len(),
        "nothing moved while the disks are full"
    );
    every_file_reads_back(&client, &kept).await;
    cluster.master().check_invariants().unwrap();
    for slot in &cluster.servers {
        slot.io.set(|f| f.space_left = None);
    }
    let (k, b) = (&kept, &before);
    wait_until(
        "compaction finishes once there is room",
        Duration::from_secs(60),
        || async move { volumes_in_use(c, k).await.len() < b.len() },
    )
    .await;
    every_file_reads_back(&client, &kept).await;
    cluster.master().check_invariants().unwrap();
    cluster.shutdown().await;
}

/// `kill -9` of the master, then of each chunkserver, at a spread of moments through
/// compaction rounds (real processes): every live file reads back after each restart, and
/// compaction finishes in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_point_of_a_compaction_loses_nothing() {
    let mut cluster = ProcessCluster::start(
        3,
        "compact_interval_ms = 50\ncompact_dead_fraction = 0.5\n",
        "",
    )
    .await;
    let client = cluster.client().await;
    // Enough records that a round of compaction takes long enough for kills to land inside it.
    let files = fill_n(&client, 4 * FILES).await;
    let before = volumes_in_use(&client, &keepers(&files)).await;
    let kept = thin(&client, files).await;
    // Kills land from the first round's start to well past its end.
    for (i, after_ms) in [0u64, 20, 40, 60, 90, 130, 200, 300]
        .into_iter()
        .enumerate()
    {
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        if i % 2 == 0 {
            cluster.kill_master();
            cluster.start_master();
        } else {
            let victim = i / 2 % 3;
            cluster.kill_chunkserver(victim);
            cluster.start_chunkserver(victim);
        }
        cluster.wait_for_alive(3).await;
        every_file_reads_back(&client, &kept).await;
    }
    let (c, k, b) = (&client, &kept, &before);
    wait_until(
        "compaction finishes",
        Duration::from_secs(120),
        || async move { volumes_in_use(c, k).await.len() < b.len() },
    )
    .await;
    every_file_reads_back(&client, &kept).await;
    wait_until(
        "fsck finds nothing missing",
        Duration::from_secs(60),
        || async move { c.fsck().await.is_ok_and(|r| r.missing == 0) },
    )
    .await;
}
