//! TCP transport for every KFS service: a preamble naming the service and the version of its
//! protocol the client speaks ([`preamble`]: a mismatch is refused naming both versions), then
//! length-delimited frames carrying tarpc's messages in bincode, read under limits that no peer
//! can push past.
//!
//! Byte framing lives only here ([`transport::Transport`]; [`wire`] for what a frame carries).
//!
//! # Limits (issue 15: nothing lost, nothing hangs)
//!
//! A server is one [`RpcServer`]: its [`Limits`], a byte budget, counters ([`ServerStats`]).
//! Defaults are in [`Limits::default`] (the one place); the master's and chunkservers' configs
//! (`max_connections`, `idle_timeout_ms`, `rpc_buffer_bytes`, `frame_timeout_ms`) set them.
//!
//! - **Frames, per service** ([`Service::max_frame`]). A frame is refused (the connection is
//!   closed) as soon as its 4-byte length says it is too large, before any of it is buffered:
//!   `Master` 8 MiB (paths are at most 4 KiB, xattr values 64 KiB: no request comes near it),
//!   `Cluster` 256 MiB (a `hello` carries the whole chunk list in one message, 11 to 19 bytes a
//!   replica in bincode: 256 MiB holds 13 million replicas at the worst encoding, 20 million
//!   typically), `Chunk` 16 MiB (a write carries at most `MAX_WRITE_LEN`, 8 MiB, plus its chain).
//!   Senders check the same limits, so a message too large fails with an error naming it rather
//!   than a dropped connection. Replies are read by clients up to [`Service::max_reply`].
//! - **Bytes buffered** (`rpc_buffer_bytes`, default 256 MiB per server). A frame longer than
//!   [`SMALL_FRAME`] (16 KiB) takes its length from a semaphore of bytes when its header is read,
//!   before its body is, and gives it back when the decoded message goes to tarpc; a frame
//!   longer than the whole budget takes all of it. Smaller frames, and the [`READ_AHEAD`] (8 KiB)
//!   each connection reads past a header, are not counted: they are bounded by the connection
//!   limit (4096 × 24 KiB = 96 MiB by default), and it keeps small calls (every namespace call)
//!   answering while large frames wait. One connection buffers one frame at a time, so it holds
//!   at most its service's frame limit. A waiting frame is backpressure (the peer's sends
//!   block); once granted, the rest of a frame must arrive within `frame_timeout_ms` (default
//!   60 s), so a peer trickling bytes cannot hold the budget. Not bounded here: memory of calls
//!   being served (each call's handler holds its request), as before.
//! - **Connections** (`max_connections`, default 4096, well under the units' `LimitNOFILE`),
//!   counted once a connection has named its service. One more is answered with a notice (a
//!   frame length of `u32::MAX` and a code byte) and closed; the client maps it to
//!   `Unavailable: ... at its connection limit` ([`at_connection_limit`]), instead of hanging on
//!   a server out of file descriptors. Chunkservers' links to the master (`Cluster`) count but
//!   are never refused: clients must not lock chunkservers out. Connections still to name their
//!   service (at most 10 s) are capped apart, at 256, and closed beyond that.
//! - **Idle connections** (`idle_timeout_ms`, default 300,000). A connection with no call in
//!   flight and no frame arriving for that long is sent the idle notice and closed. Clients
//!   dial again when their connection has closed, and before sending on one unused for
//!   [`CLIENT_IDLE_REDIAL`] (60 s), so with an idle timeout above that no call races the close.
//!   Below it, a call may be sent just as the server closes: the server reads nothing after it
//!   decides to close, so its connection ends with [`ClosedIdle`] and the call, known not to
//!   have been applied, is sent again on a new connection (the client library's master stub
//!   does this; its data path retries chunk calls in its own loops).
//! - **Deadlines**: a request asking for more than [`MAX_DEADLINE`] (1 h) gets that (tarpc
//!   itself would panic on a deadline of `u64::MAX` seconds: see [`wire`]).

