//! The data path through `kfs-client`, against an in-process cluster with 256 KiB chunks so
//! files cross chunk boundaries often: round trips of every interesting size, holes, concurrent
//! writers and readers, a chunkserver killed in the middle of a write, a corrupt replica, leases.
//!
//! Its clients give every file chunks of its own (`unpacked_client`): the suite is about chunks;
//! small files packed into volumes have theirs (`t92_small_files`, `t93_volume_appends`).

use kfs_common::proto::master::CreateOptions;
use kfs_common::{FileId, KfsError};
use kfs_tests::{ClusterOptions, TestCluster, content, ctx, wait_until};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const CHUNK: usize = 256 * 1024;

fn digest(bytes: &[u8]) -> (usize, u32) {
    (bytes.len(), crc32c::crc32c(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_of_every_size_read_back_identical() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.unpacked_client().await;
    assert_eq!(client.chunk_size(), CHUNK as u64);
    for (i, len) in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + CHUNK / 2]
        .into_iter()
        .enumerate()
    {
        let path = format!("/size-{len}");
        let data = content(i as u64, len);
        let mut file = client.create(&path).await.unwrap();
        file.write_all(&data).await.unwrap();
        let attr = file.close().await.unwrap();
        assert_eq!(attr.size, len as u64, "{path}");

        let mut file = client.open(&path).await.unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).await.unwrap();
        assert_eq!(digest(&back), digest(&data), "{path} read back differently");
        // Positional reads across chunk boundaries, and past the end.
        if len >= CHUNK + 10 {
            let got = file.read_at(CHUNK as u64 - 10, 20).await.unwrap();
            assert_eq!(got, data[CHUNK - 10..CHUNK + 10]);
        }
        assert!(file.read_at(len as u64, 10).await.unwrap().is_empty());
        assert!(
            file.read_at(len as u64 + 1000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let chunks = client.file_chunks(&path).await.unwrap();
        assert_eq!(chunks.len(), len.div_ceil(CHUNK));
        assert!(
            chunks.iter().all(|c| c.replicas.len() == 3),
            "{path}: {chunks:?}"
        );
    }
    cluster.master().check_invariants().unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holes_read_as_zeros_and_seeks_write_anywhere() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.unpacked_client().await;
    let mut file = client.create("/sparse").await.unwrap();
    // A write two chunks in leaves the first chunks unallocated.
    file.seek(std::io::SeekFrom::Start(2 * CHUNK as u64 + 100))
        .await
        .unwrap();
    file.write_all(b"tail").await.unwrap();
    file.seek(std::io::SeekFrom::Start(10)).await.unwrap();
    file.write_all(b"head").await.unwrap();
    file.flush().await.unwrap();
    assert_eq!(file.len(), 2 * CHUNK as u64 + 104);
    let file = client.open("/sparse").await.unwrap();
    let all = file.read_at(0, 3 * CHUNK).await.unwrap();
    assert_eq!(all.len(), 2 * CHUNK + 104);
    assert_eq!(&all[10..14], b"head");
    assert_eq!(&all[2 * CHUNK + 100..], b"tail");
    assert!(all[14..2 * CHUNK + 100].iter().all(|b| *b == 0));
    assert_eq!(
        client.file_chunks("/sparse").await.unwrap().len(),
        2,
        "the middle chunk is a hole"
    );
    cluster.shutdown().await;
}

/// Regression (fsx through the mount, issue 20): a write sent on its way by a seek was
/// overtaken by a later write to the same bytes (both in flight; the primary orders them as
/// they arrive), so the earlier bytes won. The later write must land last, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_after_a_seek_back_is_never_overtaken_by_the_first_write() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.unpacked_client().await;
    for round in 0..20u64 {
        let path = format!("/rewrite-{round}");
        let first = content(round, 150_000);
        let second = content(round + 100, 180_000);
        let mut file = client.create(&path).await.unwrap();
        file.seek(std::io::SeekFrom::Start(60_000)).await.unwrap();
        file.write_all(&first).await.unwrap();
        file.seek(std::io::SeekFrom::Start(20_000)).await.unwrap();
        file.write_all(&second).await.unwrap();
        file.close().await.unwrap();
        let mut expect = vec![0u8; 210_000];
        expect[60_000..].copy_from_slice(&first);
        expect[20_000..200_000].copy_from_slice(&second);
        let back = client.open(&path).await.unwrap();
        let got = back.read_at(0, 300_000).await.unwrap();
        assert!(
            got == expect,
            "round {round}: the first write overtook the second"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_readers() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.unpacked_client().await;
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let client = client.clone();
            tokio::spawn(async move {
                let data = content(100 + w, CHUNK * 2 + 777 * w as usize);
                let mut f = client.create(&format!("/w{w}")).await.unwrap();
                f.write_all(&data).await.unwrap();
                f.close().await.unwrap();
                data
            })
        })
        .collect();
    let mut expected = Vec::new();
    for w in writers {
        expected.push(w.await.unwrap());
    }
    for (w, data) in expected.iter().enumerate() {
        let back = client
            .open(&format!("/w{w}"))
            .await
            .unwrap()
            .read_at(0, usize::MAX >> 1)
            .await
            .unwrap();
        assert_eq!(digest(&back), digest(data));
    }
    let shared = expected[3].clone();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut f = client.open("/w3").await.unwrap();
                let mut back = Vec::new();
                f.read_to_end(&mut back).await.unwrap();
                back
            })
        })
        .collect();
    for r in readers {
        assert_eq!(digest(&r.await.unwrap()), digest(&shared));
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunkserver_killed_mid_write_costs_the_writer_nothing() {
    let mut cluster = TestCluster::start(ClusterOptions {
        chunkservers: 4,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    let data = content(7, 12 * CHUNK + 5);
    let mut file = client.create("/survivor").await.unwrap();
    let half = data.len() / 2;
    file.write_all(&data[..half]).await.unwrap();
    file.flush().await.unwrap();
    // The chunk being written now has a replica on the victim (or soon will).
    let victim = {
        let chunks = client.file_chunks("/survivor").await.unwrap();
        let last = chunks.last().unwrap();
        cluster.chunkserver_at(last.replicas[0].addr)
    };
    let writer = tokio::spawn(async move {
        file.write_all(&data[half..]).await?;
        file.close().await?;
        Ok::<_, std::io::Error>(data)
    });
    cluster.kill_chunkserver(victim);
    let data = writer
        .await
        .unwrap()
        .expect("the write finishes on the survivors");
    let back = client
        .open("/survivor")
        .await
        .unwrap()
        .read_at(0, data.len() + 10)
        .await
        .unwrap();
    assert_eq!(digest(&back), digest(&data));

    // The victim comes back with stale replicas: they are deleted, never served.
    let victim_dirs = cluster.data_dirs(victim);
    cluster.start_chunkserver(victim).await;
    let chunks = client.file_chunks("/survivor").await.unwrap();
    let store = cluster.chunkserver(victim).store().clone();
    wait_until(
        "the returning server's stale replicas deleted",
        Duration::from_secs(20),
        || {
            let (store, chunks) = (store.clone(), chunks.clone());
            async move {
                chunks.iter().all(|c| match store.replica(c.chunk) {
                    None => true,
                    Some((version, _)) => version == c.version,
                })
            }
        },
    )
    .await;
    assert!(!victim_dirs.is_empty());
    cluster.master().check_invariants().unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_no_replica_left_fails_naming_chunk_and_server() {
    let mut cluster = TestCluster::start(ClusterOptions {
        chunkservers: 1,
        ..Default::default()
    })
    .await;
    let client = cluster
        .unpacked_client_with(
            kfs_client::ClientOptions::default().with_write_retry_for(Duration::from_secs(10)),
        )
        .await;
    let file = client.create("/alone").await.unwrap();
    file.write_at(0, b"first").await.unwrap();
    let addr = cluster.chunkserver(0).local_addr();
    cluster.kill_chunkserver(0);
    let err = file.write_at(5, b"second").await.unwrap_err();
    match &err {
        KfsError::ChunkUnavailable { reason, .. } => {
            assert!(reason.contains(&addr.to_string()), "{err}");
            assert!(reason.contains("/alone"), "{err}");
        }
        other => panic!("expected ChunkUnavailable, got {other:?}"),
    }
    assert!(err.to_string().contains("chunk:"), "{err}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fail_over_from_a_corrupt_replica() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.unpacked_client().await;
    let data = content(11, 2 * CHUNK);
    let mut f = client.create("/precious").await.unwrap();
    f.write_all(&data).await.unwrap();
    f.close().await.unwrap();
    let chunks = client.file_chunks("/precious").await.unwrap();
    // Damage every replica but one of the first chunk, on disk.
    let chunk = chunks[0].chunk;
    for replica in &chunks[0].replicas[1..] {
        cluster.corrupt_replica(cluster.chunkserver_at(replica.addr), chunk, 1000);
    }
    for _ in 0..3 {
        let back = client
            .open("/precious")
            .await
            .unwrap()
            .read_at(0, 2 * CHUNK)
            .await
            .unwrap();
        assert_eq!(digest(&back), digest(&data));
    }
    // The reads found the damage (those replicas are never served again) ...
    let damaged = (0..3)
        .filter(|&i| cluster.chunkserver(i).store().corrupt().contains(&chunk))
        .count();
    assert!(damaged >= 1, "the failed-over reads marked the damage");
    // ... and the master replaces the damaged replicas from the good one.
    let client2 = client.clone();
    let c = &cluster;
    wait_until(
        "the damaged replicas replaced",
        Duration::from_secs(20),
        || {
            let client = client2.clone();
            async move {
                let report = client.fsck().await.unwrap();
                let chunks = client.file_chunks("/precious").await.unwrap();
                let stores_good = (0..3).all(|i| {
                    let store = c.chunkserver(i).store();
                    !store.corrupt().contains(&chunk) && store.replica(chunk).is_some()
                });
                stores_good
                    && chunks[0].replicas.len() == 3
                    && report.corrupt_replicas == 0
                    && report.healthy == report.chunks
            }
        },
    )
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_have_one_primary_and_wait_out_a_master_restart() {
    let mut cluster = TestCluster::start(ClusterOptions {
        lease_ms: 1_000,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    let mut f = client.create("/leased").await.unwrap();
    f.write_all(b"x").await.unwrap();
    f.close().await.unwrap();
    let fid: FileId = client.stat("/leased").await.unwrap().fid;
    let master = cluster.master_client().await;
    let first = master.lease(ctx(), fid, 0).await.unwrap().unwrap();
    let second = master.lease(ctx(), fid, 0).await.unwrap().unwrap();
    assert_eq!(
        (&first.primary, first.version),
        (&second.primary, second.version),
        "one primary while the lease lasts"
    );
    assert!(matches!(
        master.lease(ctx(), fid, 1).await.unwrap(),
        Err(KfsError::InvalidArgument(_))
    ));

    cluster.restart_master().await;
    cluster.wait_for_alive(3).await;
    let master = cluster.master_client().await;
    let during = master.lease(ctx(), fid, 0).await.unwrap();
    assert!(
        matches!(during, Err(KfsError::Unavailable(_))),
        "{during:?}"
    );
    // A writer simply waits it out.
    let client = cluster.unpacked_client().await;
    let file = client.open("/leased").await.unwrap();
    file.write_at(1, b"y").await.unwrap();
    let after = master.lease(ctx(), fid, 0).await.unwrap().unwrap();
    assert!(
        after.version > first.version,
        "a new lease after the restart moved the chunk on"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_follows_close_to_open_and_sync_makes_data_durable() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.unpacked_client().await;
    let mut writer = client
        .create_with(
            "/log",
            CreateOptions {
                exclusive: true,
                replication: Some(2),
                mode: None,
            },
        )
        .await
        .unwrap();
    writer.write_all(&content(1, 1000)).await.unwrap();
    writer.flush().await.unwrap();
    let early_reader = client.open("/log").await.unwrap();
    writer.write_all(&content(2, 1000)).await.unwrap();
    writer.sync().await.unwrap();
    assert_eq!(
        early_reader.len(),
        1000,
        "a reader sees the length as of its open"
    );
    assert_eq!(early_reader.read_at(0, 5000).await.unwrap().len(), 1000);
    early_reader.refresh().await.unwrap();
    assert_eq!(early_reader.len(), 2000);
    let attr = writer.close().await.unwrap();
    assert_eq!((attr.size, attr.replication), (2000, 2));
    assert_eq!(client.open("/log").await.unwrap().len(), 2000);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_writer_renews_its_lease_instead_of_moving_the_chunk() {
    let cluster = TestCluster::start(ClusterOptions {
        lease_ms: 400,
        ..Default::default()
    })
    .await;
    let client = cluster.unpacked_client().await;
    let file = client.create("/slow").await.unwrap();
    let started = std::time::Instant::now();
    let mut offset = 0u64;
    // Well past two lease durations, one small write at a time.
    while started.elapsed() < Duration::from_millis(1200) {
        file.write_at(offset, b"tick").await.unwrap();
        offset += 4;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let chunks = client.file_chunks("/slow").await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(
        chunks[0].version,
        kfs_common::ChunkVersion(1),
        "renewals kept the first lease"
    );
    let back = file.read_at(0, offset as usize).await.unwrap();
    assert!(back.chunks(4).all(|c| c == b"tick"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_tree_copies_in_and_back_byte_for_byte() {
    use kfs_client::copy;
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.unpacked_client().await;
    let source = tempfile::tempdir().unwrap();
    let big = content(3, 3 * CHUNK + 17);
    std::fs::create_dir_all(source.path().join("a/b")).unwrap();
    std::fs::write(source.path().join("a/b/big.bin"), &big).unwrap();
    std::fs::write(source.path().join("a/empty"), b"").unwrap();
    std::fs::write(source.path().join("top.txt"), b"top").unwrap();
    // This repository's own sources, for variety.
    let sources = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/src");
    let copied_bytes = std::sync::atomic::AtomicU64::new(0);
    let progress = |n: u64| {
        copied_bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    };
    let up = copy::put(&client, source.path(), "/tree", None, &progress)
        .await
        .unwrap();
    assert_eq!((up.files, up.dirs), (3, 3));
    assert_eq!(up.bytes, big.len() as u64 + 3);
    assert_eq!(
        copied_bytes.load(std::sync::atomic::Ordering::Relaxed),
        up.bytes
    );
    copy::put(&client, &sources, "/tree/src", Some(2), &|_: u64| {})
        .await
        .unwrap();

    let back = tempfile::tempdir().unwrap();
    let down = copy::get(&client, "/tree", &back.path().join("tree"), &|_: u64| {})
        .await
        .unwrap();
    assert_eq!(down.bytes, up.bytes + dir_bytes(&sources));
    assert_eq!(
        std::fs::read(back.path().join("tree/a/b/big.bin")).unwrap(),
        big
    );
    assert_eq!(
        std::fs::read(back.path().join("tree/a/empty")).unwrap(),
        b""
    );
    assert_eq!(
        std::fs::read(back.path().join("tree/top.txt")).unwrap(),
        b"top"
    );
    for entry in std::fs::read_dir(&sources).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let copy = back.path().join("tree/src").join(entry.file_name());
            assert_eq!(
                std::fs::read(entry.path()).unwrap(),
                std::fs::read(copy).unwrap()
            );
        }
    }
    let missing = copy::put(
        &client,
        &source.path().join("nope"),
        "/x",
        None,
        &|_: u64| {},
    )
    .await
    .unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
    cluster.shutdown().await;
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                dir_bytes(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

/// One long-lived client (a server program, an interactive shell) across master restarts: a
/// call while the master is down keeps dialling it until the call's deadline, then fails
/// `Unavailable` naming it; once the master is back the same client dials it again by itself,
/// reads what it wrote before and writes more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dials_the_master_again_after_it_restarts() {
    let mut cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster
        .unpacked_client_with(
            kfs_client::ClientOptions::default().with_call_timeout(Duration::from_secs(2)),
        )
        .await;
    let before = content(41, 2 * CHUNK + 17);
    let mut file = client.create("/before").await.unwrap();
    file.write_all(&before).await.unwrap();
    file.close().await.unwrap();

    cluster.stop_master().await;
    match client.stat("/before").await {
        Err(KfsError::Unavailable(why)) => {
            assert!(why.contains(&cluster.master_addr().to_string()), "{why}")
        }
        other => panic!("stat with the master down: {other:?}"),
    }
    cluster.start_master().await;

    assert_eq!(
        client.stat("/before").await.unwrap().size,
        before.len() as u64
    );
    let back = client
        .open("/before")
        .await
        .unwrap()
        .read_at(0, before.len())
        .await
        .unwrap();
    assert_eq!(digest(&back), digest(&before));
    let after = content(42, CHUNK + 3);
    let mut file = client.create("/after").await.unwrap();
    file.write_all(&after).await.unwrap();
    file.close().await.unwrap();

    // Again, then many calls at once once the client has seen the connection close: they
    // share one new connection.
    cluster.stop_master().await;
    wait_until(
        "the client to see the master gone",
        Duration::from_secs(30),
        || async { client.stat("/after").await.is_err() },
    )
    .await;
    cluster.start_master().await;
    let stats = futures::future::join_all((0..16).map(|_| client.stat("/after"))).await;
    for stat in stats {
        assert_eq!(stat.unwrap().size, after.len() as u64);
    }
    cluster.shutdown().await;
}

/// Issue 18, item 13: `OpenOptions` and the `tokio::fs`-style helpers behave as their std and
/// tokio namesakes do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_options_and_fs_helpers_work_as_tokio_fs_does() {
    use futures::StreamExt;
    use kfs_client::{KfsError, OpenOptions};
    use tokio::io::AsyncWriteExt;
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.client().await;
    client.mkdir_all("/o/deep/er").await.unwrap();
    assert!(!client.exists("/o/f").await.unwrap());
    let attr = client.write("/o/f", b"first").await.unwrap();
    assert_eq!(attr.size, 5);
    assert!(client.exists("/o/f").await.unwrap());
    assert_eq!(client.read("/o/f").await.unwrap(), b"first");
    assert_eq!(client.metadata("/o/f").await.unwrap().size, 5);

    // create_new refuses an existing file; create opens it as it is; append starts at its end.
    let e = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&client, "/o/f")
        .await
        .err()
        .expect("exists");
    assert!(matches!(e, KfsError::AlreadyExists { .. }), "{e}");
    let kept = OpenOptions::new()
        .write(true)
        .create(true)
        .open(&client, "/o/f")
        .await
        .unwrap();
    assert_eq!(kept.len(), 5);
    drop(kept);
    let mut appending = client
        .open_with("/o/f", OpenOptions::new().append(true))
        .await
        .unwrap();
    appending.write_all(b", then more").await.unwrap();
    appending.close().await.unwrap();
    assert_eq!(client.read("/o/f").await.unwrap(), b"first, then more");
    // truncate cuts; create makes a missing one; read alone never creates.
    let cut = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&client, "/o/f")
        .await
        .unwrap();
    cut.close().await.unwrap();
    assert_eq!(client.read("/o/f").await.unwrap(), b"");
    OpenOptions::new()
        .write(true)
        .create(true)
        .open(&client, "/o/new")
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let missing = OpenOptions::new()
        .read(true)
        .open(&client, "/o/none")
        .await
        .err()
        .unwrap();
    assert!(matches!(missing, KfsError::NotFound { .. }), "{missing}");
    let bad = OpenOptions::new()
        .read(true)
        .create(true)
        .open(&client, "/o/x")
        .await
        .err()
        .unwrap();
    assert!(matches!(bad, KfsError::InvalidArgument(_)), "{bad}");

    // Reads into a caller's buffer and as Bytes.
    client
        .write("/o/deep/data", content(5, 300_000))
        .await
        .unwrap();
    let file = client.open("/o/deep/data").await.unwrap();
    let mut buf = vec![0u8; 1000];
    assert_eq!(file.read_into(299_500, &mut buf).await.unwrap(), 500);
    assert_eq!(&buf[..500], &content(5, 300_000)[299_500..]);
    let bytes = file.read_bytes(0, 10).await.unwrap();
    assert_eq!(&bytes[..], &content(5, 300_000)[..10]);

    // walk: the top first, each directory before what it holds, names in order.
    let walked: Vec<String> = client.walk("/o").map(|r| r.unwrap().0).collect().await;
    assert_eq!(
        walked,
        [
            "/o",
            "/o/deep",
            "/o/f",
            "/o/new",
            "/o/deep/data",
            "/o/deep/er"
        ]
    );
    cluster.shutdown().await;
}
