//! Chunkservers and the master's volatile chunk map, in process: locations come only from
//! chunkservers' reports, dead servers are noticed within the timeout, a restarted master learns
//! every location again from hello, damage is found and reported, and replicas the master does not
//! want are deleted.
//!
//! Until the data path lands, replicas are put straight into chunkservers' stores and their
//! chunks recorded at the master with an `AllocateChunk` op, then the servers restarted so their
//! hello reports them.

use kfs_common::proto::PROTOCOL_VERSION;
use kfs_common::proto::master::{CreateOptions, ServerState};
use kfs_common::{ChunkId, ChunkVersion, KfsError};
use kfs_master::namespace::op::Op;
use kfs_tests::{ClusterOptions, TestCluster, ctx, wait_until};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn data(chunk: ChunkId) -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i as u64 * 31 + chunk.0) as u8)
        .collect()
}

/// Creates `path` with `chunks` chunks at the master (version `version`), and replicas of each on
/// `servers`. Returns the chunk ids.
async fn file_with_replicas(
    cluster: &TestCluster,
    path: &str,
    chunks: u64,
    version: ChunkVersion,
    servers: &[usize],
) -> Vec<ChunkId> {
    let client = cluster.master_client().await;
    let attr = client
        .create(ctx(), path.into(), CreateOptions::default())
        .await
        .unwrap()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..chunks {
        let chunk = cluster.master().namespace().read().unwrap().next_chunk_id();
        cluster
            .master()
            .commit(Op::AllocateChunk {
                fid: attr.fid,
                offset: i << 26,
                chunk,
                version,
            })
            .await
            .unwrap();
        for &s in servers {
            let store = cluster.chunkserver(s).store();
            store.create(chunk, version).await.unwrap();
            store.write(chunk, version, 0, data(chunk)).await.unwrap();
        }
        ids.push(chunk);
    }
    ids
}

