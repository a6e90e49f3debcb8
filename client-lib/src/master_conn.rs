//! The client's connection to the master, dialled again after the master restarts.
//!
//! A [`Redialing`] stub holds the current connection and knows when it closed (its dispatch
//! task ended: the master went away). A call made on a closed connection first dials the master
//! again (one dial at a time, shared by every caller: callers that waited for a dial that failed
//! get its error instead of dialling again), within the call's own deadline, checks with a
//! handshake that it speaks the same protocol and chunk size, and then sends. A dial that finds
//! nobody there (connection refused or reset, no answer to the handshake: the master is
//! restarting), or a master at its connection limit, is tried again with backoff until the
//! call's deadline, so a master restart is a pause for the caller, not an error; a master that
//! answers with another protocol or chunk size is an error at once.
//!
//! Invariant: a request that went out on a connection that then broke is never re-sent, because
//! it may have been applied (`create`, `rename`), and the caller must see that it does not know.
//! Only dials and handshakes are retried, and one case the master vouches for: a connection it
//! closed as idle (`rpc::ClosedIdle`), after which it read nothing, so a request in flight then
//! was not applied and is sent once more on a new connection. So after a master restart every
//! later call succeeds once the master is back (within its deadline), and a call in flight at
//! the restart fails with `Unavailable` (the data path's retry loops then carry on). A
//! connection unused for `rpc::CLIENT_IDLE_REDIAL` (1 min) is replaced before sending, so with
//! the master's default idle timeout (5 min) a call and the idle close never even meet.

use crate::retry::RetryPolicy;
use kfs_common::proto::CLIENT_PROTOCOL_VERSION;
use kfs_common::proto::master::{
    Durability, MasterInfo, MasterServiceClient, MasterServiceRequest, MasterServiceResponse,
};
use kfs_common::security::Security;
use kfs_common::{KfsError, rpc};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tarpc::client::RpcError;
use tarpc::client::stub::Stub;

type Channel = tarpc::client::Channel<MasterServiceRequest, MasterServiceResponse>;

/// The master's RPC client, dialled again when its connection has closed.
pub(crate) type MasterClient = MasterServiceClient<Redialing>;

/// How a connection ended (its dispatch task finished).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// The master refused it at its connection limit.
    AtLimit,
    /// The master closed it as idle, after reading every request it answered and no other.
    Idle,
    /// Anything else: the master went away, or the connection broke.
    Broken,
}

/// One connection, how it ended once it has, and when a call last used it.
struct Conn {
    channel: Channel,
    ended: tokio::sync::watch::Receiver<Option<Ended>>,
    used: std::sync::Mutex<Instant>,
}

impl Conn {
    fn closed(&self) -> bool {
        self.ended.borrow().is_some()
    }

    /// How the connection ended, once its dispatch task has finished: a call that failed
    /// because the connection ended returns before that task does, so this waits for it (a
    /// moment; at most 1 s, after which it counts as broken).
    async fn end(&self) -> Ended {
        let mut ended = self.ended.clone();
        let end = tokio::time::timeout(Duration::from_secs(1), ended.wait_for(Option::is_some));
        match end.await {
            Ok(Ok(end)) => end.unwrap_or(Ended::Broken),
            _ => Ended::Broken,
        }
    }

    /// Open, and used recently enough that the master will not close it as idle under the call
    /// about to be sent (`rpc::CLIENT_IDLE_REDIAL`).
    fn usable(&self) -> bool {
        !self.closed()
            && self
                .used
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                < rpc::CLIENT_IDLE_REDIAL
    }

