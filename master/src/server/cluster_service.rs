//! The cluster service for chunkservers: [`ClusterService`] on [`ClusterServer`].
//!
//! `hello` and `heartbeat` go straight to the chunk map (volatile, never logged), measured by the
//! master's clock, so a replica counts only on a server that reported it recently. `describe`
//! goes to the status page's reports (`status/reports.rs`), from a server in session only.
//! On a secured master every call must come from the certificate its server id first said
//! hello with (`check_peer`): a chunkserver cannot speak for another.

use super::ClusterServer;
use kfs_common::proto::cluster::{
    ClusterService, DescribeRequest, HeartbeatReply, HeartbeatRequest, HelloReply, HelloRequest,
};
use kfs_common::security::capability::CapabilityKey;
use kfs_common::{KfsError, KfsResult, ServerId};
use tarpc::context::Context;
use tracing::instrument;

impl ClusterServer {
    /// Whether this connection's certificate may speak for chunkserver `server`, and with
    /// `bind`, records that it does (a hello the chunk map accepted). A certificate a
    /// chunkserver made itself (`cs-ID`) proves its id: that id is its own and no other, and it
    /// takes the id over from any certificate that held it. Any other (enrolled) certificate
    /// holds one id, the first it said hello with that no other certificate holds; calls for an
    /// id from a certificate that does not hold it are refused.
    fn check_peer(&self, server: ServerId, bind: bool) -> KfsResult<()> {
        let Some(peer) = &self.peer else {
            return Ok(());
        };
        let refuse = |why: String| {
            tracing::warn!(%server, who = %peer, why, "refused: a chunkserver spoke for an id not its own");
            Err(KfsError::PermissionDenied(why))
        };
        let own = kfs_common::security::named_chunkserver(&peer.name);
        if let Some(own) = own
            && own != server
        {
            return refuse(format!("{peer} is chunkserver {own}, not {server}"));
        }
        let mut bindings = self.state.bindings.lock().expect("bindings lock");
        if own.is_some() {
            if bind {
                bindings.insert(server, peer.name.clone());
            }
            return Ok(());
        }
        match bindings.get(&server) {
            Some(name) if *name == peer.name => Ok(()),
            Some(name) => refuse(format!(
                "chunkserver {server} is the server of certificate '{name}', not of {peer}"
            )),
            None if bind => {
                if let Some((held, _)) = bindings.iter().find(|(_, name)| **name == peer.name) {
                    return refuse(format!(
                        "{peer} is already chunkserver {held}: one certificate per chunkserver"
                    ));
                }
                bindings.insert(server, peer.name.clone());
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl ClusterService for ClusterServer {
    #[instrument(level = "debug", skip_all, fields(server = %request.server, chunks = request.chunks.len()))]
    async fn hello(self, _: Context, request: HelloRequest) -> KfsResult<HelloReply> {
        let server = request.server;
        self.check_peer(server, false)?;
        let reply = self
            .state
            .chunks
            .lock()
            .expect("chunk map lock")
            .hello(request, self.state.clock.now())?;
        // Bound only once the hello was accepted (a refused one binds nothing).
        self.check_peer(server, true)?;
        Ok(reply)
    }

    #[instrument(level = "debug", skip_all, fields(server = %request.server))]
    async fn heartbeat(self, _: Context, request: HeartbeatRequest) -> KfsResult<HeartbeatReply> {
        self.check_peer(request.server, false)?;
        Ok(self
            .state
            .chunks
            .lock()
            .expect("chunk map lock")
            .heartbeat(request, self.state.clock.now()))
    }

    #[instrument(level = "debug", skip_all, fields(server = %request.server))]
    async fn describe(self, _: Context, request: DescribeRequest) -> KfsResult<()> {
        self.check_peer(request.server, false)?;
        let known = self
            .state
            .chunks
            .lock()
            .expect("chunk map lock")
            .in_session(request.server, request.session);
        if !known {
            return Err(KfsError::Unavailable(format!(
                "chunkserver {} is not registered in session {}: say hello first",
                request.server, request.session
            )));
        }
        self.state.reports.note_server(request);
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn capability_keys(self, _: Context) -> KfsResult<Vec<CapabilityKey>> {
        if let Some(peer) = &self.peer
            && peer.role != kfs_common::security::Role::Chunkserver
        {
            return Err(KfsError::PermissionDenied(format!(
                "{peer} may not have the capability keys: only chunkservers may"
            )));
        }
        Ok(self
            .state
            .keys
            .as_ref()
            .map(|keys| keys.published(kfs_common::security::capability::now_ms()))
            .unwrap_or_default())
    }
}
