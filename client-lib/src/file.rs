//! [`File`]: reading and writing a KFS file.
//!
//! Writing: bytes go to the primary of the chunk's write lease, which orders them and forwards
//! them along the chain of replicas; a write is acknowledged once every replica holds it. Writes
//! are split at chunk boundaries, gathered into `write_size` pieces and kept several in flight. A
//! replica that fails mid-write is reported to the master, which moves the chunk to a new version
//! on the survivors; the write is then sent again to them, and the caller sees no error. A replica
//! is reported only for its own failure (`WriteFailed` naming it): an answer that the version
//! moved under the write (`StaleVersion`) just sends it again under the current lease, and one
//! that writes at the version can no longer be ordered (`LeaseExpired`) asks the master for a new
//! version without naming any replica. Only a chunk with no replica left fails the write, with an
//! error naming the chunk and servers.
//!
//! Reading: chunk locations are asked of the master and cached; each piece is read from one
//! replica and, on any error (a checksum mismatch included), from the next. A chunk that was never
//! written reads as zeros; reads end at the file's length.
//!
//! Consistency (close-to-open, as in NFS and HDFS): a writer's bytes are on every replica when the
//! write returns; the file's length at the master grows on `flush` and `close`. A reader sees the
//! length as of its `open` (or [`File::refresh`]), and every byte acknowledged before that.
//! Concurrent writers to one region of a chunk are applied in the same order on every replica, but
//! which one lands last is not defined. See `docs/consistency.md`.

use crate::client::{Client, unreachable};
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use kfs_common::proto::Payload;
use kfs_common::proto::chunk::{MAX_READ_LEN, WriteRequest};
use kfs_common::proto::master::{ChunkLocation, FileAttr, WriteLease};
use kfs_common::{ChunkId, FileId, KfsError, KfsResult};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// How many chunks one location request (or an open) asks for.
pub(crate) const LOCATE_AHEAD: u64 = 16;
/// Reads a sequential reader keeps in flight ahead of it.
const READS_IN_FLIGHT: usize = 3;

/// A lease this file holds.
#[derive(Clone)]
struct Held {
    lease: WriteLease,
    granted: Instant,
    valid: Duration,
}

impl Held {
    fn new(lease: WriteLease) -> Held {
        Held {
            valid: Duration::from_millis(lease.valid_ms),
            granted: Instant::now(),
            lease,
        }
    }

    fn expires(&self) -> Instant {
        self.granted + self.valid
    }
}

/// State shared by a file's writes and reads in flight.
pub(crate) struct Shared {
    client: Client,
    path: String,
    fid: FileId,
    chunk_size: u64,
    /// The file's length as this handle knows it: at open, then grown by its own writes.
    size: AtomicU64,
    /// End of the furthest write acknowledged.
    written_end: AtomicU64,
    /// Written since the master last heard of this handle's writes.
    modified: AtomicBool,
    /// The length the master has from this handle.
    length_set: AtomicU64,
    leases: Mutex<HashMap<u64, Held>>,
    /// Where each chunk is (`None`: a hole), by chunk offset.
    locations: Mutex<BTreeMap<u64, Option<ChunkLocation>>>,
    /// Chunk offsets written since the last sync.
    unsynced: Mutex<BTreeSet<u64>>,
}

/// Part of a shared buffer, as bytes.
#[derive(Clone)]
struct Slice {
    data: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        &self.data[self.range.clone()]
    }
}

/// What one write attempt came to.
enum Attempt {
    Done,
    /// These replicas failed (each at the lease's version): report them and write again.
    /// `full`: the failure was a full disk.
    Failed {
        servers: Vec<kfs_common::ServerId>,
        full: bool,
    },
    /// A replica can no longer order writes at the lease's version (a write never came, or the
    /// primary restarted): have the master move the chunk to a new version, dropping no
    /// replica, and write again.
    OrderLost,
    /// The lease is no longer current: get a new one and write again.
    Stale,
    /// Try again later.
    Busy(KfsError),
}

impl Attempt {
    /// `server` failed, its disk not full.
    fn failed(server: kfs_common::ServerId) -> Attempt {
        Attempt::Failed {
            servers: vec![server],
            full: false,
        }
    }
}

