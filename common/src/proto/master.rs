//! Client → master namespace calls.
//!
//! Paths are absolute and checked by [`crate::path`]; a bad path is answered with
//! [`KfsError::InvalidPath`]. A mutation is answered only after it is durable in the master's
//! operation log, so an `Ok` reply survives any crash of the master.

use crate::error::KfsError;
use crate::ids::{ChunkId, ChunkVersion, FileId, FileKind, ServerId};
use crate::proto::Timestamp;
use crate::proto::cluster::SpaceReport;
use crate::proto::users::{NewUser, UserAdded, UserInfo, WhoAmI};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::net::SocketAddr;

/// Default page size of [`MasterService::readdir`], and its upper bound.
pub const MAX_READDIR_LIMIT: u32 = 10_000;
/// Replication factors a file may have.
pub const REPLICATION_RANGE: std::ops::RangeInclusive<u8> = 1..=16;
/// Largest value of one extended attribute.
pub const MAX_XATTR_VALUE_LEN: usize = 64 * 1024;
/// Most extended attributes on one file or directory.
pub const MAX_XATTRS_PER_FILE: usize = 256;

/// Attributes of a file or directory, as `stat` shows them. Encoded without `nlink` and
/// `ctime` for a client of protocol 10 or older ([`super::encoding`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FileAttr {
    pub fid: FileId,
    pub kind: FileKind,
    /// Length in bytes (0 for a directory); for a symbolic link, its target's length; for a
    /// device, its device number ([`FileAttr::rdev`]); 0 for a FIFO or socket.
    pub size: u64,
    /// Permission bits (`0o7777` at most).
    pub mode: u16,
    pub owner: u32,
    pub group: u32,
    /// Replication factor (files); 0 for a directory.
    pub replication: u8,
    pub mtime: Timestamp,
    pub atime: Timestamp,
    /// Names it has: a directory 2 and one per subdirectory, anything else one per hard link.
    /// Since client protocol 11.
    pub nlink: u32,
    /// When its attributes, names or data last changed (to the second after `mtime`). Since
    /// client protocol 11.
    pub ctime: Timestamp,
}

/// The first client protocol whose `FileAttr` has `nlink` and `ctime`.
pub const FILE_ATTR_LINKS_PROTOCOL: u32 = 11;

impl Serialize for FileAttr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let whole = super::encoding::peer_speaks(FILE_ATTR_LINKS_PROTOCOL);
        let mut st = s.serialize_struct("FileAttr", if whole { 11 } else { 9 })?;
        st.serialize_field("fid", &self.fid)?;
        st.serialize_field("kind", &self.kind)?;
        // A special file is an empty regular file to a client that does not know it.
        let unknown = self.kind.is_special()
            && !super::encoding::peer_speaks(crate::ids::SPECIAL_FILES_PROTOCOL);
        st.serialize_field("size", &if unknown { 0 } else { self.size })?;
        st.serialize_field("mode", &self.mode)?;
        st.serialize_field("owner", &self.owner)?;
        st.serialize_field("group", &self.group)?;
        st.serialize_field("replication", &self.replication)?;
        st.serialize_field("mtime", &self.mtime)?;
        st.serialize_field("atime", &self.atime)?;
        if whole {
            st.serialize_field("nlink", &self.nlink)?;
            st.serialize_field("ctime", &self.ctime)?;
        }
        st.end()
    }
}

impl FileAttr {
    /// The device number of a character or block device (0 for any other kind).
    pub fn rdev(&self) -> u64 {
        if self.kind.is_device() { self.size } else { 0 }
    }

    /// The length `stat` shows: [`FileAttr::size`], but 0 for a device.
    pub fn length(&self) -> u64 {
        if self.kind.is_device() { 0 } else { self.size }
    }
}

/// A change of names answered with the directories it changed
/// ([`MasterService::change_names`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NameChange {
    /// As [`MasterService::remove`].
    Remove { path: String },
    /// As [`MasterService::rmdir`].
    Rmdir { path: String },
    /// As [`MasterService::rename`].
    Rename { src: String, dst: String },
}

