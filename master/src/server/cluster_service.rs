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
use kfs_common::{KfsError, KfsResult, ServerId};
use tarpc::context::Context;
use tracing::instrument;

impl ClusterServer {
    /// Whether this connection's certificate may speak for chunkserver `server`: the first
    /// hello of an id binds it to the certificate's name, and later calls for that id from
    /// another certificate are refused (`bind`: whether this call may make the binding).
    fn check_peer(&self, server: ServerId, bind: bool) -> KfsResult<()> {
        let Some(peer) = &self.peer else {
            return Ok(());
        };
        // A certificate a chunkserver made itself names its id: only that id is its own.
        if let Some(own) = kfs_common::security::named_chunkserver(&peer.name)
            && own != server
        {
            tracing::warn!(%server, who = %peer, "refused: a chunkserver spoke for another id");
            return Err(KfsError::PermissionDenied(format!(
                "{peer} is chunkserver {own}, not {server}"
            )));
        }
        let mut bindings = self.state.bindings.lock().expect("bindings lock");
        match bindings.get(&server) {
            Some(name) if *name == peer.name => Ok(()),
            Some(name) => {
                tracing::warn!(%server, bound = %name, who = %peer, "refused: a chunkserver id claimed by another certificate");
                Err(KfsError::PermissionDenied(format!(
                    "chunkserver {server} is the server of certificate '{name}', not of {peer}"
                )))
            }
            None if bind => {
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
        self.check_peer(request.server, true)?;
        self.state
            .chunks
            .lock()
            .expect("chunk map lock")
            .hello(request, self.state.clock.now())
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
}