mod conn;
pub mod preamble;
pub mod transport;
pub mod wire;

pub use conn::Conn;

pub use preamble::{ProtocolMismatch, protocol_mismatch};

pub use transport::{READ_AHEAD, Transport};
pub use wire::MAX_DEADLINE;

use crate::security::{Identity, Peer, Security};
use serde::{Serialize, de::DeserializeOwned};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tarpc::{ClientMessage, Response};
use tokio::net::{TcpListener, TcpStream};

/// Largest reply a client reads on the master and chunk services (a read answers at most
/// `MAX_READ_LEN`, 8 MiB, of data: this leaves room to raise it).
pub const MAX_FRAME_LEN: usize = 65 << 20;

/// Frames up to this long are read without taking from the byte budget.
pub const SMALL_FRAME: usize = 16 << 10;

/// A client dials again rather than send on a connection it has not used for this long: well
/// under a server's default idle timeout, so a server closing an idle connection never races a
/// call being sent on it.
pub const CLIENT_IDLE_REDIAL: Duration = Duration::from_secs(60);

/// A frame length no frame has: a notice from the server follows (one code byte).
pub(crate) const MARKER: u32 = u32::MAX;

/// What a server's notice says.
#[repr(u8)]
pub(crate) enum Notice {
    /// The server is at its connection limit; the connection is closed.
    ConnectionLimit = 1,
    /// The connection was idle and is closed; nothing unanswered was read.
    Idle = 2,
    /// The protocol version the client stated is not served; the connection is closed.
    Version = 3,
    /// Sent in the clear to a plain-TCP client of a server that requires TLS.
    TlsRequired = 4,
    /// The role of the client's certificate may not use the service it named (a role byte,
    /// its index in `Role::ALL`, follows).
    NotAdmitted = 5,
}

/// The limits of one server; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are refused with a notice.
    pub max_connections: usize,
    /// A connection with no call in flight is closed after this long without a frame.
    pub idle_timeout: Duration,
    /// Bytes of large frames being received, over all connections.
    pub buffer_bytes: usize,
    /// Once its budget is granted, a frame must be received within this long.
    pub frame_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            idle_timeout: Duration::from_secs(300),
            buffer_bytes: 256 << 20,
            frame_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// The limits a daemon's configuration sets (times in milliseconds, as config files give
    /// them), checked: the one place both daemons' `max_connections`, `idle_timeout_ms`,
    /// `rpc_buffer_bytes` and `frame_timeout_ms` are validated. The error says which key is wrong.
    pub fn from_settings(
        max_connections: usize,
        idle_timeout_ms: u64,
        buffer_bytes: usize,
        frame_timeout_ms: u64,
    ) -> Result<Limits, String> {
        if max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if idle_timeout_ms == 0 || frame_timeout_ms == 0 {
            return Err("idle_timeout_ms and frame_timeout_ms must be at least 1".into());
        }
        if !(SMALL_FRAME..=u32::MAX as usize).contains(&buffer_bytes) {
            return Err("rpc_buffer_bytes must be between 16 KiB and 4 GiB".into());
        }
        Ok(Limits {
            max_connections,
            idle_timeout: Duration::from_millis(idle_timeout_ms),
            buffer_bytes,
            frame_timeout: Duration::from_millis(frame_timeout_ms),
        })
    }
}

/// Counters of one server's transport, for metrics and tests.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections being served now (shared with each connection's task, which gives its unit
    /// back when it ends).
    pub connections: Arc<AtomicUsize>,
    /// Connections refused at the connection limit.
    pub refused: AtomicU64,
    /// Connections closed as idle.
    pub idle_closed: AtomicU64,
    /// Frames refused for their length.
    pub oversized_frames: AtomicU64,
    /// Requests whose deadline was cut to [`MAX_DEADLINE`].
    pub clamped_deadlines: AtomicU64,
    /// The most bytes of large frames ever buffered at once.
    pub buffered_peak: AtomicU64,
}