/// What [`MasterService::mknod`] makes: a FIFO, socket or device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MknodOptions {
    /// `Fifo`, `Socket`, `CharDevice` or `BlockDevice`.
    pub kind: FileKind,
    /// Permission bits; `0o644` when `None`.
    pub mode: Option<u16>,
    /// The device number of a device (ignored for a FIFO or socket).
    pub rdev: u64,
}

/// Longest target of a symbolic link, in bytes (Linux's `PATH_MAX` less its NUL).
pub const MAX_SYMLINK_TARGET: usize = 4095;

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: String,
    pub fid: FileId,
    pub kind: FileKind,
    /// Present when the listing was asked `with_attrs`.
    pub attr: Option<FileAttr>,
}

/// One page of a directory listing, entries in byte order of their names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirPage {
    pub entries: Vec<DirEntry>,
    /// Whether entries follow the last one; ask again with `start_after` = its name.
    pub more: bool,
}

/// How [`MasterService::create`] treats an existing file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOptions {
    /// Fail with `AlreadyExists` if the path exists; otherwise an existing file is truncated to
    /// length 0 (keeping its id and mode).
    pub exclusive: bool,
    /// Replication factor; the master's configured default when `None`.
    pub replication: Option<u8>,
    /// Permission bits; `0o644` when `None`.
    pub mode: Option<u16>,
}

/// When the master answers a connection's namespace changes ([`MasterService::set_durability`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    /// Once its log record is synced (`fdatasync`): it survives a power loss. The default.
    #[default]
    Synced,
    /// Once its log record is written to the log file and applied, before the sync that
    /// follows at once: it survives a crash (`kill -9`) of any process, a power loss only once
    /// that sync or [`MasterService::sync_namespace`] returned. POSIX's contract, for a mount:
    /// a change is durable when `fsync` says so.
    Logged,
}

/// How [`MasterService::mkdir`] treats missing parents and an existing directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirOptions {
    /// Create missing parents, and succeed if the directory exists (`mkdir -p`).
    pub parents: bool,
    /// Permission bits; `0o755` when `None`.
    pub mode: Option<u16>,
}

/// Attribute changes for [`MasterService::set_attr`]; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttr {
    pub mode: Option<u16>,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub mtime: Option<Timestamp>,
    pub atime: Option<Timestamp>,
}

/// What a recursive remove removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveSummary {
    pub files: u64,
    pub dirs: u64,
}

/// Size of the namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceCounters {
    /// Regular files.
    pub files: u64,
    /// Directories, the root included.
    pub dirs: u64,
    /// Chunks referenced by files.
    pub chunks: u64,
    /// Sum of file lengths.
    pub bytes: u64,
}

/// What the master says about itself in [`MasterService::handshake`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterInfo {
    pub protocol: u32,
    /// The master's build version.
    pub version: String,
    /// Replication factor given to files created without one.
    pub default_replication: u8,
    /// Bytes per chunk in this cluster: file byte `n` is in the chunk at offset
    /// `n - n % chunk_size`.
    pub chunk_size: u64,
}

/// The right to write one chunk: where to send writes and at which version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteLease {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    /// Receives writes, orders them, and forwards them along `secondaries`.
    pub primary: ReplicaLocation,
    pub secondaries: Vec<ReplicaLocation>,
    /// Milliseconds the lease stays valid from when it was sent (renew before).
    pub valid_ms: u64,
}

/// Whether the master hears from a chunkserver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerState {
    /// Heartbeats arrive; its replicas count.
    Alive,
    /// Silent for longer than the timeout; its replicas no longer count.
    Dead,
    /// Being decommissioned: its replicas are copied elsewhere, then removed from it.
    Draining,
    /// Decommissioned: nothing on it is needed any more; it is safe to remove.
    Drained,
}

/// Whether a background worker is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerState {
    Running,
    /// Stopped because its server is stopping.
    Stopped,
    /// Ended by itself (it had nothing to do, e.g. the scrubber with a rate of 0, or failed).
    Ended,
}

