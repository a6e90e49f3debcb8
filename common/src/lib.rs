//! Types shared by every KFS process.
//!
//! - [`ids`]: `FileId`, `ChunkId`, `ChunkVersion`, `ServerId`, `FileKind`.
//! - [`error`]: [`KfsError`], the error users act on, carried inside RPC replies.
//! - [`path`]: the rules of a valid namespace path.
//! - [`proto`]: tarpc service traits and the types they carry, one module per service.
//! - [`rpc`]: the TCP transport (preamble, framing and codec) every service uses.
//! - [`security`]: the cluster CA, credentials files, and the TLS every connection runs in.
//! - [`retry`]: [`retry::Backoff`], the pause of every loop that tries again.
//! - [`clock`]: the clock time-dependent decisions read (tests drive it).
//! - [`worker`]: the background loops of a server and their registry.
//! - `config` (feature `service`): the daemons' one configuration loader.
//! - `metrics` (feature `metrics`): Prometheus metrics of every RPC and the `/metrics` server.
//!
//! API boundary: the master, chunkservers and clients meet only here; nothing in this crate knows
//! how any of them works inside.

pub mod clock;
#[cfg(feature = "service")]
pub mod config;
#[cfg(feature = "service")]
pub mod config_check;
pub mod error;
#[cfg(feature = "metrics")]
mod http_serve;
pub mod ids;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod path;
pub mod proto;
pub mod retry;
pub mod rpc;
pub mod security;
#[cfg(feature = "service")]
pub mod service;
pub mod worker;

pub use error::{KfsError, KfsResult};
pub use ids::{ChunkId, ChunkVersion, FileId, FileKind, ServerId};
