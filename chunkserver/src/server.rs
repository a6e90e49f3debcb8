//! The chunkserver process: opens the store, serves the chunk service, keeps the link to the
//! master and runs the scrubber; [`ChunkserverHandle::shutdown`] stops all of it.

use crate::config::{ChunkserverConfig, ConfigError};
use crate::master_link::{self, LinkStats};
use crate::scrubber::{self, ScrubStats};
use crate::store::io::FileIo;
use crate::store::{ChunkStore, StoreError};
use futures::StreamExt;
use kfs_common::proto::Payload;
use kfs_common::proto::chunk::{ChunkService, ChunkserverStatus, MAX_READ_LEN};
use kfs_common::rpc::{self, Service};
use kfs_common::{ChunkId, ChunkVersion, KfsError, KfsResult};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tracing::instrument;

/// Why the chunkserver could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The chunk service; cheap to clone (one per call).
#[derive(Clone)]
pub struct ChunkServer {
    store: Arc<ChunkStore>,
}

/// A running chunkserver.
pub struct ChunkserverHandle {
    addr: SocketAddr,
    store: Arc<ChunkStore>,
    link: Arc<LinkStats>,
    scrub: Arc<ScrubStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop_accepting: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Opens the data dirs and serves them, with the operating system's I/O.
pub async fn start(config: &ChunkserverConfig) -> Result<ChunkserverHandle, StartError> {
    start_with_io(config, Arc::new(crate::store::io::RealIo)).await
}

/// [`start`] with the given file I/O (tests inject faults this way).
pub async fn start_with_io(
    config: &ChunkserverConfig,
    io: Arc<dyn FileIo>,
) -> Result<ChunkserverHandle, StartError> {
    config.validate()?;
    let dirs = config.data.clone();
    let store = tokio::task::spawn_blocking(move || ChunkStore::open(&dirs, io))
        .await
        .expect("opening the store does not panic")?;
    let store = Arc::new(store);
    let (chunks, corrupt) = store.report();
    tracing::info!(
        server = %store.server_id(),
        replicas = chunks.len(),
        corrupt = corrupt.len(),
        failed_dirs = store.failed_dirs().len(),
        "chunk store open"
    );

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let advertise = config.advertise.unwrap_or(addr);

    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = ChunkServer {
        store: store.clone(),
    };
    let accept = tokio::spawn(rpc::accept_loop(
        listener,
        async {
            let _ = stopped.await;
        },
        move |service, stream| {
            let server = server.clone();
            async move {
                if service != Service::Chunk {
                    tracing::warn!(
                        ?service,
                        "a connection asked a chunkserver for another service; closed"
                    );
                    return;
                }
                BaseChannel::with_defaults(rpc::transport(stream))
                    .execute(server.serve())
                    .for_each(|call| async move {
                        tokio::spawn(call);
                    })
                    .await;
            }
        },
    ));
    let link = Arc::new(LinkStats::default());
    let scrub = Arc::new(ScrubStats::default());
    let link_task = tokio::spawn(master_link::run(
        store.clone(),
        config.master,
        advertise,
        link.clone(),
    ));
    let scrub_task = tokio::spawn(scrubber::run(
        store.clone(),
        config.scrub_bytes_per_sec,
        Duration::from_secs(config.scrub_pause_secs),
        scrub.clone(),
    ));
    tracing::info!(%addr, %advertise, master = %config.master, "serving");
    Ok(ChunkserverHandle {
        addr,
        store,
        link,
        scrub,
        tasks: vec![accept, link_task, scrub_task],
        stop_accepting: Some(stop_accepting),
    })
}

impl ChunkserverHandle {
    /// The address the chunk service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store, for in-process tools and tests.
    pub fn store(&self) -> &Arc<ChunkStore> {
        &self.store
    }

    pub fn link_stats(&self) -> &LinkStats {
        &self.link
    }

    pub fn scrub_stats(&self) -> &ScrubStats {
        &self.scrub
    }

    /// Stops serving, the master link and the scrubber; the store's I/O threads finish their
    /// queued work and end when the last reference to the store goes.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_accepting.take() {
            let _ = stop.send(());
        }
        let mut tasks = std::mem::take(&mut self.tasks).into_iter();
        if let Some(accept) = tasks.next() {
            let _ = accept.await;
        }
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        tracing::info!(addr = %self.addr, "stopped");
    }
}

impl Drop for ChunkserverHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ChunkService for ChunkServer {
    #[instrument(level = "debug", skip_all, fields(%chunk, %version, offset, len))]
    async fn read(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        offset: u64,
        len: u32,
    ) -> KfsResult<Payload> {
        if len > MAX_READ_LEN {
            return Err(KfsError::invalid_argument(format!(
                "a read of {len} bytes is more than {MAX_READ_LEN} at once"
            )));
        }
        self.store
            .read(chunk, version, offset, u64::from(len))
            .await
            .map(Payload::from_buffer)
    }

    #[instrument(level = "debug", skip_all)]
    async fn status(self, _: Context) -> KfsResult<ChunkserverStatus> {
        Ok(ChunkserverStatus {
            server: self.store.server_id(),
            chunks: self.store.chunk_count(),
            corrupt: self.store.corrupt(),
            failed_dirs: self
                .store
                .failed_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect(),
        })
    }
}
