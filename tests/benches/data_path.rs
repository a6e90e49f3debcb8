//! Sequential throughput of the data path, against an in-process cluster (master and three
//! chunkservers, 64 MiB chunks, each chunkserver's data dir on this machine's disk), beside the
//! machine's own limits measured in the same run:
//! - plain file: write 1 GiB and fsync it, on the same disk;
//! - loopback TCP: 1 GiB through one socket in 1 MiB writes;
//! - KFS: write 1 GiB (one file, or four files of 256 MiB in parallel) with replication 1 and 3,
//!   ending with `sync` (every replica fsyncs), then read it back.
//!
//! `cargo bench -p kfs-tests --bench data_path` prints MB/s, the median of 3 runs.

use kfs_tests::{ClusterOptions, TestCluster};
use std::io::Write;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOTAL: usize = 1 << 30;
const PIECE: usize = 1 << 20;
const RUNS: usize = 3;

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn plain_write_fsync(dir: &std::path::Path, piece: &[u8]) -> f64 {
    let path = dir.join("plain");
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    for _ in 0..TOTAL / PIECE {
        f.write_all(piece).unwrap();
    }
    f.sync_all().unwrap();
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    mbps(TOTAL, secs)
}

async fn loopback_tcp(piece: &[u8]) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; PIECE];
        let mut got = 0;
        while got < TOTAL {
            got += s.read(&mut buf).await.unwrap();
        }
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    for _ in 0..TOTAL / PIECE {
        s.write_all(piece).await.unwrap();
    }
    reader.await.unwrap();
    mbps(TOTAL, t.elapsed().as_secs_f64())
}

/// Writes `files` files of `TOTAL / files` bytes in parallel, each ending with sync; then reads
/// them back. Returns (write MB/s, read MB/s).
async fn kfs(
    client: &kfs_client::Client,
    replication: u8,
    files: usize,
    run: usize,
    piece: &[u8],
) -> (f64, f64) {
    let each = TOTAL / files;
    let t = Instant::now();
    let writers: Vec<_> = (0..files)
        .map(|i| {
            let (client, piece) = (client.clone(), piece.to_vec());
            tokio::spawn(async move {
                let path = format!("/bench-r{replication}-f{files}-{run}-{i}");
                let options = kfs_common::proto::master::CreateOptions {
                    replication: Some(replication),
                    ..Default::default()
                };
                let mut f = client.create_with(&path, options).await.unwrap();
                for _ in 0..each / PIECE {
                    f.write_all(&piece).await.unwrap();
                }
                f.sync().await.unwrap();
                f.close().await.unwrap();
                path
            })
        })
        .collect();
    let mut paths = Vec::new();
    for w in writers {
        paths.push(w.await.unwrap());
    }
    let write = mbps(TOTAL, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let readers: Vec<_> = paths
        .iter()
        .map(|path| {
            let (client, path) = (client.clone(), path.clone());
            tokio::spawn(async move {
                let mut f = client.open(&path).await.unwrap();
                let mut buf = vec![0u8; PIECE];
                let mut got = 0;
                loop {
                    let n = f.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                assert_eq!(got, each);
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    let read = mbps(TOTAL, t.elapsed().as_secs_f64());
    for path in paths {
        client.remove(&path).await.unwrap();
    }
    (write, read)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let piece: Vec<u8> = (0..PIECE).map(|i| (i * 131 % 251) as u8).collect();
        let scratch = tempfile::tempdir().unwrap();
        let cluster = TestCluster::start(ClusterOptions {
            chunk_size: 64 << 20,
            lease_ms: 60_000,
            ..Default::default()
        })
        .await;
        let client = cluster.client().await;
        let mut plain = Vec::new();
        let mut tcp = Vec::new();
        let configs = [(1u8, 1usize), (1, 4), (3, 1), (3, 4)];
        let mut writes: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
        let mut reads: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
        for run in 0..RUNS {
            plain.push(plain_write_fsync(scratch.path(), &piece));
            tcp.push(loopback_tcp(&piece).await);
            for (i, (replication, files)) in configs.iter().enumerate() {
                let (w, r) = kfs(&client, *replication, *files, run, &piece).await;
                writes[i].push(w);
                reads[i].push(r);
            }
            eprintln!("run {} done", run + 1);
        }
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("| 1 GiB, sequential, 1 MiB calls (median of {RUNS}) | MB/s | runs |");
        println!("|---|---:|---|");
        println!(
            "| machine: plain file write + fsync | {:.0} | {} |",
            median(plain.clone()),
            show(&plain)
        );
        println!(
            "| machine: loopback TCP, one stream | {:.0} | {} |",
            median(tcp.clone()),
            show(&tcp)
        );
        for (i, (replication, files)) in configs.iter().enumerate() {
            println!(
                "| KFS write + sync, replication {replication}, {files} file(s) | {:.0} | {} |",
                median(writes[i].clone()),
                show(&writes[i])
            );
        }
        for (i, (replication, files)) in configs.iter().enumerate() {
            println!(
                "| KFS read, replication {replication}, {files} file(s) | {:.0} | {} |",
                median(reads[i].clone()),
                show(&reads[i])
            );
        }
        cluster.shutdown().await;
    });
}
