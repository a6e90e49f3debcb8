//! TCP transport for every KFS service: length-delimited frames carrying bincode.
//!
//! Byte framing lives only here. Frames may be up to [`MAX_FRAME_LEN`] bytes (tarpc's default of
//! 8 MiB is too small for data messages); a peer that sends a larger frame is disconnected.

use serde::{Serialize, de::DeserializeOwned};
use std::future::Future;
use std::net::SocketAddr;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tokio::net::{TcpListener, TcpStream};

/// Largest frame on the wire: a full 64 MiB chunk plus room for its envelope.
pub const MAX_FRAME_LEN: usize = 65 << 20;

/// A tarpc transport over TCP with KFS's framing and codec.
pub type TcpTransport<In, Out> =
    tarpc::serde_transport::Transport<TcpStream, In, Out, Bincode<In, Out>>;

/// Wraps a connected stream in KFS's framing.
pub fn transport<In, Out>(stream: TcpStream) -> TcpTransport<In, Out>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    // Small request/reply messages must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let framed = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_LEN)
        .new_framed(stream);
    tarpc::serde_transport::new(framed, Bincode::default())
}

/// The service a connection speaks: the first byte a client sends, so one port serves several
/// services (the master serves clients and chunkservers on one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Service {
    /// Client → master namespace calls (`proto::master`).
    Master = 1,
    /// Chunkserver → master registration and heartbeats (`proto::cluster`).
    Cluster = 2,
    /// Client or chunkserver → chunkserver data calls (`proto::chunk`).
    Chunk = 3,
}

impl Service {
    fn from_byte(b: u8) -> Option<Service> {
        match b {
            1 => Some(Service::Master),
            2 => Some(Service::Cluster),
            3 => Some(Service::Chunk),
            _ => None,
        }
    }
}

/// How long a new connection may take to say which service it wants.
const SERVICE_TAG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to `service` at `addr` and returns the transport for a tarpc client.
pub async fn connect<In, Out>(
    addr: SocketAddr,
    service: Service,
) -> std::io::Result<TcpTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    use tokio::io::AsyncWriteExt;
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&[service as u8]).await?;
    Ok(transport(stream))
}

/// Accepts connections on `listener` until `shutdown` completes. Each connection runs as its own
/// task: it first names its [`Service`], then `on_connection` serves it (a connection naming an
/// unknown service, or none within 10 s, is closed). When `shutdown` completes, every connection
/// is closed. A service runs a tarpc channel per connection, e.g.
/// `BaseChannel::with_defaults(rpc::transport(stream)).execute(server.serve())`, so one
/// connection multiplexes many calls in flight.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    on_connection: F,
) where
    F: Fn(Service, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let on_connection = std::sync::Arc::new(on_connection);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((mut stream, peer)) => {
                    let on_connection = on_connection.clone();
                    connections.spawn(async move {
                        let mut tag = [0u8; 1];
                        let read = tokio::time::timeout(SERVICE_TAG_TIMEOUT, stream.read_exact(&mut tag)).await;
                        let Some(service) = read.ok().and_then(Result::ok).and_then(|_| Service::from_byte(tag[0])) else {
                            tracing::warn!(%peer, tag = tag[0], "connection closed: it named no known service");
                            return;
                        };
                        tracing::debug!(%peer, ?service, "connection accepted");
                        on_connection(service, stream).await;
                        tracing::debug!(%peer, ?service, "connection closed");
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving the others.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

/// A call context whose deadline is `timeout` from now (tarpc's default is 10 s).
pub fn context(timeout: std::time::Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + timeout;
    ctx
}
