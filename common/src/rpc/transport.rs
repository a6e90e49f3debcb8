//! [`Transport`]: tarpc messages in length-delimited frames over one TCP stream, read under the
//! server's limits (see the parent module's docs for the design).
//!
//! One struct owns the whole stream, so the server can write its idle notice after the last
//! response and before closing. Reading is a small state machine: read-ahead bytes (at most
//! [`READ_AHEAD`], never charged), a frame header, the budget acquired for a large frame, then
//! the body read straight into a buffer of its exact length.

use super::Conn;
use super::wire::{Inbound, Outbound, encode_into, encoded_len};
use super::{MARKER, Notice, SMALL_FRAME, ServerShared};
use futures::{Sink, Stream};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::sync::{AcquireError, OwnedSemaphorePermit};
use tokio_util::bytes::{Buf, BufMut, BytesMut};

/// Bytes read ahead of the frame being parsed (not charged to the budget).
pub const READ_AHEAD: usize = 8 << 10;
/// A write buffer grown past this is given back once empty.
const KEEP_WRITE_BUFFER: usize = 1 << 20;
/// `poll_ready` flushes first while this much is buffered.
const WRITE_HIGH_WATER: usize = 1 << 20;
/// How long a server closing an idle connection waits for the peer to close its side, so that
/// unread bytes do not turn the close into a reset that could swallow the notice.
const LINGER: Duration = Duration::from_secs(1);

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A frame being received: its length, the bytes so far, and its share of the budget.
struct Body {
    len: usize,
    buf: BytesMut,
    _permit: Option<OwnedSemaphorePermit>,
}

/// How the server side closes an idle connection.
enum Closing {
    /// The notice is in the write buffer; flush it, then shut the write side.
    Notice,
    /// Discard what the peer still sends until it closes or [`LINGER`] passes.
    Drain,
}

/// What a server notices about its peer; `None` on the client side.
struct ServerSide {
    shared: Arc<ServerShared>,
    /// Calls started and not answered, with their deadlines (tarpc drops a call at its deadline
    /// without answering, so expired entries are swept when the idle timer fires).
    in_flight: HashMap<u64, Instant>,
    /// Last frame received or response sent.
    last_activity: Instant,
    closing: Option<Closing>,
}

/// tarpc messages over a TCP stream; `In` is what this side receives.
pub struct Transport<In, Out> {
    io: Conn,
    service: super::Service,
    /// Largest frame accepted from the peer.
    max_in: usize,
    /// Largest frame the peer accepts.
    max_out: usize,
    rbuf: BytesMut,
    body: Option<Body>,
    acquiring: Option<(usize, Acquire)>,
    /// When the frame being received began (its first byte, or its budget granted).
    frame_started: Option<Instant>,
    timer: Pin<Box<tokio::time::Sleep>>,
    server: Option<ServerSide>,
    wbuf: BytesMut,
    /// The client protocol the peer said it speaks (a master's client connection, once its
    /// handshake is answered): replies are encoded as that version has them
    /// ([`crate::proto::encoding`]). `None`: encoded as this build's.
    peer_protocol: Option<Arc<AtomicU32>>,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In: Inbound, Out: Outbound> Transport<In, Out> {
    pub(crate) fn client(io: Conn, service: super::Service) -> Self {
        Self::new(io, service, service.max_reply(), service.max_frame(), None)
    }

    pub(crate) fn server(io: Conn, service: super::Service, shared: Arc<ServerShared>) -> Self {
        Self::new(
            io,
            service,
            service.max_frame(),
            service.max_reply(),
            Some(ServerSide {
                shared,
                in_flight: HashMap::new(),
                last_activity: Instant::now(),
                closing: None,
            }),
        )
    }

    fn new(
        io: Conn,
        service: super::Service,
        max_in: usize,
        max_out: usize,
        server: Option<ServerSide>,
    ) -> Self {
        // Small request/reply messages must not wait for Nagle's algorithm.
        let _ = io.set_nodelay(true);
        Transport {
            io,
            service,
            max_in,
            max_out,
            rbuf: BytesMut::new(),
            body: None,
            acquiring: None,
            frame_started: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            server,
            wbuf: BytesMut::new(),
            peer_protocol: None,
            _types: PhantomData,
        }
    }

    /// Encodes every message from now on for a peer of the client protocol `protocol` holds
    /// (0 until it is known: encoded as this build's).
    pub fn encode_for_peer(mut self, protocol: Arc<AtomicU32>) -> Self {
        self.peer_protocol = Some(protocol);
        self
    }

    fn decode(&mut self, frame: &[u8]) -> io::Result<In> {
        let mut clamped = false;
        let item = In::decode(frame, &mut clamped)?;
        if let Some(server) = &mut self.server {
            let now = Instant::now();
            server.last_activity = now;
            if clamped {
                server
                    .shared
                    .stats
                    .clamped_deadlines
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = ?self.service, "a request's deadline was clamped");
            }
            if let Some((id, deadline)) = item.starts() {
                server.in_flight.insert(id, deadline);
            }
            if let Some(id) = item.cancels() {
                server.in_flight.remove(&id);
            }
        }
        Ok(item)
    }

