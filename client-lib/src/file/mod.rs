//! [`File`]: reading and writing a KFS file; [`FileReader`]: reading it from many tasks.
//!
//! This module holds the handles and tokio's `AsyncRead`, `AsyncWrite` and `AsyncSeek` on a
//! [`File`]; the work is done on the state they share (`Shared`) by three rooms:
//!
//! - `write`: the write pipeline: a write sent to a chunk's primary and down its chain, retried
//!   through failed replicas and lease changes; the file's length at the master; `sync`.
//! - `read`: chunk locations (cached) and reads from one replica, failing over to the next.
//! - `lease`: the write leases this handle holds, renewed or replaced as they age.
//!
//! A file reaches the cluster only through an `Io` (the master's RPC client, the chunkserver
//! pool, the options), never through the `Client` that opened it, so this module does not
//! depend on `client.rs`.
//!
//! Through the `AsyncWrite` side, writes are gathered into `write_size` pieces and kept
//! `writes_in_flight` at once; gathered bytes are always contiguous (a write elsewhere first
//! lets the earlier ones land), and a seek sends them on their way. A write over any byte of
//! the range still in flight waits for those writes to land first, so overlapping writes keep
//! their order (`File::write_at` bypasses this pipeline: don't mix the two on overlapping
//! bytes without a flush between). `AsyncRead` first waits for every write in flight, so a handle reads what it
//! wrote, and keeps a few reads of `read_size` in flight ahead of the position, always starting
//! where the caller reads (after a seek they start afresh).
//!
//! Consistency (close-to-open, as in NFS and HDFS): a writer's bytes are on every replica when the
//! write returns (a small file's, packed, at its next `flush`, `sync` or `close`: `pack.rs`); the
//! file's length at the master grows on `flush` and `close`. A reader sees the
//! length as of its `open` (or [`File::refresh`]), and every byte acknowledged before that.
//! Concurrent writers to one region of a chunk are applied in the same order on every replica, but
//! which one lands last is not defined. See `docs/consistency.md`.

mod lease;
mod pack;
mod read;
mod write;

use crate::io::Io;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use kfs_common::proto::master::{ChunkLocation, ExtentLocation, FileAttr, Layout};
use kfs_common::{FileId, KfsError, KfsResult};
use lease::Held;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// How many chunks one location request (or an open) asks for.
pub(crate) const LOCATE_AHEAD: u64 = 16;
/// Reads a sequential reader keeps in flight ahead of it.
const READS_IN_FLIGHT: usize = 3;

/// State shared by a file's writes and reads in flight.
pub(crate) struct Shared {
    io: Arc<Io>,
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
    /// The attributes the master answered the last `extend_length` with (taken by `close`, so
    /// a close that extended the file needs no `stat` after it).
    extended: Mutex<Option<FileAttr>>,
    leases: Mutex<HashMap<u64, Held>>,
    /// Where each chunk is (`None`: a hole), by chunk offset.
    locations: Mutex<BTreeMap<u64, Option<ChunkLocation>>>,
    /// Chunk offsets written since the last sync.
    unsynced: Mutex<BTreeSet<u64>>,
    /// The file's replication factor (for the volume a small file is packed into).
    replication: u8,
    /// Whether this handle keeps the file's whole data in `pack` (`pack.rs`).
    packing: AtomicBool,
    /// Whether this handle moves a packed file to chunks of its own (it asks `lease_unpacking`,
    /// and reads its chunks, not the extent the master still lists).
    unpacking: AtomicBool,
    pack: tokio::sync::Mutex<Option<pack::Image>>,
    /// Where the file is packed, if it is (as the master last said).
    extent: Mutex<Option<ExtentLocation>>,
    /// The packed file's data, once read.
    record: Mutex<Option<Bytes>>,
}