/// A file written under a write lease, as `kfs fsck --open-files` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFileInfo {
    pub path: String,
    pub fid: FileId,
    /// Its length at the master (what readers see).
    pub size: u64,
    /// Milliseconds since its writer last took or renewed a lease.
    pub since_write_ms: u64,
    /// Whether a writer holds a lease on it now; `false`: its writer is quiet, and the master
    /// finishes (or, for an upload's temporary file, removes) it once quiet for long enough.
    pub writing: bool,
}

/// What a gateway (`kfs gateway`, later the S3 endpoint) says of itself, every
/// [`GatewayReply::interval_ms`], so the status page lists the cluster's gateways.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayReport {
    /// What it serves: `http`, `s3`.
    pub kind: String,
    /// Where it listens (as it printed at start), and its metrics, if served apart.
    pub listen: SocketAddr,
    pub metrics: Option<SocketAddr>,
    /// The gateway's build (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The KFS directory it serves.
    pub root: String,
}

/// The master's answer to a [`GatewayReport`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayReply {
    /// When to report again; a gateway not heard from for three intervals is listed as silent.
    pub interval_ms: u64,
}

/// Safe mode as `kfs admin safemode get` shows it (after a restart: no deletion, no repair).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SafeModeStatus {
    pub on: bool,
    /// Chunks with a live replica at their version (counted while on; 0 once off).
    pub reported: u64,
    /// Chunks the namespace holds.
    pub total: u64,
    /// The fraction of chunks that must report before safe mode ends by itself.
    pub threshold: f64,
    /// Milliseconds until safe mode ends at the latest, whatever has reported (0 once off).
    pub remaining_ms: u64,
}

/// A background worker of a server, as `kfs admin workers` and the status page show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    pub state: WorkerState,
    /// Rounds of work done (repair rounds, checkpoints, sweeps, ...).
    pub rounds: u64,
    /// Milliseconds since the last round ended; `None` before the first.
    pub since_last_round_ms: Option<u64>,
    /// What the last round did, or what the worker is waiting for.
    pub note: String,
}

/// A chunkserver as the master sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkserverInfo {
    pub server: ServerId,
    pub addr: SocketAddr,
    pub state: ServerState,
    pub space: SpaceReport,
    /// Replicas the master lists on it.
    pub chunks: u64,
    /// Replicas it found corrupt.
    pub corrupt: u64,
    /// Milliseconds since its last heartbeat.
    pub since_heartbeat_ms: u64,
}

/// Where a replica can be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaLocation {
    pub server: ServerId,
    pub addr: SocketAddr,
}

/// A chunk of a file and the live replicas at its current version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLocation {
    /// Byte offset of the chunk in the file.
    pub offset: u64,
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    pub replicas: Vec<ReplicaLocation>,
}

/// Where a small file packed into a volume lies, and the volume's live replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtentLocation {
    pub volume: ChunkId,
    pub version: ChunkVersion,
    /// The record's offset in the volume.
    pub offset: u64,
    /// Bytes of data.
    pub len: u32,
    /// The volume's replication factor.
    pub replication: u8,
    pub replicas: Vec<ReplicaLocation>,
}

/// How a file's data is stored, as a reader needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Chunks of its own: the locations of those asked for (`None` when some are not known
    /// yet, just after a master restart: ask again).
    Chunks(Option<Vec<ChunkLocation>>),
    /// A small file, packed: one record of a volume.
    Packed(ExtentLocation),
}