/// The error of a write to `path` that cannot go on: the master keeps the last replicas of
/// `chunk` (`reason`) after the writer found `failed` (address, full disk). Every one of them
/// full reads `No space left on device (chunkservers A, B, C are full)`.
fn write_failure(
    path: &str,
    chunk: ChunkId,
    failed: &[(String, bool)],
    reason: String,
) -> KfsError {
    let mut addrs: Vec<String> = Vec::new();
    for (addr, _) in failed {
        if !addrs.contains(addr) {
            addrs.push(addr.clone());
        }
    }
    if !failed.is_empty() && failed.iter().all(|(_, full)| *full) {
        return KfsError::NoSpace(kfs_common::error::servers_full(&addrs));
    }
    KfsError::ChunkUnavailable {
        chunk,
        reason: format!(
            "writing {path} failed on chunkservers {}; {reason}",
            addrs.join(", ")
        ),
    }
}

impl Shared {
    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Pieces of `[offset, offset + len)` that fall in one chunk each: `(chunk offset, offset in
    /// chunk, range in the caller's buffer)`.
    fn pieces(&self, offset: u64, len: usize) -> Vec<(u64, u64, Range<usize>)> {
        let mut out = Vec::new();
        let mut done = 0usize;
        while done < len {
            let at = offset + done as u64;
            let chunk_offset = at - at % self.chunk_size;
            let in_chunk = at - chunk_offset;
            let n = ((self.chunk_size - in_chunk) as usize).min(len - done);
            out.push((chunk_offset, in_chunk, done..done + n));
            done += n;
        }
        out
    }

    /// The lease on the chunk at `chunk_offset`: the one held if it has time left, renewed if it
    /// is past half its life, or a new one.
    async fn lease(&self, chunk_offset: u64) -> KfsResult<WriteLease> {
        let held = self
            .leases
            .lock()
            .expect("leases lock")
            .get(&chunk_offset)
            .cloned();
        let now = Instant::now();
        if let Some(h) = held
            && now < h.expires()
        {
            if now < h.granted + h.valid / 2 {
                return Ok(h.lease);
            }
            let (chunk, version) = (h.lease.chunk, h.lease.version);
            if let Ok(ms) = self
                .client
                .call(
                    self.client
                        .m()
                        .renew_lease(self.client.ctx(), chunk, version),
                )
                .await
            {
                let renewed = Held {
                    granted: Instant::now(),
                    valid: Duration::from_millis(ms),
                    lease: h.lease.clone(),
                };
                self.leases
                    .lock()
                    .expect("leases lock")
                    .insert(chunk_offset, renewed);
                return Ok(h.lease);
            }
        }
        self.forget_lease(chunk_offset);
        let fid = self.fid;
        let lease = self
            .client
            .call(self.client.m().lease(self.client.ctx(), fid, chunk_offset))
            .await?;
        self.keep_lease(chunk_offset, lease.clone());
        Ok(lease)
    }

    fn keep_lease(&self, chunk_offset: u64, lease: WriteLease) {
        self.leases
            .lock()
            .expect("leases lock")
            .insert(chunk_offset, Held::new(lease));
    }

    fn forget_lease(&self, chunk_offset: u64) {
        self.leases
            .lock()
            .expect("leases lock")
            .remove(&chunk_offset);
    }

    /// Forgets the lease held on the chunk at `chunk_offset` if it is still the one at
    /// `version` (another write may already hold a newer one).
    fn forget_lease_at(&self, chunk_offset: u64, version: kfs_common::ChunkVersion) {
        let mut leases = self.leases.lock().expect("leases lock");
        if leases
            .get(&chunk_offset)
            .is_some_and(|h| h.lease.version == version)
        {
            leases.remove(&chunk_offset);
        }
    }

    /// Writes `data` at `offset` until every replica holds it; returns the end offset.
    async fn write_at(self: Arc<Self>, offset: u64, data: Arc<Vec<u8>>) -> KfsResult<u64> {
        let end = offset + data.len() as u64;
        for (chunk_offset, in_chunk, range) in self.pieces(offset, data.len()) {
            let slice = Slice {
                data: data.clone(),
                range,
            };
            self.write_piece(chunk_offset, in_chunk, slice).await?;
        }
        self.written_end.fetch_max(end, Ordering::AcqRel);
        self.modified.store(true, Ordering::Release);
        self.size.fetch_max(end, Ordering::AcqRel);
        Ok(end)
    }

