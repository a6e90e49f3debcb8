//! [`Op`]: one namespace mutation, as written to the operation log.
//!
//! Invariant: an op carries every value the master chose for it (file ids, chunk ids, times,
//! the replication factor a new file gets), so applying the same ops to the same state always
//! gives the same state: replay after a crash is deterministic. This is the in-memory op: the
//! log stores its own frozen copy (`storage::format::op_v1` and its successors), converted field by field, so a
//! change here (or to an embedded protocol type such as `SetAttr`) never changes the disk format
//! by accident: it fails to compile until the stored format gets a new version.

use kfs_common::proto::Timestamp;
use kfs_common::proto::master::{FileAttr, RemoveSummary, SetAttr};
use kfs_common::{ChunkId, ChunkVersion, FileId, FileKind};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// A namespace mutation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create a directory; with `parents`, also its missing ancestors. The directories created get
    /// consecutive ids from `first_fid`, outermost first.
    Mkdir {
        path: String,
        parents: bool,
        mode: u16,
        /// The user and group owning the directories created (the caller's).
        owner: u32,
        group: u32,
        first_fid: FileId,
        time: Timestamp,
    },
    /// Create a file, or truncate an existing one unless `exclusive`. A new file gets `fid` and
    /// `replication`; a truncated one keeps its id, and takes `replication` only if
    /// `replication_given`.
    Create {
        path: String,
        exclusive: bool,
        replication: u8,
        replication_given: bool,
        mode: u16,
        /// The user and group owning a new file (a truncated one keeps its own).
        owner: u32,
        group: u32,
        fid: FileId,
        time: Timestamp,
    },
    Rename {
        src: String,
        dst: String,
        time: Timestamp,
    },
    Remove {
        path: String,
        time: Timestamp,
    },
    Rmdir {
        path: String,
        time: Timestamp,
    },
    RemoveRecursive {
        path: String,
        time: Timestamp,
    },
    SetReplication {
        path: String,
        replication: u8,
    },
    /// Only replayed from old logs (the change time stays): changes are [`Op::SetAttrAt`].
    SetAttr {
        path: String,
        attr: SetAttr,
    },
    /// Set attributes, and move the change time to `time`.
    SetAttrAt {
        path: String,
        attr: SetAttr,
        time: Timestamp,
    },
    SetXattr {
        path: String,
        name: String,
        value: ByteBuf,
    },
    RemoveXattr {
        path: String,
        name: String,
    },
    /// Record a new chunk of file `fid` at byte `offset`.
    AllocateChunk {
        fid: FileId,
        offset: u64,
        chunk: ChunkId,
        version: ChunkVersion,
    },
    /// Set the length of file `fid` (chunks are left as they are). Not for a packed file. Only
    /// replayed from old logs: truncates are [`Op::Truncate`].
    SetLength {
        fid: FileId,
        size: u64,
        time: Timestamp,
    },
    /// Move the chunk of file `fid` at `offset` (which must be `chunk`) to a higher `version`
    /// (a new write lease).
    BumpVersion {
        fid: FileId,
        offset: u64,
        chunk: ChunkId,
        version: ChunkVersion,
    },
    /// Make file `fid` at least `size` bytes long (a writer's flush or close), and set its
    /// modification time.
    ExtendLength {
        fid: FileId,
        size: u64,
        time: Timestamp,
    },
    /// Reserve the chunk ids below `below` for allocations to come. Logged before any of them
    /// is handed out, so a restarted master never hands out again an id that a crashed one had
    /// chunkservers create without logging the allocation (those replicas are orphans, deleted
    /// at their servers' hello: a new chunk under the same id would be deleted with them).
    ReserveChunkIds {
        below: ChunkId,
    },
    /// Record a new volume for small files of replication `replication` (its replicas made).
    CreateVolume {
        chunk: ChunkId,
        version: ChunkVersion,
        replication: u8,
    },
    /// Make file `fid`'s data the record at `at` of volume `volume`, `len` bytes (replacing its
    /// chunks or extent, which are freed), its size `len`, and set its modification time.
    SetExtent {
        fid: FileId,
        volume: ChunkId,
        at: u64,
        len: u32,
        time: Timestamp,
    },
    /// Drop volume `chunk`, which holds no file's record any more (its replicas are deleted).
    FreeVolume {
        chunk: ChunkId,
    },
    /// Compaction of volume `from`: each file whose extent is still the record at `at` of
    /// `from` takes the copy of that record in `moves[i].to` instead (its size and times stay);
    /// a move whose file changed since (removed, rewritten, moved to chunks), or whose target
    /// volume is gone, is passed over. One record, so a crash leaves all of them or none.
    MoveExtents {
        from: ChunkId,
        moves: Vec<ExtentMove>,
    },
    /// Make a symbolic link or special file at `path`, a new name (never replacing one), with
    /// id `fid`.
    MakeSpecial {
        path: String,
        special: Special,
        mode: u16,
        owner: u32,
        group: u32,
        fid: FileId,
        time: Timestamp,
    },
    /// Give the non-directory at `src` another name, `dst` (a hard link; never replacing one).
    Link {
        src: String,
        dst: String,
        time: Timestamp,
    },
    /// Set the length of file `fid` to `size`, shorter or longer (`kfs truncate`), freeing its
    /// chunks at offsets `min(old, size)` and above (wholly past the shorter length), and set
    /// its modification time. Not for a packed file; `size` at most [`MAX_FILE_SIZE`].
    Truncate {
        fid: FileId,
        size: u64,
        time: Timestamp,
    },
}