pub(crate) struct ServerShared {
    pub(crate) limits: Limits,
    pub(crate) security: Security,
    pub(crate) budget: Arc<tokio::sync::Semaphore>,
    pub(crate) stats: Arc<ServerStats>,
}

impl ServerShared {
    fn buffered(&self) -> usize {
        self.limits
            .buffer_bytes
            .saturating_sub(self.budget.available_permits())
    }

    pub(crate) fn note_buffered(&self) {
        self.stats
            .buffered_peak
            .fetch_max(self.buffered() as u64, Ordering::Relaxed);
    }
}

/// One server's transport state: limits, byte budget, counters. Cheap to clone.
#[derive(Clone)]
pub struct RpcServer(Arc<ServerShared>);

impl RpcServer {
    /// A server under `limits`, its connections protected by `security`.
    pub fn new(limits: Limits, security: Security) -> RpcServer {
        let budget = Arc::new(tokio::sync::Semaphore::new(limits.buffer_bytes));
        RpcServer(Arc::new(ServerShared {
            limits,
            security,
            budget,
            stats: Arc::default(),
        }))
    }

    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.0.stats
    }

    /// Bytes of large frames being received now (charged to the budget).
    pub fn buffered_bytes(&self) -> usize {
        self.0.buffered()
    }
}

/// A connection that named its service; [`Incoming::transport`] serves it.
pub struct Incoming {
    stream: Conn,
    service: Service,
    version: u32,
    peer: Option<Peer>,
    shared: Arc<ServerShared>,
}

impl Incoming {
    pub fn service(&self) -> Service {
        self.service
    }

    /// Who the client proved to be in the TLS handshake; `None` on an insecure server.
    pub fn peer(&self) -> Option<&Identity> {
        self.peer.as_ref().map(|p| &p.identity)
    }

    /// The same, with the certificate it showed.
    pub fn peer_certificate(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }

    /// The version of the service's protocol the client stated (one this server speaks).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The server side of a tarpc channel over this connection, under the server's limits.
    pub fn transport<Req, Resp>(self) -> Transport<ClientMessage<Req>, Response<Resp>>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
    {
        Transport::server(self.stream, self.service, self.shared)
    }
}

/// The error a client's call fails with when the server refused the connection at its limit.
#[derive(Debug, thiserror::Error)]
#[error("the server is at its connection limit")]
pub struct AtConnectionLimit;

/// The error a client's connection ends with when the server closed it as idle: the server
/// read no request it did not answer, so a request in flight then was not applied.
#[derive(Debug, thiserror::Error)]
#[error("the server closed the connection as idle")]
pub struct ClosedIdle;

/// Whether `error` (an `RpcError` or anything wrapping one) says the server refused the
/// connection at its connection limit.
pub fn at_connection_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    chain_holds::<AtConnectionLimit>(error, &AtConnectionLimit.to_string())
}