    /// Writes one piece within one chunk, through failures and lease changes.
    async fn write_piece(&self, chunk_offset: u64, in_chunk: u64, data: Slice) -> KfsResult<()> {
        let deadline = Instant::now() + self.client.inner.options.write_retry_for;
        let mut backoff = crate::retry::backoff();
        // Replicas this write found failed, to name them if the write cannot be done, and
        // whether each had a full disk.
        let mut failed: Vec<(String, bool)> = Vec::new();
        // The version a chunkserver last said had moved on under this write.
        let mut moved_from = None;
        loop {
            let lease = match self.lease(chunk_offset).await {
                Ok(lease) => lease,
                // (A `NoSpace` answer is final: the master found the servers full.)
                Err(e @ KfsError::Unavailable(_)) if Instant::now() < deadline => {
                    tracing::debug!(path = %self.path, error = %e, "no lease yet; retrying");
                    tokio::time::sleep(backoff.next_pause()).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if moved_from == Some(lease.version) {
                // The master still leases the version a chunkserver said it had left: wait a
                // little rather than ask again at once.
                tokio::time::sleep(backoff.next_pause()).await;
            }
            match self.send_write(&lease, in_chunk, data.clone()).await {
                Attempt::Done => {
                    self.unsynced
                        .lock()
                        .expect("unsynced lock")
                        .insert(chunk_offset);
                    // Readers of this handle must see the chunk (it may have been a hole).
                    self.locations
                        .lock()
                        .expect("locations lock")
                        .remove(&chunk_offset);
                    return Ok(());
                }
                attempt @ (Attempt::Failed { .. } | Attempt::OrderLost) => {
                    let (servers, full) = match attempt {
                        Attempt::Failed { servers, full } => {
                            tracing::warn!(path = %self.path, chunk = %lease.chunk, ?servers, full, "replicas failed during a write; reporting them");
                            (servers, full)
                        }
                        _ => {
                            // `OrderLost` (the only other variant this arm takes): no replica
                            // failed; a new version (on every replica) starts a new order of
                            // writes.
                            tracing::debug!(path = %self.path, chunk = %lease.chunk, version = %lease.version, "writes at this version can no longer be ordered; asking for a new version");
                            (Vec::new(), false)
                        }
                    };
                    for s in &servers {
                        let addr = std::iter::once(&lease.primary)
                            .chain(&lease.secondaries)
                            .find(|r| r.server == *s)
                            .map_or_else(|| s.to_string(), |r| r.addr.to_string());
                        failed.push((addr, full));
                    }
                    self.forget_lease(chunk_offset);
                    let (chunk, version) = (lease.chunk, lease.version);
                    match self
                        .client
                        .call(self.client.m().report_failure(
                            self.client.ctx(),
                            chunk,
                            version,
                            servers,
                        ))
                        .await
                    {
                        Ok(new) => self.keep_lease(chunk_offset, new),
                        Err(KfsError::ChunkUnavailable { reason, .. }) => {
                            return Err(write_failure(&self.path, chunk, &failed, reason));
                        }
                        Err(e) if Instant::now() >= deadline => return Err(e),
                        Err(_) => tokio::time::sleep(backoff.next_pause()).await,
                    }
                }
                Attempt::Stale => {
                    // The version moved under this write (the master moved the chunk on after
                    // a failure reported by another write in flight, or a new writer): no
                    // replica failed; write again under the current lease.
                    tracing::debug!(path = %self.path, chunk = %lease.chunk, version = %lease.version, "the chunk moved to a new version under a write; writing again");
                    moved_from = Some(lease.version);
                    self.forget_lease_at(chunk_offset, lease.version);
                }
                Attempt::Busy(e) => {
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff.next_pause()).await;
                }
            }
            if Instant::now() >= deadline {
                return Err(KfsError::Unavailable(format!(
                    "writing {} at byte {}: gave up after {:?} of retries",
                    self.path,
                    chunk_offset + in_chunk,
                    self.client.inner.options.write_retry_for
                )));
            }
        }
    }

    /// One attempt: the write to the lease's primary, forwarded down its chain.
    async fn send_write(&self, lease: &WriteLease, in_chunk: u64, data: Slice) -> Attempt {
        let pool = &self.client.inner.chunks;
        let primary = &lease.primary;
        let client = match pool.get(primary.addr).await {
            Ok(c) => c,
            Err(_) => return Attempt::failed(primary.server),
        };
        let request = WriteRequest {
            chunk: lease.chunk,
            version: lease.version,
            offset: in_chunk,
            data: Payload::from_buffer(data),
            serial: None,
            chain: lease.secondaries.clone(),
        };
        match client.write(self.client.ctx(), request).await {
            Ok(Ok(_)) => Attempt::Done,
            // A replica's own failure at this version (chunkservers never answer a version
            // move with `WriteFailed`): report it.
            Ok(Err(e @ KfsError::WriteFailed { server, .. })) => Attempt::Failed {
                servers: vec![server],
                full: e.is_no_space(),
            },
            Ok(Err(e)) if e.is_order_lost() => Attempt::OrderLost,
            // The version moved under the write, or the chunk is gone: get the current lease.
            Ok(Err(e)) if e.is_version_moved() => Attempt::Stale,
            Ok(Err(KfsError::NoSuchChunk { .. })) => Attempt::Stale,
            // The primary is behind the lease's version: its own failure.
            Ok(Err(KfsError::StaleVersion { .. })) => Attempt::failed(primary.server),
            Ok(Err(e)) => Attempt::Busy(e),
            Err(_) => {
                pool.forget(primary.addr);
                Attempt::failed(primary.server)
            }
        }
    }

    /// Where the chunk at `chunk_offset` is (`None`: a hole), from the cache or the master.
    async fn location(&self, chunk_offset: u64) -> KfsResult<Option<ChunkLocation>> {
        if let Some(known) = self
            .locations
            .lock()
            .expect("locations lock")
            .get(&chunk_offset)
        {
            return Ok(known.clone());
        }
        let (fid, len) = (self.fid, self.chunk_size * LOCATE_AHEAD);
        let found = self
            .client
            .call(
                self.client
                    .m()
                    .locate(self.client.ctx(), fid, chunk_offset, len),
            )
            .await?;
        self.remember_locations(chunk_offset, found);
        Ok(self
            .locations
            .lock()
            .expect("locations lock")
            .get(&chunk_offset)
            .cloned()
            .flatten())
    }

    /// Caches what the master said of the [`LOCATE_AHEAD`] chunks from `chunk_offset`: `found`,
    /// and holes where it listed none.
    pub(crate) fn remember_locations(&self, chunk_offset: u64, found: Vec<ChunkLocation>) {
        let mut cache = self.locations.lock().expect("locations lock");
        // A chunk the master did not list is a hole, but only below the length known now:
        // past it, another writer may add chunks later.
        let size = self.size();
        for i in 0..LOCATE_AHEAD {
            let at = chunk_offset + i * self.chunk_size;
            if at < size {
                cache.entry(at).or_insert(None);
            }
        }
        for loc in found {
            cache.insert(loc.offset, Some(loc));
        }
    }

    /// Reads up to `len` bytes at `offset` (less at the end of the file). The pieces in different
    /// chunks are read at once.
    async fn read_at(self: Arc<Self>, offset: u64, len: usize) -> KfsResult<Vec<u8>> {
        let size = self.size();
        if offset >= size || len == 0 {
            return Ok(Vec::new());
        }
        let len = (len as u64).min(size - offset) as usize;
        let mut pieces = futures::future::try_join_all(self.pieces(offset, len).into_iter().map(
            |(chunk_offset, in_chunk, range)| self.read_piece(chunk_offset, in_chunk, range.len()),
        ))
        .await?;
        if pieces.len() == 1 {
            return Ok(pieces.pop().expect("one piece"));
        }
        Ok(pieces.concat())
    }

    /// [`Self::location`], waiting (up to `read_retry_for`, with backoff) while the master says
    /// the locations are not known yet: it has just restarted and chunkservers are reporting.
    async fn location_when_known(&self, chunk_offset: u64) -> KfsResult<Option<ChunkLocation>> {
        let deadline = Instant::now() + self.client.inner.options.read_retry_for;
        let mut backoff = crate::retry::backoff();
        loop {
            match self.location(chunk_offset).await {
                Err(KfsError::Unavailable(why)) if Instant::now() < deadline => {
                    tracing::debug!(path = %self.path, chunk_offset, %why, "chunk locations not known yet; asking again");
                    tokio::time::sleep(backoff.next_pause()).await;
                }
                other => return other,
            }
        }
    }

    /// Reads `len` bytes of the chunk at `chunk_offset` from `in_chunk` on; a hole, or bytes past
    /// the chunk's data, read as zeros.
    async fn read_piece(&self, chunk_offset: u64, in_chunk: u64, len: usize) -> KfsResult<Vec<u8>> {
        let mut failures = Vec::new();
        let mut chunk = ChunkId(0);
        for attempt in 0..2 {
            let Some(loc) = self.location_when_known(chunk_offset).await? else {
                return Ok(vec![0; len]);
            };
            chunk = loc.chunk;
            if loc.replicas.is_empty() && failures.is_empty() {
                failures.push("no live replica".to_string());
            }
            // Spread readers over the replicas; fail over to the next one on any error.
            let n = loc.replicas.len();
            let first = (loc.chunk.0 as usize + attempt) % n.max(1);
            for i in 0..n {
                let replica = &loc.replicas[(first + i) % n];
                match self.read_replica(&loc, replica.addr, in_chunk, len).await {
                    Ok(bytes) => return Ok(bytes),
                    Err(e) => failures.push(format!("{}: {e}", replica.addr)),
                }
            }
            // The chunk may have moved to a new version or new replicas: ask again, once.
            self.locations
                .lock()
                .expect("locations lock")
                .remove(&chunk_offset);
        }
        Err(KfsError::ChunkUnavailable {
            chunk,
            reason: format!(
                "reading {} at byte {}: {}",
                self.path,
                chunk_offset + in_chunk,
                failures.join("; ")
            ),
        })
    }

    /// Reads `len` bytes from one replica, zero-padded past the chunk's data.
    async fn read_replica(
        &self,
        loc: &ChunkLocation,
        addr: std::net::SocketAddr,
        in_chunk: u64,
        len: usize,
    ) -> KfsResult<Vec<u8>> {
        let pool = &self.client.inner.chunks;
        let client = pool
            .get(addr)
            .await
            .map_err(|e| unreachable("chunkserver", addr, e))?;
        let mut out: Vec<u8> = Vec::new();
        while out.len() < len {
            let want = (len - out.len()).min(MAX_READ_LEN as usize) as u32;
            let at = in_chunk + out.len() as u64;
            let got = match client
                .read(self.client.ctx(), loc.chunk, loc.version, at, want)
                .await
            {
                Ok(got) => got?,
                Err(e) => {
                    pool.forget(addr);
                    return Err(unreachable("chunkserver", addr, e));
                }
            };
            let short = got.len() < want as usize;
            if out.is_empty() {
                out = got.into_vec();
            } else {
                out.extend_from_slice(&got);
            }
            if short {
                // The chunk's data ends here; the rest reads as zeros.
                break;
            }
        }
        out.resize(len, 0);
        Ok(out)
    }

    /// Tells the master the file is at least as long as everything written, and that it was
    /// modified (an overwrite in place changes the mtime too, so validators such as HTTP ETags
    /// change).
    async fn extend_length(self: Arc<Self>) -> KfsResult<()> {
        let end = self.written_end.load(Ordering::Acquire);
        let modified = self.modified.swap(false, Ordering::AcqRel);
        if end <= self.length_set.load(Ordering::Acquire) && !modified {
            return Ok(());
        }
        let fid = self.fid;
        let attr = match self
            .client
            .call(self.client.m().extend_length(self.client.ctx(), fid, end))
            .await
        {
            Ok(attr) => attr,
            Err(e) => {
                // Not recorded: the next flush or close tries again.
                if modified {
                    self.modified.store(true, Ordering::Release);
                }
                return Err(e);
            }
        };
        self.length_set.fetch_max(end, Ordering::AcqRel);
        self.size.fetch_max(attr.size, Ordering::AcqRel);
        Ok(())
    }

    /// Has every replica of every chunk written since the last sync make its data durable. A
    /// chunk whose sync fails stays to be synced (with the chunks after it), so a later `sync`
    /// tries it again rather than report success; a chunk that moved to a new version under the
    /// sync is synced at its new version (within `write_retry_for`).
    async fn sync(&self) -> KfsResult<()> {
        let chunks: Vec<u64> = std::mem::take(&mut *self.unsynced.lock().expect("unsynced lock"))
            .into_iter()
            .collect();
        for (i, &chunk_offset) in chunks.iter().enumerate() {
            if let Err(e) = self.sync_chunk(chunk_offset).await {
                self.unsynced
                    .lock()
                    .expect("unsynced lock")
                    .extend(&chunks[i..]);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Syncs every replica of the chunk at `chunk_offset`, at its current version.
    async fn sync_chunk(&self, chunk_offset: u64) -> KfsResult<()> {
        let deadline = Instant::now() + self.client.inner.options.write_retry_for;
        let mut backoff = crate::retry::backoff();
        loop {
            self.locations
                .lock()
                .expect("locations lock")
                .remove(&chunk_offset);
            let Some(loc) = self.location(chunk_offset).await? else {
                return Ok(());
            };
            let Some((first, rest)) = loc.replicas.split_first() else {
                return Err(KfsError::ChunkUnavailable {
                    chunk: loc.chunk,
                    reason: format!("syncing {}: no live replica", self.path),
                });
            };
            let pool = &self.client.inner.chunks;
            let client = pool
                .get(first.addr)
                .await
                .map_err(|e| unreachable("chunkserver", first.addr, e))?;
            match client
                .sync(self.client.ctx(), loc.chunk, loc.version, rest.to_vec())
                .await
                .map_err(|e| unreachable("chunkserver", first.addr, e))?
            {
                Err(e) if e.is_version_moved() && Instant::now() < deadline => {
                    tokio::time::sleep(backoff.next_pause()).await;
                }
                done => return done,
            }
        }
    }
}

type Pending<T> = BoxFuture<'static, KfsResult<T>>;

/// Reads a file at offsets; cheap to clone, shared between tasks. See [`File::reader`].
#[derive(Clone)]
pub struct FileReader {
    shared: Arc<Shared>,
}

impl FileReader {
    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub async fn read_at(&self, offset: u64, len: usize) -> KfsResult<Vec<u8>> {
        self.shared.clone().read_at(offset, len).await
    }

    /// The file's length as the handle it came from knows it.
    pub fn len(&self) -> u64 {
        self.shared.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn path(&self) -> &str {
        &self.shared.path
    }
}

/// An open KFS file: tokio [`AsyncRead`], [`AsyncWrite`] and [`AsyncSeek`], plus positional
/// [`File::read_at`] and [`File::write_at`].
///
/// Writes through the `AsyncWrite` side are gathered and kept several in flight; `flush` (and
/// [`File::close`]) waits for every one and then records the file's new length at the master, so
/// other readers see it. [`File::sync`] also has every replica make the data durable. Drop a file
/// only after `close` or `flush`: what is still buffered when it is dropped is finished in the
/// background if a runtime is running, and lost otherwise.
///
/// ```
/// # use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> anyhow::Result<()> {
/// # let cluster = kfs_tests::TestCluster::start(Default::default()).await;
/// # let addr = cluster.master_addr();
/// let client = kfs_client::Client::connect(addr).await?;
/// let mut file = client.create("/hello.txt").await?;
/// file.write_all(b"hello, world").await?;
/// file.close().await?;
///
/// let mut file = client.open("/hello.txt").await?;
/// let mut text = String::new();
/// file.read_to_string(&mut text).await?;
/// assert_eq!(text, "hello, world");
/// # cluster.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct File {
    shared: Arc<Shared>,
    pos: u64,
    /// Bytes gathered for the next write, which starts at `wbuf_at`.
    wbuf: Vec<u8>,
    wbuf_at: u64,
    in_flight: FuturesUnordered<Pending<u64>>,
    extending: Option<Pending<()>>,
    /// Bytes read ahead, starting at `rbuf_at`.
    rbuf: Vec<u8>,
    rbuf_at: u64,
    /// Reads in flight, of consecutive ranges from `ahead_at` on, in order.
    ahead: FuturesOrdered<Pending<(u64, Vec<u8>)>>,
    ahead_at: u64,
    ahead_end: u64,
    seek_to: Option<u64>,
}

impl File {
    /// A handle on an opened file, its first chunks' locations already known.
    pub(crate) fn opened(
        client: Client,
        path: &str,
        attr: FileAttr,
        found: Option<Vec<ChunkLocation>>,
    ) -> File {
        let file = File::new(client, path, attr);
        if let Some(found) = found {
            file.shared.remember_locations(0, found);
        }
        file
    }

    pub(crate) fn new(client: Client, path: &str, attr: FileAttr) -> File {
        let chunk_size = client.chunk_size();
        File {
            shared: Arc::new(Shared {
                client,
                path: path.to_string(),
                fid: attr.fid,
                chunk_size,
                size: AtomicU64::new(attr.size),
                written_end: AtomicU64::new(0),
                modified: AtomicBool::new(false),
                length_set: AtomicU64::new(attr.size),
                leases: Mutex::new(HashMap::new()),
                locations: Mutex::new(BTreeMap::new()),
                unsynced: Mutex::new(BTreeSet::new()),
            }),
            pos: 0,
            wbuf: Vec::new(),
            wbuf_at: 0,
            in_flight: FuturesUnordered::new(),
            extending: None,
            rbuf: Vec::new(),
            rbuf_at: 0,
            ahead: FuturesOrdered::new(),
            ahead_at: 0,
            ahead_end: 0,
            seek_to: None,
        }
    }

    pub fn path(&self) -> &str {
        &self.shared.path
    }

    pub fn fid(&self) -> FileId {
        self.shared.fid
    }

    /// The file's length as this handle knows it (at open, grown by its own writes).
    pub fn len(&self) -> u64 {
        self.shared.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks the master for the file's length again (to read what other writers closed since).
    pub async fn refresh(&self) -> KfsResult<FileAttr> {
        let fid = self.shared.fid;
        let attr = self
            .shared
            .client
            .call(
                self.shared
                    .client
                    .m()
                    .stat_fid(self.shared.client.ctx(), fid),
            )
            .await?;
        self.shared.size.fetch_max(attr.size, Ordering::AcqRel);
        self.shared
            .locations
            .lock()
            .expect("locations lock")
            .clear();
        Ok(attr)
    }

    /// Writes `data` at `offset`, returning once every replica holds it. Does not move the
    /// position; the length reaches the master with the next flush or close.
    pub async fn write_at(&self, offset: u64, data: &[u8]) -> KfsResult<()> {
        self.shared
            .clone()
            .write_at(offset, Arc::new(data.to_vec()))
            .await
            .map(drop)
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file). Does not move the
    /// position.
    pub async fn read_at(&self, offset: u64, len: usize) -> KfsResult<Vec<u8>> {
        self.shared.clone().read_at(offset, len).await
    }

    /// A handle that reads this file at offsets and can be cloned and shared between tasks
    /// (a `File` itself has one position and is used by one task at a time). It sees the
    /// length this handle knows and shares its cache of chunk locations.
    pub fn reader(&self) -> FileReader {
        FileReader {
            shared: self.shared.clone(),
        }
    }

    /// Flushes, then has every replica of every chunk written make its data durable.
    pub async fn sync(&mut self) -> KfsResult<()> {
        use tokio::io::AsyncWriteExt;
        self.flush().await.map_err(io_to_kfs)?;
        self.shared.sync().await
    }

    /// Drops the handle without finishing its writes: bytes not yet sent are discarded, writes in
    /// flight are let go, and the master is not told of a new length (for a file about to be
    /// removed, such as a failed upload). What was acknowledged before stays written.
    pub fn abandon(mut self) {
        self.wbuf.clear();
        self.in_flight = FuturesUnordered::new();
        self.extending = None;
        let shared = &self.shared;
        shared.modified.store(false, Ordering::Release);
        shared
            .written_end
            .store(shared.length_set.load(Ordering::Acquire), Ordering::Release);
    }

    /// Flushes and closes the file; replies with its attributes.
    pub async fn close(mut self) -> KfsResult<FileAttr> {
        use tokio::io::AsyncWriteExt;
        self.flush().await.map_err(io_to_kfs)?;
        let fid = self.shared.fid;
        self.shared
            .client
            .call(
                self.shared
                    .client
                    .m()
                    .stat_fid(self.shared.client.ctx(), fid),
            )
            .await
    }

    /// Sends the gathered bytes as one write in flight.
    fn dispatch(&mut self) {
        if self.wbuf.is_empty() {
            return;
        }
        let data = Arc::new(std::mem::take(&mut self.wbuf));
        self.in_flight
            .push(Box::pin(self.shared.clone().write_at(self.wbuf_at, data)));
    }

    /// Polls writes in flight until at most `keep` remain.
    fn poll_in_flight(&mut self, cx: &mut Context<'_>, keep: usize) -> Poll<io::Result<()>> {
        while self.in_flight.len() > keep {
            match ready!(self.in_flight.poll_next_unpin(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(e.into())),
                None => break,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends what is gathered and waits for every write in flight.
    fn poll_writes_done(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.dispatch();
        self.poll_in_flight(cx, 0)
    }
}

fn io_to_kfs(e: io::Error) -> KfsError {
    match e.into_inner().map(|inner| inner.downcast::<KfsError>()) {
        Some(Ok(kfs)) => *kfs,
        Some(Err(other)) => KfsError::Io(other.to_string()),
        None => KfsError::Io("I/O error".into()),
    }
}

impl AsyncWrite for File {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Surface a failed write in flight without waiting for the others.
        while let Poll::Ready(Some(done)) = this.in_flight.poll_next_unpin(cx) {
            done?;
        }
        this.rbuf.clear();
        this.ahead = FuturesOrdered::new();
        if !this.wbuf.is_empty() && this.wbuf_at + this.wbuf.len() as u64 != this.pos {
            // Not contiguous: let the earlier writes land first, so overlapping ones keep order.
            ready!(this.poll_writes_done(cx))?;
        }
        let write_size = this.shared.client.inner.options.write_size;
        if this.wbuf.len() >= write_size {
            let keep = this
                .shared
                .client
                .inner
                .options
                .writes_in_flight
                .saturating_sub(1);
            ready!(this.poll_in_flight(cx, keep))?;
            this.dispatch();
        }
        if this.wbuf.is_empty() {
            this.wbuf_at = this.pos;
            this.wbuf.reserve(write_size);
        }
        let n = buf.len().min(write_size - this.wbuf.len());
        this.wbuf.extend_from_slice(&buf[..n]);
        this.pos += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.extending.is_none() {
            ready!(this.poll_writes_done(cx))?;
            this.extending = Some(Box::pin(this.shared.clone().extend_length()));
        }
        let result = ready!(
            this.extending
                .as_mut()
                .expect("set above")
                .as_mut()
                .poll(cx)
        );
        this.extending = None;
        Poll::Ready(result.map_err(io::Error::from))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl AsyncRead for File {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // What this handle wrote must be readable through it.
        ready!(this.poll_writes_done(cx))?;
        loop {
            let end = this.rbuf_at + this.rbuf.len() as u64;
            if this.pos >= this.rbuf_at && this.pos < end {
                let from = (this.pos - this.rbuf_at) as usize;
                let n = buf.remaining().min(this.rbuf.len() - from);
                buf.put_slice(&this.rbuf[from..from + n]);
                this.pos += n as u64;
                return Poll::Ready(Ok(()));
            }
            let size = this.shared.size();
            if this.pos >= size || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Reads in flight must start where the caller reads; after a seek, start afresh.
            if this.ahead.is_empty() || this.ahead_at != this.pos {
                this.ahead = FuturesOrdered::new();
                this.ahead_at = this.pos;
                this.ahead_end = this.pos;
            }
            let read_size = this.shared.client.inner.options.read_size as u64;
            while this.ahead.len() < READS_IN_FLIGHT && this.ahead_end < size {
                let (shared, at) = (this.shared.clone(), this.ahead_end);
                this.ahead.push_back(Box::pin(async move {
                    let bytes = shared.read_at(at, read_size as usize).await?;
                    Ok((at, bytes))
                }));
                this.ahead_end += read_size;
            }
            let (at, bytes) = match ready!(this.ahead.poll_next_unpin(cx)) {
                Some(result) => result?,
                None => return Poll::Ready(Ok(())),
            };
            if bytes.is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.ahead_at = at + read_size;
            this.rbuf = bytes;
            this.rbuf_at = at;
        }
    }
}

impl AsyncSeek for File {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        let target = match position {
            io::SeekFrom::Start(n) => i128::from(n),
            io::SeekFrom::End(d) => i128::from(self.shared.size().max(self.pos)) + i128::from(d),
            io::SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        let target = u64::try_from(target).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to before the start of the file",
            )
        })?;
        self.seek_to = Some(target);
        Ok(())
    }

    fn poll_complete(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<u64>> {
        if let Some(target) = self.seek_to.take() {
            if target != self.pos {
                // Gathered bytes belong to the old position: send them on their way.
                self.dispatch();
            }
            self.pos = target;
        }
        Poll::Ready(Ok(self.pos))
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let unfinished = !self.wbuf.is_empty()
            || !self.in_flight.is_empty()
            || self.shared.written_end.load(Ordering::Acquire)
                > self.shared.length_set.load(Ordering::Acquire)
            || self.shared.modified.load(Ordering::Acquire);
        if !unfinished {
            return;
        }
        self.dispatch();
        let in_flight = std::mem::take(&mut self.in_flight);
        let shared = self.shared.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::warn!(path = %shared.path, "file dropped without close; finishing its writes in the background");
                runtime.spawn(async move {
                    let results: Vec<KfsResult<u64>> = in_flight.collect().await;
                    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                        tracing::error!(path = %shared.path, error = %e, "a write of a dropped file failed");
                    }
                    if let Err(e) = shared.clone().extend_length().await {
                        tracing::error!(path = %shared.path, error = %e, "could not record the length of a dropped file");
                    }
                });
            }
            Err(_) => {
                tracing::error!(path = %shared.path, "file dropped without close outside a runtime: its last writes are lost")
            }
        }
    }
}
