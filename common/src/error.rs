//! The one error type a KFS user acts on.
//!
//! [`KfsError`] travels inside RPC replies (`Result<T, KfsError>`), apart from transport errors
//! (tarpc's `RpcError`), so a caller can always tell "the master said no" from "the master could not
//! be reached". Every variant names what failed: the path, chunk or server, and why.
//!
//! Display strings follow coreutils (`'/a': Directory not empty`), so the shell can print
//! `kfs: cannot remove '/a': Directory not empty` by prefixing what it tried to do.

use crate::ids::{ChunkId, ChunkVersion};
use serde::{Deserialize, Serialize};

/// How [`KfsError::NoSpace`] reads, first: its kind survives being carried as the text of a
/// [`KfsError::WriteFailed`] reason (see [`KfsError::is_no_space`]).
const NO_SPACE: &str = "No space left on device";

/// What a [`KfsError::NoSpace`] says when chunkservers are full: `chunkserver A is full`,
/// `chunkservers A, B are full`.
pub fn servers_full(addrs: &[String]) -> String {
    match addrs {
        [one] => format!("chunkserver {one} is full"),
        many => format!("chunkservers {} are full", many.join(", ")),
    }
}

/// Result alias used across KFS.
pub type KfsResult<T> = Result<T, KfsError>;

/// An error a user or program can act on. Variants may be added in any release (match with a
/// `_` arm).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KfsError {
    #[error("'{path}': No such file or directory")]
    NotFound { path: String },
    #[error("'{path}': File exists")]
    AlreadyExists { path: String },
    #[error("'{path}': Not a directory")]
    NotADirectory { path: String },
    #[error("'{path}': Is a directory")]
    IsADirectory { path: String },
    #[error("'{path}': Directory not empty")]
    DirectoryNotEmpty { path: String },
    #[error("'{path}': Invalid path: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("'{path}': No such attribute '{name}'")]
    NoSuchXattr { path: String, name: String },
    #[error("Invalid argument: {0}")]
    InvalidArgument(String),
    #[error("Stale version of {chunk}: expected {expected}, found {found}")]
    StaleVersion {
        chunk: ChunkId,
        expected: ChunkVersion,
        found: ChunkVersion,
    },
    #[error("Lease on {chunk} expired")]
    LeaseExpired { chunk: ChunkId },
    #[error("Checksum mismatch in {chunk} at byte {offset}")]
    ChecksumMismatch { chunk: ChunkId, offset: u64 },
    /// Says what is full: `No space left on device (chunkservers A, B are full)`.
    #[error("{NO_SPACE} ({0})")]
    NoSpace(String),
    #[error("Unavailable: {0}")]
    Unavailable(String),
    #[error("Incompatible protocol: peer speaks version {theirs}, this build speaks {ours}")]
    IncompatibleProtocol { ours: u32, theirs: u32 },
    #[error("No such chunk: {chunk}")]
    NoSuchChunk { chunk: ChunkId },
    #[error("Corrupt replica of {chunk}: {reason}")]
    CorruptReplica { chunk: ChunkId, reason: String },
    #[error("No replica of {chunk} is available: {reason}")]
    ChunkUnavailable { chunk: ChunkId, reason: String },
    #[error("Write to {chunk} failed on chunkserver {server}: {reason}")]
    WriteFailed {
        chunk: ChunkId,
        /// The replica that failed (its id), so the writer can report it.
        server: crate::ids::ServerId,
        addr: String,
        reason: String,
    },
    #[error("I/O error: {0}")]
    Io(String),
    #[error("Internal error: {0}")]
    Internal(String),
    /// A volume did not take an append: it is sealed (read-only), or its end is not where the
    /// writer expected. The writer appends to another volume. Since chunk protocol 3.
    #[error("Append to volume {chunk} refused: {reason}")]
    AppendRefused { chunk: ChunkId, reason: String },
    /// The caller's identity (its certificate) does not allow this: says who and what.
    #[error("Permission denied: {0}")]
    PermissionDenied(String),
    /// A chunkserver refused the capability of a call as expired (or signed with a key it no
    /// longer holds): the client asks the master for a new one and calls again. Since chunk
    /// protocol 5.
    #[error("The capability for {chunk} has expired: ask the master again")]
    CapabilityExpired { chunk: ChunkId },
}

impl KfsError {
    /// The same error with `path` where it names `internal` (a master answering a call made by
    /// file id names the file `fid:N`; users should see the path they gave).
    pub fn naming(self, internal: &str, path: &str) -> Self {
        use KfsError::*;
        let fix = |p: String| if p == internal { path.to_string() } else { p };
        match self {
            NotFound { path } => NotFound { path: fix(path) },
            AlreadyExists { path } => AlreadyExists { path: fix(path) },
            NotADirectory { path } => NotADirectory { path: fix(path) },
            IsADirectory { path } => IsADirectory { path: fix(path) },
            DirectoryNotEmpty { path } => DirectoryNotEmpty { path: fix(path) },
            InvalidPath { path, reason } => InvalidPath {
                path: fix(path),
                reason,
            },
            NoSuchXattr { path, name } => NoSuchXattr {
                path: fix(path),
                name,
            },
            other => other,
        }
    }

