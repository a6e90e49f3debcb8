//! The cluster service for chunkservers: [`ClusterService`] on [`ClusterServer`].
//!
//! `hello` and `heartbeat` go straight to the chunk map (volatile, never logged), measured by the
//! master's clock, so a replica counts only on a server that reported it recently.

use super::ClusterServer;
use kfs_common::KfsResult;
use kfs_common::proto::cluster::{
    ClusterService, HeartbeatReply, HeartbeatRequest, HelloReply, HelloRequest,
};
use tarpc::context::Context;
use tracing::instrument;

impl ClusterService for ClusterServer {
    #[instrument(level = "debug", skip_all, fields(server = %request.server, chunks = request.chunks.len()))]
    async fn hello(self, _: Context, request: HelloRequest) -> KfsResult<HelloReply> {
        self.state
            .chunks
            .lock()
            .expect("chunk map lock")
            .hello(request, self.state.clock.now())
    }

    #[instrument(level = "debug", skip_all, fields(server = %request.server))]
    async fn heartbeat(self, _: Context, request: HeartbeatRequest) -> KfsResult<HeartbeatReply> {
        Ok(self
            .state
            .chunks
            .lock()
            .expect("chunk map lock")
            .heartbeat(request, self.state.clock.now()))
    }
}
