//! The KFS client library: namespace calls and the data path, for async Rust programs (tokio).
//!
//! - [`Client`]: a connection to a cluster's master, and every namespace call (`mkdir`, `create`,
//!   `open`, `stat`, `list` as a stream of pages, `rename`, `remove`, replication, extended
//!   attributes).
//! - [`File`]: an open file, implementing tokio's `AsyncRead`, `AsyncWrite` and `AsyncSeek`,
//!   with positional `read_at`/`write_at`, `flush`, `sync` and `close`.
//! - [`copy`]: copying local files and directory trees into KFS and back.
//! - [`OpenOptions`] and `tokio::fs`-style helpers on [`Client`]: `read`, `write`, `metadata`,
//!   `exists`, `walk`; every type the API uses is re-exported here ([`FileAttr`],
//!   [`DirEntry`], [`CreateOptions`], ...).
//! - [`Client::checksum`]: a file's crc32c from the checksums chunkservers keep;
//!   [`Client::truncate`]: a file cut or extended.
//!
//! Writes go straight to chunkservers under a lease from the master, along a chain of replicas;
//! reads go straight to one replica and fail over to the next. Errors are [`KfsError`]s naming
//! the path, chunk or server that failed; an unreachable master or chunkserver is `Unavailable`.
//!
//! ```no_run
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn demo() -> kfs_common::KfsResult<()> {
//! let client = kfs_client::Client::connect("127.0.0.1:20000").await?;
//! let mut file = client.create("/notes.txt").await?;
//! file.write_all(b"first line\n").await?;
//! file.close().await?;
//! let back = client.open("/notes.txt").await?.read_at(0, 100).await?;
//! assert_eq!(back, b"first line\n");
//! # Ok(())
//! # }
//! ```

mod capabilities;
mod checksum;
pub mod client;
pub mod copy;
mod errors;
pub mod file;
mod fs;
mod io;
mod master_conn;
pub mod retry;
mod truncate;

pub use checksum::FileChecksum;
pub use client::{Client, ClientOptions};
pub use file::{File, FileReader};
pub use fs::OpenOptions;
pub use io::DEFAULT_PACK_THRESHOLD;
/// Everything the API takes or returns, so a program depends on `kfs-client` alone.
pub use kfs_common::proto::Timestamp;
pub use kfs_common::proto::cluster::SpaceReport;
pub use kfs_common::proto::master::{
    ChunkLocation, ChunkProblem, ChunkserverInfo, CreateOptions, DirEntry, DirPage, ExtentLocation,
    FileAttr, FsckProblem, FsckReport, FsckSummary, GatewayReply, GatewayReport, Layout,
    MasterInfo, MkdirOptions, MknodOptions, NamespaceCounters, OpenFileInfo, RemoveSummary,
    ReplicaLocation, SafeModeStatus, ServerState, SetAttr, WorkerInfo,
};
pub use kfs_common::{ChunkId, ChunkVersion, FileId, FileKind, ServerId};
pub use kfs_common::{KfsError, KfsResult};
pub use retry::RetryPolicy;

/// The README's client example, compiled with the doc tests so it stays complete and right.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeExample;
