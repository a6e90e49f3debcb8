//! [`Conn`]: the byte stream under a transport, plain TCP or TLS over it, and the handshake
//! that makes one (see [`crate::security`]).
//!
//! Invariant: a secured side never sends or reads a preamble byte outside TLS. A secured server
//! tells a plain-TCP client it requires TLS (a notice, in the clear, after the client's plain
//! preamble) so the client's error says why; an insecure server closes a connection that opens
//! with a TLS handshake.

use crate::security::{Peer, Security};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The first byte of a TLS handshake record; no service tag has it.
pub(crate) const TLS_HANDSHAKE: u8 = 0x16;

/// A connection's byte stream.
pub enum Conn {
    Plain(TcpStream),
    Client(Box<tokio_rustls::client::TlsStream<crate::security::tls::TlsIo>>),
    Server(Box<tokio_rustls::server::TlsStream<crate::security::tls::TlsIo>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Client(s) => s.get_ref().0.get_ref(),
            Conn::Server(s) => s.get_ref().0.get_ref(),
        }
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp().set_nodelay(on)
    }

    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.tcp().peer_addr()
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Conn::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Conn::Client($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Conn::Server($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

/// Client side: the stream to `service` over `tcp` under `security` (a handshake verifying the
/// server's certificate for the role that serves `service`, when secure).
pub(crate) async fn client(
    tcp: TcpStream,
    service: super::Service,
    security: &Security,
) -> io::Result<Conn> {
    match security {
        Security::Insecure => Ok(Conn::Plain(tcp)),
        Security::Tls(tls) => {
            let addr = tcp.peer_addr()?;
            let stream = tls.connect(tcp, service.server_role()).await.map_err(|e| {
                let role = service.server_role();
                if is_tls_refusal(&e) {
                    // A certificate refused (of another cluster, expired, of another role):
                    // trying again is no use.
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "TLS handshake with the {role} at {addr} failed: {e} (a server of \
                             another cluster?)"
                        ),
                    )
                } else {
                    // Cut off (a server restarting, overloaded, or running --insecure): the
                    // caller may try again.
                    io::Error::new(
                        e.kind(),
                        format!(
                            "TLS handshake with the {role} at {addr} cut off: {e} (restarting, \
                             or running --insecure?)"
                        ),
                    )
                }
            })?;
            Ok(Conn::Client(Box::new(stream)))
        }
    }
}

/// Whether `e` is TLS refusing the other side (a certificate or an alert), as opposed to the
/// connection being cut.
pub(crate) fn is_tls_refusal(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

/// What the server made of a new connection's first bytes.
pub(crate) enum Accepted {
    /// Serve it: the stream and, when secure, who the client proved to be.
    Serve(Conn, Option<Peer>),
    /// A plain-TCP client of a secured server: tell it TLS is required, then close.
    PlainRefused(TcpStream),
    /// Closed: a failed handshake, or TLS to an insecure server (logged here).
    Closed,
}

/// Server side: looks at the first byte and makes the connection's stream under `security`.
pub(crate) async fn server(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    security: &Security,
) -> io::Result<Accepted> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Ok(Accepted::Closed);
    }
    let tls_hello = first[0] == TLS_HANDSHAKE;
    match security {
        Security::Insecure if tls_hello => {
            tracing::warn!(%peer, "connection closed: it opened with TLS, and this server runs --insecure");
            Ok(Accepted::Closed)
        }
        Security::Insecure => Ok(Accepted::Serve(Conn::Plain(tcp), None)),
        Security::Tls(_) if !tls_hello => Ok(Accepted::PlainRefused(tcp)),
        Security::Tls(tls) => match tls.accept(tcp).await {
            Ok((stream, identity)) => Ok(Accepted::Serve(
                Conn::Server(Box::new(stream)),
                Some(identity),
            )),
            Err(error) => {
                tracing::warn!(%peer, %error, "connection refused: TLS handshake failed (no certificate of this cluster?)");
                Ok(Accepted::Closed)
            }
        },
    }
}
