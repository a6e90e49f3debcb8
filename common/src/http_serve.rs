//! The accept loop of every HTTP listener (the gateway, the master's status page, `/metrics`):
//! hyper's HTTP/1 server with a header-read timeout and a connection limit.
//!
//! `axum::serve` gives hyper no timer, so hyper's header-read timeout never runs: a client
//! sending its headers a byte at a time (slowloris) held a connection, and a file descriptor,
//! forever. Here every connection gets [`HttpLimits::header_read_timeout`] to send each
//! request's headers; it also bounds how long an idle keep-alive connection stays open, since
//! hyper times the wait for the next request's headers the same way. Past
//! [`HttpLimits::max_connections`] a connection is answered `503 Service Unavailable` (with
//! `Retry-After`) and closed, rather than left waiting in the listen queue. A client that stops
//! reading what it is sent (a stalled download) is cut off once a write has waited
//! [`HttpLimits::write_stall_timeout`], so it cannot hold a response, and what it buffers,
//! forever. With a TLS configuration (HTTPS: `kfs gateway --tls-cert/--tls-key`) each connection
//! first completes its TLS handshake, within the same header-read timeout.

use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Limits of one HTTP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's headers must arrive within this long (and an idle keep-alive connection is
    /// closed after it). Default 30 s.
    pub header_read_timeout: Duration,
    /// Connections served at once; more are answered 503. Default 4,096.
    pub max_connections: usize,
    /// A write to the client that makes no progress for this long ends the connection (the
    /// client stopped reading). Default 60 s.
    pub write_stall_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            write_stall_timeout: Duration::from_secs(60),
        }
    }
}

/// Connections being answered `503` at once, at most.
const MAX_LINGERING_REFUSALS: usize = 64;

/// Serves `router` on `listener` until `stopped` completes, then lets requests in progress
/// finish (the caller bounds how long).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    stopped: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // Refusals answered at once (each lingers up to a second); past these a connection is just
    // closed, so a flood cannot pile up tasks and descriptors.
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_LINGERING_REFUSALS));
    let (closing, close) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, limit = limits.max_connections, "HTTP connection refused: at the connection limit");
                    if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                        connections.spawn(async move {
                            refuse(stream).await;
                            drop(refusal);
                        });
                    }
                    continue;
                };
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let timeout = limits.header_read_timeout;
                let stall = limits.write_stall_timeout;
                let close = close.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    let _slot = slot;
                    let _ = stream.set_nodelay(true);
                    let Some(tls) = tls else {
                        return serve_connection(WriteStall::new(stream, stall), service, timeout, close, peer).await;
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(WriteStall::new(stream, stall), service, timeout, close, peer).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection's requests (over TCP or TLS) until it ends or the server closes.
async fn serve_connection<S>(
    io: S,
    service: hyper_util::service::TowerToHyperService<Router>,
    header_read_timeout: Duration,
    mut close: tokio::sync::watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        }
        _ = async { let _ = close.wait_for(|closing| *closing).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Answers 503 and closes, reading what the client sent meanwhile (for up to a second) so that
/// the close is not a reset that could swallow the answer.
async fn refuse(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: &str = "the server is at its connection limit; try again later\n";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        // The request's head first: a client answered before it sent anything takes the answer
        // for a protocol error, not for the 503 it is.
        let mut head = Vec::new();
        let mut byte = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
            let n = stream.read(&mut byte).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&byte[..n]);
        }
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// A connection whose writes fail with `TimedOut` once one has made no progress for `timeout`
/// (the peer stopped reading and the socket's buffer is full).
struct WriteStall<T> {
    inner: T,
    timeout: Duration,
    /// Set while a write waits; cleared by any progress.
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteStall<T> {
    fn new(inner: T, timeout: Duration) -> WriteStall<T> {
        WriteStall {
            inner,
            timeout,
            deadline: None,
        }
    }

    /// What a write that returned `poll` means, with the stall deadline kept.
    fn watch<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        poll: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::future::Future;
        use std::task::Poll;
        match poll {
            Poll::Pending => {
                let timeout = self.timeout;
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if deadline.as_mut().poll(cx).is_ready() {
                    self.deadline = None;
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the client read nothing for {timeout:?}"),
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.deadline = None;
                ready
            }
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteStall<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteStall<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
