//! The namespace service for clients: [`MasterService`] on [`MasterServer`].
//!
//! Each RPC is a `debug` span (tarpc adds an `RPC` span with the trace id). Reads take the
//! namespace's read lock; mutations are checked against the current state first (so a request
//! that cannot succeed, or changes nothing, costs no log write) and then go through the
//! [`Committer`](crate::committer::Committer), which answers after the op is applied and durable
//! (or, on a connection that asked for `Durability::Logged`, written: see `connection.rs`).
//! File ids are handed out before the op is logged, so the server's counter is never behind the
//! namespace's. Chunk locations come from the chunk map; in safe mode a chunk no server has
//! reported yet is `Unavailable` to a reader (ask again), not lost.

use super::MasterServer;
use crate::chunks::leases::LeaseContext;
use crate::namespace::op::{Op, Prepared, Reply, Special};
use crate::namespace::{DEFAULT_DIR_MODE, DEFAULT_FILE_MODE};
use crate::users::access::{READ, SEARCH, WRITE};
use kfs_common::proto::master::{
    ChunkLocation, ChunkserverInfo, CreateOptions, DirPage, Durability, FileAttr, FsckReport,
    FsckSummary, GatewayReply, GatewayReport, Layout, MasterInfo, MasterService, MkdirOptions,
    MknodOptions, NameChange, NamespaceCounters, OpenFileInfo, RemoveSummary, SafeModeStatus,
    SetAttr, Signed, WorkerInfo, WriteLease,
};
use kfs_common::proto::users::{NewUser, UserAdded, UserInfo, WhoAmI};
use kfs_common::proto::{CLIENT_PROTOCOL_VERSION, OLDEST_CLIENT_PROTOCOL, now};
use kfs_common::security::capability::Access;
use kfs_common::{ChunkId, ChunkVersion, FileId, KfsError, KfsResult, ServerId, path};
use serde_bytes::ByteBuf;
use std::sync::atomic::Ordering;
use tarpc::context::Context;
use tracing::instrument;

impl MasterServer {
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&crate::namespace::Namespace) -> KfsResult<T>,
    ) -> KfsResult<T> {
        f(&self.state.ns.read().expect("namespace lock"))
    }

    /// Checks `op`; logs and applies it if it changes anything.
    pub(super) async fn mutate(&self, op: Op) -> KfsResult<Reply> {
        if let Prepared::Unchanged(reply) = self.read(|ns| ns.prepare(&op))? {
            return Ok(reply);
        }
        self.state
            .committer
            .commit_with(op, self.durability())
            .await
            .map(|applied| applied.reply)
    }

    /// Runs a call to the lease desk (`what` it is, for the error) to its end in a task of its
    /// own, even if the caller goes away (its connection closed, its deadline passed: the RPC's
    /// future is then dropped). Cut midway, a grant, a volume or a failure report would leave
    /// replicas made (or moved to a new version) on chunkservers that no logged op names, kept
    /// until those servers' next hello.
    async fn to_the_end<T, Fut>(
        &self,
        what: impl std::fmt::Display,
        call: impl FnOnce(MasterServer) -> Fut,
    ) -> KfsResult<T>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = KfsResult<T>> + Send + 'static,
    {
        tokio::spawn(call(self.clone()))
            .await
            .map_err(|e| KfsError::Internal(format!("{what} failed: {e}")))?
    }

    async fn grant_to_the_end(
        &self,
        fid: FileId,
        chunk_offset: u64,
        unpacking: bool,
    ) -> KfsResult<WriteLease> {
        self.to_the_end(format!("the lease grant of {fid}"), move |s| async move {
            let cx = s.lease_context();
            s.state
                .leases
                .lease(&cx, fid, chunk_offset, unpacking)
                .await
        })
        .await
    }

    pub(super) fn lease_context(&self) -> LeaseContext<'_> {
        LeaseContext {
            ns: &self.state.ns,
            chunks: &self.state.chunks,
            log: &self.state.committer,
        }
    }

    /// Where `chunks` (`(offset, chunk, version)`) are; for a reader (`for_reading`), a chunk no
    /// server has reported yet in safe mode is `Unavailable` (ask again), not lost.
    pub(super) fn locations_of(
        &self,
        chunks: Vec<(u64, ChunkId, ChunkVersion)>,
        for_reading: bool,
    ) -> KfsResult<Vec<ChunkLocation>> {
        let mut map = self.state.chunks.lock().expect("chunk map lock");
        let found: Vec<ChunkLocation> = chunks
            .into_iter()
            .map(|(offset, chunk, version)| ChunkLocation {
                offset,
                chunk,
                version,
                replicas: map.locations(chunk),
            })
            .collect();
        // Just after a restart a chunk may have replicas that have not reported yet: the reader
        // should ask again, not conclude that the chunk is lost.
        if for_reading
            && let Some(unknown) = found.iter().find(|l| l.replicas.is_empty())
            && map.in_safe_mode(self.state.clock.now())
        {
            return Err(KfsError::Unavailable(format!(
                "the master has just restarted and no chunkserver has reported {} yet; ask again shortly",
                unknown.chunk
            )));
        }
        Ok(found)
    }

    pub(super) fn allocate_fids(&self, count: u64) -> FileId {
        FileId(self.state.next_fid.fetch_add(count, Ordering::Relaxed))
    }
}

