//! The chunk store's volumes: replicas that hold many small files' records (`volume_file.rs`).
//!
//! - An append names the offset it expects the volume to end at (the primary's running end, so
//!   every replica writes each record at the same offset) and is answered once the record is
//!   durable: appends waiting on a data dir share one data sync of the volume (group commit,
//!   `worker.rs`).
//! - A volume takes appends only in the process that created it (`index::Kind`): after a
//!   restart, or once copied in, it is sealed, so a torn tail a crash left is always its last
//!   bytes, never followed by records.
//! - A read of a record is one positional read, checked against the file id, length and
//!   checksum the record carries; a mismatch marks the replica corrupt like any damage.

use super::chunk_file::ChunkError;
use super::index::{Entry, Kind};
use super::{ChunkStore, ReadData, volume_file};
use kfs_common::{ChunkId, ChunkVersion, FileId, KfsError, KfsResult};
use std::future::Future;

/// The answer of a queued durable job.
type Answer = tokio::sync::oneshot::Receiver<Result<(), ChunkError>>;

impl ChunkStore {
    /// Whether the replica of `chunk` is a volume.
    pub fn is_volume(&self, chunk: ChunkId) -> bool {
        self.index
            .lock()
            .get(chunk)
            .is_some_and(|e| matches!(e.kind, Kind::Volume { .. }))
    }

    /// The entry of a volume replica that may be used at `version`.
    fn usable_volume(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<Entry> {
        let entry = self.usable(chunk, version)?;
        match entry.kind {
            Kind::Volume { .. } => Ok(entry),
            Kind::Chunk => Err(KfsError::invalid_argument(format!(
                "{chunk} is a chunk, not a volume: it has no records"
            ))),
        }
    }

    /// Refuses chunk operations on a volume.
    pub(super) fn expect_chunk(chunk: ChunkId, entry: Entry) -> KfsResult<()> {
        match entry.kind {
            Kind::Chunk => Ok(()),
            Kind::Volume { .. } => Err(KfsError::invalid_argument(format!(
                "{chunk} is a volume of small files: it takes appends and record reads only"
            ))),
        }
    }

    /// Appends file `fid`'s `data` as one record at offset `at`, which must be the volume's end;
    /// answers once the record is durable, with the volume's new length.
    pub async fn append(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        at: u64,
        fid: FileId,
        data: impl AsRef<[u8]> + Send + 'static,
    ) -> KfsResult<u64> {
        self.start_append(chunk, version, at, fid, data).await
    }

    /// [`ChunkStore::append`] in two steps: the append is queued on its data dir before this
    /// returns (so appends started in some order are applied in that order), and the future
    /// answers once it is durable.
    pub fn start_append(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        at: u64,
        fid: FileId,
        data: impl AsRef<[u8]> + Send + 'static,
    ) -> impl Future<Output = KfsResult<u64>> + Send + '_ {
        let queued = self.queue_append(chunk, version, at, fid, data);
        async move {
            let (dir, end, answer) = queued?;
            let done = answer.await.map_err(|_| {
                KfsError::Internal(format!(
                    "the I/O thread of {} is gone",
                    self.slots[dir].dir.root.display()
                ))
            })?;
            match done {
                Ok(()) => Ok(end),
                Err(e) => Err(Box::pin(self.consequences(dir, chunk, version, e)).await),
            }
        }
    }

