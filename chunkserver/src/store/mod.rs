//! The chunk store: every replica this server holds, over one or more data directories.
//!
//! - [`ChunkStore::open`] settles the server's identity (the same id in every data dir, or a
//!   refusal to start), scans every directory and checks every chunk file's header.
//! - Each directory's I/O runs on its own thread ([`data_dir::DirWorker`]); the async methods
//!   here never block the caller's thread.
//! - A new chunk goes to the directory with the most free space.
//! - A replica whose checksum fails, or whose file is damaged, is marked corrupt: it is never
//!   served again, and is reported to the master until the master has it deleted.
//! - A directory whose I/O fails (other than running out of space) is taken out of service: its
//!   chunks leave the index, and [`ChunkStore::changed`] fires so the master hears the new list.
//!
//! Invariant: the index holds exactly the chunk files of the directories in service, with their
//! versions (one version per chunk) and lengths.

pub mod aligned;
pub mod chunk_file;
pub mod data_dir;
pub mod io;

use aligned::{BufPool, PooledBuf};
use chunk_file::ChunkError;
use data_dir::{DataDir, DirWorker};
use io::FileIo;
use kfs_common::proto::cluster::{ChunkReport, SpaceReport};
use kfs_common::{ChunkId, ChunkVersion, KfsError, KfsResult, ServerId};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data dirs belong to different servers: {first} holds {first_id}, {other} holds {other_id}"
    )]
    IdentityMismatch {
        first: PathBuf,
        first_id: ServerId,
        other: PathBuf,
        other_id: ServerId,
    },
    #[error("no data dir is usable")]
    NoUsableDir,
    #[error("no data dir given")]
    NoDirs,
}

/// Idle data buffers kept for reuse.
const BUFFERS_KEPT: usize = 64;

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

#[derive(Clone, Copy, Debug)]
struct Entry {
    dir: usize,
    version: ChunkVersion,
    length: u64,
    corrupt: bool,
}

struct Slot {
    dir: Arc<DataDir>,
    worker: DirWorker,
    failed: AtomicBool,
    /// Size and free bytes of the dir's file system, as of the last [`ChunkStore::refresh_space`].
    capacity: AtomicU64,
    available: AtomicU64,
}

