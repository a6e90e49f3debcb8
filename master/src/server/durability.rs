//! When a connection's namespace changes are answered: [`Durability`], chosen per connection
//! with `set_durability` (a new connection starts `Synced`).
//!
//! Only the changes a client asks for by RPC follow the choice (`MasterServer::mutate`); what
//! the master logs for itself (leases, versions, volumes) is always answered synced, because
//! chunkservers act on it.

use super::MasterServer;
use kfs_common::proto::master::Durability;
use std::sync::atomic::{AtomicBool, Ordering};

/// One connection's choice, shared by the server's clones for its calls.
#[derive(Debug, Default)]
pub struct ConnectionDurability {
    logged: AtomicBool,
}

impl MasterServer {
    /// When this connection's changes are answered.
    pub(super) fn durability(&self) -> Durability {
        match self.durability.logged.load(Ordering::Relaxed) {
            true => Durability::Logged,
            false => Durability::Synced,
        }
    }

    pub(super) fn set_connection_durability(&self, durability: Durability) {
        self.durability
            .logged
            .store(durability == Durability::Logged, Ordering::Relaxed);
    }
}
