//! Calls served by chunkservers: the data path (writes along a chain of replicas, reads), and
//! the master's replica management (create, version changes).
//!
//! A write goes from the client to the lease's primary, which gives it the next serial number of
//! the chunk, writes it locally while forwarding it to the next replica of the chain, and answers
//! when every replica holds it. Every replica applies a chunk's writes in serial order, so
//! concurrent writes to one chunk land in the same order everywhere.

use crate::error::KfsError;
use crate::ids::{ChunkId, ChunkVersion, FileId, ServerId};
use crate::proto::Payload;
use crate::proto::master::ReplicaLocation;
use crate::security::capability::Capability;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Largest read a single call may ask for.
pub const MAX_READ_LEN: u32 = 8 << 20;
/// Largest write a single call may carry.
pub const MAX_WRITE_LEN: usize = 8 << 20;
/// Bytes covered by one checksum; chunk sizes are multiples of it.
pub const BLOCK_SIZE: u64 = 64 * 1024;
/// Largest chunk size a cluster may use.
pub const MAX_CHUNK_SIZE: u64 = 64 << 20;

/// What a chunkserver says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkserverStatus {
    pub server: ServerId,
    pub chunks: u64,
    pub corrupt: Vec<ChunkId>,
    /// Data dirs taken out of service after I/O errors.
    pub failed_dirs: Vec<String>,
}

/// A write travelling along the replica chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRequest {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    /// Byte offset in the chunk.
    pub offset: u64,
    pub data: Payload,
    /// `None` from the client (the receiver is the primary and numbers the write); the primary's
    /// number from then on.
    pub serial: Option<u64>,
    /// The replicas after this one, in order.
    pub chain: Vec<ReplicaLocation>,
}

/// An append of one small file's record to a volume (see [`ChunkService::append`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppendRequest {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    /// The file the record is of (the record names it, so a read can check it).
    pub fid: FileId,
    pub data: Payload,
    /// `None` from the writer (the receiver is the primary: it numbers the append and places it
    /// at the volume's end); the primary's `(number, offset)` from then on.
    pub placed: Option<(u64, u64)>,
    /// The replicas after this one, in order.
    pub chain: Vec<ReplicaLocation>,
}

/// Chunk service of a chunkserver.
#[tarpc::service]
pub trait ChunkService {
    /// Caller: clients (and chunkservers copying a replica). Reads up to `len` bytes (at most
    /// [`MAX_READ_LEN`]) from `offset` of the replica of `chunk`, which must be at `version`;
    /// the reply is shorter at the end of the chunk. Every block read is checked against its
    /// checksum: a mismatch answers `ChecksumMismatch` (never wrong data) and the replica is
    /// reported corrupt. Read-only.
    async fn read(
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        len: u32,
    ) -> Result<Payload, KfsError>;

    /// Caller: tools and tests. Replies with the server's identity and state. Read-only.
    async fn status() -> Result<ChunkserverStatus, KfsError>;

    /// Caller: a writer (to the primary), or the previous replica of the chain. Applies the write
    /// in the chunk's serial order while forwarding it down the chain; replies with the chunk's
    /// length once every replica of the chain holds it, or `WriteFailed` naming the replica that
    /// did not. Not idempotent across versions; a retry at the same version rewrites the same
    /// bytes.
    async fn write(request: WriteRequest) -> Result<u64, KfsError>;

    /// Caller: a writer (to the primary), or the previous replica of the chain. Makes the chunk's
    /// data durable on this replica and every one after it in `chain`. Idempotent.
    async fn sync(
        chunk: ChunkId,
        version: ChunkVersion,
        chain: Vec<ReplicaLocation>,
    ) -> Result<(), KfsError>;

    /// Caller: the master, allocating a chunk. Creates an empty replica. Idempotent (a replica
    /// that exists at `version` and is empty is success).
    async fn create(chunk: ChunkId, version: ChunkVersion) -> Result<(), KfsError>;

    /// Caller: the master, before granting a new lease. Moves the replica from version `from` to
    /// `to`, durably; a replica between the two (an earlier move of it, unanswered, that the
    /// master never logged) moves from there. Idempotent (a replica already at `to` is success).
    async fn set_version(
        chunk: ChunkId,
        from: ChunkVersion,
        to: ChunkVersion,
    ) -> Result<(), KfsError>;