/// Every replica this server holds; see the module docs.
pub struct ChunkStore {
    slots: Vec<Slot>,
    index: Mutex<HashMap<ChunkId, Entry>>,
    server: ServerId,
    changed: tokio::sync::Notify,
    /// Bytes offered for chunks at most (0: no cap).
    capacity_limit: AtomicU64,
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

impl ChunkStore {
    /// Opens the data directories (creating them if needed). Blocking.
    pub fn open(roots: &[PathBuf], io: Arc<dyn FileIo>) -> Result<ChunkStore, StoreError> {
        if roots.is_empty() {
            return Err(StoreError::NoDirs);
        }
        let pool = BufPool::new(BUFFERS_KEPT);
        let mut dirs = Vec::new();
        for root in roots {
            let dir =
                DataDir::open(root, io.clone(), pool.clone()).map_err(|source| StoreError::Io {
                    path: root.clone(),
                    source,
                })?;
            dirs.push(Arc::new(dir));
        }
        let server = settle_identity(&dirs)?;

        let mut index: HashMap<ChunkId, Entry> = HashMap::new();
        let mut failed = vec![false; dirs.len()];
        for (i, dir) in dirs.iter().enumerate() {
            let found = match dir.scan() {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(dir = %dir.root.display(), error = %e, "data dir unreadable; taken out of service");
                    failed[i] = true;
                    continue;
                }
            };
            for f in found {
                if let Err(e) = &f.length {
                    tracing::warn!(chunk = %f.chunk, dir = %dir.root.display(), error = %e, "replica unusable; reporting it corrupt");
                }
                let entry = Entry {
                    dir: i,
                    version: f.version,
                    length: *f.length.as_ref().unwrap_or(&0),
                    corrupt: f.length.is_err(),
                };
                // Two copies of one chunk (a crash between writing a new one and removing the
                // old): keep the higher version.
                match index.get(&f.chunk).copied() {
                    Some(other) if other.version >= f.version => {
                        remove_quietly(&dir.path(f.chunk, f.version));
                    }
                    Some(other) => {
                        remove_quietly(&dirs[other.dir].path(f.chunk, other.version));
                        index.insert(f.chunk, entry);
                    }
                    None => {
                        index.insert(f.chunk, entry);
                    }
                }
            }
        }
        let mut slots = Vec::new();
        for (i, dir) in dirs.into_iter().enumerate() {
            let worker = DirWorker::start(dir.clone(), i).map_err(|source| StoreError::Io {
                path: dir.root.clone(),
                source,
            })?;
            slots.push(Slot {
                dir,
                worker,
                failed: AtomicBool::new(failed[i]),
                capacity: AtomicU64::new(0),
                available: AtomicU64::new(0),
            });
        }
        if slots.iter().all(|s| s.failed.load(Ordering::Relaxed)) {
            return Err(StoreError::NoUsableDir);
        }
        let store = ChunkStore {
            slots,
            index: Mutex::new(index),
            server,
            changed: tokio::sync::Notify::new(),
            capacity_limit: AtomicU64::new(0),
            copies_in: Mutex::new(HashMap::new()),
        };
        store.refresh_space();
        Ok(store)
    }

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
        let index = self.index.lock().expect("index lock");
        let mut good = Vec::with_capacity(index.len());
        let mut corrupt = Vec::new();
        for (chunk, e) in index.iter() {
            if e.corrupt {
                corrupt.push(*chunk);
            } else {
                good.push(ChunkReport {
                    chunk: *chunk,
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
        self.index.lock().expect("index lock").len() as u64
    }

    pub fn corrupt(&self) -> Vec<ChunkId> {
        self.report().1
    }

    /// Version and length of a replica, if held.
    pub fn replica(&self, chunk: ChunkId) -> Option<(ChunkVersion, u64)> {
        let index = self.index.lock().expect("index lock");
        index.get(&chunk).map(|e| (e.version, e.length))
    }

    pub fn failed_dirs(&self) -> Vec<PathBuf> {
        self.slots
            .iter()
            .filter(|s| s.failed.load(Ordering::Relaxed))
            .map(|s| s.dir.root.clone())
            .collect()
    }

    /// Space of the directories in service, as of the last [`ChunkStore::refresh_space`].
    pub fn space(&self) -> SpaceReport {
        let mut report = SpaceReport::default();
        for (_, slot) in self.live_slots() {
            report.capacity += slot.capacity.load(Ordering::Relaxed);
            report.available += slot.available.load(Ordering::Relaxed);
        }
        report.used = self.used();
        let limit = self.capacity_limit.load(Ordering::Relaxed);
        if limit > 0 {
            report.capacity = report.capacity.min(limit);
            report.available = report.available.min(limit.saturating_sub(report.used));
        }
        report
    }

    /// Bytes held by replica files.
    fn used(&self) -> u64 {
        let index = self.index.lock().expect("index lock");
        index
            .values()
            .map(|e| e.length + chunk_file::HEADER_LEN)
            .sum()
    }

    /// Offers at most `bytes` for chunks (0: the whole file systems); see
    /// `ChunkserverConfig::capacity_bytes`.
    pub fn set_capacity_limit(&self, bytes: u64) {
        self.capacity_limit.store(bytes, Ordering::Relaxed);
    }

    fn live_slots(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.failed.load(Ordering::Relaxed))
    }

    /// The directory and version of a replica that may be used.
    fn usable(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<usize> {
        let index = self.index.lock().expect("index lock");
        let e = index.get(&chunk).ok_or(KfsError::NoSuchChunk { chunk })?;
        if e.corrupt {
            return Err(KfsError::CorruptReplica {
                chunk,
                reason: "a checksum failed earlier; the replica awaits replacement".into(),
            });
        }
        if e.version != version {
            return Err(KfsError::StaleVersion {
                chunk,
                expected: version,
                found: e.version,
            });
        }
        Ok(e.dir)
    }

    /// Runs `job` on the I/O thread of directory `dir`, turning chunk errors into user errors and
    /// their consequences (corrupt replica, failed directory) into state.
    async fn on_dir<R: Send + 'static>(
        &self,
        dir: usize,
        chunk: ChunkId,
        job: impl FnOnce(&DataDir) -> Result<R, ChunkError> + Send + 'static,
    ) -> KfsResult<R> {
        let slot = &self.slots[dir];
        let result = slot.worker.run(job).await.ok_or_else(|| {
            KfsError::Internal(format!(
                "the I/O thread of {} is gone",
                slot.dir.root.display()
            ))
        })?;
        result.map_err(|e| self.consequences(dir, chunk, e))
    }

    fn consequences(&self, dir: usize, chunk: ChunkId, error: ChunkError) -> KfsError {
        let root = &self.slots[dir].dir.root;
        match error {
            ChunkError::Checksum { offset } => {
                self.mark_corrupt(chunk, &format!("checksum mismatch at byte {offset}"));
                KfsError::ChecksumMismatch { chunk, offset }
            }
            ChunkError::Damaged(reason) => {
                self.mark_corrupt(chunk, &reason);
                KfsError::CorruptReplica { chunk, reason }
            }
            ChunkError::TooLarge { end } => KfsError::invalid_argument(format!(
                "a write to {chunk} ending at byte {end} is past the largest chunk"
            )),
            ChunkError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                KfsError::NoSpace(format!("{}: {e}", root.display()))
            }
            ChunkError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The file changed version (or was deleted) while the call was on its way.
                KfsError::NoSuchChunk { chunk }
            }
            ChunkError::Io(e) => {
                self.fail_dir(dir, &e);
                KfsError::Io(format!("data dir {} failed: {e}", root.display()))
            }
        }
    }