    fn mark_used(&self) {
        *self.used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

struct Shared {
    addr: SocketAddr,
    timeout: Duration,
    /// How dials are tried again (the client's one policy, `ClientOptions::retry`).
    retry: RetryPolicy,
    /// The chunk size the client was made with; a master that comes back with another is
    /// refused (offsets would map to the wrong chunks).
    chunk_size: u64,
    /// How connections are protected (TLS with this client's credentials, or none).
    security: Security,
    /// When the master answers this client's changes; set again on every new connection.
    durability: Durability,
    current: std::sync::Mutex<Arc<Conn>>,
    /// Held while dialling, so that many callers finding the connection closed dial once. It
    /// holds how many dials were made, and the error of the last one if it failed.
    dialling: tokio::sync::Mutex<(u64, Option<KfsError>)>,
}

/// A tarpc stub over the current connection to the master (see the module docs).
#[derive(Clone)]
pub(crate) struct Redialing(Arc<Shared>);

/// Connects to the master at `addr` and shakes hands; the client dials again by itself later.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    retry: RetryPolicy,
    security: Security,
    durability: Durability,
) -> Result<(MasterClient, MasterInfo), KfsError> {
    // The first dial is not retried: a program started while no master runs hears so at once.
    let (conn, info) = dial(addr, timeout, &security, durability)
        .await
        .map_err(DialError::into_error)?;
    let stub = Redialing(Arc::new(Shared {
        addr,
        timeout,
        retry,
        security,
        durability,
        chunk_size: info.chunk_size,
        current: std::sync::Mutex::new(Arc::new(conn)),
        dialling: tokio::sync::Mutex::new((0, None)),
    }));
    Ok((MasterServiceClient::from(stub), info))
}

/// Why a dial failed.
enum DialError {
    /// Nobody answered (refused, reset, timed out, the handshake cut off): the master may be
    /// restarting, so dialling again later may succeed.
    Unreachable(KfsError),
    /// The master answered, and refused or does not fit this client: dialling again is no use.
    Refused(KfsError),
}

impl DialError {
    fn into_error(self) -> KfsError {
        match self {
            DialError::Unreachable(e) | DialError::Refused(e) => e,
        }
    }
}

fn at_limit(addr: SocketAddr) -> KfsError {
    KfsError::Unavailable(format!(
        "the master at {addr} is at its connection limit (max_connections); try again later"
    ))
}

/// Why connecting failed: a master that does not speak this client's protocol version refuses
/// for good; at its connection limit, or not answering, it may let the client in later.
fn connect_error(addr: SocketAddr, e: std::io::Error) -> DialError {
    if let Some(m) = rpc::protocol_mismatch(&e) {
        tracing::warn!(%addr, error = %m, "the master refused this client's protocol version");
        let theirs = if m.ours < m.oldest {
            m.oldest
        } else {
            m.newest
        };
        return DialError::Refused(KfsError::IncompatibleProtocol {
            ours: m.ours,
            theirs,
        });
    }
    if rpc::at_connection_limit(&e) {
        return DialError::Unreachable(at_limit(addr));
    }
    // TLS required of a plain client, a certificate not of the cluster, a role not admitted:
    // dialling again is no use.
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        return DialError::Refused(KfsError::PermissionDenied(e.to_string()));
    }
    DialError::Unreachable(crate::errors::unreachable("the master", addr, &e))
}

/// A new connection to `addr` whose handshake succeeded, answering changes at `durability`.
async fn dial(
    addr: SocketAddr,
    timeout: Duration,
    security: &Security,
    durability: Durability,
) -> Result<(Conn, MasterInfo), DialError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        DialError::Unreachable(crate::errors::unreachable("the master", addr, e))
    };
    let transport =
        tokio::time::timeout(timeout, rpc::connect(addr, rpc::Service::Master, security))
            .await
            .map_err(|_| unreachable(&"connect timed out"))?
            .map_err(|e| connect_error(addr, e))?;
    let tarpc::client::NewClient { client, dispatch } =
        tarpc::client::new(tarpc::client::Config::default(), transport);
    // How the connection ended: a call in flight then fails as `Shutdown`, which does not
    // carry the reason (the server's notice), so the dispatch task tells it.
    let (ended_tx, ended) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let end = match dispatch.await {
            Ok(()) => Ended::Broken,
            Err(e) if rpc::at_connection_limit(&e) => Ended::AtLimit,
            Err(e) if rpc::closed_idle(&e) => Ended::Idle,
            Err(error) => {
                tracing::debug!(%addr, %error, "connection to the master failed");
                Ended::Broken
            }
        };
        ended_tx.send_replace(Some(end));
    });
    let conn = Conn {
        channel: client,
        ended,
        used: std::sync::Mutex::new(Instant::now()),
    };
    let handshake = MasterServiceClient::from(conn.channel.clone())
        .handshake(rpc::context(timeout), CLIENT_PROTOCOL_VERSION)
        .await;
    let limited = match &handshake {
        Err(e) if rpc::at_connection_limit(e) => true,
        // The connection ended under the call: the dispatch task has just finished, or is
        // about to.
        Err(RpcError::Shutdown | RpcError::Channel(_)) => conn.end().await == Ended::AtLimit,
        _ => false,
    };
    let info = handshake
        .map_err(|e| {
            if limited {
                DialError::Unreachable(at_limit(addr))
            } else {
                unreachable(&e)
            }
        })?
        .map_err(DialError::Refused)?;
    if durability != Durability::Synced {
        MasterServiceClient::from(conn.channel.clone())
            .set_durability(rpc::context(timeout), durability)
            .await
            .map_err(|e| unreachable(&e))?
            .map_err(DialError::Refused)?;
    }
    Ok((conn, info))
}

