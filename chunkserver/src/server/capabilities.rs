//! Who may make which call on a secured chunkserver.
//!
//! - The calls that change replicas and only the master makes (`create`, `set_version`,
//!   `replicate`, `create_volume`, `replicate_volume`): the master's certificate alone
//!   ([`ChunkServer::master_only`]).
//! - The data calls without a capability (`read`, `write`, `sync`, `append`, `read_record`,
//!   `read_volume`, `digest`, `length`, `checksum`): the master's and chunkservers' (the
//!   chains forward writes and syncs, copies read replicas) ([`ChunkServer::cluster_only`]).
//! - The data calls of clients (`read_with` ...): any certificate of the cluster, with the
//!   master's capability for exactly that call, issued to that certificate
//!   ([`ChunkServer::check_capability`], `kfs_common::security::capability`).
//!
//! An insecure server (no peer) checks nothing.

use super::ChunkServer;
use kfs_common::security::Role;
use kfs_common::security::capability::{Access, Capability, Wanted, now_ms};
use kfs_common::{KfsError, KfsResult};

impl ChunkServer {
    /// This server as the unsigned calls see it once a capability was checked: as the cluster's
    /// own peer, so [`Self::cluster_only`] lets the call through.
    pub(super) fn unchecked(self) -> ChunkServer {
        ChunkServer { peer: None, ..self }
    }

    /// Refuses `call` unless this connection's certificate is the master's.
    pub(super) fn master_only(&self, call: &str) -> KfsResult<()> {
        match &self.peer {
            Some(peer) if peer.identity.role != Role::Master => {
                let who = &peer.identity;
                tracing::warn!(%who, call, "refused: only the master makes this call");
                Err(KfsError::PermissionDenied(format!(
                    "{who} may not call {call} on a chunkserver: only the master may"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Refuses `call` unless this connection's certificate is the master's or a chunkserver's.
    pub(super) fn cluster_only(&self, call: &str) -> KfsResult<()> {
        match &self.peer {
            Some(peer) if !matches!(peer.identity.role, Role::Master | Role::Chunkserver) => {
                let who = &peer.identity;
                tracing::warn!(%who, call, "refused: a data call without a capability");
                Err(KfsError::PermissionDenied(format!(
                    "{who} may not call {call} on a chunkserver without a capability (the \
                     client is older than this cluster: upgrade it)"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Checks `cap` for a call on its chunk: `access` (`None`: any), bytes `offset..offset +
    /// len`, the record of file `fid` (record reads), for this connection's certificate.
    pub(super) fn check_capability(
        &self,
        cap: &Capability,
        access: Option<Access>,
        offset: u64,
        len: u64,
        fid: Option<kfs_common::FileId>,
    ) -> KfsResult<()> {
        let Some(peer) = &self.peer else {
            return Ok(());
        };
        let wanted = Wanted {
            chunk: cap.chunk,
            version: cap.version,
            access,
            offset,
            len,
            fid,
            holder: &peer.certificate,
        };
        self.keys.verify(cap, &wanted, now_ms()).map_err(|refusal| {
            tracing::info!(who = %peer.identity, chunk = %cap.chunk, %refusal, "capability refused");
            KfsError::from(refusal)
        })
    }

    /// [`Self::check_capability`] for a call that names its own chunk and version, which must
    /// be the capability's.
    pub(super) fn check_capability_for(
        &self,
        cap: &Capability,
        chunk: kfs_common::ChunkId,
        version: kfs_common::ChunkVersion,
        access: Access,
    ) -> KfsResult<()> {
        if self.peer.is_some() && (cap.chunk != chunk || cap.version != version) {
            return Err(KfsError::PermissionDenied(format!(
                "the capability is for {} at {}, not {chunk} at {version}",
                cap.chunk, cap.version
            )));
        }
        self.check_capability(cap, Some(access), 0, 0, None)
    }
}
