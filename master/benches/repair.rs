//! The cost of one repair round at 1M chunks: `plan_repairs` walks every chunk under the chunk
//! map's lock, so its time is how long heartbeats, leases and `locate` may wait once per
//! `heal_interval_ms`. 100,000 files of 10 chunks each on 6 chunkservers, 3 replicas each;
//! measured healthy (nothing to do: the common case) and right after one server of six was lost (a
//! sixth of the replicas gone; the round plans copies up to `copies_total`).
//!
//! The healer scans a round in slices of 16,384 chunks, releasing the lock between them; the
//! slice time is the longest the lock is held at once.
//!
//! `cargo bench -p kfs-master --bench repair` prints the median of 5 rounds each.

mod support;

use kfs_common::proto::PROTOCOL_VERSION;
use kfs_common::proto::cluster::{ChunkReport, HelloRequest, SpaceReport};
use kfs_common::{ChunkId, ChunkVersion, FileId, ServerId};
use kfs_master::chunks::{ChunkMap, ChunkTiming, RepairRound};
use kfs_master::namespace::op::Op;
use std::time::{Duration, Instant};
use support::{create, file_path, median, with_dirs};

const FILES: u64 = 100_000;
const CHUNKS_PER_FILE: u64 = 10;
const SERVERS: u128 = 6;
/// The healer's slice (`SCAN_SLICE` in `healer.rs`).
const SLICE: usize = 16_384;

fn main() {
    let mut ns = with_dirs();
    let mut reports: Vec<Vec<ChunkReport>> = vec![Vec::new(); SERVERS as usize];
    let mut chunk = 1u64;
    for i in 0..FILES {
        let fid = 10_000 + i;
        ns.apply(&create(file_path(i as usize), fid)).unwrap();
        for c in 0..CHUNKS_PER_FILE {
            let id = ChunkId(chunk);
            ns.apply(&Op::AllocateChunk {
                fid: FileId(fid),
                offset: c << 26,
                chunk: id,
                version: ChunkVersion(1),
            })
            .unwrap();
            for r in 0..3 {
                let server = ((chunk + r) % SERVERS as u64) as usize;
                reports[server].push(ChunkReport {
                    chunk: id,
                    version: ChunkVersion(1),
                    length: 1 << 26,
                });
            }
            chunk += 1;
        }
    }
    let timing = ChunkTiming {
        heartbeat_interval: Duration::from_secs(3),
        server_timeout: Duration::from_secs(30),
    };
    let mut map = ChunkMap::new(&ns, timing, 0);
    let start = Instant::now();
    for (s, chunks) in reports.into_iter().enumerate() {
        map.hello(
            HelloRequest {
                protocol: PROTOCOL_VERSION,
                server: ServerId(s as u128 + 1),
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 9000 + s as u16)),
                space: SpaceReport {
                    capacity: 1 << 40,
                    available: 1 << 39,
                    used: 1 << 39,
                },
                chunks,
                corrupt: Vec::new(),
            },
            start,
        )
        .unwrap();
    }
    let mut healthy = Vec::new();
    let mut slices = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut round = RepairRound::new();
        while !round.done() {
            let slice = Instant::now();
            map.scan_repairs(&ns, start, &mut round, SLICE);
            slices.push(slice.elapsed().as_secs_f64());
        }
        let tasks = map.start_repairs(start, round);
        healthy.push(t.elapsed().as_secs_f64());
        assert!(tasks.is_empty());
    }
    slices.sort_by(f64::total_cmp);
    // One server's replicas stop counting (drained here; a dead server looks the same to the
    // planner): a sixth of all replicas to replace.
    map.set_draining("127.0.0.1:9000", true, start).unwrap();
    let later = start;
    let mut degraded = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let _ = map.plan_repairs(&ns, later);
        degraded.push(t.elapsed().as_secs_f64());
    }
    let ms = |v: &[f64]| format!("{:.0} ms", median(v) * 1000.0);
    println!("| repair round, 1M chunks | median of 5 |");
    println!("|---|---:|");
    println!("| healthy (nothing to do) | {} |", ms(&healthy));
    println!(
        "| one slice of {SLICE} chunks (the longest lock hold), healthy: median / max | {:.1} ms / {:.1} ms |",
        median(&slices) * 1000.0,
        slices.last().unwrap() * 1000.0
    );
    println!(
        "| one server of six lost (500k replicas to replace) | {} |",
        ms(&degraded)
    );
}