/// Whether `error` (the end of a client's dispatch task, or anything wrapping it) says the
/// server closed the connection as idle.
pub fn closed_idle(error: &(dyn std::error::Error + 'static)) -> bool {
    chain_holds::<ClosedIdle>(error, &ClosedIdle.to_string())
}

/// The first `T` in `error`'s chain, directly or inside an `io::Error` (tarpc keeps the
/// transport's error behind an `Arc`, whose `source` skips it, so callers that must see through
/// tarpc also match by message: [`chain_holds`]).
pub(crate) fn chain_find<'e, T: std::error::Error + 'static>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(found) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<T>())
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Whether `error`'s chain holds a `T`, by type or, where tarpc hides it, by `message`.
fn chain_holds<T: std::error::Error + 'static>(
    error: &(dyn std::error::Error + 'static),
    message: &str,
) -> bool {
    if chain_find::<T>(error).is_some() {
        return true;
    }
    let mut next = Some(error);
    while let Some(e) = next {
        if e.to_string() == message {
            return true;
        }
        next = e.source();
    }
    false
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
    /// Largest frame this service accepts (see the module docs).
    pub const fn max_frame(self) -> usize {
        match self {
            Service::Master => 8 << 20,
            Service::Cluster => 256 << 20,
            Service::Chunk => 16 << 20,
        }
    }

    /// Largest reply on this service: [`MAX_FRAME_LEN`], or more where a request may be larger
    /// (a `hello`'s reply lists the replicas to delete, up to as many as the hello listed).
    pub const fn max_reply(self) -> usize {
        let frame = self.max_frame();
        if frame > MAX_FRAME_LEN {
            frame
        } else {
            MAX_FRAME_LEN
        }
    }

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
const SERVICE_TAG_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted but not yet serving (still to name their service, or being refused)
/// at once; more are closed at once. With `max_connections`, this bounds the descriptors a
/// server holds.
const MAX_UNIDENTIFIED: usize = 256;

/// Connects to `service` at `addr` under `security` (TLS first, when secure), speaking this
/// build's newest version of its protocol, and returns the transport for a tarpc client. A
/// server that does not speak that version refuses with [`ProtocolMismatch`] (see
/// [`preamble`]); one that requires TLS of a plain client, or does not admit this process's
/// role to `service`, refuses with `PermissionDenied`, saying which.
pub async fn connect<Req, Resp>(
    addr: SocketAddr,
    service: Service,
    security: &Security,
) -> std::io::Result<Transport<Response<Resp>, ClientMessage<Req>>>
where
    Req: Serialize + Send + 'static,
    Resp: DeserializeOwned + Send + 'static,
{
    connect_speaking(addr, service, service.protocol().1, security).await
}

/// The stream of a new connection to `addr` for `service` under `security`: TCP, and the TLS
/// handshake when secure, before any preamble (tests use it to speak raw bytes inside TLS).
pub async fn open(
    addr: SocketAddr,
    service: Service,
    security: &Security,
) -> std::io::Result<Conn> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    tokio::time::timeout(
        preamble::PREAMBLE_TIMEOUT,
        conn::client(tcp, service, security),
    )
    .await
    .map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the TLS handshake with {addr} did not finish within {:?}",
                preamble::PREAMBLE_TIMEOUT
            ),
        )
    })?
}

/// [`connect`], stating protocol `version` (tests use it to play an older or newer peer).
pub async fn connect_speaking<Req, Resp>(
    addr: SocketAddr,
    service: Service,
    version: u32,
    security: &Security,
) -> std::io::Result<Transport<Response<Resp>, ClientMessage<Req>>>
where
    Req: Serialize + Send + 'static,
    Resp: DeserializeOwned + Send + 'static,
{
    let mut stream = open(addr, service, security).await?;
    preamble::send(&mut stream, service, version).await?;
    Ok(Transport::client(stream, service))
}