impl Shared {
    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Runs `call`, which names this file by id; when the master answers that it does not
    /// remember this (confined) user reaching the file by path (it restarted since the open),
    /// shows it the path again and calls once more, so a master restart stays a pause.
    pub(super) async fn by_fid<T, Fut>(&self, call: impl Fn() -> Fut) -> KfsResult<T>
    where
        Fut: std::future::Future<Output = KfsResult<T>>,
    {
        match call().await {
            Err(KfsError::PermissionDenied(why))
                if why.contains(kfs_common::proto::users::REOPEN_BY_PATH) =>
            {
                tracing::debug!(path = %self.path, "the master forgot this file was opened by path; showing it the path again");
                self.io
                    .signed(
                        self.io
                            .m()
                            .open_layout_signed(self.io.ctx(), self.path.clone(), 0),
                    )
                    .await?;
                call().await
            }
            other => other,
        }
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
/// # // Where a program finds its credentials (the test cluster's admin's, here).
/// # unsafe { std::env::set_var("KFS_CREDENTIALS", cluster.credentials()) };
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
    /// The byte range covering every write in flight (`None` when none is): a write
    /// gathered over any of it waits for them to land first, so a later write to the same
    /// bytes is never overtaken by an earlier one (the chunk's primary orders writes as they
    /// reach it, and writes in flight may reach it in any order).
    flying: Option<(u64, u64)>,
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
    /// A handle on an opened file, its layout (its first chunks' locations, or where it is
    /// packed) already known.
    pub(crate) fn opened(io: Arc<Io>, path: &str, attr: FileAttr, layout: Layout) -> File {
        let file = File::new(io, path, attr);
        match layout {
            Layout::Chunks(Some(found)) => file.shared.remember_locations(0, found),
            Layout::Chunks(None) => {}
            Layout::Packed(extent) => {
                // Writes through this handle load the record first: packed again, or spilled
                // to chunks whole (never a chunk write over a packed file without its data).
                file.shared.packing.store(true, Ordering::Release);
                *file.shared.pack.try_lock().expect("a new handle's pack") =
                    Some(pack::Image::Unloaded(extent.clone()));
                *file.shared.extent.lock().expect("extent lock") = Some(extent);
            }
        }
        file
    }

    /// A handle on a file this client just created (or truncated): it packs the file while it
    /// stays small (`pack.rs`).
    pub(crate) fn created(io: Arc<Io>, path: &str, attr: FileAttr) -> File {
        let pack = io.options.pack_threshold > 0 && attr.size == 0;
        let file = File::new(io, path, attr);
        if pack {
            file.shared.packing.store(true, Ordering::Release);
            *file.shared.pack.try_lock().expect("a new handle's pack") =
                Some(pack::Image::Loaded {
                    data: Vec::new(),
                    dirty: false,
                });
        }
        file
    }

    pub(crate) fn new(io: Arc<Io>, path: &str, attr: FileAttr) -> File {
        let chunk_size = io.chunk_size;
        let replication = attr.replication;
        File {
            shared: Arc::new(Shared {
                io,
                path: path.to_string(),
                fid: attr.fid,
                chunk_size,
                size: AtomicU64::new(attr.size),
                written_end: AtomicU64::new(0),
                modified: AtomicBool::new(false),
                length_set: AtomicU64::new(attr.size),
                extended: Mutex::new(None),
                leases: Mutex::new(HashMap::new()),
                locations: Mutex::new(BTreeMap::new()),
                unsynced: Mutex::new(BTreeSet::new()),
                replication,
                packing: AtomicBool::new(false),
                unpacking: AtomicBool::new(false),
                pack: tokio::sync::Mutex::new(None),
                extent: Mutex::new(None),
                record: Mutex::new(None),
            }),
            pos: 0,
            wbuf: Vec::new(),
            wbuf_at: 0,
            in_flight: FuturesUnordered::new(),
            flying: None,
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
            .by_fid(|| {
                self.shared
                    .io
                    .call(self.shared.io.m().stat_fid(self.shared.io.ctx(), fid))
            })
            .await?;
        self.shared.size.fetch_max(attr.size, Ordering::AcqRel);
        self.shared
            .locations
            .lock()
            .expect("locations lock")
            .clear();
        *self.shared.extent.lock().expect("extent lock") = None;
        *self.shared.record.lock().expect("record lock") = None;
        Ok(attr)
    }

    /// Writes `data` at `offset`, returning once every replica holds it. Does not move the
    /// position; the length reaches the master with the next flush or close. A small file this
    /// handle packs (at most `ClientOptions::pack_threshold` bytes) is held in the handle
    /// instead, and reaches every replica, durably, at the next flush, sync or close.
    ///
    /// The future holds no borrow of the handle (a `File` is `Send`, not `Sync`), so it can be
    /// awaited in a spawned task.
    pub fn write_at(
        &self,
        offset: u64,
        data: &[u8],
    ) -> impl std::future::Future<Output = KfsResult<()>> + Send + 'static {
        let (shared, data) = (self.shared.clone(), Bytes::copy_from_slice(data));
        async move { shared.write_at(offset, data).await.map(drop) }
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file). Does not move the
    /// position.
    pub async fn read_at(&self, offset: u64, len: usize) -> KfsResult<Vec<u8>> {
        self.shared.clone().read_at(offset, len).await
    }

    /// Reads into `buf` from `offset`; returns how many bytes were read (fewer than its length
    /// at the end of the file). Does not move the position.
    pub async fn read_into(&self, offset: u64, buf: &mut [u8]) -> KfsResult<usize> {
        let data = self.shared.clone().read_at(offset, buf.len()).await?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    /// Reads up to `len` bytes at `offset` as [`Bytes`] (the buffer read, not a copy of it).
    pub async fn read_bytes(&self, offset: u64, len: usize) -> KfsResult<Bytes> {
        self.shared
            .clone()
            .read_at(offset, len)
            .await
            .map(Bytes::from)
    }

    /// A handle that reads this file at offsets and can be cloned and shared between tasks
    /// (a `File` itself has one position and is used by one task at a time). It sees the
    /// length this handle knows and shares its cache of chunk locations.
    pub fn reader(&self) -> FileReader {
        FileReader {
            shared: self.shared.clone(),
        }
    }

    /// Packs a packed file again, into a volume of the handle's replication (see
    /// [`crate::Client::set_replication`]).
    pub(crate) async fn repack(self) -> KfsResult<FileAttr> {
        self.shared.repack().await
    }

    /// Sets a packed file's length (see `Client::truncate`); `None` if this handle does not
    /// pack its file.
    pub(crate) fn truncate_packed(
        &self,
        len: u64,
    ) -> impl std::future::Future<Output = KfsResult<Option<FileAttr>>> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            if !shared.packing.load(Ordering::Acquire) {
                return Ok(None);
            }
            shared.truncate_packed(len).await
        }
    }

