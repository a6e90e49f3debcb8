//! [`KfsFs`]: the `fuser::Filesystem` the kernel calls. Each request runs as a task on the
//! mount's tokio runtime (the kernel's thread only hands it over), and replies when done, so
//! many requests are in flight at once; the work is in `ops/`, on the shared [`MountState`].

use crate::ops::attrs::AttrChange;
use crate::state::MountState;
use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// Largest write the kernel sends in one request (and what it reads ahead, at most).
const MAX_WRITE: u32 = 1 << 20;
/// Requests the kernel keeps in flight in the background (readahead, writeback).
const MAX_BACKGROUND: u16 = 64;
/// Entries fetched per `readdir` request (the kernel's buffer takes what fits).
const ENTRIES_PER_READ: usize = 256;

pub struct KfsFs {
    state: Arc<MountState>,
    runtime: tokio::runtime::Handle,
}

impl KfsFs {
    pub fn new(state: Arc<MountState>, runtime: tokio::runtime::Handle) -> KfsFs {
        KfsFs { state, runtime }
    }

    /// Runs `work` on the runtime with the mount's state.
    fn run<F, Fut>(&self, work: F)
    where
        F: FnOnce(Arc<MountState>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let state = self.state.clone();
        // Boxed where it is made: the task then moves a pointer, not the whole state machine
        // (kilobytes for an operation of several master calls).
        self.runtime.spawn(Box::pin(work(state)));
    }
}

fn reply_entry(state: &MountState, reply: ReplyEntry, result: Result<fuser::FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&state.settings.entry_ttl, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, result: Result<Vec<u8>, Errno>) {
    match result {
        Ok(data) if size == 0 => reply.size(data.len() as u32),
        Ok(data) if data.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(data) => reply.data(&data),
        Err(e) => reply.error(e),
    }
}

fn open_flags(keep_cache: bool) -> FopenFlags {
    if keep_cache {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

impl Filesystem for KfsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        let _ = config.set_max_background(MAX_BACKGROUND);
        for wanted in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
        ] {
            if config.add_capabilities(wanted).is_err() {
                tracing::debug!(?wanted, "the kernel does not offer this FUSE capability");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_owned();
        self.run(move |s| async move {
            let result = s.lookup(parent.0, &name).await;
            reply_entry(&s, reply, result);
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.state.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.run(move |s| async move {
            match s.getattr(ino.0).await {
                Ok((attr, ttl)) => reply.attr(&ttl, &attr),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = AttrChange {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        self.run(move |s| async move {
            match s.setattr(ino.0, change).await {
                Ok(attr) => reply.attr(&s.settings.attr_ttl, &attr),
                Err(e) => reply.error(e),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let (name, uid, gid) = (name.to_owned(), req.uid(), req.gid());
        self.run(move |s| async move {
            let result = s.mkdir(parent.0, &name, mode, uid, gid).await;
            reply_entry(&s, reply, result);
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.run(move |s| async move { reply_empty(reply, s.unlink(parent.0, &name).await) });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.run(move |s| async move { reply_empty(reply, s.rmdir(parent.0, &name).await) });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, target, uid, gid) = (
            link_name.to_owned(),
            target.to_owned(),
            req.uid(),
            req.gid(),
        );
        self.run(move |s| async move {
            let result = s.symlink(parent.0, &name, &target, uid, gid).await;
            reply_entry(&s, reply, result);
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.run(move |s| async move {
            match s.readlink(ino.0).await {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(e),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (name, uid, gid) = (name.to_owned(), req.uid(), req.gid());
        self.run(move |s| async move {
            let result = s.mknod(parent.0, &name, mode, rdev, uid, gid).await;
            reply_entry(&s, reply, result);
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname): (OsString, OsString) = (name.to_owned(), newname.to_owned());
        self.run(move |s| async move {
            let result = s
                .rename(parent.0, &name, newparent.0, &newname, flags)
                .await;
            reply_empty(reply, result);
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = newname.to_owned();
        self.run(move |s| async move {
            let result = s.link(ino.0, newparent.0, &newname).await;
            reply_entry(&s, reply, result);
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.run(move |s| async move {
            match s.open(ino.0, flags).await {
                Ok(opened) => reply.opened(FileHandle(opened.fh), open_flags(opened.keep_cache)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.run(move |s| async move {
            match s.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(e),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.run(move |s| async move {
            match s.write(fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(e),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.run(move |s| async move { reply_empty(reply, s.flush(fh.0).await) });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.run(move |s| async move { reply_empty(reply, s.release(fh.0).await) });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.run(move |s| async move { reply_empty(reply, s.fsync(fh.0).await) });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.run(move |s| async move {
            match s.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.run(move |s| async move {
            match s
                .read_dir(ino.0, fh.0, offset, ENTRIES_PER_READ, false)
                .await
            {
                Ok(entries) => {
                    for e in entries {
                        if reply.add(INodeNo(e.ino), e.next, e.kind, &e.name) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(e),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.run(move |s| async move {
            match s
                .read_dir(ino.0, fh.0, offset, ENTRIES_PER_READ, true)
                .await
            {
                Ok(entries) => {
                    let ttl = s.settings.entry_ttl;
                    for e in entries {
                        let Some(attr) = e.attr else { break };
                        if reply.add(INodeNo(e.ino), e.next, &e.name, &ttl, &attr, Generation(0)) {
                            break;
                        }
                        if e.name != "." && e.name != ".." {
                            // The kernel counts this entry as a lookup.
                            s.inodes.looked_up(e.ino, ino.0, &e.name);
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(e),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.state.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // The directory's changes are in the master's log: synced with everything before.
        self.run(move |s| async move { reply_empty(reply, s.sync_names("fsyncdir").await) });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.run(move |s| async move {
            match s.statfs().await {
                Ok(space) => reply.statfs(
                    space.blocks,
                    space.free,
                    space.free,
                    space.files,
                    space.free_files,
                    4096,
                    kfs_common::path::MAX_NAME_LEN as u32,
                    4096,
                ),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let (name, value) = (name.to_owned(), value.to_vec());
        self.run(move |s| async move {
            reply_empty(reply, s.setxattr(ino.0, &name, &value, flags).await)
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = name.to_owned();
        self.run(move |s| async move { reply_xattr(reply, size, s.getxattr(ino.0, &name).await) });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.run(move |s| async move { reply_xattr(reply, size, s.listxattr(ino.0).await) });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.run(move |s| async move { reply_empty(reply, s.removexattr(ino.0, &name).await) });
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with `default_permissions`: the kernel checks the mode bits itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (name, uid, gid) = (name.to_owned(), req.uid(), req.gid());
        self.run(move |s| async move {
            match s.create(parent.0, &name, mode, flags, uid, gid).await {
                Ok((attr, opened)) => reply.created(
                    &s.settings.entry_ttl,
                    &attr,
                    Generation(0),
                    FileHandle(opened.fh),
                    open_flags(opened.keep_cache),
                ),
                Err(e) => reply.error(e),
            }
        });
    }
}
