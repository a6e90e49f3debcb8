//! [`Io`]: what every call to a cluster goes through, shared by a [`Client`](crate::Client)
//! and each [`File`](crate::File) it opens: the master's RPC client, the pool of chunkserver
//! connections, the chunk size and the [`ClientOptions`].
//!
//! A `File` holds an `Arc<Io>`, not the `Client`: the data path needs only these, so `file/`
//! does not import `client.rs` (which opens files), and the modules import one another without
//! a cycle (`client` → `file` → `io` → `master_conn` → `errors`).
//!
//! Invariant: `chunk_size` is the master's at connect and stays so, since `master_conn` refuses
//! a master that comes back with another (offsets would map to the wrong chunks).

use crate::errors::unreachable;
use crate::master_conn::MasterClient;
use crate::retry::RetryPolicy;
use kfs_common::proto::chunk::ChunkPool;
use kfs_common::{KfsError, KfsResult, rpc};
use std::net::SocketAddr;
use std::time::Duration;

/// Tuning of a [`Client`](crate::Client); the defaults suit most programs.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Deadline of one call to the master or a chunkserver.
    pub call_timeout: Duration,
    /// How long a write keeps retrying (new leases, failed replicas, a restarting master) before
    /// it gives up.
    pub write_retry_for: Duration,
    /// How long a read keeps asking where a chunk is while the master answers that its
    /// locations are not known yet (just after a master restart, until chunkservers report).
    pub read_retry_for: Duration,
    /// Bytes a [`File`](crate::File) gathers before sending them as one write.
    pub write_size: usize,
    /// Writes a [`File`](crate::File) keeps in flight at once.
    pub writes_in_flight: usize,
    /// Bytes a [`File`](crate::File) reads ahead of the caller.
    pub read_size: usize,
    /// How every retry loop waits between attempts (within its own time limit above).
    pub retry: RetryPolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            call_timeout: Duration::from_secs(60),
            write_retry_for: Duration::from_secs(180),
            read_retry_for: Duration::from_secs(180),
            write_size: 1 << 20,
            writes_in_flight: 4,
            read_size: 4 << 20,
            retry: RetryPolicy::default(),
        }
    }
}

/// The connections to one cluster and how calls on them are made (see the module docs).
pub(crate) struct Io {
    pub(crate) master: MasterClient,
    pub(crate) master_addr: SocketAddr,
    pub(crate) chunks: ChunkPool,
    /// Bytes per chunk in this cluster.
    pub(crate) chunk_size: u64,
    pub(crate) options: ClientOptions,
}

impl Io {
    /// The context of one call: its deadline is `call_timeout` from now.
    pub(crate) fn ctx(&self) -> tarpc::context::Context {
        rpc::context(self.options.call_timeout)
    }

    /// The master's RPC client.
    pub(crate) fn m(&self) -> &MasterClient {
        &self.master
    }

    /// Awaits a master call, turning a transport failure into `Unavailable` naming the master.
    pub(crate) async fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<KfsResult<T>, tarpc::client::RpcError>>,
    ) -> KfsResult<T> {
        call.await.map_err(|e| {
            // A failed dial (the master is still down) travels inside `RpcError::Send`.
            if let tarpc::client::RpcError::Send(source) = &e
                && let Some(error) = source.downcast_ref::<KfsError>()
            {
                return error.clone();
            }
            unreachable("the master", self.master_addr, e)
        })?
    }
}
