//! Issue 15, "nothing lost, nothing hangs": the data path under the faults an adversarial pass
//! found.
//!
//! - a master restart is a pause for a client, not an error: calls dial it again (with backoff,
//!   within their deadline) while it is away;
//! - a chunkserver restarted on its own port is dialled again, not taken for a failed replica
//!   (nor are the secondaries that see it number its writes afresh);
//! - after a master restart, new chunks are leased at once (only chunks known at start-up wait
//!   for leases the old master may have granted);
//! - a chunkserver killed mid-write costs the writer nothing: survivors answering that the
//!   version moved under a write in flight are never reported failed, so no put fails and bytes
//!   flushed earlier in the same chunk survive (in process with slow disks, so many writes are in
//!   flight across the version move; and 20 times with `kill -9` of real processes).
//!
//! - a chunk id a master handed out (chunkservers created the replicas) but died before logging
//!   is never handed out again by the next master, whose new chunk would be deleted with the
//!   orphans (even across two crashes in a row).
//!
//! - a chunkserver whose answer to a create or a version move was an error may have done it
//!   all the same (its file made or renamed, the sync failing; or killed before it answered):
//!   such a replica is never served at the version the writes went to, after its restart
//!   either (the replicas that answered move one version on first).
//!
//! Every wait is bounded; nothing sleeps to synchronize.
//!
//! Its clients give every file chunks of its own (`unpacked_client`): the suite is about chunks;
//! small files packed into volumes have theirs (`t92_small_files`, `t93_volume_appends`).

use kfs_client::{Client, ClientOptions};
use kfs_common::KfsError;
use kfs_tests::{ClusterOptions, ProcessCluster, TestCluster, content, ctx, wait_until};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const CHUNK: usize = 256 * 1024;

async fn read_all(client: &Client, path: &str, len: usize) -> Vec<u8> {
    client
        .open(path)
        .await
        .unwrap_or_else(|e| panic!("open {path}: {e}"))
        .read_at(0, len + 1)
        .await
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Item 9: a multi-file put that finds the master gone waits for it (within the calls'
/// deadline) instead of failing at the first refused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_file_put_waits_out_a_master_restart() {
    let mut cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster
        .unpacked_client_with(ClientOptions::default().with_call_timeout(Duration::from_secs(20)))
        .await;
    let local = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..4u64)
        .map(|i| (format!("f{i}"), content(100 + i, CHUNK + 1000 * i as usize)))
        .collect();
    for (name, data) in &files {
        std::fs::write(local.path().join(name), data).unwrap();
    }
    kfs_client::copy::put(
        &client,
        &local.path().join("f0"),
        "/first",
        None,
        &|_: u64| {},
    )
    .await
    .unwrap();

    cluster.stop_master().await;
    // Let the client see its connection end first: a call sent on a connection that dies under
    // it is not sent again (it may have been applied), and that is not what this test is about.
    // Either this call fails at once on the dead connection, or it waits to redial and is cut.
    let _ = tokio::time::timeout(Duration::from_millis(300), client.stat("/first")).await;
    let mut put = {
        let (client, dir) = (client.clone(), local.path().to_path_buf());
        tokio::spawn(async move {
            kfs_client::copy::put(&client, &dir, "/tree", None, &|_: u64| {}).await
        })
    };
    // Not a synchronization: the put must still be waiting (the old client failed it within
    // milliseconds, at the first refused dial).
    if let Ok(ended) = tokio::time::timeout(Duration::from_millis(500), &mut put).await {
        panic!(
            "the put ended while the master was down: {:?}",
            ended.unwrap()
        );
    }
    cluster.start_master().await;
    let summary = tokio::time::timeout(Duration::from_secs(30), put)
        .await
        .expect("the put ends once the master is back")
        .unwrap()
        .expect("the put succeeds once the master is back");
    assert_eq!(summary.files, files.len() as u64);
    for (name, data) in &files {
        assert_eq!(
            read_all(&client, &format!("/tree/{name}"), data.len()).await,
            *data
        );
    }
    cluster.shutdown().await;
}