    /// Whether `deadline` has passed; if not, the timer wakes this task by then. The timer is
    /// moved only when it would fire too late: one set for an earlier deadline (the idle
    /// deadline moves later with every message) fires early, once, and is set again then, so a
    /// busy connection does not touch the timer wheel on every message.
    fn timer_fired(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.timer.deadline() > deadline {
            self.timer.as_mut().reset(deadline);
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
        false
    }

    /// With nothing to read: `Err` when a frame stalled past the frame timeout, `Ok(true)` when
    /// the connection has been idle long enough to close (server side).
    fn poll_timeouts(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let Some(server) = &self.server else {
            return Ok(false);
        };
        let limits = &server.shared.limits;
        if let Some(started) = self.frame_started {
            let timeout = limits.frame_timeout;
            if self.timer_fired(started + timeout, cx) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("a frame was not received within {timeout:?}"),
                ));
            }
            return Ok(false);
        }
        loop {
            let server = self.server.as_ref().expect("server side");
            let due = server.last_activity + server.shared.limits.idle_timeout;
            if !self.timer_fired(due, cx) {
                return Ok(false);
            }
            let server = self.server.as_mut().expect("server side");
            let now = Instant::now();
            server.in_flight.retain(|_, deadline| *deadline > now);
            match server.in_flight.values().max() {
                None => return Ok(true),
                // Calls are being served: idle counts from the last one's deadline.
                Some(latest) => server.last_activity = (*latest).max(now),
            }
        }
    }

    /// Writes the write buffer out.
    fn poll_write_buffer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
        }
        if self.wbuf.capacity() > KEEP_WRITE_BUFFER {
            self.wbuf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Server side, idle: the notice, then shutdown, then lingering for the peer's close.
    fn poll_closing(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<In>>> {
        loop {
            let server = self.server.as_mut().expect("server side");
            match server.closing {
                Some(Closing::Notice) => {
                    let flushed = match ready!(self.poll_write_buffer(cx)) {
                        Ok(()) => ready!(Pin::new(&mut self.io).poll_shutdown(cx)),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = flushed {
                        tracing::debug!(error = %e, "closing an idle connection");
                        return Poll::Ready(None);
                    }
                    let server = self.server.as_mut().expect("server side");
                    server.closing = Some(Closing::Drain);
                    server.last_activity = Instant::now();
                }
                Some(Closing::Drain) => {
                    let until = server.last_activity + LINGER;
                    self.rbuf.clear();
                    self.rbuf.reserve(READ_AHEAD);
                    let mut limited = (&mut self.io).take(READ_AHEAD as u64);
                    match tokio_util::io::poll_read_buf(Pin::new(&mut limited), cx, &mut self.rbuf)
                    {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                        Poll::Ready(Ok(_)) => continue,
                        Poll::Pending => {
                            if self.timer_fired(until, cx) {
                                return Poll::Ready(None);
                            }
                            return Poll::Pending;
                        }
                    }
                }
                None => unreachable!("poll_closing is only called while closing"),
            }
        }
    }

    fn start_closing(&mut self) {
        let server = self.server.as_mut().expect("server side");
        server
            .shared
            .stats
            .idle_closed
            .fetch_add(1, Ordering::Relaxed);
        server.closing = Some(Closing::Notice);
        self.wbuf.put_u32(MARKER);
        self.wbuf.put_u8(Notice::Idle as u8);
        tracing::debug!(service = ?self.service, "idle connection closed");
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<In>>> {
        loop {
            if self.server.as_ref().is_some_and(|s| s.closing.is_some()) {
                return self.poll_closing(cx);
            }
            // The body of a frame being received.
            if let Some(body) = &mut self.body {
                if body.buf.len() < body.len {
                    let left = (body.len - body.buf.len()) as u64;
                    let mut limited = (&mut self.io).take(left);
                    match tokio_util::io::poll_read_buf(Pin::new(&mut limited), cx, &mut body.buf) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())));
                        }
                        Poll::Ready(Ok(_)) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                        Poll::Pending => {
                            return match self.poll_timeouts(cx) {
                                Err(e) => Poll::Ready(Some(Err(e))),
                                Ok(_) => Poll::Pending,
                            };
                        }
                    }
                }
                let body = self.body.take().expect("a body");
                self.frame_started = (!self.rbuf.is_empty()).then(Instant::now);
                // The budget is given back as the message goes to tarpc.
                return Poll::Ready(Some(self.decode(&body.buf)));
            }
            // Budget for a large frame.
            if let Some((len, acquire)) = &mut self.acquiring {
                let len = *len;
                let permit = ready!(acquire.as_mut().poll(cx))
                    .map_err(|_| io::Error::other("the server is stopping"));
                self.acquiring = None;
                let permit = match permit {
                    Ok(p) => p,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                };
                self.begin_body(len, Some(permit));
                continue;
            }
            // A header, from the read-ahead bytes (a client waits for a notice's code byte).
            let header = (self.rbuf.len() >= 4)
                .then(|| u32::from_be_bytes(self.rbuf[..4].try_into().expect("4 bytes")));
            match header {
                Some(MARKER) if self.server.is_none() && self.rbuf.len() > 4 => {
                    return Poll::Ready(self.notice());
                }
                Some(MARKER) if self.server.is_none() => {}
                Some(len) => {
                    let len = len as usize;
                    if len > self.max_in {
                        return Poll::Ready(Some(Err(self.oversized(len))));
                    }
                    if self.rbuf.len() >= 4 + len {
                        self.rbuf.advance(4);
                        let frame = self.rbuf.split_to(len);
                        self.frame_started = (!self.rbuf.is_empty()).then(Instant::now);
                        return Poll::Ready(Some(self.decode(&frame)));
                    }
                    match &self.server {
                        Some(server) if len > SMALL_FRAME => {
                            let shared = &server.shared;
                            let n = len.min(shared.limits.buffer_bytes).max(1);
                            let n = u32::try_from(n).unwrap_or(u32::MAX);
                            let acquire = shared.budget.clone().acquire_many_owned(n);
                            self.acquiring = Some((len, Box::pin(acquire)));
                        }
                        _ => self.begin_body(len, None),
                    }
                    continue;
                }
                None => {}
            }
            // More bytes.
            self.rbuf.reserve(READ_AHEAD);
            let room = READ_AHEAD.saturating_sub(self.rbuf.len()).max(4) as u64;
            let mut limited = (&mut self.io).take(room);
            match tokio_util::io::poll_read_buf(Pin::new(&mut limited), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) if self.rbuf.is_empty() => return Poll::Ready(None),
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())));
                }
                Poll::Ready(Ok(_)) => {
                    self.frame_started.get_or_insert_with(Instant::now);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => match self.poll_timeouts(cx) {
                    Err(e) => return Poll::Ready(Some(Err(e))),
                    Ok(true) => self.start_closing(),
                    Ok(false) => return Poll::Pending,
                },
            }
        }
    }

    fn begin_body(&mut self, len: usize, permit: Option<OwnedSemaphorePermit>) {
        let mut buf = BytesMut::with_capacity(len);
        self.rbuf.advance(4);
        buf.extend_from_slice(&self.rbuf);
        self.rbuf.clear();
        if let (Some(server), Some(_)) = (&self.server, &permit) {
            server.shared.note_buffered();
            self.frame_started = Some(Instant::now());
        }
        self.body = Some(Body {
            len,
            buf,
            _permit: permit,
        });
    }

    fn oversized(&self, len: usize) -> io::Error {
        if let Some(server) = &self.server {
            server
                .shared
                .stats
                .oversized_frames
                .fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(
            service = ?self.service,
            len,
            max = self.max_in,
            "a frame over the service's limit; connection closed"
        );
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a frame of {len} bytes is over the {} bytes the {:?} service accepts",
                self.max_in, self.service
            ),
        )
    }

    /// A notice from the server in place of a frame (client side).
    fn notice(&mut self) -> Option<io::Result<In>> {
        if self.rbuf.len() < 5 {
            // The code byte follows in the same write; a peer that stops here just closed.
            return None;
        }
        let code = self.rbuf[4];
        if code == Notice::ConnectionLimit as u8 {
            Some(Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                super::AtConnectionLimit,
            )))
        } else if code == Notice::Idle as u8 {
            Some(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                super::ClosedIdle,
            )))
        } else {
            None
        }
    }
}

