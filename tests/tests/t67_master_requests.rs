//! Requests a buggy or hostile peer may send the master, straight over its RPC interface: none
//! may destroy data or make the namespace lie (issue 15, "destroying data on request").
//!
//! - `extend_length` beyond what was written is refused (a 3-byte file made 8 EiB).
//! - `report_failure` naming every replica of a chunk deletes nothing; naming some of them makes
//!   them stale, kept until the chunk is re-replicated.
//! - `hello`s from servers that do not hold a chunk, claiming it, do not trim its real replicas,
//!   even when they come first after a master restart (digests prove the real ones).
//!
//! Its clients give every file chunks of its own (`unpacked_client`): the suite is about chunks;
//! small files packed into volumes have theirs (`t92_small_files`, `t93_volume_appends`).

use kfs_common::proto::PROTOCOL_VERSION;
use kfs_common::proto::cluster::{ChunkReport, HeartbeatRequest, HelloRequest, SpaceReport};
use kfs_common::proto::master::WriteLease;
use kfs_common::{ChunkVersion, KfsError, ServerId};
use kfs_tests::{ClusterOptions, TestCluster, content, ctx, wait_until};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(20);

const CHUNK: u64 = 256 * 1024;

#[tokio::test]
async fn extend_length_beyond_the_written_data_is_refused() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    cluster.wait_for_alive(3).await;
    let client = cluster.unpacked_client().await;
    let master = cluster.master_client().await;

    let f = client.create("/small").await.unwrap();
    f.write_at(0, b"abc").await.unwrap();
    let fid = f.fid();
    f.close().await.unwrap();

    for (length, why) in [
        (8u64 << 60, "nothing was written"),
        (2 * CHUNK, "nothing was written"),
        (4, "holds fewer than 4 bytes"),
    ] {
        match master.extend_length(ctx(), fid, length).await.unwrap() {
            Err(KfsError::InvalidArgument(text)) => {
                assert!(
                    text.contains("'/small'") && text.contains(why),
                    "{length}: {text}"
                )
            }
            other => panic!("extend_length({length}) answered {other:?}"),
        }
    }
    assert_eq!(client.stat("/small").await.unwrap().size, 3);
    // Lengths within the file are accepted (and change nothing).
    assert_eq!(
        master
            .extend_length(ctx(), fid, 3)
            .await
            .unwrap()
            .unwrap()
            .size,
        3
    );

    // A file with a hole: data written only in its third chunk; its length is the end of that.
    let data = content(7, 100);
    let g = client.create("/holey").await.unwrap();
    g.write_at(2 * CHUNK + 10, &data).await.unwrap();
    let gid = g.fid();
    assert_eq!(g.close().await.unwrap().size, 2 * CHUNK + 110);
    assert!(matches!(
        master
            .extend_length(ctx(), gid, 2 * CHUNK + 111)
            .await
            .unwrap(),
        Err(KfsError::InvalidArgument(_))
    ));
    let back = client.open("/holey").await.unwrap();
    assert_eq!(back.read_at(0, 10).await.unwrap(), vec![0; 10]);
    assert_eq!(back.read_at(2 * CHUNK + 10, 100).await.unwrap(), data);

    // An empty file has no chunk to vouch for any length.
    let e = client.create("/empty").await.unwrap();
    let eid = e.fid();
    e.close().await.unwrap();
    assert!(matches!(
        master.extend_length(ctx(), eid, 1).await.unwrap(),
        Err(KfsError::InvalidArgument(_))
    ));
    cluster.shutdown().await;
}

/// Writes `/f` (one chunk, replication 3); returns its data and its chunk as the master lists it.
async fn one_chunk_file(
    cluster: &TestCluster,
) -> (Vec<u8>, kfs_common::proto::master::ChunkLocation) {
    let client = cluster.unpacked_client().await;
    let data = content(3, 100_000);
    let f = client.create("/f").await.unwrap();
    f.write_at(0, &data).await.unwrap();
    f.close().await.unwrap();
    let master = cluster.master_client().await;
    let mut chunks = master
        .file_chunks(ctx(), "/f".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].replicas.len(), 3);
    (data, chunks.remove(0))
}

