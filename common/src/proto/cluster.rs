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

/// One data dir of a chunkserver, as [`DescribeRequest`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirReport {
    pub path: String,
    /// Taken out of service after an I/O error (its replicas are no longer reported).
    pub failed: bool,
    /// Size and free bytes of its file system, as last measured (0 once failed).
    pub capacity: u64,
    pub available: u64,
    /// Replicas it holds.
    pub replicas: u64,
}

/// Where a chunkserver's scrubber is, as [`DescribeRequest`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubReport {
    /// False when `scrub_bytes_per_sec` is 0.
    pub enabled: bool,
    /// Passes over every replica finished since the server started.
    pub passes: u64,
    /// Replicas verified so far in the pass under way, of the replicas it started with.
    pub pass_done: u64,
    pub pass_total: u64,
    /// Bytes verified since the server started.
    pub bytes: u64,
    /// When the last pass ended (Unix seconds; 0: none yet).
    pub last_pass_unix_secs: u64,
}

/// What a chunkserver says of itself for the operator's views (the status page, `/status.json`):
/// nothing in it steers placement or repair. Sent after each hello and with each heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeRequest {
    pub server: ServerId,
    pub session: u64,
    /// The chunkserver's build (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Where its HTTP side (`/metrics`) listens, if it has one.
    pub http: Option<SocketAddr>,
    pub dirs: Vec<DirReport>,
    pub scrub: ScrubReport,
    /// Bytes of chunk data sent to readers and written to local replicas since it started.
    pub read_bytes: u64,
    pub written_bytes: u64,
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

    /// Caller: a chunkserver, after each hello and heartbeat. Records what the server says of
    /// itself for the status page; refused with `Unavailable` for a server not in that session (say hello first).
    /// Idempotent (the newest report replaces the last). Since cluster protocol 3.
    async fn describe(request: DescribeRequest) -> Result<(), KfsError>;

    /// Caller: a chunkserver, before each hello and with each heartbeat. Replies with the keys
    /// of the master's capabilities that chunkservers must hold now (every key that may have
    /// signed a capability not yet expired, and the next one); empty on an insecure master.
    /// Refused to any certificate but a chunkserver's. Read-only. Since cluster protocol 4.
    async fn capability_keys() -> Result<Vec<crate::security::capability::CapabilityKey>, KfsError>;
}

/// Connects to the cluster service of the master at `addr` under `security`.
pub async fn connect(
    addr: SocketAddr,
    security: &crate::security::Security,
) -> std::io::Result<ClusterServiceClient> {
    let transport = crate::rpc::connect(addr, crate::rpc::Service::Cluster, security).await?;
    Ok(ClusterServiceClient::new(tarpc::client::Config::default(), transport).spawn())
}
