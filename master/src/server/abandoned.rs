//! Files whose writer is gone (a [`Worker`], "abandoned files"): a client that died while
//! writing leaves a file open for write, its lease never renewed. Once no writer has taken or
//! renewed a lease on a file for two lease periods (the lease ran out, and writes sent under it
//! may land until one more period has passed), the master finishes it:
//!
//! - the temporary file of an upload (`.kfs-upload-...`: a `kfs put` or a gateway `PUT`, which
//!   would have renamed it over its target once complete) is removed with its chunks once its
//!   writer has been quiet for `abandoned_upload_ms`: an upload is all or nothing, and this one
//!   will never complete;
//! - any other file gets the length its replicas hold: from the chunk holding its end, each
//!   chunk's length on the shortest of its live replicas (what every replica holds, since each
//!   write is applied down the whole chain before it is acknowledged), chunk after chunk while
//!   they are full. A writer that died between its writes and its flush so loses nothing its
//!   replicas all hold (as HDFS's lease recovery does).
//!
//! Invariants: nothing is done in safe mode (replicas are not all known), nor to a file whose
//! writer took or renewed a lease since the look began (it is forgotten only if still quiet);
//! the length only grows, and only to bytes every live replica holds; a replica that does not
//! answer stops the walk there (looked at again next round).

use super::MasterState;
use crate::namespace::op::Op;
use futures::future::BoxFuture;
use kfs_common::path::UPLOAD_PREFIX;
use kfs_common::worker::{CancellationToken, Worker, WorkerStatus};
use kfs_common::{FileId, FileKind, KfsResult, rpc};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CHUNKSERVER_CALL: Duration = Duration::from_secs(10);

/// What the check did since the master started (status page, metrics).
#[derive(Debug, Default)]
pub struct AbandonedStats {
    /// Files given the length their replicas hold.
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
                self.remove_upload(fid, path).await
            } else {
                self.finish(fid, path).await
            };
            match result {
                Ok(()) => self.state.leases.forget_written(fid, last),
                Err(e) => {
                    tracing::warn!(%fid, %path, error = %e, "could not finish a file whose writer is gone; tried again next round")
                }
            }
        }
    }

    /// Removes an abandoned upload's temporary file, if it is still the file `fid`.
    async fn remove_upload(&self, fid: FileId, path: &str) -> KfsResult<()> {
        let still = self
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

    /// Grows the file `fid` to what its replicas all hold (see the module docs).
    async fn finish(&self, fid: FileId, path: &str) -> KfsResult<()> {
        let chunk_size = self.state.leases.chunk_size();
        let (size, chunks) = {
            let ns = self.state.ns.read().expect("namespace lock");
            let attr = ns.stat_fid(fid)?;
            if attr.kind != FileKind::File || ns.extent_of(fid).is_some() {
                return Ok(());
            }
            (attr.size, ns.chunks(fid))
        };
        let mut end = size;
        let mut at = size - size % chunk_size;
        while let Some(&(_, chunk, version)) = chunks.iter().find(|(offset, _, _)| *offset == at) {
            let replicas = self
                .state
                .chunks
                .lock()
                .expect("chunk map lock")
                .locations(chunk);
            if replicas.is_empty() {
                break;
            }
            let mut held = u64::MAX;
            for r in &replicas {
                let client = self.state.leases.pool().get(r.addr).await.map_err(|e| {
                    kfs_common::KfsError::Unavailable(format!("chunkserver {}: {e}", r.addr))
                })?;
                let len = client
                    .length(rpc::context(CHUNKSERVER_CALL), chunk, version)
                    .await
                    .map_err(|e| {
                        kfs_common::KfsError::Unavailable(format!("chunkserver {}: {e}", r.addr))
                    })??;
                held = held.min(len);
            }
            end = end.max(at + held);
            if held < chunk_size {
                break;
            }
            at += chunk_size;
        }
        if end > size {
            self.state
                .committer
                .commit(Op::ExtendLength {
                    fid,
                    size: end,
                    time: kfs_common::proto::now(),
                })
                .await?;
            self.stats.finished.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%path, from = size, to = end, "a file whose writer is gone has the length its replicas hold");
        }
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