/// Item 9 (the data path's connection pool): a chunkserver restarted on the port it had is
/// dialled again, not taken for a failed replica. The writer's lease is still valid, so the
/// restarted primary numbers its writes afresh at the same version; the secondaries, which
/// applied the earlier numbers, answer that the order is lost (`LeaseExpired`), and the writer has
/// the master move the chunk to a new version without dropping anyone. (The old pool kept handing
/// out the dead connection; the old chunkservers answered the renumbering as a failure of the
/// secondary itself: either way a healthy replica was dropped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunkserver_restarted_on_its_port_is_dialled_again_not_dropped() {
    let mut cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.unpacked_client().await;
    let data = content(5, CHUNK / 2);
    let mut file = client.create("/kept").await.unwrap();
    file.write_all(&data).await.unwrap();
    file.flush().await.unwrap();
    // The lease's primary: the writer holds a connection to it.
    let lease = cluster.lease_of("/kept", 0).await;
    let primary = cluster.chunkserver_at(lease.primary.addr);
    cluster.keep_chunkserver_port(primary);
    cluster.restart_chunkserver(primary).await;
    cluster.wait_for_alive(3).await;
    assert_eq!(
        cluster.chunkserver(primary).local_addr(),
        lease.primary.addr
    );

    file.write_all(b"more").await.unwrap();
    file.close().await.unwrap();
    let chunks = client.file_chunks("/kept").await.unwrap();
    let replicas: Vec<_> = chunks[0].replicas.iter().map(|r| r.server).collect();
    assert_eq!(replicas.len(), 3, "no replica dropped: {replicas:?}");
    assert!(replicas.contains(&lease.primary.server), "{replicas:?}");
    let mut expected = data.clone();
    expected.extend_from_slice(b"more");
    assert_eq!(read_all(&client, "/kept", expected.len()).await, expected);
    cluster.shutdown().await;
}

/// Item 8: after a master restart a new file (and a new chunk of an old file) is written at
/// once; only a chunk the master knew at start-up waits, for at most one lease period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_chunks_are_leased_at_once_after_a_master_restart() {
    let lease_ms = 30_000;
    let mut cluster = TestCluster::start(ClusterOptions {
        lease_ms,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    let old = content(8, CHUNK + 10);
    let mut file = client.create("/old").await.unwrap();
    file.write_all(&old).await.unwrap();
    file.close().await.unwrap();

    cluster.restart_master().await;
    cluster.wait_for_alive(3).await;
    let client = cluster.unpacked_client().await;
    let new = content(9, 2 * CHUNK + 5);
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut file = client.create("/new").await?;
        file.write_all(&new).await?;
        file.close().await?;
        // A chunk past the end of the old file is new too.
        let file = client.open("/old").await?;
        file.write_at(2 * CHUNK as u64, b"tail").await?;
        file.close().await?;
        Ok::<_, KfsError>(())
    })
    .await
    .expect("new chunks are not held up by the wait for old leases")
    .unwrap();
    assert_eq!(read_all(&client, "/new", new.len()).await, new);
    let back = read_all(&client, "/old", 2 * CHUNK + 4).await;
    assert_eq!(back[..old.len()], old[..]);
    assert_eq!(&back[2 * CHUNK..], b"tail");

    // A chunk the master knew at start-up still waits, and for no longer than a lease.
    let fid = client.stat("/old").await.unwrap().fid;
    match cluster
        .master_client()
        .await
        .lease(ctx(), fid, 0)
        .await
        .unwrap()
    {
        Err(KfsError::Unavailable(why)) => {
            let ms: u64 = why
                .split(" again in ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no wait named in {why:?}"));
            assert!(ms <= lease_ms, "{why}");
        }
        other => panic!("an old chunk was leased within a lease of the restart: {other:?}"),
    }
    cluster.shutdown().await;
}