/// Waits until every chunk of `path` has `n` replicas at the master.
async fn wait_for_replicas(cluster: &TestCluster, path: &str, n: usize) {
    let client = cluster.master_client().await;
    wait_until(
        &format!("{n} replicas of every chunk of {path}"),
        WAIT,
        || {
            let client = client.clone();
            let path = path.to_string();
            async move {
                match client.file_chunks(ctx(), path).await {
                    Ok(Ok(chunks)) => {
                        !chunks.is_empty() && chunks.iter().all(|c| c.replicas.len() == n)
                    }
                    _ => false,
                }
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_come_from_reports_only_and_survive_restarts() {
    let mut cluster = TestCluster::start(ClusterOptions::default()).await;
    let chunks = file_with_replicas(&cluster, "/f", 4, ChunkVersion(1), &[0, 1, 2]).await;
    let client = cluster.master_client().await;
    // The master has not heard of the replicas yet: they came in behind its back.
    let listed = client
        .file_chunks(ctx(), "/f".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listed.iter().map(|c| c.chunk).collect::<Vec<_>>(), chunks);
    assert!(listed.iter().all(|c| c.replicas.is_empty()));
    for i in 0..3 {
        cluster.restart_chunkserver(i).await;
    }
    wait_for_replicas(&cluster, "/f", 3).await;

    // A stopped server is declared dead within the timeout, and its replicas stop counting.
    let timeout = Duration::from_millis(cluster.options.chunkserver_timeout_ms);
    let stopped_at = Instant::now();
    let dead_id = cluster.chunkserver(0).store().server_id();
    cluster.stop_chunkserver(0).await;
    wait_until("the stopped chunkserver declared dead", WAIT, || {
        let client = client.clone();
        async move {
            let servers = client.chunkservers(ctx()).await.unwrap().unwrap();
            servers
                .iter()
                .any(|s| s.server == dead_id && s.state == ServerState::Dead)
        }
    })
    .await;
    let took = stopped_at.elapsed();
    // Its last heartbeat may have come up to one interval before it was stopped: silence is
    // counted from that heartbeat.
    let interval = Duration::from_millis(cluster.options.heartbeat_interval_ms);
    assert!(
        took + interval >= timeout,
        "declared dead after {took:?}, before the {timeout:?} timeout"
    );
    assert!(
        took < timeout * 3,
        "declared dead only after {took:?} (timeout {timeout:?})"
    );
    wait_for_replicas(&cluster, "/f", 2).await;

    // Restarted, it says hello and its replicas count again.
    cluster.start_chunkserver(0).await;
    cluster.wait_for_alive(3).await;
    wait_for_replicas(&cluster, "/f", 3).await;

    // A restarted master has no locations until the chunkservers say hello again.
    cluster.restart_master().await;
    cluster.wait_for_alive(3).await;
    wait_for_replicas(&cluster, "/f", 3).await;
    cluster.master().check_invariants().unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_fails_the_read_and_the_replica_is_reported_corrupt() {
    let mut cluster = TestCluster::start(ClusterOptions::default()).await;
    let chunk = file_with_replicas(&cluster, "/img.jpg", 1, ChunkVersion(1), &[0, 1, 2]).await[0];
    for i in 0..3 {
        cluster.restart_chunkserver(i).await;
    }
    wait_for_replicas(&cluster, "/img.jpg", 3).await;

    cluster.corrupt_replica(1, chunk, 100_000);
    let damaged = cluster.chunk_client(1).await;
    let got = damaged
        .read(ctx(), chunk, ChunkVersion(1), 0, 200_000)
        .await
        .unwrap();
    assert_eq!(
        got,
        Err(KfsError::ChecksumMismatch {
            chunk,
            offset: 65536
        })
    );
    // Never served again, not even the blocks that are fine.
    let again = damaged
        .read(ctx(), chunk, ChunkVersion(1), 0, 10)
        .await
        .unwrap();
    assert!(
        matches!(again, Err(KfsError::CorruptReplica { .. })),
        "{again:?}"
    );
    let healthy = cluster.chunk_client(0).await;
    let bytes = healthy
        .read(ctx(), chunk, ChunkVersion(1), 0, 200_000)
        .await
        .unwrap()
        .unwrap();
    assert!(bytes.as_slice() == data(chunk).as_slice());

    // The next heartbeat reports it; the master stops counting that replica.
    wait_for_replicas(&cluster, "/img.jpg", 2).await;
    let client = cluster.master_client().await;
    let damaged_id = cluster.chunkserver(1).store().server_id();
    let servers = client.chunkservers(ctx()).await.unwrap().unwrap();
    let info = servers.iter().find(|s| s.server == damaged_id).unwrap();
    let status = damaged.status(ctx()).await.unwrap().unwrap();
    // Counted corrupt on both sides, unless the healer already replaced the replica (then the
    // server holds a good copy again).
    let replaced =
        status.corrupt.is_empty() && cluster.chunkserver(1).store().replica(chunk).is_some();
    assert!(
        replaced || (info.corrupt == 1 && status.corrupt == vec![chunk]),
        "{info:?} {status:?}"
    );
    cluster.master().check_invariants().unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_the_master_does_not_want_are_deleted_at_hello() {
    let mut cluster = TestCluster::start(ClusterOptions::default()).await;
    // The master knows this chunk at version 2; server 0 holds version 1 (it missed a bump).
    let known = file_with_replicas(&cluster, "/f", 1, ChunkVersion(2), &[1]).await[0];
    // At replication 1 the current replica alone is the factor, so the stale one is not needed
    // (a stale replica is kept while its chunk is under-replicated: docs/failures.md).
    cluster
        .master_client()
        .await
        .set_replication(ctx(), "/f".into(), 1)
        .await
        .unwrap()
        .unwrap();
    let store = cluster.chunkserver(0).store().clone();
    store.create(known, ChunkVersion(1)).await.unwrap();
    // And a chunk no file references.
    let orphan = ChunkId(987_654);
    store.create(orphan, ChunkVersion(1)).await.unwrap();
    store
        .write(orphan, ChunkVersion(1), 0, vec![1; 10])
        .await
        .unwrap();
    drop(store);

    cluster.restart_chunkserver(0).await;
    cluster.restart_chunkserver(1).await;
    let store = cluster.chunkserver(0).store().clone();
    wait_until("the stale and the orphan replica deleted", WAIT, || {
        let store = store.clone();
        async move { store.replica(known).is_none() && store.replica(orphan).is_none() }
    })
    .await;
    assert!(
        cluster.replica_file(1, known).is_some(),
        "the current replica stays"
    );
    wait_for_replicas(&cluster, "/f", 1).await;

    // Removing the file has its replica deleted through a heartbeat reply.
    let client = cluster.master_client().await;
    client.remove(ctx(), "/f".into()).await.unwrap().unwrap();
    let holder = cluster.chunkserver(1).store().clone();
    wait_until("the removed file's replica deleted", WAIT, || {
        let holder = holder.clone();
        async move { holder.replica(known).is_none() }
    })
    .await;
    cluster.master().check_invariants().unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrubber_finds_damage_nobody_read() {
    let options = ClusterOptions {
        scrub_bytes_per_sec: 256 << 20,
        scrub_pause_secs: 0,
        ..Default::default()
    };
    let mut cluster = TestCluster::start(options).await;
    let chunk = file_with_replicas(&cluster, "/cold", 1, ChunkVersion(1), &[0, 1, 2]).await[0];
    for i in 0..3 {
        cluster.restart_chunkserver(i).await;
    }
    wait_for_replicas(&cluster, "/cold", 3).await;
    cluster.corrupt_replica(2, chunk, 150_000);
    let store = cluster.chunkserver(2).store().clone();
    let stats = cluster.chunkserver(2).scrub_stats();
    // The store sets the replica aside inside the read, before the scrubber
    // counts what it found: wait for both, not one then assert the other.
    wait_until(
        "the scrubber to find and count the damaged replica",
        WAIT,
        || {
            let store = store.clone();
            async move {
                store.corrupt() == vec![chunk]
                    && stats
                        .corrupt_found
                        .load(std::sync::atomic::Ordering::Relaxed)
                        >= 1
            }
        },
    )
    .await;
    wait_for_replicas(&cluster, "/cold", 2).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_disk_takes_its_replicas_out_of_the_master_map() {
    let options = ClusterOptions {
        chunkservers: 2,
        data_dirs_per_server: 2,
        ..Default::default()
    };
    let mut cluster = TestCluster::start(options).await;
    let chunk = file_with_replicas(&cluster, "/d", 1, ChunkVersion(1), &[0, 1]).await[0];
    cluster.restart_chunkserver(0).await;
    cluster.restart_chunkserver(1).await;
    wait_for_replicas(&cluster, "/d", 2).await;

    cluster.servers[0]
        .io
        .set(|f| f.fail_everything = Some(std::io::ErrorKind::Other));
    let got = cluster
        .chunkserver(0)
        .store()
        .read(chunk, ChunkVersion(1), 0, 10)
        .await;
    cluster.servers[0].io.set(|f| f.fail_everything = None);
    assert!(matches!(got, Err(KfsError::Io(_))), "{got:?}");
    assert_eq!(cluster.chunkserver(0).store().failed_dirs().len(), 1);
    // The store's change makes the server say hello again without the lost replica.
    wait_for_replicas(&cluster, "/d", 1).await;
    let status = cluster
        .chunk_client(0)
        .await
        .status(ctx())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.failed_dirs.len(), 1);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_chunkserver_with_a_different_protocol_is_refused() {
    let cluster = TestCluster::start(ClusterOptions {
        chunkservers: 0,
        ..Default::default()
    })
    .await;
    let security = cluster.peer_security(kfs_common::security::Role::Chunkserver, "t20");
    let client = kfs_common::proto::cluster::connect(cluster.master_addr(), &security)
        .await
        .unwrap();
    let hello = kfs_common::proto::cluster::HelloRequest {
        protocol: PROTOCOL_VERSION + 1,
        server: kfs_common::ServerId(1),
        addr: "127.0.0.1:1".parse().unwrap(),
        space: Default::default(),
        chunks: Vec::new(),
        corrupt: Vec::new(),
    };
    let got = client.hello(ctx(), hello).await.unwrap();
    assert!(
        matches!(got, Err(KfsError::IncompatibleProtocol { .. })),
        "{got:?}"
    );
    cluster.shutdown().await;
}