impl<In: Inbound, Out: Outbound> Stream for Transport<In, Out> {
    type Item = io::Result<In>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<In>>> {
        self.get_mut().poll_frame(cx)
    }
}

/// Runs `encode` for a peer of client protocol `peer` (0: this build's own).
fn for_peer<R>(peer: u32, encode: impl FnOnce() -> R) -> R {
    match peer {
        0 => encode(),
        p => crate::proto::encoding::encoding_for(p, encode),
    }
}

impl<In: Inbound, Out: Outbound> Sink<Out> for Transport<In, Out> {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.wbuf.len() >= WRITE_HIGH_WATER {
            ready!(this.poll_write_buffer(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Out) -> io::Result<()> {
        let this = self.get_mut();
        if this.server.as_ref().is_some_and(|s| s.closing.is_some()) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the connection is closing",
            ));
        }
        // The size first: a message over the limit is refused before any of it is encoded, and
        // the buffer grows once (a large reply, such as a directory page, would otherwise
        // regrow and copy it several times).
        let peer = this
            .peer_protocol
            .as_ref()
            .map_or(0, |p| p.load(Ordering::Relaxed));
        let len = usize::try_from(for_peer(peer, || encoded_len(&item))?).unwrap_or(usize::MAX);
        if len > this.max_out {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a message of {len} bytes is over the {} bytes the {:?} service accepts",
                    this.max_out, this.service
                ),
            ));
        }
        let start = this.wbuf.len();
        this.wbuf.reserve(4 + len);
        this.wbuf.put_u32(len as u32);
        let written = for_peer(peer, || encode_into(&item, &mut (&mut this.wbuf).writer()));
        if let Err(e) = written {
            this.wbuf.truncate(start);
            return Err(e);
        }
        if let (Some(server), Some(id)) = (&mut this.server, item.answers()) {
            server.in_flight.remove(&id);
            server.last_activity = Instant::now();
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_buffer(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_buffer(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