/// Item 2: bytes flushed into a chunk survive a chunkserver killed while the rest of that chunk
/// is being written, and the survivors keep their replicas. The disks are slow, so many writes
/// are still queued on the survivors when the master moves the chunk to a new version after the
/// first failure report: each of them meets the version move. The old chunkservers answered that
/// as `WriteFailed` naming the survivor itself, the writer reported the healthy survivors one
/// after another, the master dropped (and deleted) each, and the put failed with no live
/// replica, taking the flushed bytes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_flushed_before_a_chunkserver_dies_survive_in_the_same_chunk() {
    let mut cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster
        .unpacked_client_with(
            ClientOptions::default()
                .with_write_size(16 * 1024)
                .with_writes_in_flight(16)
                .with_write_retry_for(Duration::from_secs(30)),
        )
        .await;
    let data = content(21, CHUNK);
    let flushed = 64 * 1024;
    let mut file = client.create("/flushed").await.unwrap();
    file.write_all(&data[..flushed]).await.unwrap();
    file.flush().await.unwrap();

    let lease = cluster.lease_of("/flushed", 0).await;
    let victim = cluster.chunkserver_at(lease.secondaries.last().unwrap().addr);
    for slot in &cluster.servers {
        slot.io
            .set(|f| f.slow_writes = Some(Duration::from_millis(15)));
    }
    // The rest of the chunk goes out as 12 writes in flight at once; then the last replica of
    // the chain dies under them.
    file.write_all(&data[flushed..]).await.unwrap();
    cluster.kill_chunkserver(victim);
    file.close()
        .await
        .expect("the write finishes on the survivors, with no error");
    for slot in &cluster.servers {
        slot.io.set(|f| f.slow_writes = None);
    }

    assert_eq!(read_all(&client, "/flushed", data.len()).await, data);
    let chunks = client.file_chunks("/flushed").await.unwrap();
    let mut kept: Vec<_> = chunks[0].replicas.iter().map(|r| r.server).collect();
    kept.sort();
    let mut survivors: Vec<_> = std::iter::once(&lease.primary)
        .chain(&lease.secondaries)
        .map(|r| r.server)
        .filter(|s| *s != lease.secondaries.last().unwrap().server)
        .collect();
    survivors.sort();
    assert_eq!(kept, survivors, "both survivors keep their replicas");
    cluster.master().check_invariants().unwrap();
    cluster.shutdown().await;
}

/// Item 2, with real processes: one of three chunkservers is `kill -9`ed while a put has writes
/// in flight, 20 times (each server in turn, restarted after each run); no put fails and every
/// file reads back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_chunkservers_mid_write_fails_no_put_in_20_runs() {
    let mut cluster = ProcessCluster::start(3, "", "").await;
    let options = ClientOptions::default()
        .with_write_size(16 * 1024)
        .with_writes_in_flight(16)
        .with_call_timeout(Duration::from_secs(10))
        .with_write_retry_for(Duration::from_secs(30))
        .with_security(cluster.security().clone());
    let client = Client::connect_with(cluster.addr, options).await.unwrap();
    let mut written = Vec::new();
    for run in 0..20u64 {
        let data = content(1000 + run, 4 * CHUNK + 4321);
        let path = format!("/run-{run}");
        let mut file = client.create(&path).await.unwrap();
        let half = data.len() / 2 + 1234;
        file.write_all(&data[..half]).await.unwrap();
        // Writes are in flight (the writer keeps 16 of them going): kill a server under them.
        let victim = (run % 3) as usize;
        cluster.kill_chunkserver(victim);
        let put = async {
            file.write_all(&data[half..]).await?;
            file.close().await.map_err(std::io::Error::from)
        };
        if let Err(e) = put.await {
            panic!("run {run}: the put failed after chunkserver {victim} was killed: {e}");
        }
        assert_eq!(
            read_all(&client, &path, data.len()).await,
            data,
            "run {run}: {path} read back differently"
        );
        written.push((path, data));
        cluster.start_chunkserver(victim);
        cluster.wait_for_alive(3).await;
    }
    // Nothing written in an earlier run was lost to a later one's failures.
    for (path, data) in &written {
        assert_eq!(read_all(&client, path, data.len()).await, *data, "{path}");
    }
    let c = &client;
    wait_until("no chunk missing", Duration::from_secs(60), || async move {
        c.fsck().await.is_ok_and(|r| r.missing == 0)
    })
    .await;
}