/// What `MasterService::fsck_path` found below a path (`kfs fsck [PATH]`): the same counts the
/// healer's rounds, the status page and `/metrics` give, and the chunks that are not as they
/// should be.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckSummary {
    pub path: String,
    pub files: u64,
    /// Chunks, and volumes of small files that files below the path are packed into.
    pub chunks: u64,
    pub healthy: u64,
    /// With at least one live replica, but fewer than their factor (`waiting` and
    /// `short_of_servers` among them).
    pub under_replicated: u64,
    /// Under-replicated chunks whose repair waits for a write lease to run out (writes under it
    /// may still land) or for a copy in flight: repaired once it has (and not short of servers).
    pub waiting: u64,
    /// Under-replicated chunks that cannot be repaired: fewer live, undrained chunkservers than
    /// their factor.
    pub short_of_servers: u64,
    pub over_replicated: u64,
    /// With no live replica: their data cannot be read until one returns.
    pub missing: u64,
    pub corrupt_replicas: u64,
    pub copies_in_flight: u64,
    pub safe_mode: bool,
    /// Live chunkservers that take new replicas (alive, not draining).
    pub live_servers: u64,
    /// The chunks that are not as they should be, by path, at most the limit asked.
    pub problems: Vec<ChunkProblem>,
    /// More problems than listed.
    pub more: bool,
}

/// A chunk in [`FsckSummary::problems`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkProblem {
    pub path: String,
    /// Byte offset of the chunk in the file (0 for a volume).
    pub offset: u64,
    pub chunk: ChunkId,
    pub live: u8,
    pub replication: u8,
    /// `missing`, `under_replicated`, `waiting` (for a lease or a copy) or `short_of_servers`.
    pub state: String,
}

/// A chunk that is not as it should be, in [`FsckReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckProblem {
    pub path: String,
    /// Byte offset of the chunk in the file.
    pub offset: u64,
    pub chunk: ChunkId,
    /// Live replicas at the chunk's current version.
    pub live: u8,
    /// The file's replication factor.
    pub replication: u8,
}

/// The health of every chunk, as `kfs fsck` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckReport {
    pub files: u64,
    pub chunks: u64,
    /// Chunks with as many live replicas as their file's replication factor (or more).
    pub healthy: u64,
    /// Chunks with at least one live replica, but fewer than the factor.
    pub under_replicated: u64,
    /// Chunks with more live replicas than the factor.
    pub over_replicated: u64,
    /// Chunks with no live replica: their data cannot be read until a replica returns.
    pub missing: u64,
    /// Replicas chunkservers found corrupt (never served).
    pub corrupt_replicas: u64,
    /// Copies being made to repair replication.
    pub copies_in_flight: u64,
    /// Whether the master is in safe mode (just restarted: no deletion or repair yet).
    pub safe_mode: bool,
    /// The under-replicated and missing chunks, by file (at most 1,000).
    pub problems: Vec<FsckProblem>,
}

/// Namespace service of the master.
#[tarpc::service(derive = [Clone, serde::Serialize, serde::Deserialize])]
pub trait MasterService {
    /// Caller: every client, first. Replies with the master's protocol version and settings, or
    /// `IncompatibleProtocol` if `protocol` is not the master's. Idempotent.
    async fn handshake(protocol: u32) -> Result<MasterInfo, KfsError>;

    /// Caller: clients. Creates a directory (with `parents`, also missing parents; an existing
    /// directory is then success). Replies with its attributes. Idempotent only with `parents`.
    async fn mkdir(path: String, options: MkdirOptions) -> Result<FileAttr, KfsError>;

    /// Caller: clients. Creates a regular file, or truncates an existing one unless `exclusive`.
    /// Replies with its attributes. Idempotent when not exclusive (a retry truncates again).
    async fn create(path: String, options: CreateOptions) -> Result<FileAttr, KfsError>;

    /// Caller: clients. Replies with the attributes of `path`. Read-only.
    async fn stat(path: String) -> Result<FileAttr, KfsError>;

    /// Caller: clients. Lists at most `limit` (1..=10,000; 0 means 10,000) entries of a directory
    /// whose names sort after `start_after`, with attributes if `with_attrs`. Read-only; a
    /// directory of any size is listed page by page.
    async fn readdir(
        path: String,
        start_after: Option<String>,
        limit: u32,
        with_attrs: bool,
    ) -> Result<DirPage, KfsError>;

    /// Caller: clients. Atomically renames a file or directory. An existing destination file is
    /// replaced (so is an empty destination directory when the source is a directory); moving a
    /// directory below itself is refused. Not idempotent (a retry after success finds no source).
    async fn rename(src: String, dst: String) -> Result<(), KfsError>;

