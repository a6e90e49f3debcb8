//! Files whose writer is gone (a [`Worker`], "abandoned files"): a client that died while
//! writing leaves a file open for write, its lease never renewed. Once no writer has taken or
//! renewed a lease on a file for two lease periods (the lease ran out, and writes sent under it
//! may land until one more period has passed), the master finishes it:
//!
//! - the temporary file of an upload (`.kfs-upload-...`: a `kfs put` or a gateway `PUT`, which
//!   would have renamed it over its target once complete) is removed with its chunks once its
//!   writer has been quiet for `abandoned_upload_ms`: an upload is all or nothing, and this one
//!   will never complete;
//! - any other file is closed at the length its writer last recorded (its last flush, sync or
//!   close): what readers see, every byte of it acknowledged. Bytes the writer sent after that
//!   are not made part of the file: a writer keeps several writes in flight, so a later one may
//!   be on every replica while an earlier one is on none, and taking the replicas' length would
//!   publish zeros as data (or undo a truncate). They stay past the end, where no read sees them.
//!
//! Invariants: nothing is done in safe mode; a file whose writer took or renewed a lease since
//! the round began is left alone (it is checked again just before the removal), and the upload
//! removed is the file the writer wrote (same id at the same path).

use super::MasterState;
use crate::namespace::op::Op;
use futures::future::BoxFuture;
use kfs_common::path::UPLOAD_PREFIX;
use kfs_common::worker::{CancellationToken, Worker, WorkerStatus};
use kfs_common::{FileId, KfsResult};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the check did since the master started (status page, metrics).
#[derive(Debug, Default)]
pub struct AbandonedStats {
    /// Files closed at the length their writer last recorded.
    pub finished: AtomicU64,
    /// Uploads' temporary files removed.
    pub uploads_removed: AtomicU64,
}

pub(super) struct AbandonedFiles {
    pub state: Arc<MasterState>,
    /// How long an upload's writer may be quiet before its temporary file goes.
    pub upload_after: Duration,
    pub stats: Arc<AbandonedStats>,
}

/// Whether the file at `path` is an upload's temporary file.
pub(super) fn is_upload(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with(UPLOAD_PREFIX))
}

impl Worker for AbandonedFiles {
    fn name(&self) -> String {
        "abandoned files".into()
    }

    fn run(self: Box<Self>, _: CancellationToken, status: WorkerStatus) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let lease = self.state.leases.lease_duration();
            let mut ticks = tokio::time::interval(lease.max(Duration::from_millis(100)) / 2);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.round(lease).await;
                status.round(format!(
                    "{} files finished, {} abandoned uploads removed so far",
                    self.stats.finished.load(Ordering::Relaxed),
                    self.stats.uploads_removed.load(Ordering::Relaxed)
                ));
            }
        })
    }
}

impl AbandonedFiles {
    async fn round(&self, lease: Duration) {
        let now = self.state.clock.now();
        if self
            .state
            .chunks
            .lock()
            .expect("chunk map lock")
            .in_safe_mode(now)
        {
            return;
        }
        let quiet: Vec<(FileId, Instant)> = self
            .state
            .leases
            .written_files()
            .into_iter()
            .filter(|(_, last)| now.saturating_duration_since(*last) >= 2 * lease)
            .collect();
        if quiet.is_empty() {
            return;
        }
        let wanted: HashSet<FileId> = quiet.iter().map(|(fid, _)| *fid).collect();
        let paths = self
            .state
            .ns
            .read()
            .expect("namespace lock")
            .paths_of(&wanted);
        for (fid, last) in quiet {
            let Some(path) = paths.get(&fid) else {
                // Removed (or a volume's set, not a file): nothing to finish.
                self.state.leases.forget_written(fid, last);
                continue;
            };
            let result = if is_upload(path) {
                if now.saturating_duration_since(last) < self.upload_after {
                    continue;
                }
                self.remove_upload(fid, last, path).await
            } else {
                // Closed at the length its writer last recorded: nothing to change.
                self.stats.finished.fetch_add(1, Ordering::Relaxed);
                Ok(())
            };
            match result {
                Ok(()) => self.state.leases.forget_written(fid, last),
                Err(e) => {
                    tracing::warn!(%fid, %path, error = %e, "could not finish a file whose writer is gone; tried again next round")
                }
            }
        }
    }

    /// Removes an abandoned upload's temporary file, if it is still the file `fid` and its
    /// writer has stayed quiet since `last`.
    async fn remove_upload(&self, fid: FileId, last: Instant, path: &str) -> KfsResult<()> {
        let quiet = self
            .state
            .leases
            .written_files()
            .get(&fid)
            .is_some_and(|seen| *seen <= last);
        let still = quiet
            && self
                .state
                .ns
                .read()
                .expect("namespace lock")
                .stat(path)
                .is_ok_and(|a| a.fid == fid);
        if !still {
            return Ok(());
        }
        self.state
            .committer
            .commit(Op::Remove {
                path: path.to_string(),
                time: kfs_common::proto::now(),
            })
            .await?;
        self.stats.uploads_removed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%path, "removed an upload's temporary file whose writer is gone");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn uploads_are_told_by_their_name() {
        assert!(super::is_upload("/photos/.kfs-upload-00ff00ff00ff00ff"));
        assert!(!super::is_upload("/photos/.kfs-upload/cat.jpg"));
        assert!(!super::is_upload("/photos/cat.jpg"));
    }
}