/// Cuts the master's log just before the record that allocated `chunk`, as a crash between
/// creating its replicas and logging the allocation leaves it (what followed is lost too).
fn cut_log_before_allocation_of(meta: &std::path::Path, chunk: kfs_common::ChunkId) {
    use kfs_master::namespace::op::Op;
    use kfs_master::storage::frame::FrameReader;
    use kfs_master::storage::log::{HEADER_LEN, list_segments, read_segment};
    let segment = list_segments(meta).unwrap().pop().expect("a log segment");
    let mut seqs = Vec::new();
    read_segment(&segment, true, |r| {
        seqs.push((
            r.seq,
            matches!(r.op, Op::AllocateChunk { chunk: c, .. } if c == chunk),
        ));
        Ok(())
    })
    .unwrap();
    let index = seqs
        .iter()
        .position(|(_, is_it)| *is_it)
        .expect("the allocation is in the newest segment");
    let bytes = std::fs::read(&segment.path).unwrap();
    let mut frames = FrameReader::new(&bytes[HEADER_LEN as usize..], HEADER_LEN);
    for _ in 0..index {
        frames
            .next_frame()
            .unwrap()
            .unwrap()
            .expect("a frame per record");
    }
    let cut = frames.offset();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment.path)
        .unwrap()
        .set_len(cut)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_id_handed_out_but_never_logged_is_not_reused_after_two_crashes() {
    let mut cluster = TestCluster::start(ClusterOptions {
        lease_ms: 500,
        ..Default::default()
    })
    .await;
    let options = ClientOptions::default().with_call_timeout(Duration::from_secs(5));
    let first = content(1, 1000);
    let client = cluster.unpacked_client_with(options.clone()).await;
    let mut f = client.create("/a").await.unwrap();
    f.write_all(&first).await.unwrap();
    f.close().await.unwrap();

    // Restart 1, then a chunk allocated whose allocation record is then lost (crash 2).
    cluster.restart_master().await;
    let client = cluster.unpacked_client_with(options.clone()).await;
    let mut f = client.create("/b").await.unwrap();
    f.write_all(&content(2, 1000)).await.unwrap();
    f.close().await.unwrap();
    let master = cluster.master_client().await;
    let lost = master
        .file_chunks(ctx(), "/b".into())
        .await
        .unwrap()
        .unwrap()[0]
        .chunk;
    cluster.stop_master().await;
    cut_log_before_allocation_of(cluster.meta_dir(), lost);
    cluster.start_master().await;
    // Every chunkserver registered again, so the new chunk gets its three replicas at once.
    cluster.wait_for_alive(3).await;

    // The replicas of `lost` are orphans now; a new chunk must not take their id.
    let client = cluster.unpacked_client_with(options).await;
    let data = content(3, 100_000);
    let mut f = client.create("/c").await.unwrap();
    f.write_all(&data).await.unwrap();
    f.close().await.unwrap();
    let master = cluster.master_client().await;
    let chunk = master
        .file_chunks(ctx(), "/c".into())
        .await
        .unwrap()
        .unwrap()[0]
        .chunk;
    assert_ne!(chunk, lost, "a new chunk took the id of a lost allocation");
    // Once safe mode is over the orphans are deleted; /c keeps its three replicas and its bytes.
    wait_until(
        "the orphans of the lost allocation deleted",
        Duration::from_secs(30),
        || {
            let cluster = &cluster;
            async move { (0..3).all(|i| cluster.replica_file(i, lost).is_none()) }
        },
    )
    .await;
    let chunks = master
        .file_chunks(ctx(), "/c".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chunks[0].replicas.len(), 3);
    assert_eq!(read_all(&client, "/c", data.len()).await, data);
    assert_eq!(read_all(&client, "/a", first.len()).await, first);
    cluster.shutdown().await;
}

