//! KFS chunkserver: holds file data as replicated chunks, each 64 KiB block checked by crc32c,
//! and reports the chunks it holds to the master at start-up and in heartbeats.
//!
//! - [`store`]: the chunk store over one or more data dirs (checksums, versions, I/O threads,
//!   failed dirs), its file format, and its fault-injecting I/O for tests.
//! - [`master_link`]: `hello` and heartbeats; deletions the master asks for.
//! - [`scrubber`]: background verification at a bounded rate.
//! - [`sequencer`]: the per-chunk order in which every replica applies writes.
//! - [`server`]: start-up, the `ChunkService` RPC implementation, shutdown.
//! - [`metrics`]: Prometheus metrics (`/metrics` when `http` is configured).
//! - [`config`]: the chunkserver's configuration.
//!
//! API boundary: the chunkserver meets the master only through `kfs_common::proto`.

pub mod config;
pub mod master_link;
pub mod metrics;
pub mod scrubber;
pub mod sequencer;
pub mod server;
pub mod store;

pub use config::ChunkserverConfig;
pub use server::{ChunkserverHandle, StartError, start, start_with_io};
