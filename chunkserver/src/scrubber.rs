//! The scrubber: re-reads every replica in the background, at a bounded rate, so damage is found
//! before a client needs the data. Each replica's file is first checked to be there, whole, with
//! a sound header (so a deleted or cut file is found even when it holds no data), then every
//! block is read (a volume's check reads every record). A replica that cannot be read (checksums, damage, a missing file) is marked
//! corrupt by the store (never served again) and reported to the master with the next
//! heartbeat; a data dir whose disk fails is taken out of service by the store.

use crate::store::ChunkStore;
use kfs_common::KfsError;
use kfs_common::proto::cluster::ScrubReport;
use kfs_common::worker::WorkerStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bytes verified per read.
const PIECE: u64 = 1 << 20;

/// Shortest pause between two passes.
const MIN_PAUSE: Duration = Duration::from_millis(100);

/// Counters of the scrubber, for status and tests.
#[derive(Debug, Default)]
pub struct ScrubStats {
    pub passes: AtomicU64,
    pub bytes: AtomicU64,
    pub corrupt_found: AtomicU64,
    /// The pass under way: replicas checked, of those it started with.
    pub pass_done: AtomicU64,
    pub pass_total: AtomicU64,
    /// When the last pass ended (Unix seconds; 0: none yet).
    pub last_pass_unix_secs: AtomicU64,
    /// Set once the scrubber runs (it does not when `scrub_bytes_per_sec` is 0).
    pub enabled: std::sync::atomic::AtomicBool,
}

impl ScrubStats {
    /// The scrubber's progress as the master's `describe` carries it.
    pub fn report(&self) -> ScrubReport {
        ScrubReport {
            enabled: self.enabled.load(Ordering::Relaxed),
            passes: self.passes.load(Ordering::Relaxed),
            pass_done: self.pass_done.load(Ordering::Relaxed),
            pass_total: self.pass_total.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            last_pass_unix_secs: self.last_pass_unix_secs.load(Ordering::Relaxed),
        }
    }
}

/// Verifies every replica, `bytes_per_sec` at most, then pauses for `pause`, forever.
pub async fn run(
    store: Arc<ChunkStore>,
    bytes_per_sec: u64,
    pause: Duration,
    stats: Arc<ScrubStats>,
    status: WorkerStatus,
) {
    if bytes_per_sec == 0 {
        status.note("off (scrub_bytes_per_sec = 0)");
        return;
    }
    stats.enabled.store(true, Ordering::Relaxed);
    loop {
        let (chunks, _) = store.report();
        let replicas = chunks.len();
        stats.pass_done.store(0, Ordering::Relaxed);
        stats.pass_total.store(replicas as u64, Ordering::Relaxed);
        for replica in chunks {
            stats.pass_done.fetch_add(1, Ordering::Relaxed);
            match store.verify(replica.chunk, replica.version).await {
                Ok(()) => {}
                Err(e) => {
                    if found_damage(&e) {
                        stats.corrupt_found.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
            }
            // A volume's check read every record already: only its pace is kept.
            if store.is_volume(replica.chunk) {
                stats.bytes.fetch_add(replica.length, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs_f64(
                    replica.length as f64 / bytes_per_sec as f64,
                ))
                .await;
                continue;
            }
            let mut offset = 0;
            while offset < replica.length {
                let len = PIECE.min(replica.length - offset);
                match store
                    .read(replica.chunk, replica.version, offset, len)
                    .await
                {
                    Ok(_) => {}
                    Err(e) => {
                        if found_damage(&e) {
                            stats.corrupt_found.fetch_add(1, Ordering::Relaxed);
                        }
                        break;
                    }
                }
                stats.bytes.fetch_add(len, Ordering::Relaxed);
                offset += len;
                tokio::time::sleep(Duration::from_secs_f64(len as f64 / bytes_per_sec as f64))
                    .await;
            }
        }
        stats.passes.fetch_add(1, Ordering::Relaxed);
        stats
            .last_pass_unix_secs
            .store(kfs_common::proto::now_unix_secs(), Ordering::Relaxed);
        status.round(format!("verified {replicas} replicas"));
        // (Never a busy loop over an empty or tiny store, whatever the pause.)
        tokio::time::sleep(pause.max(MIN_PAUSE)).await;
    }
}

/// Whether a failed check found the replica damaged (the store has marked it corrupt), rather
/// than deleted or moved to a new version since the list was taken, or on a failed disk.
fn found_damage(error: &KfsError) -> bool {
    matches!(
        error,
        KfsError::ChecksumMismatch { .. } | KfsError::CorruptReplica { .. }
    )
}