    fn queue_append(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        at: u64,
        fid: FileId,
        data: impl AsRef<[u8]> + Send + 'static,
    ) -> KfsResult<(usize, u64, Answer)> {
        let entry = self.usable(chunk, version)?;
        match entry.kind {
            Kind::Volume { appendable: true } => {}
            Kind::Volume { appendable: false } => {
                return Err(KfsError::AppendRefused {
                    chunk,
                    reason: ChunkError::Sealed.to_string(),
                });
            }
            Kind::Chunk => {
                return Err(KfsError::invalid_argument(format!(
                    "{chunk} is a chunk, not a volume: it takes no appends"
                )));
            }
        }
        let end = at + volume_file::record_len(data.as_ref().len() as u64);
        self.check_capacity(end.saturating_sub(entry.length))?;
        let index = self.index.clone();
        let dir = entry.dir;
        let slot = &self.slots[dir];
        let answer = slot
            .worker
            .send_durable(move |d| {
                let file = d.file(chunk, version)?;
                let length =
                    volume_file::append(d.io.as_ref(), &d.pool, &file, at, fid, data.as_ref())?;
                let mut index = index.lock();
                if index
                    .get(chunk)
                    .is_some_and(|e| e.dir == dir && e.version == version)
                {
                    index.grow(chunk, length);
                }
                Ok(vec![file])
            })
            .ok_or_else(|| {
                KfsError::Internal(format!(
                    "the I/O thread of {} is gone",
                    slot.dir.root.display()
                ))
            })?;
        Ok((dir, end, answer))
    }

    /// [`ChunkStore::create_volume`] for a copy coming in: sealed from the start.
    pub async fn create_copied_volume(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
    ) -> KfsResult<()> {
        self.create_replica(chunk, version, Kind::Volume { appendable: false })
            .await
    }

    /// Up to `len` bytes of a volume's records as they lie, from `at` (a copy's source).
    pub async fn read_raw(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        at: u64,
        len: u64,
    ) -> KfsResult<ReadData> {
        let entry = self.usable_volume(chunk, version)?;
        self.on_dir(entry.dir, chunk, version, move |d| {
            let file = d.file(chunk, version)?;
            let (buf, range) = volume_file::read_raw(d.io.as_ref(), &d.pool, &file, at, len)?;
            Ok(ReadData { buf, range })
        })
        .await
    }

    /// Writes bytes copied from another replica at `at`, the end of a sealed volume being
    /// copied in; returns its new length.
    pub async fn write_raw(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        at: u64,
        data: impl AsRef<[u8]> + Send + 'static,
    ) -> KfsResult<u64> {
        let entry = self.usable(chunk, version)?;
        if entry.kind != (Kind::Volume { appendable: false }) {
            return Err(KfsError::invalid_argument(format!(
                "{chunk} is not a volume being copied in"
            )));
        }
        let end = at + data.as_ref().len() as u64;
        self.check_capacity(end.saturating_sub(entry.length))?;
        let index = self.index.clone();
        let dir = entry.dir;
        self.on_dir(dir, chunk, version, move |d| {
            let file = d.file(chunk, version)?;
            let length = volume_file::append_raw(d.io.as_ref(), &file, at, data.as_ref())?;
            let mut index = index.lock();
            if index
                .get(chunk)
                .is_some_and(|e| e.dir == dir && e.version == version)
            {
                index.grow(chunk, length);
            }
            Ok(length)
        })
        .await
    }

    /// Reads the record of file `fid` at `at` in the volume, `len` bytes of data, with one
    /// positional read; any mismatch with what the record says of itself is damage.
    pub async fn read_record(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        at: u64,
        fid: FileId,
        len: u64,
    ) -> KfsResult<ReadData> {
        let entry = self.usable_volume(chunk, version)?;
        self.on_dir(entry.dir, chunk, version, move |d| {
            let file = d.file(chunk, version)?;
            let (buf, range) = volume_file::read(d.io.as_ref(), &d.pool, &file, at, fid, len)?;
            Ok(ReadData { buf, range })
        })
        .await
    }

    /// Checks every record of a volume from the start (the scrubber's pass): damage is found,
    /// a torn tail is not damage. Opens the file by name, to see what a restart would.
    pub(super) async fn verify_volume(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        entry: Entry,
    ) -> KfsResult<()> {
        self.on_dir(entry.dir, chunk, version, move |d| {
            let file = std::fs::File::open(d.path(chunk, version))?;
            let length = volume_file::check(d.io.as_ref(), &file, chunk)?;
            if length < entry.length {
                return Err(ChunkError::Damaged(format!(
                    "the file holds {length} bytes of records, the replica {}",
                    entry.length
                )));
            }
            volume_file::records(d.io.as_ref(), &d.pool, &file).map(drop)
        })
        .await
    }
}
