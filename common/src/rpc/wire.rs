//! What a frame carries, per direction: how it is decoded (a server clamps the deadline a
//! request asks for) and which requests it starts or answers (a server's idle timer needs to
//! know whether calls are in flight).
//!
//! The bytes are tarpc's own messages in bincode (`bincode::DefaultOptions`, as tarpc's
//! `tokio_serde` codec writes them), so peers built on tarpc's stock transport interoperate.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io;
use std::time::{Duration, Instant};
use tarpc::{ClientMessage, Request, Response};

/// Longest deadline a server gives a request, whatever the request asked for. tarpc turns the
/// deadline on the wire (a duration from now) into an `Instant` with `Instant::now() + d`, which
/// panics for a huge `d` (`u64::MAX` seconds), and its server queues every deadline in a timer
/// wheel that panics past about two years; so requests are decoded here, never by tarpc. No KFS
/// caller asks for more than a few minutes.
pub const MAX_DEADLINE: Duration = Duration::from_secs(3600);

fn options() -> impl bincode::Options {
    bincode::DefaultOptions::new()
}

fn invalid(e: bincode::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A message a transport receives.
pub trait Inbound: Sized + Send + 'static {
    /// Decodes one frame; `clamped` is set when a deadline was cut to [`MAX_DEADLINE`].
    fn decode(frame: &[u8], clamped: &mut bool) -> io::Result<Self>;
    /// The call this message starts (its id and deadline), if it is a request.
    fn starts(&self) -> Option<(u64, Instant)>;
    /// The call this message cancels, if it is a cancellation.
    fn cancels(&self) -> Option<u64>;
}

/// A message a transport sends.
pub trait Outbound: Serialize + Send + 'static {
    /// The call this message answers, if it is a response.
    fn answers(&self) -> Option<u64>;
}

/// The length of `item`'s encoding (a pass that copies nothing).
pub(crate) fn encoded_len(item: &impl Serialize) -> io::Result<u64> {
    use bincode::Options;
    options().serialized_size(item).map_err(invalid)
}

pub(crate) fn encode_into(item: &impl Serialize, out: &mut impl io::Write) -> io::Result<()> {
    use bincode::Options;
    options().serialize_into(out, item).map_err(invalid)
}

/// `ClientMessage` as it is on the wire, with the deadline as the plain duration it is there
/// (field order and variant order are tarpc's; bincode is positional).
#[derive(Deserialize)]
enum WireClientMessage<T> {
    Request(WireRequest<T>),
    Cancel {
        trace_context: tarpc::trace::Context,
        request_id: u64,
    },
}

#[derive(Deserialize)]
struct WireRequest<T> {
    context: WireContext,
    id: u64,
    message: T,
}

#[derive(Deserialize)]
struct WireContext {
    deadline: Duration,
    trace_context: tarpc::trace::Context,
}

impl<T: DeserializeOwned + Send + 'static> Inbound for ClientMessage<T> {
    fn decode(frame: &[u8], clamped: &mut bool) -> io::Result<Self> {
        use bincode::Options;
        let wire: WireClientMessage<T> = options().deserialize(frame).map_err(invalid)?;
        Ok(match wire {
            WireClientMessage::Request(WireRequest {
                context,
                id,
                message,
            }) => {
                *clamped = context.deadline > MAX_DEADLINE;
                let mut ctx = tarpc::context::current();
                ctx.deadline = Instant::now() + context.deadline.min(MAX_DEADLINE);
                ctx.trace_context = context.trace_context;
                ClientMessage::Request(Request {
                    context: ctx,
                    id,
                    message,
                })
            }
            WireClientMessage::Cancel {
                trace_context,
                request_id,
            } => ClientMessage::Cancel {
                trace_context,
                request_id,
            },
        })
    }

    fn starts(&self) -> Option<(u64, Instant)> {
        match self {
            ClientMessage::Request(r) => Some((r.id, r.context.deadline)),
            _ => None,
        }
    }

    fn cancels(&self) -> Option<u64> {
        match self {
            ClientMessage::Cancel { request_id, .. } => Some(*request_id),
            _ => None,
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> Inbound for Response<T> {
    fn decode(frame: &[u8], _clamped: &mut bool) -> io::Result<Self> {
        use bincode::Options;
        options().deserialize(frame).map_err(invalid)
    }

    fn starts(&self) -> Option<(u64, Instant)> {
        None
    }

    fn cancels(&self) -> Option<u64> {
        None
    }
}

impl<T: Serialize + Send + 'static> Outbound for ClientMessage<T> {
    fn answers(&self) -> Option<u64> {
        None
    }
}

impl<T: Serialize + Send + 'static> Outbound for Response<T> {
    fn answers(&self) -> Option<u64> {
        Some(self.request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(deadline: Duration) -> Vec<u8> {
        // What tarpc's own client sends, with the deadline a peer chose.
        #[derive(Serialize)]
        enum Msg {
            Request(Req),
        }
        #[derive(Serialize)]
        struct Req {
            context: (Duration, tarpc::trace::Context),
            id: u64,
            message: String,
        }
        let mut out = Vec::new();
        let msg = Msg::Request(Req {
            context: (deadline, tarpc::context::current().trace_context),
            id: 7,
            message: "hi".into(),
        });
        encode_into(&msg, &mut out).unwrap();
        out
    }

    #[test]
    fn a_huge_deadline_is_clamped() {
        let mut clamped = false;
        let frame = request(Duration::new(u64::MAX, 999_999_999));
        let msg = ClientMessage::<String>::decode(&frame, &mut clamped).unwrap();
        assert!(clamped);
        let (id, deadline) = msg.starts().unwrap();
        assert_eq!(id, 7);
        assert!(deadline <= Instant::now() + MAX_DEADLINE);
    }

    #[test]
    fn ordinary_deadlines_and_tarpcs_own_encoding_decode_unchanged() {
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + Duration::from_secs(10);
        let msg = ClientMessage::Request(Request {
            context: ctx,
            id: 3,
            message: "x".to_string(),
        });
        let mut frame = Vec::new();
        encode_into(&msg, &mut frame).unwrap();
        let mut clamped = false;
        let back = ClientMessage::<String>::decode(&frame, &mut clamped).unwrap();
        assert!(!clamped);
        let (id, deadline) = back.starts().unwrap();
        assert_eq!(id, 3);
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(8) && left <= Duration::from_secs(10));
    }
}