    pub fn not_found(path: impl Into<String>) -> Self {
        KfsError::NotFound { path: path.into() }
    }
    pub fn already_exists(path: impl Into<String>) -> Self {
        KfsError::AlreadyExists { path: path.into() }
    }
    pub fn not_a_directory(path: impl Into<String>) -> Self {
        KfsError::NotADirectory { path: path.into() }
    }
    pub fn is_a_directory(path: impl Into<String>) -> Self {
        KfsError::IsADirectory { path: path.into() }
    }
    /// A directory, symbolic link or special file where only a regular file has a meaning (its
    /// data, chunks or length): `IsADirectory` for a directory, `InvalidArgument` otherwise.
    pub fn not_a_regular_file(path: impl Into<String>, kind: crate::FileKind) -> Self {
        let path = path.into();
        match kind {
            crate::FileKind::Dir => KfsError::IsADirectory { path },
            kind => KfsError::InvalidArgument(format!("'{path}' is a {kind}, not a regular file")),
        }
    }
    pub fn directory_not_empty(path: impl Into<String>) -> Self {
        KfsError::DirectoryNotEmpty { path: path.into() }
    }
    pub fn invalid_path(path: impl Into<String>, reason: impl Into<String>) -> Self {
        KfsError::InvalidPath {
            path: path.into(),
            reason: reason.into(),
        }
    }
    pub fn invalid_argument(what: impl Into<String>) -> Self {
        KfsError::InvalidArgument(what.into())
    }

    /// The short reason without the path, as coreutils prints it after a colon
    /// (`No such file or directory`).
    pub fn reason(&self) -> String {
        match self {
            KfsError::NotFound { .. } => "No such file or directory".into(),
            KfsError::AlreadyExists { .. } => "File exists".into(),
            KfsError::NotADirectory { .. } => "Not a directory".into(),
            KfsError::IsADirectory { .. } => "Is a directory".into(),
            KfsError::DirectoryNotEmpty { .. } => "Directory not empty".into(),
            KfsError::InvalidPath { reason, .. } => format!("Invalid path: {reason}"),
            KfsError::NoSuchXattr { name, .. } => format!("No such attribute '{name}'"),
            other => other.to_string(),
        }
    }

    /// A short, stable name of the variant (`not_found`, `no_space`...), for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            KfsError::NotFound { .. } => "not_found",
            KfsError::AlreadyExists { .. } => "already_exists",
            KfsError::NotADirectory { .. } => "not_a_directory",
            KfsError::IsADirectory { .. } => "is_a_directory",
            KfsError::DirectoryNotEmpty { .. } => "directory_not_empty",
            KfsError::InvalidPath { .. } => "invalid_path",
            KfsError::NoSuchXattr { .. } => "no_such_xattr",
            KfsError::InvalidArgument(_) => "invalid_argument",
            KfsError::StaleVersion { .. } => "stale_version",
            KfsError::LeaseExpired { .. } => "lease_expired",
            KfsError::ChecksumMismatch { .. } => "checksum_mismatch",
            KfsError::NoSpace(_) => "no_space",
            KfsError::Unavailable(_) => "unavailable",
            KfsError::IncompatibleProtocol { .. } => "incompatible_protocol",
            KfsError::NoSuchChunk { .. } => "no_such_chunk",
            KfsError::CorruptReplica { .. } => "corrupt_replica",
            KfsError::ChunkUnavailable { .. } => "chunk_unavailable",
            KfsError::WriteFailed { .. } => "write_failed",
            KfsError::Io(_) => "io",
            KfsError::Internal(_) => "internal",
            KfsError::AppendRefused { .. } => "append_refused",
            KfsError::PermissionDenied(_) => "permission_denied",
            KfsError::CapabilityExpired { .. } => "capability_expired",
        }
    }

    /// The path this error is about, where it is about one.
    pub fn path(&self) -> Option<&str> {
        match self {
            KfsError::NotFound { path }
            | KfsError::AlreadyExists { path }
            | KfsError::NotADirectory { path }
            | KfsError::IsADirectory { path }
            | KfsError::DirectoryNotEmpty { path }
            | KfsError::InvalidPath { path, .. }
            | KfsError::NoSuchXattr { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Whether this says that the chunk moved to a newer version than the request's (`found`
    /// above `expected`): the master moved it on while the request was on its way. It is never
    /// the failure of the replica that answered it; a writer gets the new lease and writes again.
    pub fn is_version_moved(&self) -> bool {
        matches!(self, KfsError::StaleVersion { expected, found, .. } if found > expected)
    }

    /// Whether a chunkserver says that the writes under a lease can no longer be taken in one
    /// order (a write never came, or the primary restarted and numbers afresh): `LeaseExpired`.
    /// No replica failed; a writer has the master move the chunk to a new version (reporting no
    /// failed server) and writes again.
    pub fn is_order_lost(&self) -> bool {
        matches!(self, KfsError::LeaseExpired { .. })
    }

    /// Whether this says a disk is full: `NoSpace`, or a replica's `WriteFailed` whose reason is
    /// a `NoSpace` (a chain carries the failed replica's error as its text, so old and new
    /// peers agree on it; builds before this one wrote `No space left:`).
    pub fn is_no_space(&self) -> bool {
        match self {
            KfsError::NoSpace(_) => true,
            KfsError::WriteFailed { reason, .. } => reason.starts_with("No space left"),
            _ => false,
        }
    }

    /// Whether retrying the same call later may succeed (the cluster was busy or a server was
    /// briefly away), as opposed to an answer about the request itself.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KfsError::Unavailable(_)
                | KfsError::LeaseExpired { .. }
                | KfsError::StaleVersion { .. }
        )
    }
}