/// Waits until `/f` has 3 live replicas at one version, on the cluster's own servers, and every
/// chunk is healthy; then reads it back.
async fn wait_healthy_and_read(cluster: &TestCluster, real: &[ServerId], data: &[u8]) {
    let master = cluster.master_client().await;
    let real = real.to_vec();
    wait_until("/f back on its three real replicas, healthy", BOUND, || {
        let master = master.clone();
        let real = real.clone();
        async move {
            let Ok(Ok(chunks)) = master.file_chunks(ctx(), "/f".into()).await else {
                return false;
            };
            let Ok(Ok(fsck)) = master.fsck(ctx()).await else {
                return false;
            };
            chunks.len() == 1
                && chunks[0].replicas.len() == 3
                && chunks[0].replicas.iter().all(|r| real.contains(&r.server))
                && fsck.healthy == fsck.chunks
                && fsck.missing == 0
        }
    })
    .await;
    let client = cluster.unpacked_client().await;
    let f = client.open("/f").await.unwrap();
    assert_eq!(f.read_at(0, data.len()).await.unwrap(), data);
}

#[tokio::test]
async fn report_failure_naming_every_replica_deletes_nothing() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    cluster.wait_for_alive(3).await;
    let (data, chunk) = one_chunk_file(&cluster).await;
    let master = cluster.master_client().await;
    let all: Vec<ServerId> = chunk.replicas.iter().map(|r| r.server).collect();
    let real = all.clone();

    match master
        .report_failure(ctx(), chunk.chunk, chunk.version, all.clone())
        .await
        .unwrap()
    {
        Err(KfsError::ChunkUnavailable { reason, .. }) => {
            assert!(reason.contains("keeps them all"), "{reason}")
        }
        other => panic!("a report naming every replica was taken: {other:?}"),
    }
    // Naming two of three: the survivor carries on at the next version, the two others stop
    // counting, and the chunk is copied back to its factor before they are deleted.
    let lease: WriteLease = master
        .report_failure(ctx(), chunk.chunk, chunk.version, all[..2].to_vec())
        .await
        .unwrap()
        .expect("a survivor remains");
    assert_eq!(lease.version, ChunkVersion(chunk.version.0 + 1));
    assert_eq!(lease.primary.server, all[2]);
    assert!(lease.secondaries.is_empty());
    wait_healthy_and_read(&cluster, &real, &data).await;
    cluster.shutdown().await;
}

