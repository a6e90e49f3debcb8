//! The errors the client makes of transport failures.
//!
//! A leaf module: the master connection, the client's calls and the data path all name an
//! unreachable server the same way, so it imports none of them.

use kfs_common::KfsError;
use std::net::SocketAddr;

/// A transport failure (the master or a chunkserver could not be reached or did not answer) as
/// a user error: `Unavailable`, naming `what` and its address.
pub(crate) fn unreachable(what: &str, addr: SocketAddr, e: impl std::fmt::Display) -> KfsError {
    KfsError::Unavailable(format!(
        "{what} at {addr} did not answer ({e}); is it running and reachable?"
    ))
}
