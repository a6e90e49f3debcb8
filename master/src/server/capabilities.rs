//! The capabilities the master signs into its answers about where data is (the `*_signed`
//! calls of client protocol 8): a read capability per located chunk or per packed file's
//! record, a write capability per chunk lease, an append capability per volume lease, each for
//! the certificate of the connection that asked (`kfs_common::security::capability`).
//!
//! Invariants: a capability that opens a volume opens one record only (volumes hold many
//! users' files); a capability is signed only after the unsigned call it comes with passed its
//! permission checks (the `*_signed` calls run their namesakes first), and only for what that
//! call answered; an insecure master (no peer, no key ring) signs nothing.

use super::MasterServer;
use kfs_common::proto::master::{ChunkLocation, Layout, Signed, WriteLease};
use kfs_common::security::capability::{Access, Capability, Grant, now_ms};

impl MasterServer {
    fn sign(&self, grants: impl IntoIterator<Item = Grant>) -> Vec<Capability> {
        let (Some(keys), Some(peer)) = (&self.state.keys, &self.peer) else {
            return Vec::new();
        };
        let now = now_ms();
        grants
            .into_iter()
            .map(|g| keys.sign(g, &peer.certificate, now))
            .collect()
    }

    /// Located chunks, with a read capability for each that is a file's own: a packed file's
    /// volume (which `locate` names for old readers) gets none, since it holds other files'
    /// records too (readers of packed files read their record under `layout_signed`'s).
    pub(super) fn with_read_caps(&self, found: Vec<ChunkLocation>) -> Signed<Vec<ChunkLocation>> {
        if self.state.keys.is_none() {
            return (found, Vec::new());
        }
        let own: Vec<Grant> = {
            let ns = self.state.ns.read().expect("namespace lock");
            found
                .iter()
                .filter(|c| ns.volume(c.chunk).is_none())
                .map(|c| Grant::whole(c.chunk, c.version, Access::Read))
                .collect()
        };
        (found, self.sign(own))
    }

    /// A layout of file `fid`, with a read capability per chunk, or for its packed record alone
    /// (bound to `fid`, so only a record of this file's is read under it).
    pub(super) fn layout_caps(&self, fid: kfs_common::FileId, layout: &Layout) -> Vec<Capability> {
        match layout {
            Layout::Chunks(Some(found)) => self.with_read_caps(found.clone()).1,
            Layout::Chunks(None) => Vec::new(),
            Layout::Packed(extent) => self.sign([Grant {
                offset: extent.offset,
                len: u64::from(extent.len),
                fid: Some(fid),
                ..Grant::whole(extent.volume, extent.version, Access::Read)
            }]),
        }
    }

    /// A lease, with the capability to write (or, for a volume, append to) its chunk.
    pub(super) fn with_lease_cap(&self, lease: WriteLease, access: Access) -> Signed<WriteLease> {
        let caps = self.sign([Grant::whole(lease.chunk, lease.version, access)]);
        (lease, caps)
    }
}
