//! The chunk store: every replica this server holds, over one or more data directories.
//!
//! - [`ChunkStore::open`] (`open.rs`) settles the server's identity (the same id in every data
//!   dir, or a refusal to start), scans every directory and checks every chunk file's header.
//! - Each directory's I/O runs on its own thread ([`worker::DirWorker`]); the async methods
//!   here never block the caller's thread. Syncs are answered in batches: one data sync per
//!   file and one directory sync per changed subdirectory for every sync waiting (`worker.rs`);
//!   chunk files stay open in a bounded cache (`open_files.rs`).
//! - A new chunk goes to the directory with the most free space, and only to one whose file
//!   system has at least `reserve_bytes` free (measured at the create); past `capacity_bytes`
//!   nothing new is taken. A full disk answers `NoSpace` and leaves no half-made file, and a
//!   write it fails leaves the replica as it was (`chunk_file::write`).
//! - A replica whose checksum fails, whose file is damaged or cut short, or whose file is gone,
//!   is marked corrupt (`damage.rs`): it is never served again, its file is renamed so a restart
//!   still knows, and it is reported to the master until the master has it deleted.
//! - A directory whose I/O fails otherwise is taken out of service: its chunks leave the index,
//!   and [`ChunkStore::changed`] fires so the master hears the new list.
//!
//! Invariant: the index holds exactly the chunk files of the directories in service, with their
//! versions (one version per chunk) and lengths; each entry changes in the same job on its dir's
//! thread as its file (`index.rs`).

pub mod aligned;
pub mod chunk_file;
mod damage;
pub mod data_dir;
mod index;
pub mod io;
mod open;
mod open_files;
pub mod volume_file;
mod volumes;
mod worker;

pub use open::StoreError;

use aligned::PooledBuf;
use chunk_file::ChunkError;
use data_dir::DataDir;
use index::{Entry, Kind, SharedIndex};
use kfs_common::proto::cluster::{ChunkReport, DirReport, SpaceReport};
use kfs_common::{ChunkId, ChunkVersion, KfsError, KfsResult, ServerId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use worker::DirWorker;

/// Idle data buffers kept for reuse.
const BUFFERS_KEPT: usize = 64;

/// Counts of the system calls that cost the most on small files; see [`ChunkStore::io_counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoTotals {
    /// Chunk files opened (the open-file cache missed).
    pub opens: u64,
    /// Data syncs (`fdatasync`) of chunk files.
    pub data_syncs: u64,
    /// Directory syncs (`fsync` of a chunk subdirectory).
    pub dir_syncs: u64,
}

/// Bytes read from a replica, in a pooled buffer (returned to the pool when dropped).
#[derive(Debug)]
pub struct ReadData {
    buf: PooledBuf,
    range: std::ops::Range<usize>,
}

impl std::ops::Deref for ReadData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

impl AsRef<[u8]> for ReadData {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

struct Slot {
    dir: Arc<DataDir>,
    worker: DirWorker,
    failed: AtomicBool,
    /// Size and free bytes of the dir's file system, as of the last measurement (0 free once a
    /// write found it full).
    capacity: AtomicU64,
    available: AtomicU64,
}

/// Every replica this server holds; see the module docs.
pub struct ChunkStore {
    slots: Vec<Slot>,
    index: SharedIndex,
    server: ServerId,
    changed: tokio::sync::Notify,
    /// Bytes offered for chunks at most (0: no cap).
    capacity_limit: AtomicU64,
    /// Free bytes kept on each data dir's file system: no new replica below it.
    reserve: AtomicU64,
    /// Replicas being (or lately) copied in from another server: when the latest copy began,
    /// and whether it is still running.
    copies_in: Mutex<HashMap<ChunkId, (Instant, bool)>>,
}

/// A copy of a chunk into this server in progress; see [`ChunkStore::begin_copy_in`].
pub struct CopyIn<'a> {
    store: &'a ChunkStore,
    chunk: ChunkId,
}

