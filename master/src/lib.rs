//! KFS master: the namespace in memory, made durable by an operation log and checkpoints.
//!
//! - [`tree`]: the persistent B+ tree that holds the namespace (cheap clones for checkpoints).
//! - [`namespace`]: the namespace as a synchronous state machine: records, ops, reads, invariants.
//! - [`storage`]: log segments, checkpoints, recovery, the metadata directory's lock.
//! - [`chunks`]: where every chunk is, learned from chunkserver reports (never persisted), and
//!   the write leases on chunks ([`chunks::leases`]).
//! - [`healer`]: the background worker that repairs replication (copies and removals).
//! - [`committer`]: group commit (one fsync for many ops) and checkpoint scheduling.
//! - [`server`]: start-up, the `MasterService` and `ClusterService` RPC implementations,
//!   chunkserver expiry, shutdown.
//! - [`length_check`]: a writer's new file length checked against what a replica holds.
//! - [`status`]: the HTTP status page, its JSON and Prometheus `/metrics`.
//! - [`config`]: the master's configuration.
//!
//! Architecture invariant: an op is applied to the namespace and acknowledged only after its log
//! record is durable, and the namespace always equals the newest checkpoint plus the log after it.

pub mod chunks;
pub mod committer;
pub mod config;
pub mod healer;
pub mod length_check;
pub mod namespace;
pub mod server;
pub mod status;
pub mod storage;
pub mod tree;
pub mod users;

pub use config::MasterConfig;
pub use server::{MasterHandle, StartError, start, start_with_clock};
