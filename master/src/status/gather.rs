//! [`Status::gather`]: the cluster's state, read from the master's live state into a [`Status`].
//!
//! It reads the namespace's counters (read lock, O(1), and one pass over the volumes), the chunk map's server table (its lock,
//! for one pass over the replicas, as `kfs servers`), what servers and gateways said of themselves
//! (`reports.rs`), and the workers' atomic counters. Each lock
//! is taken alone and let go before the next, and none is held for a walk of the namespace: the
//! under-replicated and missing counts are what the healer's last round found (`None` until a
//! round has counted them outside safe mode). Drained chunkservers count as alive; dead ones
//! count in the server totals but not in capacity, used or available.

use super::{
    CommitterState, HealerState, Replication, ServerRow, SmallFiles, Status, StatusSources,
    Summary, Workers,
};
use kfs_common::proto::master::ServerState;
use std::sync::atomic::Ordering;
use std::time::Instant;

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Alive => "alive",
        ServerState::Dead => "dead",
        ServerState::Draining => "draining",
        ServerState::Drained => "drained",
    }
}

impl Status {
    /// Reads the status from the master's live state.
    pub fn gather(from: &StatusSources) -> Status {
        let now = Instant::now();
        let (counters, (volumes, packed)) = {
            let ns = from.ns.read().expect("namespace lock");
            (ns.counters(), ns.packed_totals())
        };
        let k = &from.compaction;
        let small_files = SmallFiles {
            volumes,
            packed_files: packed.records,
            packed_bytes: packed.bytes,
            compacted_volumes: k.volumes.load(Ordering::Relaxed),
            moved_records: k.records.load(Ordering::Relaxed),
            moved_bytes: k.bytes.load(Ordering::Relaxed),
        };
        let (infos, safe, copies_in_flight, leases) = {
            let mut chunks = from.chunks.lock().expect("chunk map lock");
            (
                chunks.servers(now),
                chunks.safe_mode_status(now),
                chunks.copies_in_flight() as u64,
                chunks.leases_held(now),
            )
        };
        let mut described = from.reports.servers();
        let safe_mode = safe.on;
        let (writing, writer_gone) = (from.open_files)();
        let mut summary = Summary {
            files: counters.files,
            dirs: counters.dirs,
            chunks: counters.chunks,
            bytes: counters.bytes,
            ..Summary::default()
        };
        let mut corrupt_replicas = 0;
        let servers: Vec<ServerRow> = infos
            .iter()
            .map(|s| {
                match s.state {
                    ServerState::Dead => summary.servers_dead += 1,
                    ServerState::Draining => summary.servers_draining += 1,
                    ServerState::Alive | ServerState::Drained => summary.servers_alive += 1,
                }
                if s.state != ServerState::Dead {
                    summary.capacity += s.space.capacity;
                    summary.used += s.space.used;
                    summary.available += s.space.available;
                }
                corrupt_replicas += s.corrupt;
                let detail = described.remove(&s.server);
                ServerRow {
                    id: s.server.to_string(),
                    addr: s.addr,
                    state: state_name(s.state),
                    capacity: s.space.capacity,
                    used: s.space.used,
                    available: s.space.available,
                    chunks: s.chunks,
                    corrupt: s.corrupt,
                    last_heartbeat_ms_ago: s.since_heartbeat_ms,
                    version: detail.as_ref().map(|d| d.version.clone()),
                    http: detail.as_ref().and_then(|d| d.http),
                    scrub: detail.as_ref().map(|d| d.scrub),
                    dirs: detail.map(|d| d.dirs).unwrap_or_default(),
                }
            })
            .collect();
        let last = *from.healer.last.lock().expect("healer stats lock");
        let health = last.and_then(|(_, health)| health);
        let c = &from.commit;
        let h = &from.healer;
        Status {
            version: env!("CARGO_PKG_VERSION"),
            master: from.addr,
            uptime_secs: from.started.elapsed().as_secs(),
            summary,
            open_files: super::OpenFiles {
                writing,
                writer_gone,
                leases,
            },
            gateways: from.reports.gateways(now),
            history: from.history.rates(now),
            replication: Replication {
                safe_mode,
                safe_mode_reported: safe.reported,
                safe_mode_total: safe.total,
                safe_mode_threshold: safe.threshold,
                safe_mode_remaining_ms: safe.remaining_ms,
                under_replicated: health.map(|h| h.under_replicated),
                missing: health.map(|h| h.missing),
                waiting: health.map(|h| h.waiting),
                short_of_servers: health.map(|h| h.short_of_servers),
                counted_ms_ago: last
                    .filter(|(_, health)| health.is_some())
                    .map(|(at, _)| now.saturating_duration_since(at).as_millis() as u64),
                corrupt_replicas,
                copies_in_flight,
            },
            small_files,
            servers,
            workers: Workers {
                committer: CommitterState {
                    log: if c.log_broken.load(Ordering::Relaxed) {
                        "broken"
                    } else {
                        "ok"
                    },
                    ops: c.ops.load(Ordering::Relaxed),
                    batches: c.batches.load(Ordering::Relaxed),
                    last_seq: c.last_seq.load(Ordering::Relaxed),
                    checkpoints: c.checkpoints.load(Ordering::Relaxed),
                    checkpoint_seq: c.checkpoint_seq.load(Ordering::Relaxed),
                    checkpoint_unix_secs: c.checkpoint_unix_secs.load(Ordering::Relaxed),
                    checkpoint_failures: c.checkpoint_failures.load(Ordering::Relaxed),
                    checkpointing: c.checkpointing.load(Ordering::Relaxed),
                },
                healer: HealerState {
                    rounds: h.rounds.load(Ordering::Relaxed),
                    last_round_ms: h.last_round_us.load(Ordering::Relaxed) as f64 / 1000.0,
                    copies_started: h.copies_started.load(Ordering::Relaxed),
                    copies_done: h.copies_done.load(Ordering::Relaxed),
                    copies_failed: h.copies_failed.load(Ordering::Relaxed),
                },
                loops: from.workers.list(),
            },
        }
    }
}