/// Three fake chunkservers (at addresses nothing listens on) say hello claiming `chunk` and keep
/// sending heartbeats until the task is aborted, so their claims count. They are emptier than any
/// real server, so "the fullest replicas" would be the real ones.
async fn fake_servers_claiming(
    cluster: &TestCluster,
    chunk: &kfs_common::proto::master::ChunkLocation,
    length: u64,
) -> tokio::task::JoinHandle<()> {
    let fakes: Vec<ServerId> = (1..=3).map(|i| ServerId(0xfa6e_0000 + i)).collect();
    // Each fake holds a chunkserver certificate of its own (colluding servers of the cluster:
    // one certificate speaks for one chunkserver).
    let mut links = Vec::new();
    for fake in &fakes {
        let name = kfs_common::security::chunkserver_name(*fake);
        let security = cluster.peer_security(kfs_common::security::Role::Chunkserver, &name);
        links.push(
            kfs_common::proto::cluster::connect(cluster.master_addr(), &security)
                .await
                .unwrap(),
        );
    }
    let space = SpaceReport {
        capacity: 1 << 50,
        available: 1 << 50,
        used: 0,
    };
    let mut sessions = Vec::new();
    for (n, fake) in fakes.iter().enumerate() {
        let hello = HelloRequest {
            protocol: PROTOCOL_VERSION,
            server: *fake,
            addr: format!("127.0.0.1:{}", 9 + n).parse().unwrap(),
            space,
            chunks: vec![ChunkReport {
                chunk: chunk.chunk,
                version: chunk.version,
                length,
            }],
            corrupt: Vec::new(),
        };
        sessions.push(links[n].hello(ctx(), hello).await.unwrap().unwrap().session);
    }
    tokio::spawn(async move {
        loop {
            for ((fake, session), link) in fakes.iter().zip(&sessions).zip(&links) {
                let beat = HeartbeatRequest {
                    server: *fake,
                    session: *session,
                    space,
                    chunk_count: 1,
                    corrupt: Vec::new(),
                };
                let _ = link.heartbeat(ctx(), beat).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Waits until the master lists `/f` with its factor of replicas again.
async fn wait_trimmed(cluster: &TestCluster) {
    let master = cluster.master_client().await;
    wait_until("the chunk trimmed back to its factor", BOUND, || {
        let master = master.clone();
        async move {
            let Ok(Ok(chunks)) = master.file_chunks(ctx(), "/f".into()).await else {
                return false;
            };
            chunks[0].replicas.len() == 3
        }
    })
    .await;
}

/// `/f` is back on its real servers, healthy, reads back, and every real server still has its
/// replica file.
async fn assert_real_replicas_kept(
    cluster: &TestCluster,
    real: &[ServerId],
    data: &[u8],
    chunk: &kfs_common::proto::master::ChunkLocation,
) {
    wait_healthy_and_read(cluster, real, data).await;
    for i in 0..3 {
        assert!(
            cluster.replica_file(i, chunk.chunk).is_some(),
            "chunkserver {i} lost its replica"
        );
    }
}

#[tokio::test]
async fn fake_hellos_claiming_a_chunk_do_not_trim_its_real_replicas() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    cluster.wait_for_alive(3).await;
    let (data, chunk) = one_chunk_file(&cluster).await;
    let real: Vec<ServerId> = chunk.replicas.iter().map(|r| r.server).collect();
    // (The master waits a lease period after the write before it repairs.)
    let heartbeats = fake_servers_claiming(&cluster, &chunk, data.len() as u64).await;
    wait_trimmed(&cluster).await;
    heartbeats.abort();
    assert_real_replicas_kept(&cluster, &real, &data, &chunk).await;
    cluster.shutdown().await;
}

/// After a master restart no replica is proven (all are heard of in hellos): fakes that say
/// hello first, claiming a chunk, are found out by digests before anything is trimmed.
#[tokio::test]
async fn fake_hellos_first_after_a_master_restart_do_not_trim_the_real_replicas() {
    let mut cluster = TestCluster::start(ClusterOptions::default()).await;
    cluster.wait_for_alive(3).await;
    let (data, chunk) = one_chunk_file(&cluster).await;
    let real: Vec<ServerId> = chunk.replicas.iter().map(|r| r.server).collect();
    for i in 0..3 {
        cluster.stop_chunkserver(i).await;
    }
    cluster.restart_master().await;
    let heartbeats = fake_servers_claiming(&cluster, &chunk, data.len() as u64).await;
    for i in 0..3 {
        cluster.start_chunkserver(i).await;
    }
    wait_until(
        "six replicas listed: three real, three fake",
        BOUND,
        || async {
            let master = cluster.master_client().await;
            matches!(
                master.file_chunks(ctx(), "/f".into()).await,
                Ok(Ok(chunks)) if chunks[0].replicas.len() == 6
            )
        },
    )
    .await;
    wait_trimmed(&cluster).await;
    heartbeats.abort();
    assert_real_replicas_kept(&cluster, &real, &data, &chunk).await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_failed_put_leaves_nothing_behind_and_names_its_target() {
    let mut cluster = TestCluster::start(ClusterOptions::default()).await;
    cluster.wait_for_alive(3).await;
    // A writer that gives up after 2 s of retrying, so the failure comes soon.
    let client = cluster
        .unpacked_client_with(
            kfs_client::ClientOptions::default()
                .with_write_retry_for(Duration::from_secs(2))
                .with_call_timeout(Duration::from_secs(2)),
        )
        .await;
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("photo.jpg");
    std::fs::write(&source, content(9, 300_000)).unwrap();
    kfs_client::copy::put_file(&client, &source, "/kept.jpg", None, &|_: u64| {})
        .await
        .unwrap();
    // No chunkserver left: the data cannot go anywhere.
    for i in 0..3 {
        cluster.stop_chunkserver(i).await;
    }
    let master = cluster.master_client().await;
    wait_until("every chunkserver declared dead", BOUND, || {
        let master = master.clone();
        async move {
            matches!(master.chunkservers(ctx()).await, Ok(Ok(s)) if s.iter().all(|s| s.state != kfs_common::proto::master::ServerState::Alive))
        }
    })
    .await;
    for target in ["/new.jpg", "/kept.jpg"] {
        let err = kfs_client::copy::put_file(&client, &source, target, None, &|_: u64| {})
            .await
            .expect_err("a put with no chunkserver must fail");
        let text = err.to_string();
        assert!(
            !text.contains("fid:") && !text.contains(kfs_client::copy::UPLOAD_PREFIX),
            "{text}"
        );
    }
    // Nothing new in the namespace: no 0-byte file, no temporary file; the old file unchanged.
    let names: Vec<String> = futures::TryStreamExt::try_collect::<Vec<_>>(client.list("/"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["kept.jpg".to_string()]);
    assert_eq!(client.stat("/kept.jpg").await.unwrap().size, 300_000);
    cluster.shutdown().await;
}