/// Accepts connections on `listener` until `shutdown` completes, under `server`'s limits. Each
/// connection runs as its own task: it first names its [`Service`], then `on_connection` serves
/// it (a connection naming an unknown service, or none within 10 s, is closed). Past
/// `max_connections` a connection is refused with a notice. When `shutdown` completes, every
/// connection is closed. A service runs a tarpc channel per connection, e.g.
/// `BaseChannel::with_defaults(incoming.transport()).execute(server.serve())`, so one
/// connection multiplexes many calls in flight.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    server: RpcServer,
    shutdown: impl Future<Output = ()>,
    on_connection: F,
) where
    F: Fn(Incoming) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let on_connection = Arc::new(on_connection);
    let shared = server.0;
    let unidentified = Arc::new(AtomicUsize::new(0));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Until it names its service a connection counts among the unidentified,
                    // whose number is capped so that silent connections cannot use up the
                    // server's descriptors.
                    if unidentified.load(Ordering::Acquire) >= MAX_UNIDENTIFIED {
                        shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, "connection closed: too many connections still to name their service");
                        continue;
                    }
                    let pending = Counted::new(unidentified.clone());
                    let on_connection = on_connection.clone();
                    let shared = shared.clone();
                    connections.spawn(async move {
                        // The TLS handshake (when secure), then the service and version, all
                        // within the time a connection has to name its service.
                        let opened = tokio::time::timeout(SERVICE_TAG_TIMEOUT, async {
                            let (mut stream, identity) = match conn::server(stream, peer, &shared.security).await? {
                                conn::Accepted::Serve(stream, identity) => (stream, identity),
                                conn::Accepted::PlainRefused(tcp) => {
                                    shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                                    tracing::warn!(%peer, "connection refused: plain TCP to a server that requires TLS");
                                    let mut plain = Conn::Plain(tcp);
                                    let mut notice = MARKER.to_be_bytes().to_vec();
                                    notice.push(Notice::TlsRequired as u8);
                                    send_notice(&mut plain, &notice).await;
                                    return Ok(None);
                                }
                                conn::Accepted::Closed => return Ok(None),
                            };
                            let (tag, version) = preamble::read(&mut stream).await?;
                            std::io::Result::Ok(Some((stream, identity, tag, version)))
                        })
                        .await;
                        let (mut stream, identity, tag, version) = match opened {
                            Ok(Ok(Some(opened))) => opened,
                            Ok(Ok(None)) => return,
                            Ok(Err(_)) | Err(_) => {
                                tracing::warn!(%peer, "connection closed: it named no known service and version");
                                return;
                            }
                        };
                        let Some(service) = Service::from_byte(tag) else {
                            tracing::warn!(%peer, tag, "connection closed: it named no known service");
                            return;
                        };
                        if let Some(who) = &identity
                            && !service.admits(who.identity.role)
                        {
                            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%peer, who = %who.identity, %service, "connection refused: this role may not use the service");
                            preamble::refuse_role(&mut stream, who.identity.role).await;
                            return;
                        }
                        // Chunkservers' links to the master are never refused (there are only as
                        // many as chunkservers, and refusing one would have it declared dead);
                        // they count towards the limit of the others.
                        let counted = Counted::new(shared.stats.connections.clone());
                        if service != Service::Cluster && counted.value() > shared.limits.max_connections {
                            drop(counted);
                            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%peer, ?service, limit = shared.limits.max_connections, "connection refused: at the connection limit");
                            refuse(stream).await;
                            return;
                        }
                        if !preamble::answer(&mut stream, service, version).await {
                            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                            let (oldest, newest) = service.protocol();
                            tracing::warn!(%peer, %service, version, oldest, newest, "connection refused: a protocol version this server does not speak");
                            return;
                        }
                        drop(pending);
                        tracing::debug!(%peer, ?service, version, who = ?identity.as_ref().map(|p| &p.identity), "connection accepted");
                        on_connection(Incoming { stream, service, version, peer: identity, shared }).await;
                        drop(counted);
                        tracing::debug!(%peer, ?service, "connection closed");
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving the others.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

/// One unit of a shared count, given back when dropped (also when its task is cancelled).
struct Counted {
    count: Arc<AtomicUsize>,
    value: usize,
}

impl Counted {
    fn new(count: Arc<AtomicUsize>) -> Counted {
        let value = count.fetch_add(1, Ordering::AcqRel) + 1;
        Counted { count, value }
    }

    /// The count with this unit in it, when it was taken.
    fn value(&self) -> usize {
        self.value
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sends the connection-limit notice and closes.
async fn refuse(mut stream: Conn) {
    let mut notice = MARKER.to_be_bytes().to_vec();
    notice.push(Notice::ConnectionLimit as u8);
    send_notice(&mut stream, &notice).await;
}

/// Sends `notice` and closes, after reading what the peer sent meanwhile (for up to a second),
/// so that the close is not a reset that could swallow the notice.
async fn send_notice(stream: &mut Conn, notice: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(notice).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// A call context whose deadline is `timeout` from now (tarpc's default is 10 s).
pub fn context(timeout: std::time::Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + timeout;
    ctx
}
