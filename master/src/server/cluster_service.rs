//! The cluster service for chunkservers: [`ClusterService`] on [`ClusterServer`].
//!
//! `hello` and `heartbeat` go straight to the chunk map (volatile, never logged), measured by the
//! master's clock, so a replica counts only on a server that reported it recently. `describe`
//! goes to the status page's reports (`status/reports.rs`), from a server in session only.

use super::ClusterServer;
use kfs_common::proto::cluster::{
    ClusterService, DescribeRequest, HeartbeatReply, HeartbeatRequest, HelloReply, HelloRequest,
};
use kfs_common::{KfsError, KfsResult};
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

    #[instrument(level = "debug", skip_all, fields(server = %request.server))]
    async fn describe(self, _: Context, request: DescribeRequest) -> KfsResult<()> {
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