pub(super) fn expect_attr(reply: Reply) -> KfsResult<FileAttr> {
    match reply {
        Reply::Attr(attr) => Ok(attr),
        other => Err(KfsError::Internal(format!(
            "expected attributes, got {other:?}"
        ))),
    }
}

fn expect_removed(reply: Reply) -> KfsResult<RemoveSummary> {
    match reply {
        Reply::Removed(summary) => Ok(summary),
        Reply::Done => Ok(RemoveSummary::default()),
        other => Err(KfsError::Internal(format!(
            "expected a summary, got {other:?}"
        ))),
    }
}

impl MasterService for MasterServer {
    #[instrument(level = "debug", skip_all, fields(protocol))]
    async fn handshake(self, _: Context, protocol: u32) -> KfsResult<MasterInfo> {
        if !(OLDEST_CLIENT_PROTOCOL..=CLIENT_PROTOCOL_VERSION).contains(&protocol) {
            return Err(KfsError::IncompatibleProtocol {
                ours: CLIENT_PROTOCOL_VERSION,
                theirs: protocol,
            });
        }
        self.set_connection_protocol(protocol);
        Ok(MasterInfo {
            protocol: CLIENT_PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
            default_replication: self.state.default_replication,
            chunk_size: self.state.leases.chunk_size(),
        })
    }

    #[instrument(level = "debug", skip_all, fields(%path, parents = options.parents))]
    async fn mkdir(self, _: Context, path: String, options: MkdirOptions) -> KfsResult<FileAttr> {
        let caller = self.caller()?;
        self.may_change_entry(&caller, &path, "making")?;
        // One id per component covers every directory `-p` might create.
        let count = path::components(&path)?.len().max(1) as u64;
        let op = Op::Mkdir {
            first_fid: self.allocate_fids(count),
            parents: options.parents,
            mode: options.mode.unwrap_or(DEFAULT_DIR_MODE),
            owner: caller.user.uid,
            group: caller.gid(),
            time: now(),
            path,
        };
        let attr = self.mutate(op).await.and_then(expect_attr)?;
        self.grant(&caller, attr.fid);
        Ok(attr)
    }

