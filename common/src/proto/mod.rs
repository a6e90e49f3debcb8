//! The wire protocol: tarpc service traits and the serde types they carry.
//!
//! One module per service. Every method's doc says who calls it, what it answers and whether it is
//! idempotent (safe to retry after a lost reply). Application errors travel inside the reply as
//! `Result<T, KfsError>`; transport failures are tarpc's `RpcError`, kept apart.
//!
//! Invariant: every byte payload is `serde_bytes`-typed (a `Vec<u8>` goes through serde element by
//! element, ten times slower).

pub mod chunk;
pub mod cluster;
pub mod encoding;
pub mod master;
pub mod payload;
pub mod users;

pub use payload::Payload;

/// Version of the cluster protocol (chunkserver <-> master, chunkserver <-> chunkserver). Peers
/// exchange it in their first call and refuse a mismatch with
/// [`crate::KfsError::IncompatibleProtocol`]. 2: `ChunkService::length` (the master asks it),
/// methods only ever added at the end of a service, so clients of the chunk service are not
/// affected; 3: `describe` (data dirs, scrub progress, version for the status page); 4:
/// `capability_keys`. A master
/// serves chunkservers of every version from [`OLDEST_CLUSTER_PROTOCOL`] on (upgrade the master
/// first).
pub const PROTOCOL_VERSION: u32 = 4;

/// The oldest cluster protocol a master still serves.
pub const OLDEST_CLUSTER_PROTOCOL: u32 = 2;

/// Version of the client protocol (`MasterService`), which a client sends in `handshake`.
/// Version 2 added `open`, 3 `workers`, 4 small files packed into volumes (`volume_lease`,
/// `seal_volume`, `set_extent`, `open_layout`, `layout`), 5 `truncate`, `safe_mode`,
/// `checkpoint`, `open_files`, `fsck_path`; 6 `report_gateway`; 7 users (`add_user`,
/// `remove_user`, `users`, `whoami`); 8 capabilities for the data path (`locate_signed`,
/// `layout_signed`, `open_layout_signed`, `lease_signed`, `report_failure_signed`,
/// `volume_lease_signed`, `file_chunks_signed`); 9 `set_durability` and `sync_namespace` (a
/// mount's changes answered once logged, synced at `fsync`); 10 symbolic links and special
/// files (`symlink`, `readlink`, `mknod`, and the `FileKind`s they make, which a client of an
/// older version is shown as regular files of length 0); 11 hard links (`link`), and
/// `FileAttr`'s `nlink` and `ctime` (encoded for an older client without them:
/// [`encoding`]); 12 `change_names` (remove, rmdir, rename answered with the directories'
/// attributes after them). Methods are only ever
/// added at the end of the service, so a master
/// serves clients of every version from [`OLDEST_CLIENT_PROTOCOL`] to this one, and an upgraded
/// master keeps serving clients not yet upgraded; a client newer than its master is refused at
/// the handshake (upgrade the master first).
pub const CLIENT_PROTOCOL_VERSION: u32 = 12;

/// The oldest client protocol a master still serves.
pub const OLDEST_CLIENT_PROTOCOL: u32 = 1;

/// Version of the chunk service's protocol (clients, chunkservers and the master → a
/// chunkserver), stated when a connection opens (`rpc::preamble`). 2: `length`, as
/// [`PROTOCOL_VERSION`] 2; 3: volumes of small files (`create_volume`, `append`, `read_record`);
/// 4: `checksum` (a chunk's crc32c from its block checksums); 5: the calls under capabilities
/// (`read_with`, `write_with`, `sync_with`, `append_with`, `read_record_with`, `checksum_with`,
/// `length_with`).
/// Methods are only ever added at the end, so a chunkserver serves callers of every version
/// from [`OLDEST_CHUNK_PROTOCOL`] on.
pub const CHUNK_PROTOCOL_VERSION: u32 = 5;

/// The oldest chunk protocol a chunkserver still serves.
pub const OLDEST_CHUNK_PROTOCOL: u32 = 2;

/// Nanoseconds since the UNIX epoch (UTC).
pub type Timestamp = i64;

/// The current time as a [`Timestamp`].
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The current time in whole seconds since the UNIX epoch, as status reports carry it.
pub fn now_unix_secs() -> u64 {
    now().max(0) as u64 / 1_000_000_000
}