impl From<KfsError> for std::io::Error {
    /// For the `std::io` traits: the kind that fits, with the `KfsError` as the source.
    fn from(e: KfsError) -> std::io::Error {
        use std::io::ErrorKind as K;
        let kind = match &e {
            KfsError::NotFound { .. } | KfsError::NoSuchXattr { .. } => K::NotFound,
            KfsError::AlreadyExists { .. } => K::AlreadyExists,
            KfsError::NotADirectory { .. } => K::NotADirectory,
            KfsError::IsADirectory { .. } => K::IsADirectory,
            KfsError::DirectoryNotEmpty { .. } => K::DirectoryNotEmpty,
            KfsError::InvalidPath { .. } | KfsError::InvalidArgument(_) => K::InvalidInput,
            KfsError::NoSpace(_) => K::StorageFull,
            KfsError::ChecksumMismatch { .. } | KfsError::CorruptReplica { .. } => K::InvalidData,
            KfsError::Unavailable(_) | KfsError::ChunkUnavailable { .. } => K::ConnectionRefused,
            _ => K::Other,
        };
        std::io::Error::new(kind, e)
    }
}

impl From<std::io::Error> for KfsError {
    fn from(e: std::io::Error) -> Self {
        KfsError::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_like_coreutils() {
        let e = KfsError::directory_not_empty("/a");
        assert_eq!(e.to_string(), "'/a': Directory not empty");
        assert_eq!(e.reason(), "Directory not empty");
        assert_eq!(e.path(), Some("/a"));
        assert_eq!(
            format!("cannot remove '{}': {}", e.path().unwrap(), e.reason()),
            "cannot remove '/a': Directory not empty"
        );
    }

    #[test]
    fn errors_survive_the_wire() {
        let e = KfsError::StaleVersion {
            chunk: ChunkId(4),
            expected: ChunkVersion(2),
            found: ChunkVersion(1),
        };
        let bytes = bincode::serialize(&e).unwrap();
        let back: KfsError = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, e);
        assert!(back.is_retryable());
        assert!(
            !back.is_version_moved(),
            "the replica is behind the request"
        );
        let moved = KfsError::StaleVersion {
            chunk: ChunkId(4),
            expected: ChunkVersion(1),
            found: ChunkVersion(2),
        };
        assert!(moved.is_version_moved());
        assert_eq!(
            back.to_string(),
            "Stale version of chunk:4: expected v2, found v1"
        );
    }

    #[test]
    fn a_full_disk_is_told_apart_even_as_a_chain_failure() {
        let full = KfsError::NoSpace(servers_full(&["10.0.0.1:20000".into(), "b:1".into()]));
        assert_eq!(
            full.to_string(),
            "No space left on device (chunkservers 10.0.0.1:20000, b:1 are full)"
        );
        assert_eq!(servers_full(&["a:1".into()]), "chunkserver a:1 is full");
        assert_eq!(
            std::io::Error::from(full.clone()).kind(),
            std::io::ErrorKind::StorageFull
        );
        let failed = |reason: String| KfsError::WriteFailed {
            chunk: ChunkId(1),
            server: crate::ids::ServerId(7),
            addr: "10.0.0.1:20000".into(),
            reason,
        };
        assert!(full.is_no_space());
        assert!(failed(full.to_string()).is_no_space());
        assert!(failed("No space left: /data: os error 28".into()).is_no_space());
        assert!(!failed(KfsError::Io("disk on fire".into()).to_string()).is_no_space());
        assert!(!KfsError::Unavailable("x".into()).is_no_space());
    }
}
