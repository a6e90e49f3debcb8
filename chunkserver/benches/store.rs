//! The chunk store against plain files on the same disk, side by side in one run: sequential
//! write and read of 64 MiB in 1 MiB calls, as a chunkserver does them.
//!
//! - write: into the page cache (no fsync), and write + fsync;
//! - read: from the page cache, every block's checksum verified by the store; and cold (pages
//!   dropped with `posix_fadvise(DONTNEED)` after an fsync, so they come from the disk);
//! - crc32c alone over 64 MiB, for the cost of checksumming.
//!
//! `cargo bench -p kfs-chunkserver --bench store` prints the median of 5 runs of each.

use kfs_chunkserver::store::ChunkStore;
use kfs_chunkserver::store::aligned::aligned_zeroed;
use kfs_chunkserver::store::chunk_file;
use kfs_chunkserver::store::io::RealIo;
use kfs_common::{ChunkId, ChunkVersion};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const SIZE: usize = 64 << 20;
const PIECE: usize = 1 << 20;
const RUNS: usize = 5;

/// An `Arc<Vec<u8>>` as bytes.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn mbps(secs: f64) -> f64 {
    SIZE as f64 / secs / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn drop_cache(path: &Path) {
    let file = File::open(path).unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..SIZE).map(|i| (i * 131 % 251) as u8).collect();
    // The store takes owned buffers (as a server hands it received payloads): share the pieces.
    let pieces: Vec<Arc<Vec<u8>>> = payload
        .chunks(PIECE)
        .map(|p| Arc::new(p.to_vec()))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let store = Arc::new(ChunkStore::open(&[dir.path().join("store")], Arc::new(RealIo)).unwrap());

    let names = [
        "write (page cache)",
        "write + fsync",
        "read, page cache (store: verified)",
        "read, cold from disk (store: verified)",
    ];
    let mut plain: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut kfs: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut crc = Vec::new();

    for run in 0..RUNS {
        // Plain file.
        let path = dir.path().join(format!("plain-{run}"));
        for (i, sync) in [(0, false), (1, true)] {
            let _ = std::fs::remove_file(&path);
            // Start each write with no dirty pages left by the last one.
            rustix::fs::sync();
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .unwrap();
            let t = Instant::now();
            for (n, piece) in payload.chunks(PIECE).enumerate() {
                file.write_all_at(piece, (n * PIECE) as u64).unwrap();
            }
            if sync {
                file.sync_data().unwrap();
            }
            plain[i].push(mbps(t.elapsed().as_secs_f64()));
        }
        for (i, cold) in [(2, false), (3, true)] {
            if cold {
                drop_cache(&path);
            }
            let file = File::open(&path).unwrap();
            let mut buf = aligned_zeroed(PIECE);
            let t = Instant::now();
            for n in 0..SIZE / PIECE {
                file.read_exact_at(&mut buf, (n * PIECE) as u64).unwrap();
                std::hint::black_box(&buf);
            }
            plain[i].push(mbps(t.elapsed().as_secs_f64()));
        }
        std::fs::remove_file(&path).unwrap();

        // Chunk store.
        for (i, sync) in [(0, false), (1, true)] {
            let chunk = ChunkId(1000 + (run * 2 + i) as u64);
            rustix::fs::sync();
            let v = ChunkVersion(1);
            let t = Instant::now();
            rt.block_on(async {
                store.create(chunk, v).await.unwrap();
                for (n, piece) in pieces.iter().enumerate() {
                    store
                        .write(chunk, v, (n * PIECE) as u64, Shared(piece.clone()))
                        .await
                        .unwrap();
                }
                if sync {
                    store.sync(chunk, v).await.unwrap();
                }
            });
            kfs[i].push(mbps(t.elapsed().as_secs_f64()));
        }
        let chunk = ChunkId(1000 + (run * 2 + 1) as u64);
        let file = dir
            .path()
            .join("store/chunks")
            .join(chunk_file::file_name(chunk, ChunkVersion(1)));
        for (i, cold) in [(2, false), (3, true)] {
            if cold {
                drop_cache(&file);
            }
            let t = Instant::now();
            rt.block_on(async {
                for n in 0..SIZE / PIECE {
                    let got = store
                        .read(chunk, ChunkVersion(1), (n * PIECE) as u64, PIECE as u64)
                        .await
                        .unwrap();
                    std::hint::black_box(got);
                }
            });
            kfs[i].push(mbps(t.elapsed().as_secs_f64()));
        }
        for i in 0..2 {
            rt.block_on(store.delete(ChunkId(1000 + (run * 2 + i) as u64)))
                .unwrap();
        }

        let t = Instant::now();
        std::hint::black_box(crc32c::crc32c(&payload));
        crc.push(mbps(t.elapsed().as_secs_f64()));
    }

    println!(
        "| 64 MiB in 1 MiB calls (median of {RUNS}) | plain file MB/s | chunk store MB/s | ratio |"
    );
    println!("|---|---:|---:|---:|");
    for (i, name) in names.iter().enumerate() {
        let (p, k) = (median(plain[i].clone()), median(kfs[i].clone()));
        println!("| {name} | {p:.0} | {k:.0} | {:.0}% |", 100.0 * k / p);
    }
    println!("| crc32c alone | {:.0} | | |", median(crc));
}
