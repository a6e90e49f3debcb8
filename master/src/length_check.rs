//! Checking a writer's new file length against the data the chunkservers hold.
//!
//! `extend_length` is how a writer publishes what it wrote: the file is at least `length` bytes
//! long. The master never sees the data, so it asks: before a length beyond the file's current
//! size is logged, one live replica of the chunk holding byte `length - 1` must hold that byte
//! (`ChunkService::length` at the chunk's current version, answered from the chunkserver's
//! index without touching its disk). A writer's data is acknowledged by every
//! replica before it extends the length, so a true length always passes; a length past what was
//! written (a buggy or hostile client: a 3-byte file made 8 EiB) is refused with
//! `InvalidArgument`, and a chunk none of whose replicas answers gives `Unavailable` (retry).
//!
//! Invariant: a file's recorded length never exceeds the end of its last chunk as some replica
//! held it when the length was set (holes before the last chunk read as zeros, as in POSIX).

use crate::chunks::ChunkMap;
use crate::committer::SharedNamespace;
use kfs_common::proto::chunk::ChunkPool;
use kfs_common::{FileId, KfsError, KfsResult, rpc};
use std::sync::Mutex;
use std::time::Duration;

/// How long one replica may take to answer.
const REPLICA_CALL: Duration = Duration::from_secs(5);

/// Refuses `length` for `fid` unless it is within the file's current size or a replica holds
/// byte `length - 1`.
pub async fn check_extension(
    ns: &SharedNamespace,
    chunks: &Mutex<ChunkMap>,
    pool: &ChunkPool,
    chunk_size: u64,
    fid: FileId,
    length: u64,
) -> KfsResult<()> {
    let (size, last) = {
        let ns = ns.read().expect("namespace lock");
        let size = ns.stat_fid(fid)?.size;
        if length <= size {
            return Ok(());
        }
        let offset = (length - 1) / chunk_size * chunk_size;
        (size, ns.chunk_at(fid, offset).map(|c| (offset, c)))
    };
    let too_long = |held: &str| {
        KfsError::InvalidArgument(format!(
            "cannot set the length of '{}' to {length} bytes (it is {size}): {held}",
            path_of(ns, fid)
        ))
    };
    let Some((offset, (chunk, version))) = last else {
        return Err(too_long(&format!(
            "nothing was written at byte {}",
            length - 1
        )));
    };
    let replicas = chunks.lock().expect("chunk map lock").locations(chunk);
    let mut unreachable = Vec::new();
    for replica in &replicas {
        let answer = async {
            let client = pool.get(replica.addr).await.map_err(|e| e.to_string())?;
            let held = client
                .length(rpc::context(REPLICA_CALL), chunk, version)
                .await;
            if held.is_err() {
                pool.forget(replica.addr);
            }
            match held {
                Ok(Ok(held)) => Ok(held >= length - offset),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        match answer.await {
            Ok(true) => return Ok(()),
            Ok(false) => {
                return Err(too_long(&format!(
                    "{chunk} holds fewer than {} bytes on chunkserver {}",
                    length - offset,
                    replica.server
                )));
            }
            Err(e) => unreachable.push(format!("{}: {e}", replica.addr)),
        }
    }
    Err(KfsError::Unavailable(format!(
        "cannot check the new length of '{}' against {chunk}: no replica answered ({})",
        path_of(ns, fid),
        if unreachable.is_empty() {
            "none is live".to_string()
        } else {
            unreachable.join("; ")
        }
    )))
}

/// The path of `fid` for an error message (a walk of the tree: only on the error path).
fn path_of(ns: &SharedNamespace, fid: FileId) -> String {
    let wanted = std::collections::HashSet::from([fid]);
    let ns = ns.read().expect("namespace lock");
    ns.paths_of(&wanted)
        .remove(&fid)
        .unwrap_or_else(|| fid.to_string())
}
