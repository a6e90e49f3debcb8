//! Chunkserver → master: registration (`hello`) and heartbeats.
//!
//! The master never persists where chunks are: it learns every location from these reports. A
//! chunkserver says `hello` with its whole chunk list when it starts, and again whenever a
//! heartbeat is answered with [`HeartbeatReply::Rehello`] (the master restarted, or had declared
//! the server dead). Deletions travel back in the replies.

use crate::error::KfsError;
use crate::ids::{ChunkId, ChunkVersion, ServerId};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One replica a chunkserver holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkReport {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    /// Bytes of data in the replica.
    pub length: u64,
}

/// Disk space of a chunkserver, summed over its data dirs in service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceReport {
    /// Size of the file systems holding the data dirs.
    pub capacity: u64,
    /// Bytes free on them.
    pub available: u64,
    /// Bytes held by chunk files.
    pub used: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloRequest {
    pub protocol: u32,
    pub server: ServerId,
    /// Where clients and other chunkservers reach this server's chunk service.
    pub addr: SocketAddr,
    pub space: SpaceReport,
    /// Every replica held and not known corrupt.
    pub chunks: Vec<ChunkReport>,
    /// Replicas found corrupt (never served; the master should replace them).
    pub corrupt: Vec<ChunkId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// Names this registration; heartbeats must carry it.
    pub session: u64,
    /// How often to send heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Replicas to delete: chunks the master does not know, and stale versions.
    pub delete: Vec<ChunkId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub server: ServerId,
    pub session: u64,
    pub space: SpaceReport,
    /// Replicas held.
    pub chunk_count: u64,
    /// Every replica currently known corrupt (the whole set each time, so a lost reply loses
    /// nothing).
    pub corrupt: Vec<ChunkId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatReply {
    /// Carry on; delete these replicas.
    Ok { delete: Vec<ChunkId> },
    /// The master does not know this session: say hello again with the full chunk list.
    Rehello,
}

/// Cluster service of the master, for chunkservers.
#[tarpc::service]
pub trait ClusterService {
    /// Caller: a chunkserver, at start and whenever a heartbeat is answered `Rehello`. Registers
    /// the server and replaces everything the master knew of its replicas; replies with a new
    /// session and the replicas to delete. Idempotent (a repeated hello replaces the last).
    async fn hello(request: HelloRequest) -> Result<HelloReply, KfsError>;

    /// Caller: a chunkserver, every heartbeat interval. Replies with replicas to delete, or
    /// `Rehello` for an unknown session. Idempotent for the caller (deletions are sent once; a
    /// replica whose deletion was lost is deleted at the next hello).
    async fn heartbeat(request: HeartbeatRequest) -> Result<HeartbeatReply, KfsError>;
}

/// Connects to the cluster service of the master at `addr`.
pub async fn connect(addr: SocketAddr) -> std::io::Result<ClusterServiceClient> {
    let transport = crate::rpc::connect(addr, crate::rpc::Service::Cluster).await?;
    Ok(ClusterServiceClient::new(tarpc::client::Config::default(), transport).spawn())
}
