//! Calls served by chunkservers: reading replicas (writing and replication arrive with the data
//! path).

use crate::error::KfsError;
use crate::ids::{ChunkId, ChunkVersion, ServerId};
use crate::proto::Payload;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Largest read a single call may ask for.
pub const MAX_READ_LEN: u32 = 8 << 20;

/// What a chunkserver says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkserverStatus {
    pub server: ServerId,
    pub chunks: u64,
    pub corrupt: Vec<ChunkId>,
    /// Data dirs taken out of service after I/O errors.
    pub failed_dirs: Vec<String>,
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
}

/// Connects to the chunk service of the chunkserver at `addr`.
pub async fn connect(addr: SocketAddr) -> std::io::Result<ChunkServiceClient> {
    let transport = crate::rpc::connect(addr, crate::rpc::Service::Chunk).await?;
    Ok(ChunkServiceClient::new(tarpc::client::Config::default(), transport).spawn())
}
