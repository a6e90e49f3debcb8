//! Symbolic links and special files (FIFOs, sockets, devices), client protocol 10: made like a
//! new file (permission to add a name to the parent, the caller's ownership, a fresh id), never
//! replacing a name, and holding no data. Hard links (client protocol 11): another name for an
//! existing file, which needs the right to add a name where it goes and to read the file.

use super::MasterServer;
use super::namespace_service::expect_attr;
use crate::namespace::op::{Op, Special};
use kfs_common::KfsResult;
use kfs_common::proto::master::FileAttr;
use kfs_common::proto::now;

impl MasterServer {
    /// Makes `special` at `path` with permission bits `mode`.
    pub(super) async fn make_special(
        &self,
        path: String,
        special: Special,
        mode: u16,
    ) -> KfsResult<FileAttr> {
        let caller = self.caller()?;
        self.may_create(&caller, &path)?;
        let op = Op::MakeSpecial {
            special,
            mode,
            owner: caller.user.uid,
            group: caller.gid(),
            fid: self.allocate_fids(1),
            time: now(),
            path,
        };
        let attr = self.mutate(op).await.and_then(expect_attr)?;
        self.grant(&caller, attr.fid);
        Ok(attr)
    }

    /// Names the file at `src` also `dst`.
    pub(super) async fn link_names(&self, src: String, dst: String) -> KfsResult<FileAttr> {
        let caller = self.caller()?;
        self.may_search(&caller, &src)?;
        self.may_create(&caller, &dst)?;
        let attr = self
            .mutate(Op::Link {
                src,
                dst,
                time: now(),
            })
            .await
            .and_then(expect_attr)?;
        self.grant(&caller, attr.fid);
        Ok(attr)
    }
}