impl Drop for CopyIn<'_> {
    fn drop(&mut self) {
        if let Some(e) = self
            .store
            .copies_in
            .lock()
            .expect("copies lock")
            .get_mut(&self.chunk)
        {
            e.1 = false;
        }
    }
}

/// Free space above the reserve under which a create measures its dir again rather than trust
/// the last measurement (a heartbeat's).
const REMEASURE_MARGIN: u64 = 1 << 30;

/// What a create found on the dir it tried.
enum Made {
    Created,
    /// Below the reserve: this many bytes free.
    Full(u64),
    /// Another create of the chunk won.
    Exists,
}

impl ChunkStore {
    /// Measures the free space of every data dir in service (`statvfs`; blocking, run it off the
    /// async threads). [`ChunkStore::space`] and placement use the last measurement.
    pub fn refresh_space(&self) {
        for (_, slot) in self.live_slots() {
            match slot.dir.space() {
                Ok((capacity, available)) => {
                    slot.capacity.store(capacity, Ordering::Relaxed);
                    slot.available.store(available, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(dir = %slot.dir.root.display(), error = %e, "cannot measure free space")
                }
            }
        }
    }

    pub fn server_id(&self) -> ServerId {
        self.server
    }

    /// Fires when a data dir is taken out of service (the chunk list changed behind the master's
    /// back).
    pub fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }

    /// Every replica that is not corrupt, and the corrupt ones.
    pub fn report(&self) -> (Vec<ChunkReport>, Vec<ChunkId>) {
        let index = self.index.lock();
        let mut good = Vec::with_capacity(index.len());
        let mut corrupt = Vec::new();
        for (chunk, e) in index.iter() {
            if e.corrupt {
                corrupt.push(chunk);
            } else {
                good.push(ChunkReport {
                    chunk,
                    version: e.version,
                    length: e.length,
                });
            }
        }
        good.sort_by_key(|r| r.chunk);
        corrupt.sort();
        (good, corrupt)
    }

    pub fn chunk_count(&self) -> u64 {
        self.index.lock().len() as u64
    }

    pub fn corrupt(&self) -> Vec<ChunkId> {
        self.report().1
    }

    /// Version and length of a replica, if held.
    pub fn replica(&self, chunk: ChunkId) -> Option<(ChunkVersion, u64)> {
        self.index.lock().get(chunk).map(|e| (e.version, e.length))
    }

    pub fn failed_dirs(&self) -> Vec<PathBuf> {
        self.slots
            .iter()
            .filter(|s| s.failed.load(Ordering::Relaxed))
            .map(|s| s.dir.root.clone())
            .collect()
    }

    /// Every data dir, in service or failed, with its space as last measured and its replicas.
    pub fn dir_reports(&self) -> Vec<DirReport> {
        let mut replicas = vec![0u64; self.slots.len()];
        for (_, e) in self.index.lock().iter() {
            if let Some(n) = replicas.get_mut(e.dir) {
                *n += 1;
            }
        }
        self.slots
            .iter()
            .zip(replicas)
            .map(|(slot, replicas)| {
                let failed = slot.failed.load(Ordering::Relaxed);
                DirReport {
                    path: slot.dir.root.display().to_string(),
                    failed,
                    capacity: if failed {
                        0
                    } else {
                        slot.capacity.load(Ordering::Relaxed)
                    },
                    available: if failed {
                        0
                    } else {
                        slot.available.load(Ordering::Relaxed)
                    },
                    replicas,
                }
            })
            .collect()
    }

