//! The scrubber: re-reads every replica in the background, at a bounded rate, so damage is found
//! before a client needs the data. A replica that fails its checksums is marked corrupt by the
//! store (never served again) and reported to the master with the next heartbeat.

use crate::store::ChunkStore;
use kfs_common::KfsError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bytes verified per read.
const PIECE: u64 = 1 << 20;

/// Counters of the scrubber, for status and tests.
#[derive(Debug, Default)]
pub struct ScrubStats {
    pub passes: AtomicU64,
    pub bytes: AtomicU64,
    pub corrupt_found: AtomicU64,
}

/// Verifies every replica, `bytes_per_sec` at most, then pauses for `pause`, forever.
pub async fn run(
    store: Arc<ChunkStore>,
    bytes_per_sec: u64,
    pause: Duration,
    stats: Arc<ScrubStats>,
) {
    if bytes_per_sec == 0 {
        return;
    }
    loop {
        let (chunks, _) = store.report();
        for replica in chunks {
            let mut offset = 0;
            while offset < replica.length {
                let len = PIECE.min(replica.length - offset);
                match store
                    .read(replica.chunk, replica.version, offset, len)
                    .await
                {
                    Ok(_) => {}
                    Err(KfsError::ChecksumMismatch { .. } | KfsError::CorruptReplica { .. }) => {
                        stats.corrupt_found.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    // Deleted, or moved to a new version, since the list was taken.
                    Err(_) => break,
                }
                stats.bytes.fetch_add(len, Ordering::Relaxed);
                offset += len;
                tokio::time::sleep(Duration::from_secs_f64(len as f64 / bytes_per_sec as f64))
                    .await;
            }
        }
        stats.passes.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(pause).await;
    }
}