    /// Caller: clients. Removes a regular file; its chunks are reclaimed in the background.
    /// Not idempotent (a retry after success answers `NotFound`).
    async fn remove(path: String) -> Result<(), KfsError>;

    /// Caller: clients. Removes an empty directory. Not idempotent.
    async fn rmdir(path: String) -> Result<(), KfsError>;

    /// Caller: clients. Removes a file, or a directory with everything below it, in one atomic
    /// step. Replies with what was removed. Not idempotent.
    async fn remove_recursive(path: String) -> Result<RemoveSummary, KfsError>;

    /// Caller: clients. Sets the replication factor (1..=16) of a regular file. Idempotent.
    async fn set_replication(path: String, replication: u8) -> Result<FileAttr, KfsError>;

    /// Caller: clients. Changes mode, owner, group or times. Idempotent.
    async fn set_attr(path: String, attr: SetAttr) -> Result<FileAttr, KfsError>;

    /// Caller: clients. Sets an extended attribute (name as a path name, value up to 64 KiB,
    /// at most 256 per file). Idempotent.
    async fn set_xattr(path: String, name: String, value: ByteBuf) -> Result<(), KfsError>;

    /// Caller: clients. Replies with an extended attribute's value. Read-only.
    async fn get_xattr(path: String, name: String) -> Result<ByteBuf, KfsError>;

    /// Caller: clients. Replies with the names of a file's extended attributes, sorted. Read-only.
    async fn list_xattrs(path: String) -> Result<Vec<String>, KfsError>;

    /// Caller: clients. Removes an extended attribute (`NoSuchXattr` if absent). Not idempotent.
    async fn remove_xattr(path: String, name: String) -> Result<(), KfsError>;

    /// Caller: clients and tools. Replies with the namespace counters. Read-only.
    async fn counters() -> Result<NamespaceCounters, KfsError>;

    /// Caller: clients and tools. Replies with every chunk of a file, in offset order, with the
    /// live replicas at the chunk's current version. Read-only.
    async fn file_chunks(path: String) -> Result<Vec<ChunkLocation>, KfsError>;

    /// Caller: tools (`kfs servers`). Replies with every chunkserver the master has heard of
    /// since it started. Read-only.
    async fn chunkservers() -> Result<Vec<ChunkserverInfo>, KfsError>;

    /// Caller: clients opening a file by id. Replies with its attributes. Read-only.
    async fn stat_fid(fid: FileId) -> Result<FileAttr, KfsError>;

    /// Caller: readers. Replies with the chunks of file `fid` that overlap `[offset, offset +
    /// len)`, in offset order, with their live replicas; a chunk that was never written is absent
    /// (a hole). In safe mode (just after a master restart), a chunk with no replica reported
    /// yet makes the call fail with `Unavailable`, to be asked again. Read-only.
    async fn locate(fid: FileId, offset: u64, len: u64) -> Result<Vec<ChunkLocation>, KfsError>;

    /// Caller: writers. Grants a write lease on the chunk of file `fid` at `chunk_offset` (a
    /// multiple of the chunk size): a new chunk is allocated on distinct chunkservers; an existing
    /// one gets a new version on its live replicas, unless a lease on it is still valid, which is
    /// then returned as it is (one primary per chunk at a time). Right after a master restart,
    /// a chunk the master knew at start-up answers `Unavailable` until leases granted before the
    /// restart have expired (one lease duration after the start); a chunk allocated since is
    /// leased at once. Idempotent while the lease lasts.
    async fn lease(fid: FileId, chunk_offset: u64) -> Result<WriteLease, KfsError>;

    /// Caller: writers holding a lease. Extends it; replies with its new validity, or
    /// `LeaseExpired` if it is not the current lease. Idempotent.
    async fn renew_lease(chunk: ChunkId, version: ChunkVersion) -> Result<u64, KfsError>;

