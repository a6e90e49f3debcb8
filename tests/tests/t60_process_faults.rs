//! Fault tests with real processes: a `kfs-master` and five `kfs-chunkserver`s on loopback
//! (replication 3, 256 KiB chunks, heartbeats every 100 ms, a server dead after 1 s of silence,
//! repairs every 100 ms), killed with `kill -9` while they work.
//!
//! - chunkservers killed one after another: every chunk back at 3 replicas after each loss
//!   while at least three servers live, every file read back by hash, and `kfs fsck` /
//!   `kfs servers` telling the truth;
//! - the master killed under a write load: every acknowledged mkdir and file is there after the
//!   restart, byte for byte;
//! - bytes flipped in chunk files on disk: found, repaired from good replicas (a chunk whose
//!   every replica is damaged is reported missing, never served); a server that missed a write
//!   while down has its stale replica deleted and never served; a decommissioned server drained.
//!
//! Bounds: every wait is at most 60 s (a repair of the whole data set takes a few seconds here);
//! each test ends by itself, and kills its processes when dropped.
//!
//! Its clients give every file chunks of its own (`unpacked_client`): the suite is about chunks;
//! small files packed into volumes have theirs (`t92_small_files`, `t93_volume_appends`).

use kfs_client::{Client, ClientOptions};
use kfs_common::proto::master::{FsckReport, ServerState};
use kfs_common::{ChunkId, KfsError, ServerId};
use kfs_tests::{ProcessCluster, binary, content, wait_until};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const CHUNK: usize = 256 * 1024;
const BOUND: Duration = Duration::from_secs(60);

/// A file written: path, length, crc32c.
type Written = (String, usize, u32);

/// Writes `n` files of varied sizes (empty, one byte, exact chunks, several chunks) under `dir`.
async fn write_dataset(client: &Client, dir: &str, n: usize) -> Vec<Written> {
    client.mkdir_all(dir).await.unwrap();
    let mut written = Vec::new();
    for i in 0..n {
        let len = match i % 5 {
            0 => i * 1000,
            1 => CHUNK,
            2 => 2 * CHUNK + 1,
            3 => 3 * CHUNK + CHUNK / 3,
            _ => 1 + i * 7919,
        };
        let data = content(i as u64 + 1, len);
        let path = format!("{dir}/file-{i}");
        let mut f = client.create(&path).await.unwrap();
        f.write_all(&data).await.unwrap();
        f.close().await.unwrap();
        written.push((path, len, crc32c::crc32c(&data)));
    }
    written
}

async fn verify(client: &Client, files: &[Written]) {
    for (path, len, crc) in files {
        let back = client
            .open(path)
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"))
            .read_at(0, len + 1)
            .await
            .unwrap_or_else(|e| panic!("read {path}: {e}"));
        assert_eq!(
            (back.len(), crc32c::crc32c(&back)),
            (*len, *crc),
            "{path} read back differently"
        );
    }
}

/// Waits until `fsck` satisfies `ok`; returns that report.
async fn fsck_until(client: &Client, what: &str, ok: impl Fn(&FsckReport) -> bool) -> FsckReport {
    let last = Mutex::new(None);
    wait_until(what, BOUND, || async {
        let r = client.fsck().await.unwrap();
        let good = ok(&r);
        *last.lock().unwrap() = Some(r);
        good
    })
    .await;
    last.into_inner().unwrap().unwrap()
}

fn healthy(r: &FsckReport) -> bool {
    r.healthy == r.chunks
        && r.under_replicated
            + r.over_replicated
            + r.missing
            + r.corrupt_replicas
            + r.copies_in_flight
            == 0
        && !r.safe_mode
}

/// Replica holders of every chunk of `files`.
async fn holders(client: &Client, files: &[Written]) -> Vec<(ChunkId, Vec<ServerId>)> {
    let mut all = Vec::new();
    for (path, ..) in files {
        for c in client.file_chunks(path).await.unwrap() {
            all.push((c.chunk, c.replicas.iter().map(|r| r.server).collect()));
        }
    }
    all
}