/// What an [`Op::MakeSpecial`] makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Special {
    Symlink { target: String },
    Fifo,
    Socket,
    CharDevice { rdev: u64 },
    BlockDevice { rdev: u64 },
}

impl Special {
    pub fn kind(&self) -> FileKind {
        match self {
            Special::Symlink { .. } => FileKind::Symlink,
            Special::Fifo => FileKind::Fifo,
            Special::Socket => FileKind::Socket,
            Special::CharDevice { .. } => FileKind::CharDevice,
            Special::BlockDevice { .. } => FileKind::BlockDevice,
        }
    }

    /// Its attributes' `size`: a symbolic link's target length, a device's number, else 0.
    pub fn size(&self) -> u64 {
        match self {
            Special::Symlink { target } => target.len() as u64,
            Special::CharDevice { rdev } | Special::BlockDevice { rdev } => *rdev,
            Special::Fifo | Special::Socket => 0,
        }
    }

    /// The special file of `kind` (not a regular file or directory) with device number `rdev`.
    pub fn of_kind(kind: FileKind, rdev: u64) -> Option<Special> {
        match kind {
            FileKind::Fifo => Some(Special::Fifo),
            FileKind::Socket => Some(Special::Socket),
            FileKind::CharDevice => Some(Special::CharDevice { rdev }),
            FileKind::BlockDevice => Some(Special::BlockDevice { rdev }),
            FileKind::File | FileKind::Dir | FileKind::Symlink => None,
        }
    }
}

/// The longest file a truncate makes (1 PiB): byte counters and checksums of holes stay far
/// from overflowing.
pub const MAX_FILE_SIZE: u64 = 1 << 50;

/// One file's record copied by a compaction (see [`Op::MoveExtents`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtentMove {
    pub fid: FileId,
    /// Where its record is in the volume compacted.
    pub at: u64,
    /// The volume the copy is in, and where.
    pub to: ChunkId,
    pub to_at: u64,
    /// Bytes of data (the same in both).
    pub len: u32,
}

/// What a caller is told about an applied op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Attr(FileAttr),
    Done,
    Removed(RemoveSummary),
}

/// The result of applying an op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub reply: Reply,
    /// Chunks no file references any more (truncated, removed or replaced files'), for the
    /// garbage collector.
    pub freed_chunks: Vec<ChunkId>,
}

impl Applied {
    pub fn reply(reply: Reply) -> Applied {
        Applied {
            reply,
            freed_chunks: Vec::new(),
        }
    }
}

/// What [`super::Namespace::prepare`] decided about an op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The op changes the namespace: log it, then apply it.
    Log,
    /// The op changes nothing (e.g. `mkdir -p` of an existing directory): answer with this, and
    /// log nothing.
    Unchanged(Reply),
}

impl Op {
    /// An upper estimate of the op's size in the log, to bound a batch's bytes.
    pub fn size_hint(&self) -> usize {
        64 + match self {
            Op::Mkdir { path, .. }
            | Op::Create { path, .. }
            | Op::Remove { path, .. }
            | Op::Rmdir { path, .. }
            | Op::RemoveRecursive { path, .. }
            | Op::SetReplication { path, .. }
            | Op::SetAttr { path, .. }
            | Op::SetAttrAt { path, .. } => path.len(),
            Op::Rename { src, dst, .. } | Op::Link { src, dst, .. } => src.len() + dst.len(),
            Op::MakeSpecial { path, special, .. } => {
                path.len()
                    + match special {
                        Special::Symlink { target } => target.len(),
                        _ => 0,
                    }
            }
            Op::SetXattr { path, name, value } => path.len() + name.len() + value.len(),
            Op::RemoveXattr { path, name } => path.len() + name.len(),
            Op::AllocateChunk { .. }
            | Op::SetLength { .. }
            | Op::Truncate { .. }
            | Op::BumpVersion { .. }
            | Op::ExtendLength { .. }
            | Op::ReserveChunkIds { .. }
            | Op::CreateVolume { .. }
            | Op::SetExtent { .. }
            | Op::FreeVolume { .. } => 0,
            Op::MoveExtents { moves, .. } => moves.len() * 40,
        }
    }
}
