//! The first bytes of every connection: which service it wants and which version of that
//! service's protocol it speaks, so a mismatch is refused by name before any message is sent.
//!
//! Client → server: `[service u8][version u32]`. Server → client: `[version u32]`, the version
//! accepted (the client's own), or a notice (`u32::MAX`, a code byte): at the connection limit
//! (code 1), or the version refused (code 3, then `[oldest u32][newest u32]`, the versions the
//! server speaks), after which the server closes. Integers are big-endian, as frame lengths.
//!
//! Invariant: no tarpc frame crosses a connection before both sides agree on the version, so
//! peers of different versions get [`ProtocolMismatch`], naming both, never a decode failure.
//! (A server older than this preamble reads the version as a frame length and never answers:
//! the client's wait for the answer is bounded by [`PREAMBLE_TIMEOUT`] and says so.)

use super::{Conn, MARKER, Notice, Service};
use crate::proto;
use crate::security::Role;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a client waits for the server's answer to its preamble.
pub const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(10);

impl Service {
    /// The versions of this service's protocol this build serves, oldest and newest; a client
    /// states the newest.
    pub const fn protocol(self) -> (u32, u32) {
        match self {
            Service::Master => (
                proto::OLDEST_CLIENT_PROTOCOL,
                proto::CLIENT_PROTOCOL_VERSION,
            ),
            Service::Cluster => (proto::OLDEST_CLUSTER_PROTOCOL, proto::PROTOCOL_VERSION),
            Service::Chunk => (proto::OLDEST_CHUNK_PROTOCOL, proto::CHUNK_PROTOCOL_VERSION),
        }
    }

    /// The role of the servers that serve this service: what a client verifies their
    /// certificates for.
    pub const fn server_role(self) -> Role {
        match self {
            Service::Master | Service::Cluster => Role::Master,
            Service::Chunk => Role::Chunkserver,
        }
    }

    /// Whether a peer of `role` may use this service: only chunkservers join the cluster;
    /// chunkservers never call the namespace; anyone of the cluster may ask for chunk data
    /// (what it may read or write is the chunkserver's check of each call).
    pub const fn admits(self, role: Role) -> bool {
        match self {
            Service::Cluster => matches!(role, Role::Chunkserver),
            Service::Master => !matches!(role, Role::Chunkserver),
            Service::Chunk => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::Master => "master (client)",
            Service::Cluster => "cluster (chunkserver)",
            Service::Chunk => "chunk",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A server refused the protocol version a client stated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the server at {addr} speaks {service} protocol versions {oldest} to {newest}; this build \
     speaks version {ours}"
)]
pub struct ProtocolMismatch {
    pub service: Service,
    pub addr: SocketAddr,
    pub ours: u32,
    pub oldest: u32,
    pub newest: u32,
}

/// Whether `error` (an `io::Error` from connecting, or anything wrapping one) is a
/// [`ProtocolMismatch`]; returns it.
pub fn protocol_mismatch(error: &(dyn std::error::Error + 'static)) -> Option<ProtocolMismatch> {
    super::chain_find::<ProtocolMismatch>(error).cloned()
}

/// Client side: states `service` and `version` on `stream` and waits for the server to accept.
pub async fn send(stream: &mut Conn, service: Service, version: u32) -> io::Result<()> {
    let addr = stream.peer_addr()?;
    stream.write_all(&bytes(service, version)).await?;
    let answer = async {
        let word = stream.read_u32().await?;
        if word != MARKER {
            return Ok(word);
        }
        let code = stream.read_u8().await?;
        if code == Notice::ConnectionLimit as u8 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                super::AtConnectionLimit,
            ));
        }
        if code == Notice::TlsRequired as u8 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the {} at {addr} requires TLS, and this process has no credentials (set \
                     KFS_CREDENTIALS to a credentials file, or put one at \
                     ~/.config/kfs/credentials)",
                    service.server_role()
                ),
            ));
        }
        if code == Notice::NotAdmitted as u8 {
            let role = stream.read_u8().await?;
            let role = crate::security::Role::ALL
                .get(usize::from(role))
                .map_or("this", |r| r.name());
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the server at {addr} does not admit a {role} certificate to the {service} service"
                ),
            ));
        }
        if code == Notice::Version as u8 {
            let (oldest, newest) = (stream.read_u32().await?, stream.read_u32().await?);
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                ProtocolMismatch {
                    service,
                    addr,
                    ours: version,
                    oldest,
                    newest,
                },
            ));
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{addr} answered the {service} preamble with notice {code}"),
        ))
    };
    let accepted = tokio::time::timeout(PREAMBLE_TIMEOUT, answer)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{addr} did not answer the {service} protocol preamble within \
                     {PREAMBLE_TIMEOUT:?} (a server of a build older than this one?)"
                ),
            )
        })?
        .map_err(|e| match e.kind() {
            // TLS 1.3 lets the client finish its handshake first: a server refusing this
            // process's certificate says so in an alert, read here.
            _ if super::conn::is_tls_refusal(&e) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the {} at {addr} refused this process's certificate: {e} (expired, or of \
                     another cluster?)",
                    service.server_role()
                ),
            ),
            io::ErrorKind::UnexpectedEof => io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("{addr} closed the connection during the {service} protocol preamble"),
            ),
            _ => e,
        })?;
    if accepted != version {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{addr} accepted {service} protocol version {accepted}, not {version}"),
        ));
    }
    Ok(())
}

/// Server side: reads the preamble's service byte and version.
pub(crate) async fn read(stream: &mut Conn) -> io::Result<(u8, u32)> {
    Ok((stream.read_u8().await?, stream.read_u32().await?))
}

/// Server side: tells the client that its certificate's `role` may not use the service, then
/// closes.
pub(crate) async fn refuse_role(stream: &mut Conn, role: Role) {
    let mut notice = MARKER.to_be_bytes().to_vec();
    notice.push(Notice::NotAdmitted as u8);
    let index = Role::ALL.iter().position(|r| *r == role).unwrap_or(0);
    notice.push(index as u8);
    super::send_notice(stream, &notice).await;
}

/// Server side: whether `version` of `service` is served; if so the client is told it is
/// accepted, otherwise the refusal with the versions served is sent (the caller then closes).
pub(crate) async fn answer(stream: &mut Conn, service: Service, version: u32) -> bool {
    let (oldest, newest) = service.protocol();
    if (oldest..=newest).contains(&version) {
        return stream.write_all(&version.to_be_bytes()).await.is_ok();
    }
    let mut notice = MARKER.to_be_bytes().to_vec();
    notice.push(Notice::Version as u8);
    notice.extend_from_slice(&oldest.to_be_bytes());
    notice.extend_from_slice(&newest.to_be_bytes());
    super::send_notice(stream, &notice).await;
    false
}

/// The preamble bytes a client of `service` speaking `version` sends (for tests that speak raw
/// bytes).
pub fn bytes(service: Service, version: u32) -> [u8; 5] {
    let mut preamble = [0u8; 5];
    preamble[0] = service as u8;
    preamble[1..].copy_from_slice(&version.to_be_bytes());
    preamble
}
