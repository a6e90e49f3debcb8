//! The KFS client library: namespace calls and the data path, for async Rust programs (tokio).
//!
//! - [`Client`]: a connection to a cluster's master, and every namespace call (`mkdir`, `create`,
//!   `open`, `stat`, `list` as a stream of pages, `rename`, `remove`, replication, extended
//!   attributes).
//! - [`File`]: an open file, implementing tokio's `AsyncRead`, `AsyncWrite` and `AsyncSeek`,
//!   with positional `read_at`/`write_at`, `flush`, `sync` and `close`.
//! - [`copy`]: copying local files and directory trees into KFS and back.
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

mod checksum;
pub mod client;
pub mod copy;
mod errors;
pub mod file;
mod io;
mod master_conn;
pub mod retry;
mod truncate;

pub use checksum::FileChecksum;
pub use client::{Client, ClientOptions};
pub use file::{File, FileReader};
pub use io::DEFAULT_PACK_THRESHOLD;
pub use kfs_common::{KfsError, KfsResult};
pub use retry::RetryPolicy;