impl Redialing {
    /// The current connection if it is open; otherwise a new one, dialled within `timeout`.
    async fn open_conn(&self, timeout: Duration) -> Result<Arc<Conn>, KfsError> {
        let current = self.current();
        if current.usable() {
            current.mark_used();
            return Ok(current);
        }
        // Boxed: the dial's state machine is large, and every call's future would carry it.
        Box::pin(self.redial(timeout)).await
    }

    /// A new connection, dialled within `timeout` (or the one another caller just dialled).
    async fn redial(&self, timeout: Duration) -> Result<Arc<Conn>, KfsError> {
        let deadline = kfs_common::clock::Clock::system().now() + timeout;
        let dials_seen = self.0.dialling.try_lock().map(|d| d.0).ok();
        let mut dialling = tokio::time::timeout(timeout, self.0.dialling.lock())
            .await
            .map_err(|_| self.gone("waited for another call's dial until the deadline"))?;
        let current = self.current();
        if current.usable() {
            current.mark_used();
            return Ok(current); // another caller dialled while this one waited
        }
        if dials_seen.is_none_or(|seen| seen != dialling.0)
            && let Some(failed) = &dialling.1
        {
            return Err(failed.clone()); // the dial this caller waited for failed
        }
        if current.closed() {
            tracing::info!(addr = %self.0.addr, "the connection to the master closed; dialling again");
        } else {
            tracing::debug!(addr = %self.0.addr, "the connection to the master was idle; dialling again");
        }
        dialling.0 += 1;
        let outcome = self.dial_until(deadline).await;
        match outcome {
            Ok(conn) => {
                dialling.1 = None;
                *self.0.current.lock().unwrap_or_else(|p| p.into_inner()) = conn.clone();
                Ok(conn)
            }
            Err(e) => {
                dialling.1 = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Dials until a handshake succeeds, the master refuses, or `deadline` passes, backing off
    /// between attempts while nobody answers.
    async fn dial_until(&self, deadline: Instant) -> Result<Arc<Conn>, KfsError> {
        let addr = self.0.addr;
        let mut retries = self.0.retry.until(deadline);
        loop {
            match dial(addr, retries.left(), &self.0.security, self.0.durability).await {
                Ok((_, info)) if info.chunk_size != self.0.chunk_size => {
                    return Err(KfsError::Unavailable(format!(
                        "the master at {addr} came back with chunk size {} where this client \
                         was made with {}: connect again",
                        info.chunk_size, self.0.chunk_size
                    )));
                }
                Ok((conn, _)) => return Ok(Arc::new(conn)),
                Err(DialError::Refused(e)) => return Err(e),
                Err(DialError::Unreachable(e)) => {
                    if !retries.time_left() {
                        return Err(e);
                    }
                    tracing::debug!(%addr, error = %e, "the master is not answering yet; dialling again");
                    retries.pause().await;
                }
            }
        }
    }

    fn gone(&self, why: &str) -> KfsError {
        crate::errors::unreachable("the master", self.0.addr, why)
    }

    fn current(&self) -> Arc<Conn> {
        self.0
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Redialing {
    /// An open connection, dialled if need be within the call's deadline.
    async fn conn_within(&self, ctx: &tarpc::context::Context) -> Result<Arc<Conn>, RpcError> {
        let left = ctx
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        self.open_conn(left.min(self.0.timeout))
            .await
            .map_err(|e| RpcError::Send(Box::new(e)))
    }
}

impl Stub for Redialing {
    type Req = MasterServiceRequest;
    type Resp = MasterServiceResponse;

    async fn call(
        &self,
        ctx: tarpc::context::Context,
        request: MasterServiceRequest,
    ) -> Result<MasterServiceResponse, RpcError> {
        let conn = self.conn_within(&ctx).await?;
        // Boxed: the channel's call future is ~1.4 KiB, and every layer above would carry it
        // (twice, in the generated client's `async` wrapper).
        match Box::pin(conn.channel.call(ctx, request.clone())).await {
            // The master closed the connection as idle just as this call went out; it read
            // nothing after deciding to, so the request was not applied: send it again.
            Err(RpcError::Shutdown | RpcError::Channel(_)) if conn.end().await == Ended::Idle => {
                tracing::debug!(addr = %self.0.addr, "the master closed the connection as idle under a call; sending it again");
                let conn = self.conn_within(&ctx).await?;
                Box::pin(conn.channel.call(ctx, request)).await
            }
            result => result,
        }
    }
}
