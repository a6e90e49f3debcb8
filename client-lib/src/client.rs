//! [`Client`]: a connection to a KFS cluster, and the namespace calls.

use crate::file::File;
pub use crate::io::ClientOptions;
use crate::io::Io;
use crate::master_conn::MasterClient;
use futures::StreamExt;
use futures::stream::BoxStream;
use kfs_common::proto::chunk::ChunkPool;
use kfs_common::proto::master::{
    ChunkLocation, ChunkserverInfo, CreateOptions, DirEntry, DirPage, FileAttr, FsckReport,
    FsckSummary, GatewayReply, GatewayReport, Layout, MasterInfo, MkdirOptions, MknodOptions,
    NameChange, NamespaceCounters, OpenFileInfo, RemoveSummary, SafeModeStatus, SetAttr,
    WorkerInfo,
};
use kfs_common::proto::users::{NewUser, UserAdded, UserInfo, WhoAmI};
use kfs_common::{KfsError, KfsResult};
use serde_bytes::ByteBuf;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::ToSocketAddrs;

/// What a client holds: the connections its files share, and what the master said at connect.
pub(crate) struct Inner {
    pub(crate) io: Arc<Io>,
    pub(crate) info: MasterInfo,
}

/// A connection to a KFS cluster. Cheap to clone; clones share the connection, and calls from
/// many tasks go out concurrently on it.
///
/// ```no_run
/// # async fn demo() -> kfs_common::KfsResult<()> {
/// let client = kfs_client::Client::connect("127.0.0.1:20000").await?;
/// client.mkdir_all("/photos/2024").await?;
/// for entry in client.list_all("/photos").await? {
///     println!("{} ({})", entry.name, entry.kind);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl Client {
    /// Connects to the master at `addr` with default options.
    pub async fn connect(addr: impl ToSocketAddrs) -> KfsResult<Client> {
        Client::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects to the master at `addr` and checks that it speaks this client's protocol.
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        options: ClientOptions,
    ) -> KfsResult<Client> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| {
                KfsError::invalid_argument(format!("cannot resolve the master's address: {e}"))
            })?
            .collect();
        let security = match &options.security {
            Some(security) => security.clone(),
            None => kfs_common::security::client_security()
                .map_err(|e| KfsError::invalid_argument(format!("credentials: {e}")))?,
        };
        let mut last = None;
        for addr in addrs {
            match crate::master_conn::connect(
                addr,
                options.call_timeout,
                options.retry.clone(),
                security.clone(),
                options.durability,
            )
            .await
            {
                Ok((master, info)) => {
                    let io = Io {
                        master,
                        master_addr: addr,
                        chunks: ChunkPool::new(security.clone()),
                        chunk_size: info.chunk_size,
                        options,
                        volumes: Default::default(),
                        caps: Default::default(),
                    };
                    return Ok(Client {
                        inner: Arc::new(Inner {
                            io: Arc::new(io),
                            info,
                        }),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            KfsError::invalid_argument("the master's address resolves to nothing")
        }))
    }

    /// What the master said about itself (protocol, version, chunk size, default replication).
    pub fn master_info(&self) -> &MasterInfo {
        &self.inner.info
    }

    /// The address of the master.
    pub fn master_addr(&self) -> SocketAddr {
        self.inner.io.master_addr
    }

    /// Bytes per chunk in this cluster.
    pub fn chunk_size(&self) -> u64 {
        self.inner.info.chunk_size
    }

    pub(crate) fn ctx(&self) -> tarpc::context::Context {
        self.inner.io.ctx()
    }

    /// The master's RPC client.
    pub(crate) fn m(&self) -> &MasterClient {
        self.inner.io.m()
    }

    /// Awaits a master call, turning a transport failure into `Unavailable` naming the master
    /// (`Io::call`).
    pub(crate) fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<KfsResult<T>, tarpc::client::RpcError>>,
    ) -> impl std::future::Future<Output = KfsResult<T>> {
        self.inner.io.call(call)
    }

    /// Creates a directory; its parent must exist.
    pub async fn mkdir(&self, path: &str) -> KfsResult<FileAttr> {
        let path = path.to_string();
        self.call(self.m().mkdir(self.ctx(), path, MkdirOptions::default()))
            .await
    }

    /// Creates a directory with options (missing parents, mode).
    pub async fn mkdir_with(&self, path: &str, options: MkdirOptions) -> KfsResult<FileAttr> {
        let path = path.to_string();
        self.call(self.m().mkdir(self.ctx(), path, options)).await
    }

    /// Creates a directory and any missing parents; an existing directory is success.
    pub async fn mkdir_all(&self, path: &str) -> KfsResult<FileAttr> {
        let path = path.to_string();
        let options = MkdirOptions {
            parents: true,
            mode: None,
        };
        self.call(self.m().mkdir(self.ctx(), path, options)).await
    }

    /// Creates a file (truncating an existing one) and opens it.
    pub async fn create(&self, path: &str) -> KfsResult<File> {
        self.create_with(path, CreateOptions::default()).await
    }

    /// Creates a file with options (exclusive, replication, mode) and opens it.
    pub async fn create_with(&self, path: &str, options: CreateOptions) -> KfsResult<File> {
        self.create_with_attr(path, options)
            .await
            .map(|(file, _)| file)
    }

    /// [`Client::create_with`], also returning the new file's attributes.
    pub async fn create_with_attr(
        &self,
        path: &str,
        options: CreateOptions,
    ) -> KfsResult<(File, FileAttr)> {
        let p = path.to_string();
        let attr = self.call(self.m().create(self.ctx(), p, options)).await?;
        Ok((
            File::created(self.inner.io.clone(), path, attr.clone()),
            attr,
        ))
    }

    /// Opens an existing file for reading and writing. One call to the master, which also
    /// tells where the first chunks are, so the first reads go straight to chunkservers.
    pub async fn open(&self, path: &str) -> KfsResult<File> {
        self.open_with_attr(path).await.map(|(file, _)| file)
    }

    /// [`Client::open`], also returning the file's attributes as the open found them.
    pub async fn open_with_attr(&self, path: &str) -> KfsResult<(File, FileAttr)> {
        let ahead = self.chunk_size().saturating_mul(crate::file::LOCATE_AHEAD);
        let (attr, layout) = self
            .inner
            .io
            .signed(
                self.m()
                    .open_layout_signed(self.ctx(), path.to_string(), ahead),
            )
            .await?;
        Ok((
            File::opened(self.inner.io.clone(), path, attr.clone(), layout),
            attr,
        ))
    }

    pub async fn stat(&self, path: &str) -> KfsResult<FileAttr> {
        let path = path.to_string();
        self.call(self.m().stat(self.ctx(), path)).await
    }

    /// Returns once every namespace change this client was answered is durable on the
    /// master's disk (at once with the default `Synced` durability: they already were), with
    /// the sequence number of the last op synced. A mount's `fsync`.
    pub async fn sync_namespace(&self) -> KfsResult<u64> {
        self.call(self.m().sync_namespace(self.ctx())).await
    }

    /// Makes a symbolic link at `path` to `target` (kept as given; the master never follows a
    /// link, a mount's kernel does). Needs a master of client protocol 10.
    pub async fn symlink(&self, path: &str, target: &str) -> KfsResult<FileAttr> {
        let (path, target) = (path.to_string(), target.to_string());
        self.call(self.m().symlink(self.ctx(), path, target)).await
    }

    /// The target of the symbolic link at `path`.
    pub async fn readlink(&self, path: &str) -> KfsResult<String> {
        let path = path.to_string();
        self.call(self.m().readlink(self.ctx(), path)).await
    }

    /// Gives the file at `src` another name, `dst` (a hard link). Needs a master of client
    /// protocol 11.
    pub async fn link(&self, src: &str, dst: &str) -> KfsResult<FileAttr> {
        let (src, dst) = (src.to_string(), dst.to_string());
        self.call(self.m().link(self.ctx(), src, dst)).await
    }

    /// Makes a FIFO, socket or device at `path`.
    pub async fn mknod(&self, path: &str, options: MknodOptions) -> KfsResult<FileAttr> {
        let path = path.to_string();
        self.call(self.m().mknod(self.ctx(), path, options)).await
    }

    /// The attributes of the file with id `fid` (wherever it is now: a mount's inodes).
    pub async fn stat_fid(&self, fid: kfs_common::FileId) -> KfsResult<FileAttr> {
        self.call(self.m().stat_fid(self.ctx(), fid)).await
    }

    /// The entries of a directory, fetched from the master a page at a time as the stream is
    /// read (a directory of millions of entries never arrives as one reply).
    pub fn list(&self, path: &str) -> BoxStream<'static, KfsResult<DirEntry>> {
        self.list_pages(path, false)
    }

    /// [`Client::list`] with every entry's attributes.
    pub fn list_with_attrs(&self, path: &str) -> BoxStream<'static, KfsResult<DirEntry>> {
        self.list_pages(path, true)
    }

    fn list_pages(&self, path: &str, with_attrs: bool) -> BoxStream<'static, KfsResult<DirEntry>> {
        struct Cursor {
            client: Client,
            path: String,
            after: Option<String>,
            page: std::vec::IntoIter<DirEntry>,
            done: bool,
        }
        let cursor = Cursor {
            client: self.clone(),
            path: path.to_string(),
            after: None,
            page: Vec::new().into_iter(),
            done: false,
        };
        futures::stream::unfold(cursor, move |mut c| async move {
            loop {
                if let Some(entry) = c.page.next() {
                    c.after = Some(entry.name.clone());
                    return Some((Ok(entry), c));
                }
                if c.done {
                    return None;
                }
                let (path, after) = (c.path.clone(), c.after.clone());
                match c
                    .client
                    .call(
                        c.client
                            .m()
                            .readdir(c.client.ctx(), path, after, 0, with_attrs),
                    )
                    .await
                {
                    Ok(page) => {
                        c.done = !page.more;
                        c.page = page.entries.into_iter();
                    }
                    Err(e) => {
                        c.done = true;
                        c.page = Vec::new().into_iter();
                        return Some((Err(e), c));
                    }
                }
            }
        })
        .boxed()
    }

    /// One page of a directory's entries with their attributes: up to `limit` entries (0: the
    /// master's page size) after the name `after`, in byte order of names. For callers that
    /// page on their own (an HTTP listing); [`Client::list`] pages for you.
    pub async fn list_page(
        &self,
        path: &str,
        after: Option<String>,
        limit: u32,
    ) -> KfsResult<DirPage> {
        self.readdir_page(path, after, limit, true).await
    }

    /// [`Client::list_page`] without attributes: names, ids and kinds only (a smaller answer).
    pub async fn list_names(
        &self,
        path: &str,
        after: Option<String>,
        limit: u32,
    ) -> KfsResult<DirPage> {
        self.readdir_page(path, after, limit, false).await
    }

    async fn readdir_page(
        &self,
        path: &str,
        after: Option<String>,
        limit: u32,
        with_attrs: bool,
    ) -> KfsResult<DirPage> {
        let path = path.to_string();
        self.call(self.m().readdir(self.ctx(), path, after, limit, with_attrs))
            .await
    }

    /// Every entry of a directory (use [`Client::list`] for very large directories).
    pub async fn list_all(&self, path: &str) -> KfsResult<Vec<DirEntry>> {
        use futures::TryStreamExt;
        self.list(path).try_collect().await
    }

    /// Renames a file or directory atomically, replacing an existing file.
    pub async fn rename(&self, src: &str, dst: &str) -> KfsResult<()> {
        let (src, dst) = (src.to_string(), dst.to_string());
        self.call(self.m().rename(self.ctx(), src, dst)).await
    }

    /// Removes a file.
    pub async fn remove(&self, path: &str) -> KfsResult<()> {
        let path = path.to_string();
        self.call(self.m().remove(self.ctx(), path)).await
    }

    /// Makes a [`NameChange`] (a remove, an rmdir or a rename, as [`Client::remove`],
    /// [`Client::remove_dir`] and [`Client::rename`] do) and returns the attributes of the
    /// directories it changed, after it: the parent's, and for a rename into another
    /// directory, the source's then the destination's. Needs a master of client protocol 12.
    pub async fn change_names(&self, change: NameChange) -> KfsResult<Vec<FileAttr>> {
        self.call(self.m().change_names(self.ctx(), change)).await
    }

    /// Removes an empty directory.
    pub async fn remove_dir(&self, path: &str) -> KfsResult<()> {
        let path = path.to_string();
        self.call(self.m().rmdir(self.ctx(), path)).await
    }

    /// Removes a file, or a directory and everything below it.
    pub async fn remove_all(&self, path: &str) -> KfsResult<RemoveSummary> {
        let path = path.to_string();
        self.call(self.m().remove_recursive(self.ctx(), path)).await
    }

    /// Sets a file's replication factor (1..=16).
    /// A small file packed into a volume of another replication is packed again into one of
    /// the new factor (one logged switch: readers see the old record or the new).
    pub async fn set_replication(&self, path: &str, replication: u8) -> KfsResult<FileAttr> {
        let attr = self
            .call(
                self.m()
                    .set_replication(self.ctx(), path.to_string(), replication),
            )
            .await?;
        let (attr_now, layout) = self.file_layout(path).await?;
        if let Layout::Packed(extent) = &layout
            && extent.replication != replication
        {
            let file = File::opened(self.inner.io.clone(), path, attr_now, layout);
            return file.repack().await;
        }
        Ok(attr)
    }

    /// A file's attributes and how its data is stored: its chunks (with their replicas), or
    /// the volume record a small file is packed into (what `kfs chunks` shows).
    pub async fn file_layout(&self, path: &str) -> KfsResult<(FileAttr, Layout)> {
        self.inner
            .io
            .signed(
                self.m()
                    .open_layout_signed(self.ctx(), path.to_string(), u64::MAX),
            )
            .await
    }

    /// Changes mode, owner, group or times.
    pub async fn set_attr(&self, path: &str, attr: SetAttr) -> KfsResult<FileAttr> {
        let path = path.to_string();
        self.call(self.m().set_attr(self.ctx(), path, attr)).await
    }

    pub async fn set_xattr(&self, path: &str, name: &str, value: &[u8]) -> KfsResult<()> {
        let (path, name, value) = (
            path.to_string(),
            name.to_string(),
            ByteBuf::from(value.to_vec()),
        );
        self.call(self.m().set_xattr(self.ctx(), path, name, value))
            .await
    }

    pub async fn get_xattr(&self, path: &str, name: &str) -> KfsResult<Vec<u8>> {
        let (path, name) = (path.to_string(), name.to_string());
        self.call(self.m().get_xattr(self.ctx(), path, name))
            .await
            .map(ByteBuf::into_vec)
    }

    pub async fn list_xattrs(&self, path: &str) -> KfsResult<Vec<String>> {
        let path = path.to_string();
        self.call(self.m().list_xattrs(self.ctx(), path)).await
    }

    pub async fn remove_xattr(&self, path: &str, name: &str) -> KfsResult<()> {
        let (path, name) = (path.to_string(), name.to_string());
        self.call(self.m().remove_xattr(self.ctx(), path, name))
            .await
    }

    /// Files, directories, chunks and bytes in the namespace.
    pub async fn counters(&self) -> KfsResult<NamespaceCounters> {
        self.call(self.m().counters(self.ctx())).await
    }

    /// The chunks of a file with their live replicas.
    pub async fn file_chunks(&self, path: &str) -> KfsResult<Vec<ChunkLocation>> {
        let path = path.to_string();
        self.inner
            .io
            .signed(self.m().file_chunks_signed(self.ctx(), path))
            .await
    }

    /// The chunkservers the master knows.
    pub async fn chunkservers(&self) -> KfsResult<Vec<ChunkserverInfo>> {
        self.call(self.m().chunkservers(self.ctx())).await
    }

    /// Starts (`drain` true) or cancels draining the chunkserver `server` (an id, an id prefix
    /// or an address); replies with its state. Once it shows `Drained`, it holds nothing the
    /// cluster needs and can be removed.
    pub async fn decommission(&self, server: &str, drain: bool) -> KfsResult<ChunkserverInfo> {
        self.call(self.m().decommission(self.ctx(), server.to_string(), drain))
            .await
    }

    /// The health of the chunks of the files at or below `path`, with at most `limit`
    /// problems listed (0: all), counted as the master's repair rounds count them.
    pub async fn fsck_path(&self, path: &str, limit: u32) -> KfsResult<FsckSummary> {
        let ctx = kfs_common::rpc::context(std::time::Duration::from_secs(600));
        self.call(self.m().fsck_path(ctx, path.to_string(), limit))
            .await
    }

    /// The health of every chunk (a walk of the whole namespace at the master).
    pub async fn fsck(&self) -> KfsResult<FsckReport> {
        self.call(self.m().fsck(self.ctx())).await
    }

    /// The master's background workers (healer, heartbeat timeouts, checkpointer): each one's
    /// state, rounds and what its last round did.
    pub async fn workers(&self) -> KfsResult<Vec<WorkerInfo>> {
        self.call(self.m().workers(self.ctx())).await
    }

    /// Safe mode's state at the master (after a restart, no deletion or repair until enough
    /// chunks have reported); with `leave`, ends it first.
    pub async fn safe_mode(&self, leave: bool) -> KfsResult<SafeModeStatus> {
        self.call(self.m().safe_mode(self.ctx(), leave)).await
    }

    /// The files being written (or whose writer went quiet and that the master has not yet
    /// finished), as `kfs fsck --open-files` lists them.
    pub async fn open_files(&self) -> KfsResult<Vec<OpenFileInfo>> {
        self.call(self.m().open_files(self.ctx())).await
    }

    /// Records a user at the master (administrators only) and, unless `user.certificate` is
    /// given, has it issue the user's certificate: the reply holds the credentials file to
    /// hand to the user.
    pub async fn add_user(&self, user: NewUser) -> KfsResult<UserAdded> {
        self.call(self.m().add_user(self.ctx(), user)).await
    }

    /// Forgets a user (administrators only): its certificate is refused from then on.
    pub async fn remove_user(&self, name: &str) -> KfsResult<()> {
        self.call(self.m().remove_user(self.ctx(), name.to_string()))
            .await
    }

    /// Every user the master has a record of (administrators only).
    pub async fn users(&self) -> KfsResult<Vec<UserInfo>> {
        self.call(self.m().users(self.ctx())).await
    }

    /// Who the master takes this client for, and the rights its calls are checked against.
    pub async fn whoami(&self) -> KfsResult<WhoAmI> {
        self.call(self.m().whoami(self.ctx())).await
    }

    /// Has the master write a checkpoint of everything logged; returns, once it is durable,
    /// the sequence number of the last op it holds.
    pub async fn checkpoint(&self) -> KfsResult<u64> {
        // A checkpoint of a large namespace takes longer than a call's usual deadline.
        let ctx = kfs_common::rpc::context(std::time::Duration::from_secs(600));
        self.call(self.m().checkpoint(ctx)).await
    }

    /// Tells the master a gateway serves this cluster (for its status page); returns when to
    /// report again. For gateways (`kfs gateway`, the S3 endpoint), which call it at start and
    /// then at the interval returned.
    pub async fn report_gateway(&self, report: GatewayReport) -> KfsResult<GatewayReply> {
        self.call(self.m().report_gateway(self.ctx(), report)).await
    }
}