/// A primary whose own replica is gone (deleted, or its data dir failed) mid-write: the write
/// goes on on the others and the primary no longer counts. (The primary now answers this as its
/// own failure, `WriteFailed`, rather than `NoSuchChunk`, which writers take for a version move;
/// here the chunkserver's next hello also tells the master, so this test passes either way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_lost_its_replica_is_reported_and_the_write_goes_on() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster
        .unpacked_client_with(ClientOptions::default().with_write_retry_for(Duration::from_secs(5)))
        .await;
    let data = content(31, CHUNK / 2);
    let mut file = client.create("/lost").await.unwrap();
    file.write_all(&data[..1000]).await.unwrap();
    file.flush().await.unwrap();
    let lease = cluster.lease_of("/lost", 0).await;
    let primary = cluster.chunkserver_at(lease.primary.addr);
    cluster
        .chunkserver(primary)
        .store()
        .delete(lease.chunk)
        .await
        .unwrap();

    file.write_all(&data[1000..]).await.unwrap();
    file.close()
        .await
        .expect("the write goes on without the primary");
    let chunks = client.file_chunks("/lost").await.unwrap();
    assert!(
        !chunks[0]
            .replicas
            .iter()
            .any(|r| r.server == lease.primary.server),
        "the primary that lost its replica still counts"
    );
    assert_eq!(read_all(&client, "/lost", data.len()).await, data);
    cluster.shutdown().await;
}

/// A sync that failed leaves its chunks to be synced: the next `sync` tries them again rather
/// than report data durable that never was. (It used to take them off the list before trying,
/// so a second `sync` after a failed one answered Ok at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_is_tried_again_not_forgotten() {
    let mut cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster
        .unpacked_client_with(
            ClientOptions::default()
                .with_call_timeout(Duration::from_secs(2))
                .with_write_retry_for(Duration::from_secs(2)),
        )
        .await;
    let mut file = client.create("/durable").await.unwrap();
    file.write_all(&content(41, 5000)).await.unwrap();
    file.flush().await.unwrap();
    for i in 0..3 {
        cluster.stop_chunkserver(i).await;
    }
    assert!(file.sync().await.is_err(), "no chunkserver: the sync fails");
    assert!(
        file.sync().await.is_err(),
        "the second sync must try the chunk again, not report it durable"
    );
    for i in 0..3 {
        cluster.start_chunkserver(i).await;
    }
    cluster.wait_for_alive(3).await;
    file.sync().await.expect("synced once the servers are back");
    file.abandon();
    cluster.shutdown().await;
}

/// Every replica the master lists for `path` holds `data` at the chunk's version, read from
/// each server directly.
async fn every_listed_replica_holds(
    cluster: &TestCluster,
    client: &Client,
    path: &str,
    data: &[u8],
) {
    let chunks = client.file_chunks(path).await.unwrap();
    assert!(!chunks.is_empty(), "{path} has chunks");
    for loc in &chunks {
        let start = loc.offset as usize;
        let want = &data[start..(start + CHUNK).min(data.len())];
        for r in &loc.replicas {
            let i = cluster.chunkserver_at(r.addr);
            let got = cluster
                .chunk_client(i)
                .await
                .read(ctx(), loc.chunk, loc.version, 0, CHUNK as u32)
                .await
                .unwrap()
                .unwrap_or_else(|e| {
                    panic!(
                        "{path}: server {i} lists {} at {}: {e}",
                        loc.chunk, loc.version
                    )
                });
            assert!(
                got.as_slice() == want,
                "{path}: server {i} serves {} at {} with {} bytes, not the {} written",
                loc.chunk,
                loc.version,
                got.len(),
                want.len()
            );
        }
    }
}

