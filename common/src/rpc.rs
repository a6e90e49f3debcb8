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

/// Connects to `addr` and returns the transport for a tarpc client.
pub async fn connect<In, Out>(addr: SocketAddr) -> std::io::Result<TcpTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    Ok(transport(TcpStream::connect(addr).await?))
}

/// Accepts connections on `listener` until `shutdown` completes, running `on_connection` for each
/// one as its own task; when `shutdown` completes, every connection is closed. A service runs a
/// tarpc channel per connection, e.g.
/// `BaseChannel::with_defaults(rpc::transport(stream)).execute(server.serve())`, so one
/// connection multiplexes many calls in flight.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    on_connection: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "connection accepted");
                    let connection = on_connection(stream);
                    connections.spawn(async move {
                        connection.await;
                        tracing::debug!(%peer, "connection closed");
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
