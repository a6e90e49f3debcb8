//! Resident memory of a real `kfs-master` process per file: start the binary, create 1,000
//! directories and 1M empty files over TCP (64 clients multiplexed on one connection), and read
//! the process's VmRSS before and after. Includes everything the process holds: the namespace,
//! allocator slack, buffers, and old nodes kept by a checkpoint in progress.
//!
//! `cargo bench -p kfs-master --bench master_rss`

#[path = "../tests/support/mod.rs"]
mod support;

use kfs_common::proto::master::{self, CreateOptions, MkdirOptions};
use kfs_common::rpc;
use std::time::{Duration, Instant};

const DIRS: usize = 1000;
const FILES: usize = 1_000_000;
const CLIENTS: usize = 64;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn ctx() -> tarpc::context::Context {
    rpc::context(Duration::from_secs(120))
}

/// One run: returns (RSS growth per file in bytes, RSS after in MiB, creates/s).
fn run() -> (f64, u64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = support::spawn_master(env!("CARGO_BIN_EXE_kfs-master"), dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (before, after, secs) = runtime.block_on(async {
        let client = master::connect(addr, &kfs_common::security::Security::Insecure)
            .await
            .unwrap();
        for d in 0..DIRS {
            client
                .mkdir(ctx(), format!("/d{d:04}"), MkdirOptions::default())
                .await
                .unwrap()
                .unwrap();
        }
        let before = rss_kib(child.id());
        let started = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let client = client.clone();
                tokio::spawn(async move {
                    for i in (c..FILES).step_by(CLIENTS) {
                        let path = format!("/d{:04}/IMG_{:06}.jpg", i % DIRS, i / DIRS);
                        client
                            .create(ctx(), path, CreateOptions::default())
                            .await
                            .unwrap()
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        // Let a checkpoint in progress finish and release the nodes it shares.
        tokio::time::sleep(Duration::from_secs(3)).await;
        (before, rss_kib(child.id()), secs)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    (
        (after - before) as f64 * 1024.0 / FILES as f64,
        after / 1024,
        FILES as f64 / secs,
    )
}

fn main() {
    let runs: Vec<(f64, u64, f64)> = (0..3).map(|_| run()).collect();
    let show =
        |f: &dyn Fn(&(f64, u64, f64)) -> String| runs.iter().map(f).collect::<Vec<_>>().join(", ");
    let (per_file, rss, rate) = (
        show(&|r| format!("{:.0}", r.0)),
        show(&|r| format!("{}", r.1)),
        show(&|r| format!("{:.0}", r.2)),
    );
    let median = |f: &dyn Fn(&(f64, u64, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[1]
    };
    println!("| 1M files created over TCP (median of 3) | figure | runs |");
    println!("|---|---:|---|");
    println!(
        "| kfs-master RSS growth per file | {:.0} B | {per_file} |",
        median(&|r| r.0)
    );
    println!(
        "| kfs-master RSS after | {:.0} MiB | {rss} |",
        median(&|r| r.1 as f64)
    );
    println!(
        "| creates/s while growing to 1M | {:.0} | {rate} |",
        median(&|r| r.2)
    );
}