    /// Caller: writers whose write to `chunk` at `version` failed on `failed` servers (each for
    /// its own failure at that version: a chunkserver answers a write that the version moved
    /// under with `StaleVersion`, never `WriteFailed`). If `version` is the chunk's current one,
    /// the master drops those replicas, moves the survivors to a new version (the failed ones
    /// become stale), and replies with a new lease on them. If the chunk has already moved past
    /// `version` (another report, another writer), nothing is dropped: the reply is the current
    /// lease, or a new version on the live replicas. Idempotent.
    async fn report_failure(
        chunk: ChunkId,
        version: ChunkVersion,
        failed: Vec<ServerId>,
    ) -> Result<WriteLease, KfsError>;

    /// Caller: tools (`kfs fsck`). Replies with the health of every chunk. Read-only; walks
    /// the whole namespace.
    async fn fsck() -> Result<FsckReport, KfsError>;

    /// Caller: operators (`kfs admin decommission`). Starts (or with `drain` false, cancels)
    /// draining the chunkserver `server` (an id, an id prefix or an address): its replicas are
    /// copied elsewhere, then removed from it; `chunkservers` shows it `Drained` once it can go.
    /// Idempotent. Not kept across a master restart.
    async fn decommission(server: String, drain: bool) -> Result<ChunkserverInfo, KfsError>;

    /// Caller: writers on flush and close. Makes the file at least `length` bytes long (never
    /// shorter: concurrent writers each extend it to their end) and sets its modification time.
    /// Idempotent.
    async fn extend_length(fid: FileId, length: u64) -> Result<FileAttr, KfsError>;

    /// Caller: clients opening a file. `stat` and `locate` in one call: the file's attributes and
    /// the locations of its chunks in bytes `0..len` (a reader's first reads then need no other
    /// call to the master); `None` instead of locations when some are not known yet (just after
    /// a restart: the reader asks `locate` later). `IsADirectory` for a directory. Idempotent.
    async fn open(
        path: String,
        len: u64,
    ) -> Result<(FileAttr, Option<Vec<ChunkLocation>>), KfsError>;

    /// Caller: operators (`kfs admin workers`). Replies with the master's background workers
    /// (healer, heartbeat timeouts, checkpointer, ...): each one's state, rounds and last note.
    /// Read-only. Since client protocol 3.
    async fn workers() -> Result<Vec<WorkerInfo>, KfsError>;

    /// Caller: writers of small files. Replies with a lease on the open volume for files of
    /// `replication` (made if there is none): append records to its primary, down the chain of
    /// its secondaries, while the lease is valid, then ask again (the same volume while it takes
    /// appends). Since client protocol 4.
    async fn volume_lease(replication: u8) -> Result<WriteLease, KfsError>;

    /// Caller: writers whose append to volume `chunk` failed. Seals it: it is never leased
    /// again (its committed records stay readable). Idempotent. Since client protocol 4.
    async fn seal_volume(chunk: ChunkId) -> Result<(), KfsError>;

    /// Caller: writers of small files, once the file's whole data is one record, durable on
    /// every replica of `volume`. Makes that record (at `offset`, `len` bytes) the file's data,
    /// in one logged step: its size becomes `len`, its chunks or earlier extent are freed, and
    /// its modification time is set. Idempotent. Since client protocol 4.
    async fn set_extent(
        fid: FileId,
        volume: ChunkId,
        offset: u64,
        len: u32,
    ) -> Result<FileAttr, KfsError>;

    /// Caller: clients opening a file. `open` that also answers for small files packed into
    /// volumes: the attributes and the layout of bytes `0..len`. `IsADirectory` for a
    /// directory. Idempotent. Since client protocol 4 (`open` answers a packed file with its
    /// volume as a chunk, which readers of older protocols cannot read: they fail, never read
    /// wrong bytes).
    async fn open_layout(path: String, len: u64) -> Result<(FileAttr, Layout), KfsError>;

    /// Caller: readers of file `fid` (as `locate`, with packed files). Replies with the layout
    /// of bytes `[offset, offset + len)`. Read-only. Since client protocol 4.
    async fn layout(fid: FileId, offset: u64, len: u64) -> Result<Layout, KfsError>;