    #[instrument(level = "debug", skip_all, fields(%path, exclusive = options.exclusive))]
    async fn create(self, _: Context, path: String, options: CreateOptions) -> KfsResult<FileAttr> {
        let caller = self.caller()?;
        self.may_create(&caller, &path)?;
        let op = Op::Create {
            exclusive: options.exclusive,
            replication: options
                .replication
                .unwrap_or(self.state.default_replication),
            replication_given: options.replication.is_some(),
            mode: options.mode.unwrap_or(DEFAULT_FILE_MODE),
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

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn stat(self, _: Context, path: String) -> KfsResult<FileAttr> {
        let caller = self.caller()?;
        self.may_search(&caller, &path)?;
        let attr = self.read(|ns| ns.stat(&path))?;
        self.grant(&caller, attr.fid);
        Ok(attr)
    }

    #[instrument(level = "debug", skip_all, fields(%path, limit))]
    async fn readdir(
        self,
        _: Context,
        path: String,
        start_after: Option<String>,
        limit: u32,
        with_attrs: bool,
    ) -> KfsResult<DirPage> {
        let caller = self.caller()?;
        let want = if with_attrs { READ | SEARCH } else { READ };
        self.may_access(&caller, &path, want)?;
        let page = self.read(|ns| ns.readdir(&path, start_after.as_deref(), limit, with_attrs))?;
        for entry in &page.entries {
            self.grant(&caller, entry.fid);
        }
        Ok(page)
    }

    #[instrument(level = "debug", skip_all, fields(%src, %dst))]
    async fn rename(self, _: Context, src: String, dst: String) -> KfsResult<()> {
        self.may_rename(&self.caller()?, &src, &dst)?;
        self.mutate(Op::Rename {
            src,
            dst,
            time: now(),
        })
        .await
        .map(drop)
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn remove(self, _: Context, path: String) -> KfsResult<()> {
        self.may_change_entry(&self.caller()?, &path, "removing")?;
        self.mutate(Op::Remove { path, time: now() })
            .await
            .map(drop)
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn rmdir(self, _: Context, path: String) -> KfsResult<()> {
        self.may_change_entry(&self.caller()?, &path, "removing")?;
        self.mutate(Op::Rmdir { path, time: now() }).await.map(drop)
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn remove_recursive(self, _: Context, path: String) -> KfsResult<RemoveSummary> {
        self.may_remove_tree(&self.caller()?, &path)?;
        self.mutate(Op::RemoveRecursive { path, time: now() })
            .await
            .and_then(expect_removed)
    }

    #[instrument(level = "debug", skip_all, fields(%path, replication))]
    async fn set_replication(
        self,
        _: Context,
        path: String,
        replication: u8,
    ) -> KfsResult<FileAttr> {
        self.caller()?.need_admin("setting replication")?;
        self.mutate(Op::SetReplication { path, replication })
            .await
            .and_then(expect_attr)
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn set_attr(self, _: Context, path: String, attr: SetAttr) -> KfsResult<FileAttr> {
        self.may_set_attr(&self.caller()?, &path, &attr)?;
        self.mutate(Op::SetAttrAt {
            path,
            attr,
            time: now(),
        })
        .await
        .and_then(expect_attr)
    }

    #[instrument(level = "debug", skip_all, fields(%path, %name))]
    async fn set_xattr(
        self,
        _: Context,
        path: String,
        name: String,
        value: ByteBuf,
    ) -> KfsResult<()> {
        self.may_access(&self.caller()?, &path, WRITE)?;
        self.mutate(Op::SetXattr { path, name, value })
            .await
            .map(drop)
    }

    #[instrument(level = "debug", skip_all, fields(%path, %name))]
    async fn get_xattr(self, _: Context, path: String, name: String) -> KfsResult<ByteBuf> {
        self.may_access(&self.caller()?, &path, READ)?;
        self.read(|ns| ns.get_xattr(&path, &name))
            .map(ByteBuf::from)
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn list_xattrs(self, _: Context, path: String) -> KfsResult<Vec<String>> {
        self.may_access(&self.caller()?, &path, READ)?;
        self.read(|ns| ns.list_xattrs(&path))
    }

    #[instrument(level = "debug", skip_all, fields(%path, %name))]
    async fn remove_xattr(self, _: Context, path: String, name: String) -> KfsResult<()> {
        self.may_access(&self.caller()?, &path, WRITE)?;
        self.mutate(Op::RemoveXattr { path, name }).await.map(drop)
    }

    #[instrument(level = "debug", skip_all)]
    async fn counters(self, _: Context) -> KfsResult<NamespaceCounters> {
        self.caller()?;
        self.read(|ns| Ok(ns.counters()))
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn file_chunks(self, _: Context, path: String) -> KfsResult<Vec<ChunkLocation>> {
        self.may_access(&self.caller()?, &path, READ)?;
        let chunks = self.read(|ns| {
            let attr = ns.stat(&path)?;
            if attr.kind != kfs_common::FileKind::File {
                return Err(KfsError::not_a_regular_file(path.as_str(), attr.kind));
            }
            Ok(super::small_files::chunks_or_volume(
                ns,
                attr.fid,
                0,
                u64::MAX,
                self.state.leases.chunk_size(),
            ))
        })?;
        self.locations_of(chunks, false)
    }

    #[instrument(level = "debug", skip_all)]
    async fn chunkservers(self, _: Context) -> KfsResult<Vec<ChunkserverInfo>> {
        self.caller()?;
        Ok(self
            .state
            .chunks
            .lock()
            .expect("chunk map lock")
            .servers(self.state.clock.now()))
    }

    #[instrument(level = "debug", skip_all)]
    async fn fsck(self, _: Context) -> KfsResult<FsckReport> {
        self.caller()?.need_admin("fsck")?;
        // A snapshot (O(1)), so mutations go on while the walk runs.
        let ns = self.state.ns.read().expect("namespace lock").clone();
        Ok(self.state.chunks.lock().expect("chunk map lock").fsck(&ns))
    }

    #[instrument(level = "debug", skip_all, fields(%path, limit))]
    async fn fsck_path(self, _: Context, path: String, limit: u32) -> KfsResult<FsckSummary> {
        self.caller()?.need_admin("fsck")?;
        // A snapshot (O(1)), so mutations go on while the walk runs.
        let ns = self.state.ns.read().expect("namespace lock").clone();
        let now = self.state.clock.now();
        let mut chunks = self.state.chunks.lock().expect("chunk map lock");
        chunks.in_safe_mode(now);
        chunks.fsck_below(&ns, &path, limit as usize, now)
    }

    #[instrument(level = "debug", skip_all, fields(%server, drain))]
    async fn decommission(
        self,
        _: Context,
        server: String,
        drain: bool,
    ) -> KfsResult<ChunkserverInfo> {
        self.caller()?.need_admin("decommissioning")?;
        // One change at a time, each kept durably before it takes effect, so a restart drains
        // what the operator was last told is draining.
        let _one_at_a_time = self.state.decommissions.lock().await;
        let (id, marks) = self
            .state
            .chunks
            .lock()
            .expect("chunk map lock")
            .drain_marks_after(&server, drain)?;
        let dir = self.state.meta_dir.clone();
        tokio::task::spawn_blocking(move || crate::storage::decommissioned::save(&dir, &marks))
            .await
            .map_err(|e| KfsError::Internal(format!("saving the decommission marks: {e}")))?
            .map_err(|e| KfsError::Io(format!("cannot keep the decommission mark: {e}")))?;
        self.state
            .chunks
            .lock()
            .expect("chunk map lock")
            .set_draining_id(id, drain, self.state.clock.now())
    }

    #[instrument(level = "debug", skip_all, fields(%fid))]
    async fn stat_fid(self, _: Context, fid: FileId) -> KfsResult<FileAttr> {
        self.may_use_fid(&self.caller()?, fid, 0)?;
        self.read(|ns| ns.stat_fid(fid))
    }

    #[instrument(level = "debug", skip_all, fields(%fid, offset, len))]
    async fn locate(
        self,
        _: Context,
        fid: FileId,
        offset: u64,
        len: u64,
    ) -> KfsResult<Vec<ChunkLocation>> {
        self.may_use_fid(&self.caller()?, fid, READ)?;
        let chunk_size = self.state.leases.chunk_size();
        let chunks = self.read(|ns| {
            let attr = ns.stat_fid(fid)?;
            if attr.kind != kfs_common::FileKind::File {
                return Err(KfsError::not_a_regular_file(fid.to_string(), attr.kind));
            }
            Ok(super::small_files::chunks_or_volume(
                ns,
                fid,
                offset,
                offset.saturating_add(len),
                chunk_size,
            ))
        })?;
        self.locations_of(chunks, true)
    }

    #[instrument(level = "debug", skip_all, fields(%path, len))]
    async fn open(
        self,
        _: Context,
        path: String,
        len: u64,
    ) -> KfsResult<(FileAttr, Option<Vec<ChunkLocation>>)> {
        let caller = self.caller()?;
        self.may_access(&caller, &path, READ)?;
        let chunk_size = self.state.leases.chunk_size();
        let (attr, chunks) = self.read(|ns| {
            let attr = ns.stat(&path)?;
            if attr.kind != kfs_common::FileKind::File {
                return Err(KfsError::not_a_regular_file(path.as_str(), attr.kind));
            }
            let chunks = super::small_files::chunks_or_volume(ns, attr.fid, 0, len, chunk_size);
            Ok((attr, chunks))
        })?;
        self.grant(&caller, attr.fid);
        // Locations not all known yet (safe mode): the open still succeeds; reads ask again.
        Ok((attr, self.locations_of(chunks, true).ok()))
    }

    #[instrument(level = "debug", skip_all, fields(%fid, chunk_offset))]
    async fn lease(self, _: Context, fid: FileId, chunk_offset: u64) -> KfsResult<WriteLease> {
        self.may_use_fid(&self.caller()?, fid, WRITE)?;
        self.grant_to_the_end(fid, chunk_offset, false).await
    }

    #[instrument(level = "debug", skip_all, fields(%fid, chunk_offset))]
    async fn lease_unpacking(
        self,
        _: Context,
        fid: FileId,
        chunk_offset: u64,
    ) -> KfsResult<WriteLease> {
        self.may_use_fid(&self.caller()?, fid, WRITE)?;
        self.grant_to_the_end(fid, chunk_offset, true).await
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version))]
    async fn renew_lease(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
    ) -> KfsResult<u64> {
        self.may_write_chunk(chunk, "renewing a lease")?;
        self.state
            .leases
            .renew(&self.lease_context(), chunk, version)
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version, failed = failed.len()))]
    async fn report_failure(
        self,
        _: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        failed: Vec<ServerId>,
    ) -> KfsResult<WriteLease> {
        self.may_write_chunk(chunk, "reporting a failed write")?;
        self.to_the_end(
            format!("the failure report of {chunk}"),
            move |s| async move {
                let cx = s.lease_context();
                s.state
                    .leases
                    .report_failure(&cx, chunk, version, failed)
                    .await
            },
        )
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn workers(self, _: Context) -> KfsResult<Vec<WorkerInfo>> {
        self.caller()?;
        Ok(self.state.workers.list())
    }

    #[instrument(level = "debug", skip_all, fields(%fid, length))]
    async fn extend_length(self, _: Context, fid: FileId, length: u64) -> KfsResult<FileAttr> {
        self.may_use_fid(&self.caller()?, fid, WRITE)?;
        // Boxed: the check's calls to chunkservers would make every request's future larger.
        Box::pin(crate::length_check::check_extension(
            &self.state.ns,
            &self.state.chunks,
            self.state.leases.pool(),
            self.state.leases.chunk_size(),
            fid,
            length,
        ))
        .await?;
        self.mutate(Op::ExtendLength {
            fid,
            size: length,
            time: now(),
        })
        .await
        .and_then(expect_attr)
    }

    #[instrument(level = "debug", skip_all, fields(%fid, length))]
    async fn truncate(self, _: Context, fid: FileId, length: u64) -> KfsResult<FileAttr> {
        self.may_use_fid(&self.caller()?, fid, WRITE)?;
        self.mutate(Op::Truncate {
            fid,
            size: length,
            time: now(),
        })
        .await
        .and_then(expect_attr)
    }

    #[instrument(level = "debug", skip_all, fields(leave))]
    async fn safe_mode(self, _: Context, leave: bool) -> KfsResult<SafeModeStatus> {
        let caller = self.caller()?;
        if leave {
            caller.need_admin("leaving safe mode")?;
        }
        let mut chunks = self.state.chunks.lock().expect("chunk map lock");
        if leave {
            chunks.leave_safe_mode();
        }
        Ok(chunks.safe_mode_status(self.state.clock.now()))
    }

    #[instrument(level = "debug", skip_all)]
    async fn checkpoint(self, _: Context) -> KfsResult<u64> {
        self.caller()?.need_admin("checkpoint")?;
        self.state.committer.checkpoint().await
    }

    #[instrument(level = "debug", skip_all)]
    async fn open_files(self, _: Context) -> KfsResult<Vec<OpenFileInfo>> {
        self.caller()?.need_admin("listing open files")?;
        let now = self.state.clock.now();
        let lease = self.state.leases.lease_duration();
        let written = self.state.leases.written_files();
        let wanted = written.keys().copied().collect();
        let ns = self.state.ns.read().expect("namespace lock");
        let paths = ns.paths_of(&wanted);
        let mut open: Vec<OpenFileInfo> = written
            .iter()
            .filter_map(|(fid, last)| {
                let path = paths.get(fid)?;
                let attr = ns.stat_fid(*fid).ok()?;
                let quiet = now.saturating_duration_since(*last);
                Some(OpenFileInfo {
                    path: path.clone(),
                    fid: *fid,
                    size: attr.size,
                    since_write_ms: quiet.as_millis() as u64,
                    writing: quiet < lease,
                })
            })
            .collect();
        open.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(open)
    }

    #[instrument(level = "debug", skip_all, fields(replication))]
    async fn volume_lease(self, _: Context, replication: u8) -> KfsResult<WriteLease> {
        self.caller()?.need_writer("writing small files")?;
        self.to_the_end("the volume lease", move |s| async move {
            let cx = s.lease_context();
            s.state.leases.volume_lease(&cx, replication).await
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(%chunk))]
    async fn seal_volume(self, _: Context, chunk: ChunkId) -> KfsResult<()> {
        self.caller()?.need_writer("writing small files")?;
        self.state.leases.seal_volume(chunk);
        Ok(())
    }

    #[instrument(level = "debug", skip_all, fields(%fid, %volume, offset, len))]
    async fn set_extent(
        self,
        _: Context,
        fid: FileId,
        volume: ChunkId,
        offset: u64,
        len: u32,
    ) -> KfsResult<FileAttr> {
        self.may_use_fid(&self.caller()?, fid, WRITE)?;
        self.commit_extent(fid, volume, offset, len).await
    }

    #[instrument(level = "debug", skip_all, fields(%path, len))]
    async fn open_layout(
        self,
        _: Context,
        path: String,
        len: u64,
    ) -> KfsResult<(FileAttr, Layout)> {
        let caller = self.caller()?;
        self.may_access(&caller, &path, READ)?;
        let (attr, layout) = self.open_with_layout(&path, len)?;
        self.grant(&caller, attr.fid);
        Ok((attr, layout))
    }

    #[instrument(level = "debug", skip_all, fields(%fid, offset, len))]
    async fn layout(self, _: Context, fid: FileId, offset: u64, len: u64) -> KfsResult<Layout> {
        self.may_use_fid(&self.caller()?, fid, READ)?;
        self.layout_of(fid, offset, len)
    }

    #[instrument(level = "debug", skip_all, fields(kind = %report.kind, listen = %report.listen))]
    async fn report_gateway(self, _: Context, report: GatewayReport) -> KfsResult<GatewayReply> {
        let caller = self.caller()?;
        if !caller.gateway {
            caller.need_admin("reporting a gateway")?;
        }
        self.state
            .reports
            .note_gateway(report, self.state.clock.now());
        Ok(GatewayReply {
            interval_ms: crate::status::GATEWAY_INTERVAL.as_millis() as u64,
        })
    }

    #[instrument(level = "debug", skip_all, fields(name = %user.name))]
    async fn add_user(self, _: Context, user: NewUser) -> KfsResult<UserAdded> {
        self.add_user_call(user).await
    }

    #[instrument(level = "debug", skip_all, fields(%name))]
    async fn remove_user(self, _: Context, name: String) -> KfsResult<()> {
        self.remove_user_call(name).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn users(self, _: Context) -> KfsResult<Vec<UserInfo>> {
        self.users_call()
    }

    #[instrument(level = "debug", skip_all)]
    async fn whoami(self, _: Context) -> KfsResult<WhoAmI> {
        self.whoami_call()
    }

    #[instrument(level = "debug", skip_all, fields(%fid, offset, len))]
    async fn locate_signed(
        self,
        cx: Context,
        fid: FileId,
        offset: u64,
        len: u64,
    ) -> KfsResult<Signed<Vec<ChunkLocation>>> {
        let found = self.clone().locate(cx, fid, offset, len).await?;
        Ok(self.with_read_caps(found))
    }

    #[instrument(level = "debug", skip_all, fields(%fid, offset, len))]
    async fn layout_signed(
        self,
        cx: Context,
        fid: FileId,
        offset: u64,
        len: u64,
    ) -> KfsResult<Signed<Layout>> {
        let layout = self.clone().layout(cx, fid, offset, len).await?;
        let caps = self.layout_caps(fid, &layout);
        Ok((layout, caps))
    }

    #[instrument(level = "debug", skip_all, fields(%path, len))]
    async fn open_layout_signed(
        self,
        cx: Context,
        path: String,
        len: u64,
    ) -> KfsResult<Signed<(FileAttr, Layout)>> {
        let (attr, layout) = self.clone().open_layout(cx, path, len).await?;
        let caps = self.layout_caps(attr.fid, &layout);
        Ok(((attr, layout), caps))
    }

    #[instrument(level = "debug", skip_all, fields(%fid, chunk_offset, unpacking))]
    async fn lease_signed(
        self,
        cx: Context,
        fid: FileId,
        chunk_offset: u64,
        unpacking: bool,
    ) -> KfsResult<Signed<WriteLease>> {
        let lease = if unpacking {
            self.clone().lease_unpacking(cx, fid, chunk_offset).await?
        } else {
            self.clone().lease(cx, fid, chunk_offset).await?
        };
        Ok(self.with_lease_cap(lease, Access::Write))
    }

    #[instrument(level = "debug", skip_all, fields(%chunk, %version, failed = failed.len()))]
    async fn report_failure_signed(
        self,
        cx: Context,
        chunk: ChunkId,
        version: ChunkVersion,
        failed: Vec<ServerId>,
    ) -> KfsResult<Signed<WriteLease>> {
        let lease = self
            .clone()
            .report_failure(cx, chunk, version, failed)
            .await?;
        Ok(self.with_lease_cap(lease, Access::Write))
    }

    #[instrument(level = "debug", skip_all, fields(replication))]
    async fn volume_lease_signed(
        self,
        cx: Context,
        replication: u8,
    ) -> KfsResult<Signed<WriteLease>> {
        let lease = self.clone().volume_lease(cx, replication).await?;
        Ok(self.with_lease_cap(lease, Access::Append))
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn file_chunks_signed(
        self,
        cx: Context,
        path: String,
    ) -> KfsResult<Signed<Vec<ChunkLocation>>> {
        let found = self.clone().file_chunks(cx, path).await?;
        Ok(self.with_read_caps(found))
    }

    #[instrument(level = "debug", skip_all, fields(?durability))]
    async fn set_durability(self, _: Context, durability: Durability) -> KfsResult<()> {
        self.caller()?;
        self.set_connection_durability(durability);
        Ok(())
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn symlink(self, _: Context, path: String, target: String) -> KfsResult<FileAttr> {
        self.make_special(path, Special::Symlink { target }, 0o777)
            .await
    }

    #[instrument(level = "debug", skip_all, fields(%path))]
    async fn readlink(self, _: Context, path: String) -> KfsResult<String> {
        self.may_search(&self.caller()?, &path)?;
        self.read(|ns| ns.readlink(&path))
    }

    #[instrument(level = "debug", skip_all, fields(%path, kind = %options.kind))]
    async fn mknod(self, _: Context, path: String, options: MknodOptions) -> KfsResult<FileAttr> {
        let special = Special::of_kind(options.kind, options.rdev).ok_or_else(|| {
            KfsError::invalid_argument(format!(
                "mknod makes a FIFO, socket or device, not a {}",
                options.kind
            ))
        })?;
        self.make_special(path, special, options.mode.unwrap_or(DEFAULT_FILE_MODE))
            .await
    }

    #[instrument(level = "debug", skip_all, fields(%src, %dst))]
    async fn link(self, _: Context, src: String, dst: String) -> KfsResult<FileAttr> {
        self.link_names(src, dst).await
    }

    #[instrument(level = "debug", skip_all, fields(?change))]
    async fn change_names(self, cx: Context, change: NameChange) -> KfsResult<Vec<FileAttr>> {
        self.change_names_answering_dirs(cx, change).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn sync_namespace(self, _: Context) -> KfsResult<u64> {
        self.caller()?;
        self.state.committer.sync().await
    }
}