    /// Makes what this handle wrote durable on every replica and drops the handle without
    /// telling the master of a new length (for bytes written past the end that must stay
    /// there: `Client::truncate`'s zeros).
    pub(crate) async fn sync_past_end(self) -> KfsResult<()> {
        self.shared.sync().await?;
        self.abandon();
        Ok(())
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
        self.shared.drop_pack();
        self.wbuf.clear();
        self.in_flight = FuturesUnordered::new();
        self.flying = None;
        self.extending = None;
        let shared = &self.shared;
        shared.modified.store(false, Ordering::Release);
        shared
            .written_end
            .store(shared.length_set.load(Ordering::Acquire), Ordering::Release);
    }

    /// Flushes and closes the file; replies with its attributes.
    /// When the flush tells the master the file's new length, the master's answer is the
    /// attributes (one call); otherwise they are asked for.
    pub async fn close(mut self) -> KfsResult<FileAttr> {
        use tokio::io::AsyncWriteExt;
        self.shared.extended.lock().expect("extended lock").take();
        self.flush().await.map_err(io_to_kfs)?;
        if let Some(attr) = self.shared.extended.lock().expect("extended lock").take() {
            return Ok(attr);
        }
        let fid = self.shared.fid;
        self.shared
            .by_fid(|| {
                self.shared
                    .io
                    .call(self.shared.io.m().stat_fid(self.shared.io.ctx(), fid))
            })
            .await
    }

    /// [`File::close`] without asking for the attributes when the close did not change them
    /// (one call to the master fewer for a file not written).
    pub async fn finish(mut self) -> KfsResult<()> {
        use tokio::io::AsyncWriteExt;
        self.flush().await.map_err(io_to_kfs)
    }

    /// Sends the gathered bytes as one write in flight.
    fn dispatch(&mut self) {
        if self.wbuf.is_empty() {
            return;
        }
        let end = self.wbuf_at + self.wbuf.len() as u64;
        self.flying = Some(match self.flying {
            Some((from, to)) => (from.min(self.wbuf_at), to.max(end)),
            None => (self.wbuf_at, end),
        });
        let data = Bytes::from(std::mem::take(&mut self.wbuf));
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
        if self.in_flight.is_empty() {
            self.flying = None;
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
        if this.in_flight.is_empty() {
            this.flying = None;
        }
        this.rbuf.clear();
        this.ahead = FuturesOrdered::new();
        if !this.wbuf.is_empty() && this.wbuf_at + this.wbuf.len() as u64 != this.pos {
            // Not contiguous: let the earlier writes land first, so overlapping ones keep order.
            ready!(this.poll_writes_done(cx))?;
        }
        let write_size = this.shared.io.options.write_size;
        if this.wbuf.len() >= write_size {
            let keep = this.shared.io.options.writes_in_flight.saturating_sub(1);
            ready!(this.poll_in_flight(cx, keep))?;
            this.dispatch();
        }
        if this.wbuf.is_empty() {
            this.wbuf_at = this.pos;
            this.wbuf.reserve(write_size);
        }
        let n = buf.len().min(write_size - this.wbuf.len());
        if let Some((from, to)) = this.flying
            && this.pos < to
            && this.pos + n as u64 > from
        {
            // These bytes are also in a write in flight: that one lands first.
            ready!(this.poll_in_flight(cx, 0))?;
        }
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
            let read_size = this.shared.io.options.read_size as u64;
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