    /// Space of the directories in service, as of the last [`ChunkStore::refresh_space`]:
    /// `available` is what new replicas may still take (free space above each dir's reserve,
    /// within `capacity_bytes`).
    pub fn space(&self) -> SpaceReport {
        let reserve = self.reserve.load(Ordering::Relaxed);
        let mut report = SpaceReport::default();
        for (_, slot) in self.live_slots() {
            report.capacity += slot.capacity.load(Ordering::Relaxed);
            report.available += slot
                .available
                .load(Ordering::Relaxed)
                .saturating_sub(reserve);
        }
        report.used = self.index.lock().used();
        let limit = self.capacity_limit.load(Ordering::Relaxed);
        if limit > 0 {
            report.capacity = report.capacity.min(limit);
            let left = limit.saturating_sub(report.used);
            // Too little for even an empty replica is none.
            let left = if left < chunk_file::HEADER_LEN {
                0
            } else {
                left
            };
            report.available = report.available.min(left);
        }
        report
    }

    /// Offers at most `capacity` bytes for chunks (0: the whole file systems), and keeps
    /// `reserve` bytes free on each data dir; see `ChunkserverConfig::capacity_bytes` and
    /// `reserve_bytes`.
    pub fn set_space_limits(&self, capacity: u64, reserve: u64) {
        self.capacity_limit.store(capacity, Ordering::Relaxed);
        self.reserve.store(reserve, Ordering::Relaxed);
    }

