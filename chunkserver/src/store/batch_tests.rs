//! The system calls a burst of small replicas costs: syncs answered in batches (one data sync
//! per file, one directory sync per changed subdirectory), files opened once, and the layout-1
//! files moved into subdirectories at open.

use super::chunk_file::HEADER_LEN;
use super::io::{FileIo, RealIo};
use super::*;
use futures::future::join_all;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Runs `jobs` on the store's first data dir while its I/O thread is held: every job is queued
/// before the thread takes any of them.
pub(super) async fn queued_together<F: std::future::Future>(
    store: &ChunkStore,
    jobs: Vec<F>,
) -> Vec<F::Output> {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let hold = store.run_on(0, move |_| {
        let _ = held.recv();
    });
    // `join!` polls in order: the hold is queued first, then every job, then the release.
    let (_, out, _) = tokio::join!(
        hold,
        join_all(jobs),
        async move { release.send(()).unwrap() }
    );
    out
}

#[test]
fn a_burst_of_syncs_costs_one_directory_sync_and_one_data_sync_per_file() {
    let a = tempfile::tempdir().unwrap();
    let io: Arc<dyn FileIo> = Arc::new(RealIo);
    let store = ChunkStore::open(&[a.path().to_path_buf()], io).unwrap();
    let rt = runtime();
    let v = ChunkVersion(1);
    let chunks: Vec<ChunkId> = (1..=64).map(ChunkId).collect();
    rt.block_on(async {
        for &c in &chunks {
            store.create(c, v).await.unwrap();
            store.write(c, v, 0, vec![7u8; 6144]).await.unwrap();
        }
    });
    let before = store.io_counts();
    let synced = rt.block_on(queued_together(
        &store,
        chunks.iter().map(|&c| store.sync(c, v)).collect(),
    ));
    assert!(synced.iter().all(Result::is_ok), "{synced:?}");
    let after = store.io_counts();
    assert_eq!(after.data_syncs - before.data_syncs, 64, "one per file");
    // Chunks 1-64 share a subdirectory, made anew: one directory sync for the whole batch.
    assert_eq!(after.dir_syncs - before.dir_syncs, 1);

    // Synced again with no file made or renamed since: no directory sync at all.
    let synced = rt.block_on(queued_together(
        &store,
        chunks.iter().map(|&c| store.sync(c, v)).collect(),
    ));
    assert!(synced.iter().all(Result::is_ok));
    let again = store.io_counts();
    assert_eq!(again.dir_syncs, after.dir_syncs);
    assert_eq!(again.data_syncs - after.data_syncs, 64);

    // A version change renames a file: its answer waits for its directory's sync.
    rt.block_on(store.set_version(chunks[0], v, ChunkVersion(2)))
        .unwrap();
    assert_eq!(store.io_counts().dir_syncs, again.dir_syncs + 1);
    // Every replica made, written and synced without opening a file: the creates' files stayed
    // open.
    assert_eq!(store.io_counts().opens, 0);
}

#[test]
fn a_replica_is_opened_once_for_a_burst_and_a_removed_file_is_still_found_missing() {
    let a = tempfile::tempdir().unwrap();
    let io: Arc<dyn FileIo> = Arc::new(RealIo);
    let roots = [a.path().to_path_buf()];
    let v = ChunkVersion(1);
    let rt = runtime();
    {
        let store = ChunkStore::open(&roots, io.clone()).unwrap();
        rt.block_on(async {
            for c in [1, 2] {
                store.create(ChunkId(c), v).await.unwrap();
                store
                    .write(ChunkId(c), v, 0, vec![c as u8; 1000])
                    .await
                    .unwrap();
                store.sync(ChunkId(c), v).await.unwrap();
            }
        });
    }
    let store = ChunkStore::open(&roots, io).unwrap();
    rt.block_on(async {
        for i in 0..10u64 {
            store
                .write(ChunkId(1), v, 1000 + i, vec![9u8])
                .await
                .unwrap();
            let got = store.read(ChunkId(1), v, 0, 2000).await.unwrap();
            assert_eq!(got.len() as u64, 1001 + i);
        }
    });
    assert_eq!(store.io_counts().opens, 1, "opened by the first write only");

    // Chunk 2's file removed behind the store's back after the store opened it: a read finds
    // it missing as an open by name would, and the replica is marked corrupt.
    rt.block_on(store.read(ChunkId(2), v, 0, 10)).unwrap();
    std::fs::remove_file(data_dir::replica_path(a.path(), ChunkId(2), v)).unwrap();
    let got = rt.block_on(store.read(ChunkId(2), v, 0, 10));
    assert!(
        matches!(&got, Err(KfsError::CorruptReplica { reason, .. }) if reason.contains("missing")),
        "{got:?}"
    );
    assert_eq!(store.corrupt(), vec![ChunkId(2)]);
}

#[test]
fn files_of_the_flat_layout_move_into_their_subdirectories_at_open() {
    let a = tempfile::tempdir().unwrap();
    let io: Arc<dyn FileIo> = Arc::new(RealIo);
    let roots = [a.path().to_path_buf()];
    let v = ChunkVersion(3);
    let rt = runtime();
    let chunk = ChunkId(0x1234_5678);
    {
        let store = ChunkStore::open(&roots, io.clone()).unwrap();
        rt.block_on(async {
            store.create(chunk, v).await.unwrap();
            store
                .write(chunk, v, 0, b"layout one".to_vec())
                .await
                .unwrap();
            store.sync(chunk, v).await.unwrap();
        });
    }
    // Put the file where layout 1 kept it, directly in chunks/.
    let placed = data_dir::replica_path(a.path(), chunk, v);
    assert!(
        placed.ends_with("chunks/56/c0000000012345678_v3.kfschunk"),
        "{placed:?}"
    );
    let flat = a.path().join("chunks").join(placed.file_name().unwrap());
    std::fs::rename(&placed, &flat).unwrap();

    let store = ChunkStore::open(&roots, io).unwrap();
    assert!(placed.exists() && !flat.exists());
    assert_eq!(store.replica(chunk), Some((v, 10)));
    let got = rt.block_on(store.read(chunk, v, 0, 100)).unwrap();
    assert_eq!(&got[..], b"layout one");
    assert_eq!(store.space().used, HEADER_LEN + 10);
}