/// Runs the `kfs` shell once against the cluster; its standard output.
fn kfs(cluster: &ProcessCluster, args: &[&str]) -> String {
    let out = std::process::Command::new(binary("kfs"))
        .env("KFS_CREDENTIALS", cluster.credentials())
        .arg("--master")
        .arg(cluster.addr.to_string())
        .args(args)
        .output()
        .expect("run kfs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number in the `kfs fsck` table's row `name`.
fn fsck_row(table: &str, name: &str) -> u64 {
    table
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|rest| rest.trim()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunkservers_killed_one_after_another_are_healed_around() {
    let mut cluster = ProcessCluster::start(5, "", "").await;
    let client = cluster.unpacked_client().await;
    let files = write_dataset(&client, "/photos", 15).await;
    let report = fsck_until(&client, "the data set healthy", healthy).await;
    let chunks = report.chunks;
    assert!(chunks >= 25, "{report:?}");

    for (n, victim) in [0usize, 1, 2].into_iter().enumerate() {
        let id = cluster.server_id(victim);
        cluster.kill_chunkserver(victim);
        let c = &cluster;
        wait_until("the killed server declared dead", BOUND, || async move {
            c.servers()
                .await
                .iter()
                .any(|s| s.server == id && s.state == ServerState::Dead)
        })
        .await;
        if n < 2 {
            // Four, then three servers left: every chunk back at 3 replicas, none on the dead.
            fsck_until(&client, "every chunk back at 3 replicas", healthy).await;
            for (chunk, servers) in holders(&client, &files).await {
                assert_eq!(servers.len(), 3, "{chunk}");
                assert!(!servers.contains(&id), "{chunk} counted on a dead server");
            }
        } else {
            // Two servers left: nothing lost, everything short of one replica, and the shell
            // says so.
            let r = fsck_until(&client, "every chunk at the 2 replicas possible", |r| {
                r.under_replicated == r.chunks && r.missing == 0
            })
            .await;
            assert_eq!(r.chunks, chunks);
            let table = kfs(&cluster, &["fsck"]);
            assert_eq!(fsck_row(&table, "under-replicated"), chunks, "{table}");
            assert_eq!(fsck_row(&table, "missing"), 0, "{table}");
            assert_eq!(fsck_row(&table, "healthy"), 0, "{table}");
            let servers = kfs(&cluster, &["servers"]);
            assert_eq!(servers.matches(" dead ").count(), 3, "{servers}");
            assert_eq!(servers.matches(" alive ").count(), 2, "{servers}");
        }
        verify(&client, &files).await;
    }

    // The first server returns with the replicas it had: with them and new copies, every chunk
    // is at 3 again.
    cluster.start_chunkserver(0);
    cluster.wait_for_alive(3).await;
    fsck_until(&client, "every chunk at 3 replicas again", healthy).await;
    verify(&client, &files).await;
}

/// What a writer had acknowledged.
enum Acked {
    Dir(String),
    File(Written),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_write_load_keeps_every_acknowledged_change() {
    let mut cluster = ProcessCluster::start(5, "", "").await;
    // Writers stop soon after the master is gone (a call dials it again until its deadline).
    let options = ClientOptions::default()
        .with_write_retry_for(Duration::from_secs(3))
        .with_call_timeout(Duration::from_secs(3))
        .with_security(cluster.security().clone());
    let client = Client::connect_with(cluster.addr, options).await.unwrap();
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (client, acked) = (client.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let result: Result<(), KfsError> = async {
                client.mkdir(&format!("/w{w}")).await?;
                for n in 0u64.. {
                    let dir = format!("/w{w}/d{n}");
                    client.mkdir(&dir).await?;
                    acked.lock().unwrap().push(Acked::Dir(dir));
                    let path = format!("/w{w}/f{n}");
                    let data = content(w * 1000 + n, (n as usize * 37_001) % (3 * CHUNK));
                    let mut f = client.create(&path).await?;
                    f.write_all(&data).await?;
                    f.close().await?;
                    let len = data.len();
                    acked
                        .lock()
                        .unwrap()
                        .push(Acked::File((path, len, crc32c::crc32c(&data))));
                }
                Ok(())
            }
            .await;
            result
        }));
    }
    let a = &acked;
    wait_until("40 acknowledged changes", BOUND, || async move {
        a.lock().unwrap().len() >= 40
    })
    .await;
    cluster.kill_master();
    for writer in writers {
        let ended = tokio::time::timeout(BOUND, writer)
            .await
            .expect("a writer stops once the master is gone")
            .unwrap();
        assert!(ended.is_err(), "writers fail without a master");
    }

    cluster.start_master();
    cluster.wait_for_alive(5).await;
    let client = cluster.unpacked_client().await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let mut files = Vec::new();
    for a in acked {
        match a {
            Acked::Dir(dir) => {
                let attr = client
                    .stat(&dir)
                    .await
                    .unwrap_or_else(|e| panic!("{dir}: {e}"));
                assert_eq!(attr.kind, kfs_common::FileKind::Dir, "{dir}");
            }
            Acked::File(f) => files.push(f),
        }
    }
    assert!(files.len() >= 15, "{} files acknowledged", files.len());
    verify(&client, &files).await;
    // The cluster goes on: a new file can be written once old leases have run out.
    let more = write_dataset(&client, "/after", 2).await;
    verify(&client, &more).await;
    fsck_until(&client, "everything healthy after the restart", healthy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bytes_are_repaired_stale_replicas_deleted_and_a_server_drained() {
    // The scrubber runs all the time, fast, so damage is found without a read.
    let mut cluster = ProcessCluster::start(
        5,
        "",
        "scrub_bytes_per_sec = 67108864\nscrub_pause_secs = 0",
    )
    .await;
    let client = cluster.unpacked_client().await;
    let files = write_dataset(&client, "/media", 10).await;
    fsck_until(&client, "the data set healthy", healthy).await;
    let ids: Vec<ServerId> = (0..5).map(|i| cluster.server_id(i)).collect();
    let index_of = |id: ServerId| ids.iter().position(|&x| x == id).unwrap();

    // One replica of every chunk of two files damaged on disk, and every replica of one chunk
    // of a third file.
    let mut damaged = Vec::new();
    for (path, ..) in &files[1..3] {
        for c in client.file_chunks(path).await.unwrap() {
            let i = index_of(c.replicas[0].server);
            damaged.push((i, c.chunk, c.version));
        }
    }
    let (lost_path, ..) = files[3].clone();
    let lost = client.file_chunks(&lost_path).await.unwrap()[0].clone();
    for r in &lost.replicas {
        damaged.push((index_of(r.server), lost.chunk, lost.version));
    }
    let header = kfs_chunkserver::store::chunk_file::HEADER_LEN;
    // (replica file, offset, damaged byte) of every replica that can be repaired.
    let mut repairable = Vec::new();
    for (i, chunk, version) in &damaged {
        let path = cluster
            .replica_file(*i, *chunk, *version)
            .expect("the replica's file");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = header as usize + (bytes.len() - header as usize) / 2;
        bytes[at] ^= 0x5a;
        if *chunk != lost.chunk {
            repairable.push((path.clone(), at, bytes[at]));
        }
        std::fs::write(&path, bytes).unwrap();
    }
    // A damaged replica is repaired when its file holds good bytes again, or is gone and not
    // set aside as `.corrupt` either (a set-aside replica is still reported corrupt until the
    // master has it deleted). fsck's counts alone do not say so: a replica the scrubber has not
    // reached yet looks healthy.
    let all_repaired = || {
        repairable
            .iter()
            .all(|(path, at, bad)| match std::fs::read(path) {
                Ok(bytes) => bytes.get(*at) != Some(bad),
                Err(_) => !path.with_extension("corrupt").exists(),
            })
    };
    // Every damaged replica of the repairable chunks is replaced; the lost chunk's three stay
    // reported corrupt, and it is missing.
    wait_until(
        "every repairable damaged replica replaced",
        BOUND,
        || async { all_repaired() },
    )
    .await;
    let r = fsck_until(&client, "the damage found and repaired", |r| {
        r.corrupt_replicas == 3
            && r.missing == 1
            && r.under_replicated == 0
            && r.copies_in_flight == 0
    })
    .await;
    assert_eq!(r.healthy, r.chunks - 1, "{r:?}");
    let table = kfs(&cluster, &["fsck"]);
    assert_eq!(fsck_row(&table, "corrupt replicas"), 3, "{table}");
    assert_eq!(fsck_row(&table, "missing"), 1, "{table}");
    assert!(table.contains(&format!("MISSING: {lost_path}")), "{table}");
    let mut good: Vec<Written> = files.clone();
    good.retain(|f| f.0 != lost_path);
    verify(&client, &good).await;
    let e = client
        .open(&lost_path)
        .await
        .unwrap()
        .read_at(0, 10)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&lost.chunk.to_string()),
        "the error names the chunk: {e}"
    );
    // The lost file is removed; its corrupt replicas go with it.
    client.remove(&lost_path).await.unwrap();
    fsck_until(&client, "healthy once the lost file is gone", healthy).await;

    // A server misses a write while down: its replica is stale when it returns.
    let which = good.iter().position(|f| f.1 >= CHUNK).unwrap();
    let (path, len, _) = good[which].clone();
    let target = client.file_chunks(&path).await.unwrap()[0].clone();
    let victim = index_of(target.replicas[0].server);
    let victim_id = cluster.server_id(victim);
    cluster.kill_chunkserver(victim);
    let c = &cluster;
    wait_until("the server declared dead", BOUND, || async move {
        c.servers()
            .await
            .iter()
            .any(|s| s.server == victim_id && s.state == ServerState::Dead)
    })
    .await;
    let new_data = content(777, len);
    let mut f = client.open(&path).await.unwrap();
    f.write_all(&new_data).await.unwrap();
    f.close().await.unwrap();
    let now_at = client.file_chunks(&path).await.unwrap()[0].version;
    assert!(
        now_at > target.version,
        "the write moved the chunk to a new version"
    );
    assert!(
        cluster
            .replica_file(victim, target.chunk, target.version)
            .is_some()
    );
    cluster.start_chunkserver(victim);
    cluster.wait_for_alive(5).await;
    wait_until(
        "the stale replica deleted from the returning server",
        BOUND,
        || async {
            cluster
                .replica_file(victim, target.chunk, target.version)
                .is_none()
        },
    )
    .await;
    good[which] = (path.clone(), len, crc32c::crc32c(&new_data));
    verify(&client, &good).await;
    for c in client.file_chunks(&path).await.unwrap() {
        assert!(c.replicas.len() <= 3);
    }

    // Decommissioning: the server is drained, then listed as safe to remove.
    let drain = cluster.chunkserver_addr(4).to_string();
    let out = kfs(&cluster, &["admin", "decommission", &drain]);
    assert!(out.contains("draining") || out.contains("drained"), "{out}");
    wait_until("the decommissioned server drained", BOUND, || async {
        kfs(&cluster, &["servers"]).contains("drained (safe to remove)")
    })
    .await;
    fsck_until(&client, "healthy without the drained server", healthy).await;
    let drained = cluster.server_id(4);
    for (chunk, servers) in holders(&client, &good).await {
        assert!(
            !servers.contains(&drained),
            "{chunk} still on the drained server"
        );
    }
    verify(&client, &good).await;
}