    fn live_slots(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.failed.load(Ordering::Relaxed))
    }

    /// The entry of a replica that may be used at `version`.
    fn usable(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<Entry> {
        let e = self
            .index
            .lock()
            .get(chunk)
            .ok_or(KfsError::NoSuchChunk { chunk })?;
        if e.corrupt {
            return Err(KfsError::CorruptReplica {
                chunk,
                reason: "it was found corrupt earlier; the replica awaits replacement".into(),
            });
        }
        if e.version != version {
            return Err(KfsError::StaleVersion {
                chunk,
                expected: version,
                found: e.version,
            });
        }
        Ok(e)
    }

    /// Refuses `more` bytes past `capacity_bytes`.
    fn check_capacity(&self, more: u64) -> KfsResult<()> {
        let limit = self.capacity_limit.load(Ordering::Relaxed);
        if limit == 0 {
            // (No cap: no lock of the index on the write path.)
            return Ok(());
        }
        let used = self.index.lock().used();
        if used + more > limit {
            return Err(KfsError::NoSpace(format!(
                "this chunkserver offers {limit} bytes (capacity_bytes) and holds {used}"
            )));
        }
        Ok(())
    }

    /// Creates an empty replica of `chunk` at `version` on the directory with most free space
    /// that has room above its reserve (measured afresh when the last measurement was within
    /// [`REMEASURE_MARGIN`] of it).
    pub async fn create(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<()> {
        self.create_replica(chunk, version, Kind::Chunk).await
    }

    /// [`ChunkStore::create`] for an empty volume (`volume_file.rs`), appendable by this process.
    pub async fn create_volume(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<()> {
        self.create_replica(chunk, version, Kind::Volume { appendable: true })
            .await
    }

    async fn create_replica(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        kind: Kind,
    ) -> KfsResult<()> {
        self.check_capacity(kind.header_len())?;
        if self.index.lock().contains(chunk) {
            return Err(KfsError::already_exists(chunk.to_string()));
        }
        let mut dirs: Vec<usize> = self.live_slots().map(|(i, _)| i).collect();
        if dirs.is_empty() {
            return Err(KfsError::Unavailable("every data dir has failed".into()));
        }
        dirs.sort_by_key(|&i| std::cmp::Reverse(self.slots[i].available.load(Ordering::Relaxed)));
        let reserve = self.reserve.load(Ordering::Relaxed);
        let mut full = Vec::new();
        for dir in dirs {
            let index = self.index.clone();
            // Far above the reserve as last measured (each heartbeat), the measurement stands;
            // close to it, the create measures again.
            let measure = self.slots[dir].available.load(Ordering::Relaxed)
                < reserve.saturating_add(REMEASURE_MARGIN);
            let made = match self
                .on_dir(dir, chunk, version, move |d| {
                    if measure {
                        let (_, available) = d.space()?;
                        if available < reserve {
                            return Ok(Made::Full(available));
                        }
                    }
                    let path = d.path(chunk, version);
                    let file = match kind {
                        Kind::Chunk => chunk_file::create(d.io.as_ref(), &path, chunk)?,
                        Kind::Volume { .. } => volume_file::create(d.io.as_ref(), &path, chunk)?,
                    };
                    d.entries_changed(chunk);
                    let mut index = index.lock();
                    if index.contains(chunk) {
                        drop(index);
                        let _ = std::fs::remove_file(&path);
                        return Ok(Made::Exists);
                    }
                    d.files.insert(chunk, version, file);
                    let entry = Entry {
                        dir,
                        version,
                        length: 0,
                        corrupt: false,
                        kind,
                    };
                    index.insert(chunk, entry);
                    Ok(Made::Created)
                })
                .await
            {
                // Full after all (the header did not fit, or no inode was left): the next dir.
                Err(KfsError::NoSpace(why)) => {
                    full.push(why);
                    continue;
                }
                other => other?,
            };
            match made {
                Made::Created => return Ok(()),
                Made::Exists => return Err(KfsError::already_exists(chunk.to_string())),
                Made::Full(available) => {
                    self.slots[dir]
                        .available
                        .store(available, Ordering::Relaxed);
                    full.push(format!(
                        "{} has {available} bytes free",
                        self.slots[dir].dir.root.display()
                    ));
                }
            }
        }
        Err(KfsError::NoSpace(format!(
            "{}; each data dir keeps {reserve} bytes free (reserve_bytes)",
            full.join(", ")
        )))
    }

    /// Writes `data` at `offset` of the replica; returns its new length.
    pub async fn write(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        data: impl AsRef<[u8]> + Send + 'static,
    ) -> KfsResult<u64> {
        let entry = self.usable(chunk, version)?;
        Self::expect_chunk(chunk, entry)?;
        let end = offset + data.as_ref().len() as u64;
        self.check_capacity(end.saturating_sub(entry.length))?;
        let index = self.index.clone();
        let dir = entry.dir;
        self.on_dir(dir, chunk, version, move |d| {
            let file = d.file(chunk, version)?;
            let length = chunk_file::write(d.io.as_ref(), &d.pool, &file, offset, data.as_ref())?;
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

    /// Reads up to `len` bytes from `offset`, every block verified.
    pub async fn read(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        len: u64,
    ) -> KfsResult<ReadData> {
        let entry = self.usable(chunk, version)?;
        Self::expect_chunk(chunk, entry)?;
        self.on_dir(entry.dir, chunk, version, move |d| {
            let file = d.file(chunk, version)?;
            let (buf, range) =
                chunk_file::read(d.io.as_ref(), &d.pool, &file, entry.length, offset, len)?;
            Ok(ReadData { buf, range })
        })
        .await
    }

    /// The replica's length and the crc32c of all its data, from its checksum table (no data
    /// read; see [`chunk_file::checksum`]). Chunks only: a volume's records carry their own.
    pub async fn checksum(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<(u64, u32)> {
        let entry = self.usable(chunk, version)?;
        Self::expect_chunk(chunk, entry)?;
        self.on_dir(entry.dir, chunk, version, move |d| {
            let file = d.file(chunk, version)?;
            chunk_file::checksum(d.io.as_ref(), &file, entry.length)
        })
        .await
    }

    /// Checks that the replica's file is there, whole, with a sound header (the scrubber's
    /// first look at each replica: a missing or cut file is found even when it holds no data).
    /// It opens the file by name, not from the cache, to see what a restart would.
    pub async fn verify(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<()> {
        let entry = self.usable(chunk, version)?;
        if let Kind::Volume { .. } = entry.kind {
            return self.verify_volume(chunk, version, entry).await;
        }
        self.on_dir(entry.dir, chunk, version, move |d| {
            let length = chunk_file::check_path(d.io.as_ref(), &d.path(chunk, version), chunk)?;
            if length < entry.length {
                return Err(ChunkError::Damaged(format!(
                    "the file holds {length} bytes of data, the replica {}",
                    entry.length
                )));
            }
            Ok(())
        })
        .await
    }

    /// Changes the replica's version from `from` to `to`, atomically and durably.
    pub async fn set_version(
        &self,
        chunk: ChunkId,
        from: ChunkVersion,
        to: ChunkVersion,
    ) -> KfsResult<()> {
        let dir = self.usable(chunk, from)?.dir;
        let index = self.index.clone();
        self.on_dir_durable(dir, chunk, from, move |d| {
            std::fs::rename(d.path(chunk, from), d.path(chunk, to))?;
            d.files.forget(chunk);
            d.entries_changed(chunk);
            index.lock().set_version(chunk, to);
            Ok(Vec::new())
        })
        .await
    }

    /// Makes the replica's data and its file's name durable (in a batch with the syncs waiting
    /// on the same data dir).
    pub async fn sync(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<()> {
        let dir = self.usable(chunk, version)?.dir;
        self.on_dir_durable(dir, chunk, version, move |d| {
            Ok(vec![d.file(chunk, version)?])
        })
        .await
    }

    /// The system calls that cost the most on small files, summed over the data dirs.
    pub fn io_counts(&self) -> IoTotals {
        let mut totals = IoTotals::default();
        for slot in &self.slots {
            totals.opens += slot.dir.files.opens();
            totals.data_syncs += slot.dir.counts.data_syncs.load(Ordering::Relaxed);
            totals.dir_syncs += slot.dir.counts.dir_syncs.load(Ordering::Relaxed);
        }
        totals
    }

    /// Starts copying a replica of `chunk` in: one copy of a chunk at a time (a second is
    /// refused while the first runs, so each owns its staging replica).
    pub fn begin_copy_in(&self, chunk: ChunkId) -> KfsResult<CopyIn<'_>> {
        let mut copies = self.copies_in.lock().expect("copies lock");
        if copies.get(&chunk).is_some_and(|e| e.1) {
            return Err(KfsError::Unavailable(format!(
                "a copy of {chunk} is already being made on this server"
            )));
        }
        copies.insert(chunk, (Instant::now(), true));
        Ok(CopyIn { store: self, chunk })
    }

    /// Removes the replica as the master asked in a reply to a request sent at `asked`, unless a
    /// copy of the chunk into this server began since: the master ordered that copy after the
    /// deletion, and the deletion was meant for the replica the copy replaced. Returns whether
    /// it deleted.
    pub async fn delete_unless_copied_since(
        &self,
        chunk: ChunkId,
        asked: Instant,
    ) -> KfsResult<bool> {
        let copied_since = self
            .copies_in
            .lock()
            .expect("copies lock")
            .get(&chunk)
            .is_some_and(|e| e.0 >= asked);
        if copied_since {
            return Ok(false);
        }
        self.delete(chunk).await.map(|()| true)
    }

    /// Removes the replica, whatever its version or state; removing a missing replica succeeds.
    pub async fn delete(&self, chunk: ChunkId) -> KfsResult<()> {
        let Some(entry) = self.index.lock().get(chunk) else {
            return Ok(());
        };
        let (index, dir) = (self.index.clone(), entry.dir);
        self.on_dir(dir, chunk, entry.version, move |d| {
            // The replica as it is now (its version may have moved since the lookup).
            let Some(now) = index.lock().get(chunk).filter(|e| e.dir == dir) else {
                return Ok(());
            };
            d.files.forget(chunk);
            for path in [
                d.path(chunk, now.version),
                d.corrupt_path(chunk, now.version),
            ] {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(ChunkError::Io(e));
                    }
                    _ => {}
                }
            }
            index.lock().remove(chunk);
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod volume_tests;
