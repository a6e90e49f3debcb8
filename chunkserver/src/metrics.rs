//! The chunkserver's Prometheus metrics, served on `/metrics` when `http` is configured.
//!
//! Per-RPC calls, latencies and errors come from [`kfs_common::metrics::Metered`]; the bytes
//! read and written are counted by the chunk service as it serves them ([`IoCounters`]); the
//! store's state (replicas, space, failed data dirs) and the scrubber's and master link's
//! counters are read at each scrape.

use crate::master_link::LinkStats;
use crate::scrubber::ScrubStats;
use crate::store::ChunkStore;
use kfs_common::metrics::{Refresh, Registry, RpcMetrics, catch_up, gauge_value};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Bytes the chunk service moved, counted as it serves.
#[derive(Clone, Debug, Default)]
pub struct IoCounters {
    /// Bytes of data sent to readers (clients and other chunkservers copying).
    pub read_bytes: Counter,
    /// Bytes of data written to local replicas by writes (each replica counts its own).
    pub written_bytes: Counter,
    /// Bytes copied in from other chunkservers to repair replication.
    pub copied_bytes: Counter,
}

/// Gauges and mirrored counters of the store, the scrubber and the master link.
#[derive(Default)]
struct StateMetrics {
    replicas: Gauge,
    corrupt: Gauge,
    capacity: Gauge,
    used: Gauge,
    available: Gauge,
    failed_dirs: Gauge,
    scrub_passes: Counter,
    scrub_bytes: Counter,
    scrub_corrupt: Counter,
    file_opens: Counter,
    data_syncs: Counter,
    dir_syncs: Counter,
    heartbeats: Counter,
    deleted: Counter,
}

/// The registry of a chunkserver: returns it, the per-RPC metrics and the byte counters for the
/// service to record into, and the refresh the scrape runs.
pub fn registry(
    store: Arc<ChunkStore>,
    link: Arc<LinkStats>,
    scrub: Arc<ScrubStats>,
) -> (Arc<Registry>, RpcMetrics, IoCounters, Refresh) {
    let mut r = Registry::default();
    let rpc = RpcMetrics::register(&mut r);
    let io = IoCounters::default();
    r.register(
        "kfs_chunkserver_read_bytes",
        "Bytes of chunk data sent to readers",
        io.read_bytes.clone(),
    );
    r.register(
        "kfs_chunkserver_written_bytes",
        "Bytes of chunk data written to local replicas",
        io.written_bytes.clone(),
    );
    r.register(
        "kfs_chunkserver_copied_bytes",
        "Bytes copied in from other chunkservers to repair replication",
        io.copied_bytes.clone(),
    );
    let s = StateMetrics::default();
    r.register(
        "kfs_chunkserver_replicas",
        "Replicas held",
        s.replicas.clone(),
    );
    r.register(
        "kfs_chunkserver_corrupt_replicas",
        "Replicas found corrupt (never served)",
        s.corrupt.clone(),
    );
    r.register(
        "kfs_chunkserver_capacity_bytes",
        "Bytes offered for chunks",
        s.capacity.clone(),
    );
    r.register(
        "kfs_chunkserver_used_bytes",
        "Bytes held by chunk files",
        s.used.clone(),
    );
    r.register(
        "kfs_chunkserver_available_bytes",
        "Bytes free for chunks",
        s.available.clone(),
    );
    r.register(
        "kfs_chunkserver_failed_dirs",
        "Data directories taken out of service after I/O errors",
        s.failed_dirs.clone(),
    );
    r.register(
        "kfs_chunkserver_scrub_passes",
        "Full verification passes over every replica",
        s.scrub_passes.clone(),
    );
    r.register(
        "kfs_chunkserver_scrub_bytes",
        "Bytes verified by the scrubber",
        s.scrub_bytes.clone(),
    );
    r.register(
        "kfs_chunkserver_scrub_corrupt",
        "Corrupt replicas the scrubber found",
        s.scrub_corrupt.clone(),
    );
    r.register(
        "kfs_chunkserver_file_opens",
        "Chunk files opened (the open-file cache missed)",
        s.file_opens.clone(),
    );
    r.register(
        "kfs_chunkserver_data_syncs",
        "Data syncs (fdatasync) of chunk files",
        s.data_syncs.clone(),
    );
    r.register(
        "kfs_chunkserver_dir_syncs",
        "Directory syncs of chunk subdirectories (one per batch of syncs that made or renamed files)",
        s.dir_syncs.clone(),
    );
    r.register(
        "kfs_chunkserver_heartbeats",
        "Heartbeats the master answered",
        s.heartbeats.clone(),
    );
    r.register(
        "kfs_chunkserver_deleted_replicas",
        "Replicas deleted on the master's word",
        s.deleted.clone(),
    );
    // One refresh at a time, so mirrored counters are never moved twice.
    let s = Mutex::new(s);
    let refresh: Refresh = Arc::new(move || {
        let s = s.lock().expect("chunkserver metrics lock");
        let space = store.space();
        s.replicas.set(gauge_value(store.chunk_count()));
        s.corrupt.set(store.corrupt().len() as i64);
        s.capacity.set(gauge_value(space.capacity));
        s.used.set(gauge_value(space.used));
        s.available.set(gauge_value(space.available));
        s.failed_dirs.set(store.failed_dirs().len() as i64);
        catch_up(&s.scrub_passes, scrub.passes.load(Ordering::Relaxed));
        catch_up(&s.scrub_bytes, scrub.bytes.load(Ordering::Relaxed));
        catch_up(
            &s.scrub_corrupt,
            scrub.corrupt_found.load(Ordering::Relaxed),
        );
        let calls = store.io_counts();
        catch_up(&s.file_opens, calls.opens);
        catch_up(&s.data_syncs, calls.data_syncs);
        catch_up(&s.dir_syncs, calls.dir_syncs);
        catch_up(&s.heartbeats, link.heartbeats.load(Ordering::Relaxed));
        catch_up(&s.deleted, link.deleted.load(Ordering::Relaxed));
    });
    (Arc::new(r), rpc, io, refresh)
}