    /// Caller: the master, repairing replication. Copies the replica of `chunk` at `version`
    /// from `source` (replacing any replica of it held here), checks the copy against the
    /// source's digest, and makes it durable; replies with its length. A failed copy leaves
    /// nothing behind. Idempotent.
    async fn replicate(
        chunk: ChunkId,
        version: ChunkVersion,
        source: ReplicaLocation,
    ) -> Result<u64, KfsError>;

    /// Caller: a chunkserver checking a copy. Replies with the replica's length and the crc32c
    /// of all its data (every block verified as it is read). Read-only.
    async fn digest(chunk: ChunkId, version: ChunkVersion) -> Result<(u64, u32), KfsError>;

    /// Caller: the master, checking a writer's new file length (`extend_length`). Replies with
    /// the length of the replica of `chunk` at `version` as the server's index knows it (every
    /// acknowledged write is in it): no disk access. `StaleVersion` or `NoSuchChunk` when it
    /// holds no replica at that version. Read-only.
    async fn length(chunk: ChunkId, version: ChunkVersion) -> Result<u64, KfsError>;

    /// Caller: the master, making a volume for small files. Creates an empty volume replica,
    /// appendable while this server runs (sealed once it restarts). Idempotent (a volume that
    /// exists at `version` and is empty is success). Since chunk protocol 3.
    async fn create_volume(chunk: ChunkId, version: ChunkVersion) -> Result<(), KfsError>;

    /// Caller: a writer of small files (to the primary), or the previous replica of the chain.
    /// The primary places the record at the volume's end; every replica appends it there, in
    /// the primary's order, while it is forwarded down the chain; the reply is the record's
    /// offset once every replica of the chain holds it durably (appends waiting together share
    /// one sync), or `WriteFailed` naming the replica that did not, or `AppendRefused` (the
    /// volume is sealed or its end moved: append elsewhere). Not idempotent: a retry appends a
    /// second record (dead space, as a record never committed is). Since chunk protocol 3.
    async fn append(request: AppendRequest) -> Result<u64, KfsError>;

    /// Caller: readers of small files. Reads the data of the record of file `fid` at `offset` of
    /// the volume `chunk` at `version`, `len` bytes, with one positional read; the record's own
    /// file id, length and checksum must match (else `ChecksumMismatch` or `CorruptReplica`,
    /// never wrong data). Read-only. Since chunk protocol 3.
    async fn read_record(
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        fid: FileId,
        len: u32,
    ) -> Result<Payload, KfsError>;

    /// Caller: a chunkserver copying a volume. Reads up to `len` bytes (at most
    /// [`MAX_READ_LEN`]) of the volume's records as they lie, from `offset`; shorter at its end.
    /// (The copy checks every record, and the whole against the source's `digest`.) Read-only.
    /// Since chunk protocol 3.
    async fn read_volume(
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        len: u32,
    ) -> Result<Payload, KfsError>;

    /// Caller: the master, repairing the replication of a volume. `replicate` for a volume:
    /// copies it from `source`, checks every record and the whole against the source's digest,
    /// makes it durable; the copy is sealed. Idempotent. Since chunk protocol 3.
    async fn replicate_volume(
        chunk: ChunkId,
        version: ChunkVersion,
        source: ReplicaLocation,
    ) -> Result<u64, KfsError>;

    /// Caller: clients (`kfs checksum`). Replies with the length of the replica of `chunk` at
    /// `version` and the crc32c of all its data, combined from the checksums the replica keeps
    /// of its blocks: no data is read. A volume is refused (`InvalidArgument`: its records carry
    /// their own). Read-only. Since chunk protocol 4.
    async fn checksum(chunk: ChunkId, version: ChunkVersion) -> Result<(u64, u32), KfsError>;

    // The data calls of clients on a secured cluster (chunk protocol 5): each carries the
    // master's capability for the chunk (`security::capability`), which the chunkserver checks
    // against the connection's certificate; the calls above are then refused to every
    // certificate but the master's and chunkservers'. A capability past its expiry answers
    // `CapabilityExpired` (ask the master again); any other mismatch `PermissionDenied`.

    /// `read` of `cap.chunk` at `cap.version` under a read capability covering the bytes.
    async fn read_with(cap: Capability, offset: u64, len: u32) -> Result<Payload, KfsError>;

    /// `write` under a write capability for the request's chunk and version, from a writer
    /// (`serial` must be `None`: only the chain numbers writes).
    async fn write_with(cap: Capability, request: WriteRequest) -> Result<u64, KfsError>;

    /// `sync` of `cap.chunk` at `cap.version` under any capability for it.
    async fn sync_with(cap: Capability, chain: Vec<ReplicaLocation>) -> Result<(), KfsError>;

