//! The chunkserver's link to the master: `hello` with the full chunk list, then heartbeats.
//!
//! The link says hello again whenever the master answers a heartbeat with `Rehello` (it restarted,
//! or declared this server dead), whenever the connection is lost, and whenever the store's chunk
//! list changed behind the master's back (a data dir failed). Deletions the master asks for are
//! carried out as they arrive. After the hello and each heartbeat the link also describes the
//! server ([`About`]: build, `/metrics` address, data dirs, scrub progress, bytes moved) for the
//! master's status page; a failed description is logged and never ends the session. Before
//! each hello and after each heartbeat it fetches the master's capability keys into
//! [`About::keys`], so the server checks capabilities with every key the master may sign with
//! (a key is published a roll before it signs; a failed fetch keeps the keys held).
//! Connection attempts back off up to 2 s; nothing here ever gives up.

use crate::metrics::IoCounters;
use crate::scrubber::ScrubStats;
use crate::store::ChunkStore;
use kfs_common::proto::PROTOCOL_VERSION;
use kfs_common::proto::cluster::{
    self, ClusterServiceClient, DescribeRequest, HeartbeatReply, HeartbeatRequest, HelloRequest,
};
use kfs_common::worker::WorkerStatus;
use kfs_common::{ChunkId, rpc};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters of the link, for status and tests.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Hellos the master accepted.
    pub hellos: AtomicU64,
    /// Heartbeats the master answered.
    pub heartbeats: AtomicU64,
    /// Replicas deleted on the master's word.
    pub deleted: AtomicU64,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A description waits this long at most, so a slow one never holds back a heartbeat for long.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the link tells the master of this server beside its replicas (`describe`).
#[derive(Clone)]
pub struct About {
    /// Where `/metrics` is served, as others reach it.
    pub http: Option<SocketAddr>,
    pub scrub: Arc<ScrubStats>,
    pub io: IoCounters,
    /// How the link to the master is protected.
    pub security: kfs_common::security::Security,
    /// The capability keys the chunk service checks with, refreshed here.
    pub keys: Arc<kfs_common::security::capability::Verifier>,
}

impl About {
    fn describe(&self, store: &ChunkStore, session: u64) -> DescribeRequest {
        DescribeRequest {
            server: store.server_id(),
            session,
            version: env!("CARGO_PKG_VERSION").to_string(),
            http: self.http,
            dirs: store.dir_reports(),
            scrub: self.scrub.report(),
            read_bytes: self.io.read_bytes.get(),
            written_bytes: self.io.written_bytes.get(),
        }
    }
}

/// Runs the link until the task is dropped.
pub async fn run(
    store: Arc<ChunkStore>,
    master: SocketAddr,
    advertise: SocketAddr,
    about: About,
    stats: Arc<LinkStats>,
    status: WorkerStatus,
) {
    let mut backoff =
        kfs_common::retry::Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        let client = match cluster::connect(master, &about.security).await {
            Ok(c) => c,
            Err(e) => {
                status.note(format!("master {master} unreachable: {e}"));
                tracing::debug!(%master, error = %e, "master unreachable; retrying");
                tokio::time::sleep(backoff.next_pause()).await;
                continue;
            }
        };
        match session(&client, &store, advertise, &about, &stats, &status).await {
            Ok(()) => backoff.reset(),
            Err(why) => {
                tracing::warn!(%master, why, "lost the master; saying hello again");
                tokio::time::sleep(backoff.next_pause()).await;
            }
        }
    }
}

/// One registration: hello, then heartbeats until the master asks for a new hello (`Ok`) or the
/// connection fails (`Err`).
async fn session(
    client: &ClusterServiceClient,
    store: &Arc<ChunkStore>,
    advertise: SocketAddr,
    about: &About,
    stats: &LinkStats,
    status: &WorkerStatus,
) -> Result<(), String> {
    refresh_space(store).await;
    fetch_keys(client, about).await;
    let asked = Instant::now();
    let (chunks, corrupt) = store.report();
    let hello = HelloRequest {
        protocol: PROTOCOL_VERSION,
        server: store.server_id(),
        addr: advertise,
        space: store.space(),
        chunks,
        corrupt,
    };
    let reply = client
        .hello(rpc::context(CALL_TIMEOUT), hello)
        .await
        .map_err(|e| format!("hello failed: {e}"))?
        .map_err(|e| format!("hello refused: {e}"))?;
    stats.hellos.fetch_add(1, Ordering::Relaxed);
    status.round(format!("hello: session {}", reply.session));
    tracing::info!(
        session = reply.session,
        delete = reply.delete.len(),
        "registered with the master"
    );
    delete(store, &reply.delete, asked, stats).await;
    describe(client, store, about, reply.session).await;
    let interval = Duration::from_millis(reply.heartbeat_interval_ms.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = store.changed().notified() => return Ok(()),
        }
        refresh_space(store).await;
        let asked = Instant::now();
        let beat = HeartbeatRequest {
            server: store.server_id(),
            session: reply.session,
            space: store.space(),
            chunk_count: store.chunk_count(),
            corrupt: store.corrupt(),
        };
        match client.heartbeat(rpc::context(CALL_TIMEOUT), beat).await {
            Ok(Ok(HeartbeatReply::Ok { delete: doomed })) => {
                stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                status.round("heartbeat");
                delete(store, &doomed, asked, stats).await;
                describe(client, store, about, reply.session).await;
                fetch_keys(client, about).await;
            }
            Ok(Ok(HeartbeatReply::Rehello)) => return Ok(()),
            Ok(Err(e)) => return Err(format!("heartbeat refused: {e}")),
            Err(e) => return Err(format!("heartbeat failed: {e}")),
        }
    }
}

/// Describes the server to the master; a failure only costs the status page a refresh.
async fn describe(client: &ClusterServiceClient, store: &ChunkStore, about: &About, session: u64) {
    let request = about.describe(store, session);
    match client
        .describe(rpc::context(DESCRIBE_TIMEOUT), request)
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "the master refused the description"),
        Err(e) => tracing::debug!(error = %e, "describing this server to the master failed"),
    }
}

/// Replaces the capability keys with the master's (on a secured link); a failure keeps the
/// keys held, and is tried again after the next heartbeat.
async fn fetch_keys(client: &ClusterServiceClient, about: &About) {
    if matches!(about.security, kfs_common::security::Security::Insecure) {
        return;
    }
    match client.capability_keys(rpc::context(CALL_TIMEOUT)).await {
        Ok(Ok(keys)) => about.keys.set_keys(&keys),
        Ok(Err(e)) => tracing::warn!(error = %e, "the master refused the capability keys"),
        Err(e) => tracing::debug!(error = %e, "fetching the capability keys failed"),
    }
}

/// Measures free space off the async threads.
async fn refresh_space(store: &Arc<ChunkStore>) {
    let store = store.clone();
    let _ = tokio::task::spawn_blocking(move || store.refresh_space()).await;
}

/// Deletes what the master asked for in the reply to a request sent at `asked`.
async fn delete(store: &ChunkStore, chunks: &[ChunkId], asked: Instant, stats: &LinkStats) {
    for chunk in chunks {
        match store.delete_unless_copied_since(*chunk, asked).await {
            Ok(true) => {
                stats.deleted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%chunk, "replica deleted on the master's word");
            }
            Ok(false) => {
                tracing::info!(%chunk, "not deleted: a copy the master ordered later replaced it")
            }
            Err(e) => tracing::warn!(%chunk, error = %e, "could not delete a replica"),
        }
    }
}
