//! Partitions (issue 16, item 7): a chunkserver behind [`kfs_tests::Link`]s, cut off or slowed
//! while the cluster works.
//!
//! - Cut off from the master but not from clients: the master declares it dead and stops
//!   counting its replicas; clients still read from it; once healed it says hello again and
//!   counts again.
//! - A write's primary cut off mid-write: the writer's call times out, it reports the primary,
//!   the master moves the chunk on without it, and the write completes on the others: every
//!   acknowledged byte reads back.
//! - A slow chunkserver: writes through it still complete, only slower.
//!
//! Its clients give every file chunks of its own (`unpacked_client`): the suite is about chunk
//! leases; small files packed into volumes have theirs (`t92_small_files`, `t93_volume_appends`).

use kfs_common::proto::master::ServerState;
use kfs_tests::{ClusterOptions, TestCluster, content, ctx, wait_until};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUND: Duration = Duration::from_secs(30);

fn options() -> ClusterOptions {
    ClusterOptions {
        links: true,
        ..ClusterOptions::default()
    }
}

async fn state_of(cluster: &TestCluster, i: usize) -> Option<ServerState> {
    let addr = cluster.chunkserver_addr(i);
    let client = cluster.master_client().await;
    let servers = client.chunkservers(ctx()).await.ok()?.ok()?;
    servers.iter().find(|s| s.addr == addr).map(|s| s.state)
}

async fn read_all(client: &kfs_client::Client, path: &str) -> Vec<u8> {
    let mut file = client.open(path).await.unwrap();
    let mut back = Vec::new();
    file.read_to_end(&mut back).await.unwrap();
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunkserver_cut_off_from_the_master_still_serves_clients() {
    let cluster = TestCluster::start(options()).await;
    let client = cluster.unpacked_client().await;
    let data = content(1, 300 * 1024);
    let mut f = client.create("/a").await.unwrap();
    f.write_all(&data).await.unwrap();
    f.close().await.unwrap();
    let first = client.file_chunks("/a").await.unwrap()[0].clone();
    assert_eq!(first.replicas.len(), 3);

    cluster.cut_from_master(0);
    wait_until(
        "the master to declare the cut server dead",
        BOUND,
        || async { state_of(&cluster, 0).await == Some(ServerState::Dead) },
    )
    .await;
    // Its replicas no longer count...
    let report = client.fsck().await.unwrap();
    assert!(report.under_replicated >= 1, "{report:?}");
    assert!(
        !client.file_chunks("/a").await.unwrap()[0]
            .replicas
            .iter()
            .any(|r| r.addr == cluster.chunkserver_addr(0))
    );
    // ... but it still serves: its replica reads, and so does the file (from the others).
    let direct = cluster.chunk_client(0).await;
    let piece = direct
        .read(ctx(), first.chunk, first.version, 0, 4096)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&piece[..], &data[..4096]);
    assert!(read_all(&client, "/a").await == data);

    // Healed, it says hello again and its replicas count again.
    cluster.heal(0);
    wait_until("the healed server alive again", BOUND, || async {
        state_of(&cluster, 0).await == Some(ServerState::Alive)
    })
    .await;
    wait_until("every chunk healthy again", BOUND, || async {
        let r = client.fsck().await.unwrap();
        r.under_replicated == 0 && r.missing == 0
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_cut_off_mid_write_loses_no_acknowledged_byte() {
    let cluster = TestCluster::start(options()).await;
    // A short call deadline, so the writer gives up on the silent primary in seconds.
    let client = cluster
        .unpacked_client_with(
            kfs_client::ClientOptions::default().with_call_timeout(Duration::from_secs(2)),
        )
        .await;
    let data = content(2, 600 * 1024);
    let mut f = client.create("/b").await.unwrap();
    f.write_all(&data[..100 * 1024]).await.unwrap();
    f.flush().await.unwrap();
    let lease = cluster.lease_of("/b", 0).await;
    let primary = cluster.chunkserver_at(lease.primary.addr);

    cluster.cut_off(primary);
    f.write_all(&data[100 * 1024..]).await.unwrap();
    f.close().await.unwrap();
    assert!(
        read_all(&client, "/b").await == data,
        "every byte reads back"
    );
    // The cut server holds no current replica the master counts.
    for loc in client.file_chunks("/b").await.unwrap() {
        assert!(
            loc.replicas
                .iter()
                .all(|r| r.addr != cluster.chunkserver_addr(primary)),
            "{loc:?}"
        );
    }
    cluster.heal(primary);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_slow_chunkserver_complete() {
    let cluster = TestCluster::start(options()).await;
    cluster.slow(1, Duration::from_millis(20));
    let client = cluster.unpacked_client().await;
    let data = content(3, 400 * 1024);
    let mut f = client.create("/c").await.unwrap();
    f.write_all(&data).await.unwrap();
    f.close().await.unwrap();
    assert!(read_all(&client, "/c").await == data);
    let report = client.fsck().await.unwrap();
    assert_eq!(
        (report.under_replicated, report.missing),
        (0, 0),
        "{report:?}"
    );
    cluster.heal(1);
    cluster.shutdown().await;
}
