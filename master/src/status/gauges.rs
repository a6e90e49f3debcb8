//! [`metrics`]: the master's Prometheus registry, per-RPC metrics and `StateGauges`, the
//! gauges and counters of the cluster's state.
//!
//! The state metrics are set from a fresh [`Status`] at each scrape (the registry's `Refresh`),
//! so `/metrics` carries the numbers the status page shows. Counters mirror the workers' atomics with
//! `catch_up`; refreshes run one at a time (a mutex) so a mirrored counter is never moved twice.
//! The committer's commit-time and batch-size histograms are the committer's own, registered here.

use super::{Status, StatusSources};
use crate::committer::CommitStats;
use kfs_common::metrics::{Refresh, Registry, RpcMetrics, catch_up, gauge_value};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::{Arc, Mutex};

/// Labels of the chunkserver count gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Labels of the repair copy counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The master's metrics beyond per-RPC ones: set from a [`Status`] at each scrape.
#[derive(Default)]
struct StateGauges {
    files: Gauge,
    dirs: Gauge,
    chunks: Gauge,
    bytes: Gauge,
    capacity: Gauge,
    used: Gauge,
    available: Gauge,
    servers: Family<StateLabels, Gauge>,
    under_replicated: Gauge,
    missing: Gauge,
    waiting: Gauge,
    short_of_servers: Gauge,
    health_known: Gauge,
    corrupt: Gauge,
    copies_in_flight: Gauge,
    safe_mode: Gauge,
    log_seq: Gauge,
    checkpoint_seq: Gauge,
    log_ops: Counter,
    checkpoints: Counter,
    copies: Family<OutcomeLabels, Counter>,
    healer_rounds: Counter,
    volumes: Gauge,
    packed_files: Gauge,
    packed_bytes: Gauge,
    compacted_volumes: Counter,
    moved_records: Counter,
    moved_bytes: Counter,
}

impl StateGauges {
    fn register(registry: &mut Registry, commit: &CommitStats) -> StateGauges {
        let g = StateGauges::default();
        let r = registry;
        r.register(
            "kfs_files",
            "Regular files in the namespace",
            g.files.clone(),
        );
        r.register("kfs_dirs", "Directories in the namespace", g.dirs.clone());
        r.register("kfs_chunks", "Chunks referenced by files", g.chunks.clone());
        r.register("kfs_file_bytes", "Sum of file lengths", g.bytes.clone());
        r.register(
            "kfs_capacity_bytes",
            "Size of the live chunkservers' file systems",
            g.capacity.clone(),
        );
        r.register(
            "kfs_used_bytes",
            "Bytes of chunk files on live chunkservers",
            g.used.clone(),
        );
        r.register(
            "kfs_available_bytes",
            "Bytes free on the live chunkservers",
            g.available.clone(),
        );
        r.register(
            "kfs_chunkservers",
            "Chunkservers by state",
            g.servers.clone(),
        );
        r.register(
            "kfs_under_replicated_chunks",
            "Chunks with fewer live replicas than their factor (the healer's last round)",
            g.under_replicated.clone(),
        );
        r.register(
            "kfs_missing_chunks",
            "Chunks with no readable replica (the healer's last round)",
            g.missing.clone(),
        );
        r.register(
            "kfs_under_replicated_waiting_chunks",
            "Under-replicated chunks whose repair waits for a write lease to run out or a copy (the healer's last round)",
            g.waiting.clone(),
        );
        r.register(
            "kfs_under_replicated_unrepairable_chunks",
            "Under-replicated chunks with fewer live chunkservers than their factor: no repair possible (the healer's last round)",
            g.short_of_servers.clone(),
        );
        r.register(
            "kfs_replication_counted",
            "1 when the two gauges above hold a repair round's count; 0 in safe mode and before the first round (they then read 0 and mean nothing)",
            g.health_known.clone(),
        );
        r.register(
            "kfs_corrupt_replicas",
            "Replicas chunkservers reported corrupt",
            g.corrupt.clone(),
        );
        r.register(
            "kfs_repair_copies_in_flight",
            "Re-replication copies in flight",
            g.copies_in_flight.clone(),
        );
        r.register(
            "kfs_safe_mode",
            "1 while the master is in safe mode",
            g.safe_mode.clone(),
        );
        r.register(
            "kfs_log_last_seq",
            "Sequence number of the newest durable log record",
            g.log_seq.clone(),
        );
        r.register(
            "kfs_checkpoint_seq",
            "Log record the newest checkpoint covers",
            g.checkpoint_seq.clone(),
        );
        r.register(
            "kfs_log_ops",
            "Ops made durable in the operation log",
            g.log_ops.clone(),
        );
        r.register(
            "kfs_checkpoints",
            "Checkpoints written by this process",
            g.checkpoints.clone(),
        );
        r.register(
            "kfs_repair_copies",
            "Re-replication copies by outcome",
            g.copies.clone(),
        );
        r.register(
            "kfs_repair_rounds",
            "Repair rounds the healer ran",
            g.healer_rounds.clone(),
        );
        r.register(
            "kfs_volumes",
            "Volumes holding small files",
            g.volumes.clone(),
        );
        r.register(
            "kfs_packed_files",
            "Files packed into volumes",
            g.packed_files.clone(),
        );
        r.register(
            "kfs_packed_bytes",
            "Bytes of the files packed into volumes",
            g.packed_bytes.clone(),
        );
        r.register(
            "kfs_compacted_volumes",
            "Volumes whose live records compaction moved (since the master started)",
            g.compacted_volumes.clone(),
        );
        r.register(
            "kfs_compaction_moved_records",
            "Records compaction moved to other volumes (since the master started)",
            g.moved_records.clone(),
        );
        r.register(
            "kfs_compaction_moved_bytes",
            "Bytes compaction moved to other volumes (since the master started)",
            g.moved_bytes.clone(),
        );
        r.register(
            "kfs_log_commit_seconds",
            "Time to write and fdatasync one group commit",
            commit.commit_seconds.clone(),
        );
        r.register(
            "kfs_log_batch_ops",
            "Ops in one group commit (one fdatasync)",
            commit.batch_ops.clone(),
        );
        g
    }

