//! What a failed job on a data dir means: the user's error, and what the store now knows.
//!
//! - A checksum mismatch, a damaged file or one cut short marks the replica corrupt, and its file
//!   is renamed `.corrupt` so the mark outlives a restart.
//! - A file missing while the index still names it (nothing deleted or moved it: those change
//!   the index in the same job on the dir's thread) is a replica lost behind the store's back: it
//!   is marked corrupt too, so the master hears of it with the next heartbeat and replaces it.
//! - A full file system answers `NoSpace`, and the dir counts as full until its space is measured
//!   again.
//! - Any other I/O error takes the dir out of service (its replicas leave the index, and the
//!   master hears the new list).

use super::ChunkStore;
use super::chunk_file::ChunkError;
use super::data_dir::DataDir;
use kfs_common::{ChunkId, ChunkVersion, KfsError, KfsResult};
use std::fs::File;
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl ChunkStore {
    /// Runs `job` on the I/O thread of directory `dir`, for the replica of `chunk` at `version`,
    /// turning chunk errors into user errors and their consequences into state.
    pub(super) async fn on_dir<R: Send + 'static>(
        &self,
        dir: usize,
        chunk: ChunkId,
        version: ChunkVersion,
        job: impl FnOnce(&DataDir) -> Result<R, ChunkError> + Send + 'static,
    ) -> KfsResult<R> {
        match self.run_on(dir, job).await? {
            Ok(r) => Ok(r),
            // Boxed: the rare path's state (marks, renames) stays out of every I/O's future.
            Err(e) => Err(Box::pin(self.consequences(dir, chunk, version, e)).await),
        }
    }

    /// [`ChunkStore::on_dir`] for a durable job: it answers once the files `job` returns, and
    /// the entries it changed, are synced (`worker.rs`).
    pub(super) async fn on_dir_durable(
        &self,
        dir: usize,
        chunk: ChunkId,
        version: ChunkVersion,
        job: impl FnOnce(&DataDir) -> Result<Vec<Arc<File>>, ChunkError> + Send + 'static,
    ) -> KfsResult<()> {
        let slot = &self.slots[dir];
        let done = slot.worker.run_durable(job).await.ok_or_else(|| {
            KfsError::Internal(format!(
                "the I/O thread of {} is gone",
                slot.dir.root.display()
            ))
        })?;
        match done {
            Ok(()) => Ok(()),
            Err(e) => Err(Box::pin(self.consequences(dir, chunk, version, e)).await),
        }
    }

    /// Runs `job` on the I/O thread of directory `dir`.
    pub(super) async fn run_on<R: Send + 'static>(
        &self,
        dir: usize,
        job: impl FnOnce(&DataDir) -> R + Send + 'static,
    ) -> KfsResult<R> {
        let slot = &self.slots[dir];
        slot.worker.run(job).await.ok_or_else(|| {
            KfsError::Internal(format!(
                "the I/O thread of {} is gone",
                slot.dir.root.display()
            ))
        })
    }

    pub(super) async fn consequences(
        &self,
        dir: usize,
        chunk: ChunkId,
        version: ChunkVersion,
        error: ChunkError,
    ) -> KfsError {
        let root = self.slots[dir].dir.root.clone();
        match error {
            ChunkError::Checksum { offset } => {
                self.mark_corrupt(
                    dir,
                    chunk,
                    version,
                    &format!("checksum mismatch at byte {offset}"),
                )
                .await;
                KfsError::ChecksumMismatch { chunk, offset }
            }
            ChunkError::Damaged(reason) => self.corrupt_error(dir, chunk, version, reason).await,
            e @ ChunkError::Unfinished { .. } => {
                self.corrupt_error(dir, chunk, version, e.to_string()).await
            }
            ChunkError::Io(e) if e.kind() == ErrorKind::UnexpectedEof => {
                self.corrupt_error(dir, chunk, version, format!("the file ends early: {e}"))
                    .await
            }
            ChunkError::TooLarge { end } => KfsError::invalid_argument(format!(
                "a write to {chunk} ending at byte {end} is past the largest chunk"
            )),
            ChunkError::NoRecord(why) => {
                KfsError::invalid_argument(format!("{chunk} ({}): {why}", root.display()))
            }
            e @ (ChunkError::NotAtEnd { .. } | ChunkError::Sealed) => KfsError::AppendRefused {
                chunk,
                reason: e.to_string(),
            },
            ChunkError::Io(e)
                if matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded) =>
            {
                // Full until the next measurement says otherwise.
                self.slots[dir].available.store(0, Ordering::Relaxed);
                let quota = if e.kind() == ErrorKind::QuotaExceeded {
                    " (disk quota exceeded)"
                } else {
                    ""
                };
                KfsError::NoSpace(format!("{} is full{quota}", root.display()))
            }
            ChunkError::Io(e) if e.kind() == ErrorKind::AlreadyExists => {
                KfsError::already_exists(format!("{}: {chunk}", root.display()))
            }
            ChunkError::Io(e) if e.kind() == ErrorKind::NotFound => {
                match self.missing(dir, chunk, version).await {
                    Missing::File => {
                        self.corrupt_error(dir, chunk, version, "its file is missing".into())
                            .await
                    }
                    Missing::Dir => {
                        let gone = std::io::Error::new(
                            ErrorKind::NotFound,
                            "its chunks directory is gone (unmounted?)",
                        );
                        self.fail_dir(dir, &gone);
                        KfsError::Io(format!("data dir {} failed: {gone}", root.display()))
                    }
                    // The file changed version (or was deleted) while the call was on its way.
                    Missing::Moved => KfsError::NoSuchChunk { chunk },
                }
            }
            ChunkError::Io(e) => {
                self.fail_dir(dir, &e);
                KfsError::Io(format!("data dir {} failed: {e}", root.display()))
            }
        }
    }

    async fn corrupt_error(
        &self,
        dir: usize,
        chunk: ChunkId,
        version: ChunkVersion,
        reason: String,
    ) -> KfsError {
        self.mark_corrupt(dir, chunk, version, &reason).await;
        KfsError::CorruptReplica { chunk, reason }
    }

    /// Why the replica's file was not found, asked on the dir's thread after every job before it
    /// (see the module docs): lost (the index still names it at `version` in `dir`), moved on
    /// (the index changed), or the whole chunks directory gone.
    async fn missing(&self, dir: usize, chunk: ChunkId, version: ChunkVersion) -> Missing {
        let index = self.index.clone();
        self.run_on(dir, move |d| {
            let named = index
                .lock()
                .get(chunk)
                .is_some_and(|e| e.dir == dir && e.version == version && !e.corrupt);
            if !named {
                return Missing::Moved;
            }
            if !d.chunks_dir_exists() {
                return Missing::Dir;
            }
            match d.path(chunk, version).try_exists() {
                Ok(false) => Missing::File,
                // There after all (or unknowable): not taken for lost.
                _ => Missing::Moved,
            }
        })
        .await
        .unwrap_or(Missing::Moved)
    }

    /// Marks the replica corrupt (refused from now on) and renames its file `.corrupt`, durably,
    /// so a restart still knows.
    pub(super) async fn mark_corrupt(
        &self,
        dir: usize,
        chunk: ChunkId,
        version: ChunkVersion,
        reason: &str,
    ) {
        let newly = {
            let mut index = self.index.lock();
            let ours = index
                .get(chunk)
                .is_some_and(|e| e.dir == dir && e.version == version);
            ours && index.mark_corrupt(chunk)
        };
        if !newly {
            return;
        }
        tracing::error!(%chunk, %version, reason, "replica corrupt; it will not be served again");
        let index = self.index.clone();
        let slot = &self.slots[dir];
        let renamed = slot
            .worker
            .run_durable(move |d| {
                // Still the replica found corrupt (not deleted and made again meanwhile)?
                let still = index
                    .lock()
                    .get(chunk)
                    .is_some_and(|e| e.dir == dir && e.version == version && e.corrupt);
                if !still {
                    return Ok(Vec::new());
                }
                d.files.forget(chunk);
                match std::fs::rename(d.path(chunk, version), d.corrupt_path(chunk, version)) {
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                    Err(e) => Err(ChunkError::Io(e)),
                    Ok(()) => {
                        d.entries_changed(chunk);
                        Ok(Vec::new())
                    }
                }
            })
            .await;
        match renamed {
            None => {
                tracing::warn!(%chunk, "could not mark the corrupt replica's file: its dir's I/O thread is gone")
            }
            Some(Err(e)) => {
                tracing::warn!(%chunk, error = %e, "could not mark the corrupt replica's file; a restart will find it by its checksums or not at all")
            }
            Some(Ok(())) => {}
        }
    }

    pub(super) fn fail_dir(&self, dir: usize, error: &std::io::Error) {
        let slot = &self.slots[dir];
        if slot.failed.swap(true, Ordering::SeqCst) {
            return;
        }
        let lost = self.index.lock().drop_dir(dir);
        tracing::error!(dir = %slot.dir.root.display(), %error, lost, "data dir failed; taken out of service, its replicas are lost");
        self.changed.notify_one();
    }
}

/// Why a replica's file was not found; see [`ChunkStore::missing`].
enum Missing {
    File,
    Dir,
    Moved,
}
