//! The master over TCP: ops/s of stat, mkdir and create with 1, 16 and 64 concurrent clients,
//! each with one call in flight: every client on its own connection (separate processes), or all
//! sharing one connection (one process's `kfs-client`, which multiplexes calls). Master and clients share this
//! machine's cores; the metadata directory is on the disk under the system temp dir, so every
//! mkdir and create is fsynced (group commit) before it is answered.
//!
//! `cargo bench -p kfs-master --bench rpc` prints the median of 3 runs of 2 s each.

use kfs_common::proto::master::{self, CreateOptions, MasterServiceClient, MkdirOptions};
use kfs_common::rpc;
use kfs_master::MasterConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
enum Kind {
    Stat,
    Mkdir,
    Create,
}

fn ctx() -> tarpc::context::Context {
    rpc::context(Duration::from_secs(60))
}

/// Runs `clients` clients over `connections` connections doing `kind` for `RUN`; returns ops/s.
async fn measure(
    addr: SocketAddr,
    kind: Kind,
    clients: usize,
    connections: usize,
    run: usize,
) -> f64 {
    let pool: Vec<MasterServiceClient> =
        futures::future::join_all((0..connections).map(|_| async move {
            master::connect(addr, &kfs_common::security::Security::Insecure)
                .await
                .unwrap()
        }))
        .await;
    let conns: Vec<MasterServiceClient> = (0..clients)
        .map(|c| pool[c % connections].clone())
        .collect();
    let root = format!("/{kind:?}-{clients}-{connections}-{run}");
    conns[0]
        .mkdir(ctx(), root.clone(), MkdirOptions::default())
        .await
        .unwrap()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, conn)| {
            let (stop, done, root) = (stop.clone(), done.clone(), root.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match kind {
                        Kind::Stat => {
                            // The files made by the create runs: 1,000s of them, all present.
                            let path =
                                format!("/Create-64-64-0/{}-{}", (c + i as usize) % 64, i % 200);
                            conn.stat(ctx(), path).await.unwrap().unwrap();
                        }
                        Kind::Mkdir => {
                            conn.mkdir(ctx(), format!("{root}/{c}-{i}"), MkdirOptions::default())
                                .await
                                .unwrap()
                                .unwrap();
                        }
                        Kind::Create => {
                            conn.create(ctx(), format!("{root}/{c}-{i}"), CreateOptions::default())
                                .await
                                .unwrap()
                                .unwrap();
                        }
                    }
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let count = done.load(Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    count as f64 / elapsed.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = MasterConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            meta_dir: dir.path().to_path_buf(),
            insecure: true,
            ..Default::default()
        };
        let master = kfs_master::start(&config).await.unwrap();
        let addr = master.local_addr();
        println!("| op | clients | connections | median ops/s | runs | ops per fsync |");
        println!("|---|---:|---:|---:|---|---:|");
        for kind in [Kind::Create, Kind::Mkdir, Kind::Stat] {
            for (clients, connections) in [(1, 1), (16, 16), (64, 64), (16, 1), (64, 1)] {
                let stats = master.commit_stats();
                let (ops0, batches0) = (
                    stats.ops.load(Ordering::Relaxed),
                    stats.batches.load(Ordering::Relaxed),
                );
                let mut runs = Vec::new();
                for run in 0..3 {
                    runs.push(measure(addr, kind, clients, connections, run).await);
                }
                let ops = stats.ops.load(Ordering::Relaxed) - ops0;
                let batches = (stats.batches.load(Ordering::Relaxed) - batches0).max(1);
                let shown: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
                let per_fsync = match kind {
                    Kind::Stat => "-".to_string(),
                    _ => format!("{:.1}", ops as f64 / batches as f64),
                };
                println!(
                    "| {kind:?} | {clients} | {connections} | {:.0} | {} | {per_fsync} |",
                    median(runs),
                    shown.join(", ")
                );
            }
        }
        master.shutdown().await;
    });
}