/// A create whose answer is lost (the master's call times out after the server made the
/// replica, as when it is killed before answering) leaves an empty replica at the chunk's first
/// version; it must not be served at the version the data went to when the server restarts
/// and reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_whose_create_answer_was_lost_is_never_served() {
    let mut cluster = TestCluster::start(ClusterOptions {
        links: true,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    // The master's connection to server 0 is open before the delay (a new one would wait too).
    let warm = content(65, 1000);
    let mut file = client.create("/warm").await.unwrap();
    file.write_all(&warm).await.unwrap();
    file.close().await.unwrap();
    // The create reaches server 0 in 7 s, within the master's 10 s; its answer would take 7 more.
    cluster.slow_inbound(0, Duration::from_secs(7));
    let data = content(66, CHUNK);
    let mut file = client.create("/made").await.unwrap();
    file.write_all(&data).await.unwrap();
    file.close().await.unwrap();
    cluster.heal(0);
    let located = client.file_chunks("/made").await.unwrap();
    let chunk = located[0].chunk;
    assert_eq!(
        located[0].version,
        kfs_common::ChunkVersion(2),
        "the replicas that answered moved one version past the one server 0 may hold"
    );
    let made = &cluster;
    wait_until(
        "server 0 made its replica",
        Duration::from_secs(30),
        || async move { made.replica_file(0, chunk).is_some() },
    )
    .await;
    // Restarted, it reports the replica it made.
    cluster.restart_chunkserver(0).await;
    cluster.wait_for_alive(3).await;
    every_listed_replica_holds(&cluster, &client, "/made", &data).await;
    assert_eq!(read_all(&client, "/made", data.len()).await, data);
    cluster.master().check_invariants().unwrap();
    cluster.shutdown().await;
}

/// A new lease moves every replica to the next version; one that renamed its file but failed
/// to sync the rename answers an error, and must not be served at the version the next writes
/// go to once it restarts and reports the renamed file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_version_move_failed_is_never_served() {
    let lease_ms = 300;
    let mut cluster = TestCluster::start(ClusterOptions {
        lease_ms,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    let data = content(67, CHUNK);
    let half = CHUNK / 2;
    let mut file = client.create("/moved").await.unwrap();
    file.write_all(&data[..half]).await.unwrap();
    file.close().await.unwrap();
    // The master's lease runs out on the master's own clock (nothing renews it): the next
    // write gets a new lease, at a new version.
    tokio::time::sleep(Duration::from_millis(3 * lease_ms)).await;
    cluster.servers[0]
        .io
        .set(|f| f.fail_next_sync = Some(std::io::ErrorKind::Other));
    let file = client.open("/moved").await.unwrap();
    file.write_at(half as u64, &data[half..]).await.unwrap();
    file.close().await.unwrap();
    assert!(
        cluster.servers[0].io.faults().fail_next_sync.is_none(),
        "server 0 failed a sync"
    );
    assert_eq!(
        client.file_chunks("/moved").await.unwrap()[0].version,
        kfs_common::ChunkVersion(3),
        "the lease's move to v2 failed on server 0 (renamed, unsynced): the others moved to v3"
    );
    cluster.restart_chunkserver(0).await;
    cluster.wait_for_alive(3).await;
    every_listed_replica_holds(&cluster, &client, "/moved", &data).await;
    assert_eq!(read_all(&client, "/moved", data.len()).await, data);
    cluster.master().check_invariants().unwrap();
    cluster.shutdown().await;
}
