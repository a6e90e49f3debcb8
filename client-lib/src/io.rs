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

use crate::capabilities::{Capabilities, Need};
use crate::errors::unreachable;
use crate::master_conn::MasterClient;
use crate::retry::RetryPolicy;
use kfs_common::proto::chunk::ChunkPool;
use kfs_common::proto::master::WriteLease;
use kfs_common::security::capability::Access;
use kfs_common::{KfsError, KfsResult, rpc};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Tuning of a [`Client`](crate::Client); the defaults suit most programs. Built from
/// [`ClientOptions::default`] with the `with_*` methods (fields may be added in any release):
///
/// ```
/// use std::time::Duration;
/// let options = kfs_client::ClientOptions::default()
///     .with_call_timeout(Duration::from_secs(10))
///     .with_pack_threshold(0);
/// assert_eq!(options.pack_threshold, 0);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
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
    /// Files a handle creates are packed into volumes while they are at most this many bytes
    /// (kept in memory until flushed; `file/pack.rs`); 0 gives every file chunks of its own.
    pub pack_threshold: u64,
    /// How connections are protected; `None` (the default) reads the credentials file at
    /// `KFS_CREDENTIALS`, else `~/.config/kfs/credentials`, else connects without TLS
    /// (`kfs_common::security::client_security`).
    pub security: Option<kfs_common::security::Security>,
    /// When the master answers this client's namespace changes: `Synced` (the default: each
    /// change is durable when its call returns), or `Logged` (written to the master's log and
    /// synced an instant later: a change survives a crash of any process at once, a power loss
    /// once [`Client::sync_namespace`](crate::Client::sync_namespace) returns; what a mount
    /// promises, where `fsync` is that call).
    pub durability: kfs_common::proto::master::Durability,
}

impl ClientOptions {
    /// [`ClientOptions::durability`].
    pub fn with_durability(mut self, durability: kfs_common::proto::master::Durability) -> Self {
        self.durability = durability;
        self
    }

    /// [`ClientOptions::security`]: connections protected by `security`.
    pub fn with_security(mut self, security: kfs_common::security::Security) -> Self {
        self.security = Some(security);
        self
    }

    /// [`ClientOptions::call_timeout`].
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// [`ClientOptions::write_retry_for`].
    pub fn with_write_retry_for(mut self, limit: Duration) -> Self {
        self.write_retry_for = limit;
        self
    }

    /// [`ClientOptions::read_retry_for`].
    pub fn with_read_retry_for(mut self, limit: Duration) -> Self {
        self.read_retry_for = limit;
        self
    }

    /// [`ClientOptions::write_size`].
    pub fn with_write_size(mut self, bytes: usize) -> Self {
        self.write_size = bytes;
        self
    }

    /// [`ClientOptions::writes_in_flight`].
    pub fn with_writes_in_flight(mut self, writes: usize) -> Self {
        self.writes_in_flight = writes;
        self
    }

    /// [`ClientOptions::read_size`].
    pub fn with_read_size(mut self, bytes: usize) -> Self {
        self.read_size = bytes;
        self
    }

    /// [`ClientOptions::retry`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// [`ClientOptions::pack_threshold`].
    pub fn with_pack_threshold(mut self, bytes: u64) -> Self {
        self.pack_threshold = bytes;
        self
    }
}

/// [`ClientOptions::pack_threshold`] by default (see docs/benchmarks.md for why).
pub const DEFAULT_PACK_THRESHOLD: u64 = 256 << 10;

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
            pack_threshold: DEFAULT_PACK_THRESHOLD,
            durability: Default::default(),
            security: None,
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
    /// The volume leases this client holds, by replication, and when each stops being used.
    pub(crate) volumes: std::sync::Mutex<std::collections::HashMap<u8, (WriteLease, Instant)>>,
    /// The capabilities the master signed for the chunks this client reads and writes.
    pub(crate) caps: Capabilities,
}

impl Io {
    /// A lease on an open volume for files of `replication`: the one held while it has at least
    /// half its validity left (and its capability to append is good), else a new one from the
    /// master.
    pub(crate) async fn volume_lease(&self, replication: u8) -> KfsResult<WriteLease> {
        if let Some((lease, until)) = self.volumes.lock().expect("volumes lock").get(&replication)
            && Instant::now() < *until
            && self.caps.holds(Need::whole(
                lease.chunk,
                lease.version,
                Some(Access::Append),
            ))
        {
            return Ok(lease.clone());
        }
        let asked = Instant::now();
        let (lease, caps) = self
            .call(self.m().volume_lease_signed(self.ctx(), replication))
            .await?;
        self.caps.keep(caps);
        let until = asked + Duration::from_millis(lease.valid_ms / 2);
        self.volumes
            .lock()
            .expect("volumes lock")
            .insert(replication, (lease.clone(), until));
        Ok(lease)
    }

    /// Stops using the lease on `volume` (an append to it failed).
    pub(crate) fn forget_volume(&self, replication: u8, volume: kfs_common::ChunkId) {
        let mut volumes = self.volumes.lock().expect("volumes lock");
        if volumes
            .get(&replication)
            .is_some_and(|(l, _)| l.chunk == volume)
        {
            volumes.remove(&replication);
        }
    }

    /// The context of one call: its deadline is `call_timeout` from now.
    pub(crate) fn ctx(&self) -> tarpc::context::Context {
        rpc::context(self.options.call_timeout)
    }

    /// The master's RPC client.
    pub(crate) fn m(&self) -> &MasterClient {
        &self.master
    }

    /// [`Io::call`] for a `*_signed` call: keeps the capabilities it carried, answers the rest.
    pub(crate) async fn signed<T>(
        &self,
        call: impl std::future::Future<
            Output = Result<
                KfsResult<kfs_common::proto::master::Signed<T>>,
                tarpc::client::RpcError,
            >,
        >,
    ) -> KfsResult<T> {
        let (answer, caps) = self.call(call).await?;
        self.caps.keep(caps);
        Ok(answer)
    }

    /// Awaits a master call, turning a transport failure into `Unavailable` naming the master.
    ///
    /// A combinator, not an `async fn`: an `async fn` keeps its argument and the future it
    /// awaits side by side, and through the layers of a call that doubled a ~2 KiB RPC future
    /// each time (12 KiB per `stat`, copied on every spawn and move).
    pub(crate) fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<KfsResult<T>, tarpc::client::RpcError>>,
    ) -> impl std::future::Future<Output = KfsResult<T>> {
        use futures::FutureExt;
        let master_addr = self.master_addr;
        call.map(move |outcome| {
            outcome.map_err(|e| {
                // A failed dial (the master is still down) travels inside `RpcError::Send`.
                if let tarpc::client::RpcError::Send(source) = &e
                    && let Some(error) = source.downcast_ref::<KfsError>()
                {
                    return error.clone();
                }
                unreachable("the master", master_addr, e)
            })?
        })
    }
}