    fn set(&self, s: &Status) {
        self.files.set(gauge_value(s.summary.files));
        self.dirs.set(gauge_value(s.summary.dirs));
        self.chunks.set(gauge_value(s.summary.chunks));
        self.bytes.set(gauge_value(s.summary.bytes));
        self.capacity.set(gauge_value(s.summary.capacity));
        self.used.set(gauge_value(s.summary.used));
        self.available.set(gauge_value(s.summary.available));
        for state in ["alive", "dead", "draining", "drained"] {
            let n = s.servers.iter().filter(|r| r.state == state).count();
            self.servers
                .get_or_create(&StateLabels { state })
                .set(n as i64);
        }
        self.under_replicated
            .set(gauge_value(s.replication.under_replicated.unwrap_or(0)));
        self.missing
            .set(gauge_value(s.replication.missing.unwrap_or(0)));
        self.waiting
            .set(gauge_value(s.replication.waiting.unwrap_or(0)));
        self.short_of_servers
            .set(gauge_value(s.replication.short_of_servers.unwrap_or(0)));
        self.health_known
            .set(s.replication.under_replicated.is_some() as i64);
        self.corrupt
            .set(gauge_value(s.replication.corrupt_replicas));
        self.copies_in_flight
            .set(gauge_value(s.replication.copies_in_flight));
        self.safe_mode.set(s.replication.safe_mode as i64);
        let c = &s.workers.committer;
        self.log_seq.set(gauge_value(c.last_seq));
        self.checkpoint_seq.set(gauge_value(c.checkpoint_seq));
        catch_up(&self.log_ops, c.ops);
        catch_up(&self.checkpoints, c.checkpoints);
        let h = &s.workers.healer;
        catch_up(&self.healer_rounds, h.rounds);
        let k = &s.small_files;
        self.volumes.set(gauge_value(k.volumes));
        self.packed_files.set(gauge_value(k.packed_files));
        self.packed_bytes.set(gauge_value(k.packed_bytes));
        catch_up(&self.compacted_volumes, k.compacted_volumes);
        catch_up(&self.moved_records, k.moved_records);
        catch_up(&self.moved_bytes, k.moved_bytes);
        for (outcome, total) in [("done", h.copies_done), ("failed", h.copies_failed)] {
            catch_up(
                &self.copies.get_or_create(&OutcomeLabels { outcome }),
                total,
            );
        }
    }
}

/// The master's metrics registry: per-RPC metrics (returned, for the services to record into)
/// and the state gauges, refreshed from `sources` at each scrape.
pub fn metrics(sources: &StatusSources) -> (Arc<Registry>, RpcMetrics, Refresh) {
    let mut registry = Registry::default();
    let rpc = RpcMetrics::register(&mut registry);
    let gauges = StateGauges::register(&mut registry, &sources.commit);
    let sources = sources.clone();
    // One refresh at a time, so mirrored counters are never moved twice.
    let gauges = Mutex::new(gauges);
    let refresh: Refresh = Arc::new(move || {
        let status = Status::gather(&sources);
        gauges.lock().expect("gauges lock").set(&status);
    });
    (Arc::new(registry), rpc, refresh)
}