    /// Caller: a writer moving a packed small file to chunks of its own (it grew past the
    /// packing threshold), which writes the file's whole data to them before anything else.
    /// `lease` for such a file (which `lease` refuses for a packed file, so a writer that does
    /// not know it is packed cannot leave zeros in it). Since client protocol 4.
    async fn lease_unpacking(fid: FileId, chunk_offset: u64) -> Result<WriteLease, KfsError>;

    /// Caller: clients (`kfs truncate`). Sets the length of file `fid` to `length`, shorter or
    /// longer, and frees its chunks wholly past the shorter of the old and new lengths. The
    /// bytes of the chunk holding that point, past it, are the caller's to zero first (a read
    /// must see zeros there). Refused for a packed file (`InvalidArgument`). Idempotent. Since
    /// client protocol 5.
    async fn truncate(fid: FileId, length: u64) -> Result<FileAttr, KfsError>;

    /// Caller: operators (`kfs admin safemode`). Replies with safe mode's state; with `leave`,
    /// ends it first (deletions and repairs may begin at once: the operator knows the missing
    /// servers are not coming back). Idempotent. Since client protocol 5.
    async fn safe_mode(leave: bool) -> Result<SafeModeStatus, KfsError>;

    /// Caller: operators (`kfs admin checkpoint`). Writes a checkpoint of the namespace as of
    /// every op logged so far (none if the newest checkpoint already is) and replies, once it is
    /// durable, with the sequence number of the last op it holds. Idempotent. Since client
    /// protocol 5.
    async fn checkpoint() -> Result<u64, KfsError>;

    /// Caller: operators (`kfs fsck --open-files`). Lists the files written under a write lease
    /// since this master started and not yet finished: being written, or with a writer gone
    /// quiet (see `OpenFileInfo::writing`). Read-only. Since client protocol 5.
    async fn open_files() -> Result<Vec<OpenFileInfo>, KfsError>;

    /// Caller: operators (`kfs fsck [PATH]`). The health of the chunks of the files at or below
    /// `path`, counted as repair rounds count them; at most `limit` problems listed (0: all).
    /// Read-only. Since client protocol 5.
    async fn fsck_path(path: String, limit: u32) -> Result<FsckSummary, KfsError>;

    /// Caller: gateways, at start and then every `interval_ms` of the reply. Records the
    /// gateway for the status page (soft state, never logged). Idempotent. Since client
    /// protocol 6.
    async fn report_gateway(report: GatewayReport) -> Result<GatewayReply, KfsError>;

    /// Caller: administrators (`kfs admin user add`). Records a user (saved before the reply)
    /// and, unless `user.certificate` is given, issues its certificate. `AlreadyExists` for a
    /// user of that name unless `replace`. Since client protocol 7.
    async fn add_user(user: NewUser) -> Result<UserAdded, KfsError>;

    /// Caller: administrators (`kfs admin user remove`). Forgets a user: its certificate is
    /// refused from the next call on. `NotFound` for an unknown name. Since client protocol 7.
    async fn remove_user(name: String) -> Result<(), KfsError>;

    /// Caller: administrators (`kfs admin user list`). Every recorded user, by name. Read-only.
    /// Since client protocol 7.
    async fn users() -> Result<Vec<UserInfo>, KfsError>;

    /// Caller: anyone (`kfs whoami`). Who the master takes the caller for. Read-only. Since
    /// client protocol 7.
    async fn whoami() -> Result<WhoAmI, KfsError>;

    // The calls that answer where data is, with the capabilities chunkservers of a secured
    // cluster want for it (client protocol 8): each answers what its unsigned namesake does,
    // and one capability per chunk (a read capability per located chunk, or per packed file's
    // record; a write or append capability per lease), signed for this connection's
    // certificate; none on an insecure master.

    /// `locate`, with a read capability per chunk. Since client protocol 8.
    async fn locate_signed(
        fid: FileId,
        offset: u64,
        len: u64,
    ) -> Result<Signed<Vec<ChunkLocation>>, KfsError>;

