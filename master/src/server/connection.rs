//! What the master knows of one client connection: the protocol version it said at the
//! handshake, and when its namespace changes are answered ([`Durability`], chosen with
//! `set_durability`; a new connection starts `Synced`).
//!
//! Only the changes a client asks for by RPC follow the durability chosen
//! (`MasterServer::mutate`); what the master logs for itself (leases, versions, volumes) is
//! always answered synced, because chunkservers act on it.
//!
//! The connection's transport encodes every reply for the protocol held here
//! ([`Connection::protocol_cell`]; `kfs_common::proto::encoding`): a client before 10 gets
//! symbolic links and special files as empty regular files, one before 11 `FileAttr`s without
//! the fields it does not know.

use super::MasterServer;
use kfs_common::proto::CLIENT_PROTOCOL_VERSION;
use kfs_common::proto::master::Durability;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// One connection's settings, shared by the server's clones for its calls.
#[derive(Debug)]
pub struct Connection {
    logged: AtomicBool,
    /// Shared with the connection's transport, which encodes replies for it.
    protocol: Arc<AtomicU32>,
}

impl Default for Connection {
    /// Internal callers (and a connection before its handshake) speak this build's protocol.
    fn default() -> Connection {
        Connection {
            logged: AtomicBool::new(false),
            protocol: Arc::new(AtomicU32::new(CLIENT_PROTOCOL_VERSION)),
        }
    }
}

impl Connection {
    /// The protocol the client said, for its transport to encode replies in.
    pub fn protocol_cell(&self) -> Arc<AtomicU32> {
        self.protocol.clone()
    }
}

impl MasterServer {
    /// When this connection's changes are answered.
    pub(super) fn durability(&self) -> Durability {
        match self.connection.logged.load(Ordering::Relaxed) {
            true => Durability::Logged,
            false => Durability::Synced,
        }
    }

    pub(super) fn set_connection_durability(&self, durability: Durability) {
        self.connection
            .logged
            .store(durability == Durability::Logged, Ordering::Relaxed);
    }

    /// Records the protocol the client said at its handshake.
    pub(super) fn set_connection_protocol(&self, protocol: u32) {
        self.connection.protocol.store(protocol, Ordering::Relaxed);
    }
}
