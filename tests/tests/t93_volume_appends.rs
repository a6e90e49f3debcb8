//! Volumes of small files over the chunk protocol, on three in-process chunkservers: appends
//! sent to a primary land at one offset on every replica and share syncs; every replica reads
//! each record back; bad appends and reads are refused with typed errors and condemn nothing.
//!
//! (The volumes are made here on the chunkservers directly; the master does not know them, so
//! nothing restarts the servers, whose hello would have them deleted as orphans.)

use kfs_common::proto::Payload;
use kfs_common::proto::chunk::AppendRequest;
use kfs_common::proto::master::ReplicaLocation;
use kfs_common::{ChunkId, ChunkVersion, FileId, KfsError};
use kfs_tests::{ClusterOptions, TestCluster, ctx};

const V: ChunkVersion = ChunkVersion(1);

fn location(cluster: &TestCluster, i: usize) -> ReplicaLocation {
    let server = cluster.chunkserver(i);
    ReplicaLocation {
        server: server.store().server_id(),
        addr: server.local_addr(),
    }
}

fn bytes(fid: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u64 * 7 + fid) as u8).collect()
}

fn append(chunk: ChunkId, fid: u64, data: Vec<u8>, chain: Vec<ReplicaLocation>) -> AppendRequest {
    AppendRequest {
        chunk,
        version: V,
        fid: FileId(fid),
        data: Payload::from_vec(data),
        placed: None,
        chain,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_land_at_one_offset_on_every_replica_and_share_syncs() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let volume = ChunkId(1 << 40);
    let mut clients = Vec::new();
    for i in 0..3 {
        // The master's part (making the volume) needs a master's certificate.
        let c = cluster.chunk_client_as_master(i).await;
        c.create_volume(ctx(), volume, V).await.unwrap().unwrap();
        clients.push(c);
    }
    let chain = vec![location(&cluster, 1), location(&cluster, 2)];
    let syncs_before: u64 = (0..3)
        .map(|i| cluster.chunkserver(i).store().io_counts().data_syncs)
        .sum();
    let files = 64u64;
    let appends = (1..=files).map(|fid| {
        let primary = clients[0].clone();
        let request = append(volume, fid, bytes(fid, 6144), chain.clone());
        async move { (fid, primary.append(ctx(), request).await.unwrap()) }
    });
    let placed = futures::future::join_all(appends).await;
    let mut offsets = Vec::new();
    for (fid, at) in placed {
        offsets.push((
            at.unwrap_or_else(|e| panic!("append of file {fid}: {e}")),
            fid,
        ));
    }
    offsets.sort();
    let record = kfs_chunkserver::store::volume_file::record_len(6144);
    for (i, (at, _)) in offsets.iter().enumerate() {
        assert_eq!(*at, i as u64 * record, "records back to back, none twice");
    }
    for c in &clients {
        for (at, fid) in &offsets {
            let got = c
                .read_record(ctx(), volume, V, *at, FileId(*fid), 6144)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.as_ref(), &bytes(*fid, 6144)[..], "file {fid} at {at}");
        }
    }
    for i in 0..3 {
        assert_eq!(
            cluster.chunkserver(i).store().replica(volume),
            Some((V, files * record))
        );
    }
    // 64 appends on 3 replicas, 64 concurrent: fewer data syncs than appends (group commit).
    let syncs: u64 = (0..3)
        .map(|i| cluster.chunkserver(i).store().io_counts().data_syncs)
        .sum::<u64>()
        - syncs_before;
    assert!(
        syncs < 2 * files,
        "{syncs} data syncs for {files} appends on 3 replicas"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_appends_and_reads_get_typed_errors_and_condemn_nothing() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let volume = ChunkId(1 << 41);
    let c = cluster.chunk_client_as_master(0).await;
    c.create_volume(ctx(), volume, V).await.unwrap().unwrap();
    // Idempotent while empty.
    c.create_volume(ctx(), volume, V).await.unwrap().unwrap();
    let at = c
        .append(ctx(), append(volume, 5, bytes(5, 100), Vec::new()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at, 0);

    // A forwarded append placed anywhere but the end.
    let mut elsewhere = append(volume, 6, bytes(6, 10), Vec::new());
    elsewhere.placed = Some((1, 8));
    let refused = c.append(ctx(), elsewhere).await.unwrap();
    assert!(
        matches!(
            refused,
            Err(KfsError::AppendRefused { .. }) | Err(KfsError::LeaseExpired { .. })
        ),
        "{refused:?}"
    );
    // At another version; to a volume that is not there.
    let mut stale = append(volume, 7, bytes(7, 10), Vec::new());
    stale.version = ChunkVersion(2);
    assert!(c.append(ctx(), stale).await.unwrap().is_err());
    let missing = c
        .append(ctx(), append(ChunkId(3), 8, bytes(8, 10), Vec::new()))
        .await
        .unwrap();
    assert!(
        matches!(missing, Err(KfsError::WriteFailed { .. })),
        "{missing:?}"
    );

    // Reads naming another file, another length, or no record: refused, the replica kept.
    for (offset, fid, len) in [(0, 9, 100), (0, 5, 99), (8, 5, 100), (4096, 5, 100)] {
        let got = c
            .read_record(ctx(), volume, V, offset, FileId(fid), len)
            .await
            .unwrap();
        assert!(
            matches!(got, Err(KfsError::InvalidArgument(_))),
            "{offset} {fid} {len}: {got:?}"
        );
    }
    assert!(cluster.chunkserver(0).store().corrupt().is_empty());
    let good = c
        .read_record(ctx(), volume, V, 0, FileId(5), 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(good.as_ref(), &bytes(5, 100)[..]);
    cluster.shutdown().await;
}