    /// `append` under an append capability for the volume, from a writer (`placed` must be
    /// `None`).
    async fn append_with(cap: Capability, request: AppendRequest) -> Result<u64, KfsError>;

    /// `read_record` of volume `cap.chunk` under a read capability for exactly that record's
    /// `[offset, offset + len)` (the master signs one per file extent).
    async fn read_record_with(
        cap: Capability,
        offset: u64,
        fid: FileId,
        len: u32,
    ) -> Result<Payload, KfsError>;

    /// `checksum` of `cap.chunk` under a read capability for the whole chunk.
    async fn checksum_with(cap: Capability) -> Result<(u64, u32), KfsError>;

    /// `length` of `cap.chunk` under any capability for it.
    async fn length_with(cap: Capability) -> Result<u64, KfsError>;
}

/// Connects to the chunk service of the chunkserver at `addr` under `security`.
pub async fn connect(
    addr: SocketAddr,
    security: &crate::security::Security,
) -> std::io::Result<ChunkServiceClient> {
    Ok(connect_watched(addr, security).await?.0)
}

/// [`connect`], and a flag set once the connection has closed (its dispatch task ended).
async fn connect_watched(
    addr: SocketAddr,
    security: &crate::security::Security,
) -> std::io::Result<(
    ChunkServiceClient,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
)> {
    let transport = crate::rpc::connect(addr, crate::rpc::Service::Chunk, security).await?;
    let tarpc::client::NewClient { client, dispatch } =
        tarpc::client::new(tarpc::client::Config::default(), transport);
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = closed.clone();
    tokio::spawn(async move {
        if let Err(error) = dispatch.await {
            tracing::debug!(%addr, %error, "connection to a chunkserver failed");
        }
        flag.store(true, std::sync::atomic::Ordering::Release);
    });
    Ok((ChunkServiceClient::from(client), closed))
}

/// A pooled connection: the client, whether it closed, and when it was last handed out.
struct Pooled {
    client: ChunkServiceClient,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    used: std::time::Instant,
}

/// Connections to chunkservers, one per address, made on first use and shared by every caller
/// (a connection carries many calls in flight). A connection that closed (the chunkserver
/// restarted, or closed it as idle) is dialled again on the next use, and so is one unused for
/// [`crate::rpc::CLIENT_IDLE_REDIAL`]: well before a server's idle timeout (5 min by default)
/// could close it under a call just being sent.
#[derive(Clone)]
pub struct ChunkPool {
    conns: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<SocketAddr, Pooled>>>,
    security: crate::security::Security,
}

/// How long connecting to a chunkserver may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl ChunkPool {
    /// A pool whose connections are made under `security`.
    pub fn new(security: crate::security::Security) -> ChunkPool {
        ChunkPool {
            conns: Default::default(),
            security,
        }
    }

    /// The connection to `addr`, made if there is none or it closed.
    pub async fn get(&self, addr: SocketAddr) -> std::io::Result<ChunkServiceClient> {
        let now = std::time::Instant::now();
        if let Some(pooled) = self.conns.lock().expect("pool lock").get_mut(&addr)
            && !pooled.closed.load(std::sync::atomic::Ordering::Acquire)
            && now.duration_since(pooled.used) < crate::rpc::CLIENT_IDLE_REDIAL
        {
            pooled.used = now;
            return Ok(pooled.client.clone());
        }
        // Boxed: only a dial needs this state, and every call's future would carry it.
        let (client, closed) = Box::pin(tokio::time::timeout(
            CONNECT_TIMEOUT,
            connect_watched(addr, &self.security),
        ))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to {addr} timed out"),
            )
        })??;
        let mut conns = self.conns.lock().expect("pool lock");
        let pooled = conns.entry(addr).or_insert_with(|| Pooled {
            client: client.clone(),
            closed: closed.clone(),
            used: now,
        });
        // Another caller may have dialled meanwhile; a usable connection of theirs wins.
        if pooled.closed.load(std::sync::atomic::Ordering::Acquire)
            || now.duration_since(pooled.used) >= crate::rpc::CLIENT_IDLE_REDIAL
        {
            *pooled = Pooled {
                client,
                closed,
                used: now,
            };
        }
        pooled.used = now;
        Ok(pooled.client.clone())
    }

    /// Drops the connection to `addr` (after it failed); the next call reconnects.
    pub fn forget(&self, addr: SocketAddr) {
        self.conns.lock().expect("pool lock").remove(&addr);
    }
}