    fn mark_corrupt(&self, chunk: ChunkId, reason: &str) {
        if let Some(e) = self.index.lock().expect("index lock").get_mut(&chunk)
            && !e.corrupt
        {
            tracing::error!(%chunk, reason, "replica corrupt; it will not be served again");
            e.corrupt = true;
        }
    }

    fn fail_dir(&self, dir: usize, error: &std::io::Error) {
        let slot = &self.slots[dir];
        if slot.failed.swap(true, Ordering::SeqCst) {
            return;
        }
        let lost = {
            let mut index = self.index.lock().expect("index lock");
            let before = index.len();
            index.retain(|_, e| e.dir != dir);
            before - index.len()
        };
        tracing::error!(dir = %slot.dir.root.display(), %error, lost, "data dir failed; taken out of service, its replicas are lost");
        self.changed.notify_one();
    }

    /// Creates an empty replica of `chunk` at `version` on the directory with most free space.
    pub async fn create(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<()> {
        let limit = self.capacity_limit.load(Ordering::Relaxed);
        if limit > 0 && self.used() >= limit {
            return Err(KfsError::NoSpace(format!(
                "this chunkserver offers {limit} bytes (capacity_bytes) and holds that much"
            )));
        }
        let dir = {
            let index = self.index.lock().expect("index lock");
            if index.contains_key(&chunk) {
                return Err(KfsError::already_exists(chunk.to_string()));
            }
            self.live_slots()
                .max_by_key(|(i, s)| (s.available.load(Ordering::Relaxed), std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
                .ok_or_else(|| KfsError::Unavailable("every data dir has failed".into()))?
        };
        self.on_dir(dir, chunk, move |d| {
            chunk_file::create(d.io.as_ref(), &d.path(chunk, version), chunk)
        })
        .await?;
        self.index.lock().expect("index lock").insert(
            chunk,
            Entry {
                dir,
                version,
                length: 0,
                corrupt: false,
            },
        );
        Ok(())
    }

    /// Writes `data` at `offset` of the replica; returns its new length.
    pub async fn write(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        data: impl AsRef<[u8]> + Send + 'static,
    ) -> KfsResult<u64> {
        let dir = self.usable(chunk, version)?;
        let length = self
            .on_dir(dir, chunk, move |d| {
                let path = d.path(chunk, version);
                chunk_file::write(d.io.as_ref(), &d.pool, &path, offset, data.as_ref())
            })
            .await?;
        if let Some(e) = self.index.lock().expect("index lock").get_mut(&chunk) {
            e.length = e.length.max(length);
        }
        Ok(length)
    }

    /// Reads up to `len` bytes from `offset`, every block verified.
    pub async fn read(
        &self,
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        len: u64,
    ) -> KfsResult<ReadData> {
        let dir = self.usable(chunk, version)?;
        self.on_dir(dir, chunk, move |d| {
            let path = d.path(chunk, version);
            let (buf, range) = chunk_file::read(d.io.as_ref(), &d.pool, &path, offset, len)?;
            Ok(ReadData { buf, range })
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
        let dir = self.usable(chunk, from)?;
        self.on_dir(dir, chunk, move |d| {
            std::fs::rename(d.path(chunk, from), d.path(chunk, to))?;
            d.sync_entries()?;
            Ok(())
        })
        .await?;
        if let Some(e) = self.index.lock().expect("index lock").get_mut(&chunk) {
            e.version = to;
        }
        Ok(())
    }

    /// Makes the replica's data durable.
    pub async fn sync(&self, chunk: ChunkId, version: ChunkVersion) -> KfsResult<()> {
        let dir = self.usable(chunk, version)?;
        self.on_dir(dir, chunk, move |d| {
            chunk_file::sync(d.io.as_ref(), &d.path(chunk, version))?;
            d.sync_entries()?;
            Ok(())
        })
        .await
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
        let Some(entry) = self.index.lock().expect("index lock").get(&chunk).copied() else {
            return Ok(());
        };
        let version = entry.version;
        self.on_dir(entry.dir, chunk, move |d| {
            match std::fs::remove_file(d.path(chunk, version)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ChunkError::Io(e)),
                _ => Ok(()),
            }
        })
        .await?;
        self.index.lock().expect("index lock").remove(&chunk);
        Ok(())
    }
}

fn remove_quietly(path: &Path) {
    tracing::warn!(file = %path.display(), "removing an older copy of a chunk");
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(file = %path.display(), error = %e, "could not remove an older copy of a chunk");
    }
}

/// Reads every data dir's identity; they must agree. A new server (no identity anywhere) gets a
/// random id; directories without one (new disks) get the server's.
fn settle_identity(dirs: &[Arc<DataDir>]) -> Result<ServerId, StoreError> {
    let mut known: Option<(PathBuf, ServerId)> = None;
    for dir in dirs {
        let id = dir.read_identity().map_err(|source| StoreError::Io {
            path: dir.root.clone(),
            source,
        })?;
        match (&known, id) {
            (None, Some(id)) => known = Some((dir.root.clone(), id)),
            (Some((first, first_id)), Some(id)) if *first_id != id => {
                return Err(StoreError::IdentityMismatch {
                    first: first.clone(),
                    first_id: *first_id,
                    other: dir.root.clone(),
                    other_id: id,
                });
            }
            _ => {}
        }
    }
    let id = match known {
        Some((_, id)) => id,
        None => {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).map_err(|e| StoreError::Io {
                path: dirs[0].root.clone(),
                source: std::io::Error::other(format!("no randomness for a server id: {e}")),
            })?;
            ServerId(u128::from_le_bytes(bytes))
        }
    };
    for dir in dirs {
        if dir.read_identity().ok().flatten() != Some(id) {
            dir.write_identity(id).map_err(|source| StoreError::Io {
                path: dir.root.clone(),
                source,
            })?;
        }
    }
    Ok(id)
}

#[cfg(test)]
mod tests;