    /// `layout`, with read capabilities (per chunk, or for the packed file's record). Since
    /// client protocol 8.
    async fn layout_signed(fid: FileId, offset: u64, len: u64) -> Result<Signed<Layout>, KfsError>;

    /// `open_layout`, with read capabilities as `layout_signed`. Since client protocol 8.
    async fn open_layout_signed(
        path: String,
        len: u64,
    ) -> Result<Signed<(FileAttr, Layout)>, KfsError>;

    /// `lease` (or with `unpacking`, `lease_unpacking`), with a write capability for the
    /// chunk at the lease's version. Since client protocol 8.
    async fn lease_signed(
        fid: FileId,
        chunk_offset: u64,
        unpacking: bool,
    ) -> Result<Signed<WriteLease>, KfsError>;

    /// `report_failure`, with a write capability for the new lease. Since client protocol 8.
    async fn report_failure_signed(
        chunk: ChunkId,
        version: ChunkVersion,
        failed: Vec<ServerId>,
    ) -> Result<Signed<WriteLease>, KfsError>;

    /// `volume_lease`, with an append capability for the volume. Since client protocol 8.
    async fn volume_lease_signed(replication: u8) -> Result<Signed<WriteLease>, KfsError>;

    /// `file_chunks`, with a read capability per chunk. Since client protocol 8.
    async fn file_chunks_signed(path: String) -> Result<Signed<Vec<ChunkLocation>>, KfsError>;

    /// Caller: clients (a mount). When this connection's namespace changes are answered from
    /// now on ([`Durability`]); a new connection starts at `Synced`. Since client protocol 9.
    async fn set_durability(durability: Durability) -> Result<(), KfsError>;

    /// Caller: clients (a mount's `fsync`). Returns once every namespace change answered before
    /// it, on any connection, is synced; replies with the last sequence number synced. Since
    /// client protocol 9.
    async fn sync_namespace() -> Result<u64, KfsError>;

    /// Caller: clients. Creates a symbolic link at `path` whose target is `target` (any
    /// non-empty text of at most [`MAX_SYMLINK_TARGET`] bytes; the master never follows it: a
    /// mount's kernel does). Replies with its attributes. Not idempotent. Since client protocol
    /// 10.
    async fn symlink(path: String, target: String) -> Result<FileAttr, KfsError>;

    /// Caller: clients. The target of the symbolic link at `path` (`InvalidArgument` if it is
    /// not one). Read-only. Since client protocol 10.
    async fn readlink(path: String) -> Result<String, KfsError>;

    /// Caller: clients. Creates a FIFO, socket or device at `path`. Replies with its
    /// attributes. Not idempotent. Since client protocol 10.
    async fn mknod(path: String, options: MknodOptions) -> Result<FileAttr, KfsError>;

    /// Caller: clients. Gives the file (or symbolic link, or special file) at `src` another
    /// name, `dst` (a new name in an existing directory; never a directory's). Replies with
    /// its attributes, `nlink` counting the new name. Not idempotent. Since client protocol 11.
    async fn link(src: String, dst: String) -> Result<FileAttr, KfsError>;

    /// Caller: clients (a mount, which keeps directories' attributes). Makes `change` as
    /// `remove`, `rmdir` or `rename` does, and replies with the attributes of the directories
    /// it changed, as they are after it: the parent's, and for a rename into another
    /// directory, the source's then the destination's. Not idempotent. Since client protocol
    /// 12.
    async fn change_names(change: NameChange) -> Result<Vec<FileAttr>, KfsError>;
}

/// An answer and the capabilities for the chunks it names.
pub type Signed<T> = (T, Vec<crate::security::capability::Capability>);

/// Connects to a master at `addr` under `security`. The client is cheap to clone; clones share
/// the connection and may have many calls in flight on it.
pub async fn connect(
    addr: std::net::SocketAddr,
    security: &crate::security::Security,
) -> std::io::Result<MasterServiceClient> {
    let transport = crate::rpc::connect(addr, crate::rpc::Service::Master, security).await?;
    Ok(MasterServiceClient::new(tarpc::client::Config::default(), transport).spawn())
}
