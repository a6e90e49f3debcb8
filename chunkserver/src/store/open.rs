//! Opening the store: the server's identity across its data dirs, and the index built from
//! scanning them.
//!
//! - Every data dir holds the same server id, or the store refuses to open; a new server gets a
//!   random id, and a new (empty) dir gets the server's.
//! - A file marked corrupt (`.corrupt`) stays corrupt: the scan does not read it, so a restart
//!   never makes a known-bad replica good again.
//! - A file left by a create that never finished (no longer than the header: it holds no data)
//!   is removed, not reported.
//! - Two files of one chunk (a crash between making a new one and removing the old): the higher
//!   version stays, and at one version the one not corrupt.

use super::chunk_file::ChunkError;
use super::data_dir::{DataDir, Found};
use super::index::{Entry, Index, SharedIndex};
use super::io::FileIo;
use super::open_files;
use super::worker::DirWorker;
use super::{BUFFERS_KEPT, ChunkStore, Slot, aligned::BufPool};
use kfs_common::ServerId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data dirs belong to different servers: {first} holds {first_id}, {other} holds {other_id}"
    )]
    IdentityMismatch {
        first: PathBuf,
        first_id: ServerId,
        other: PathBuf,
        other_id: ServerId,
    },
    #[error("no data dir is usable")]
    NoUsableDir,
    #[error("no data dir given")]
    NoDirs,
}

impl ChunkStore {
    /// Opens the data directories (creating them if needed). Blocking.
    pub fn open(roots: &[PathBuf], io: Arc<dyn FileIo>) -> Result<ChunkStore, StoreError> {
        if roots.is_empty() {
            return Err(StoreError::NoDirs);
        }
        let pool = BufPool::new(BUFFERS_KEPT);
        let open_files = open_files::capacity_for(roots.len());
        let mut dirs = Vec::new();
        for root in roots {
            let dir =
                DataDir::open(root, io.clone(), pool.clone(), open_files).map_err(|source| {
                    StoreError::Io {
                        path: root.clone(),
                        source,
                    }
                })?;
            dirs.push(Arc::new(dir));
        }
        let server = settle_identity(&dirs)?;

        let mut kept: HashMap<_, (Entry, PathBuf)> = HashMap::new();
        let mut failed = vec![false; dirs.len()];
        for (i, dir) in dirs.iter().enumerate() {
            let found = match dir.scan() {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(dir = %dir.root.display(), error = %e, "data dir unreadable; taken out of service");
                    failed[i] = true;
                    continue;
                }
            };
            for f in found {
                if let Some((entry, path)) = scanned(dir, i, &f) {
                    keep_better(&mut kept, f.chunk, entry, path);
                }
            }
        }
        let mut index = Index::default();
        for (chunk, (entry, _)) in kept {
            index.insert(chunk, entry);
        }
        let mut slots = Vec::new();
        for (i, dir) in dirs.into_iter().enumerate() {
            let worker = DirWorker::start(dir.clone(), i).map_err(|source| StoreError::Io {
                path: dir.root.clone(),
                source,
            })?;
            slots.push(Slot {
                dir,
                worker,
                failed: AtomicBool::new(failed[i]),
                capacity: AtomicU64::new(0),
                available: AtomicU64::new(0),
            });
        }
        if slots
            .iter()
            .all(|s| s.failed.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(StoreError::NoUsableDir);
        }
        let store = ChunkStore {
            slots,
            index: SharedIndex::new(index),
            server,
            changed: tokio::sync::Notify::new(),
            capacity_limit: AtomicU64::new(0),
            reserve: AtomicU64::new(0),
            copies_in: Mutex::new(HashMap::new()),
        };
        store.refresh_space();
        Ok(store)
    }
}

/// The index entry of a file found by a scan of dir `i`, and its path; `None` for the leftover
/// of an unfinished create (removed).
fn scanned(dir: &DataDir, i: usize, f: &Found) -> Option<(Entry, PathBuf)> {
    let path = f.path.clone();
    match &f.length {
        Err(e @ ChunkError::Unfinished { .. }) => {
            tracing::warn!(file = %path.display(), error = %e, "removing a chunk file that holds no data (an unfinished create, or cut below its header)");
            remove_quietly(&path);
            return None;
        }
        Err(e) if !f.marked_corrupt => {
            tracing::warn!(chunk = %f.chunk, dir = %dir.root.display(), error = %e, "replica unusable; reporting it corrupt");
        }
        _ => {}
    }
    // A corrupt replica's length is its file's (what it takes on disk until deleted).
    let length = match &f.length {
        Ok(length) => *length,
        Err(_) => f.size.saturating_sub(f.kind.header_len()),
    };
    let entry = Entry {
        dir: i,
        version: f.version,
        length,
        corrupt: f.length.is_err(),
        kind: f.kind,
    };
    Some((entry, path))
}

/// Keeps the better of two files of one chunk (higher version; at one version, not corrupt) and
/// removes the other.
fn keep_better(
    kept: &mut HashMap<kfs_common::ChunkId, (Entry, PathBuf)>,
    chunk: kfs_common::ChunkId,
    entry: Entry,
    path: PathBuf,
) {
    let rank = |e: &Entry| (e.version, !e.corrupt);
    match kept.get(&chunk) {
        Some((other, _)) if rank(other) >= rank(&entry) => remove_quietly(&path),
        Some((_, other_path)) => {
            remove_quietly(other_path);
            kept.insert(chunk, (entry, path));
        }
        None => {
            kept.insert(chunk, (entry, path));
        }
    }
}

fn remove_quietly(path: &Path) {
    tracing::warn!(file = %path.display(), "removing a chunk file that is not needed");
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(file = %path.display(), error = %e, "could not remove a chunk file");
    }
}

/// Reads every data dir's identity; they must agree. A new server (no identity anywhere) gets a
/// random id; directories without one (new disks) get the server's.
fn settle_identity(dirs: &[Arc<DataDir>]) -> Result<ServerId, StoreError> {
    let mut known: Option<(PathBuf, ServerId)> = None;
    for dir in dirs {
        let id = dir.read_identity().map_err(|source| StoreError::Io {
            path: dir.root.clone(),
            source,
        })?;
        match (&known, id) {
            (None, Some(id)) => known = Some((dir.root.clone(), id)),
            (Some((first, first_id)), Some(id)) if *first_id != id => {
                return Err(StoreError::IdentityMismatch {
                    first: first.clone(),
                    first_id: *first_id,
                    other: dir.root.clone(),
                    other_id: id,
                });
            }
            _ => {}
        }
    }
    let id = match known {
        Some((_, id)) => id,
        None => {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).map_err(|e| StoreError::Io {
                path: dirs[0].root.clone(),
                source: std::io::Error::other(format!("no randomness for a server id: {e}")),
            })?;
            ServerId(u128::from_le_bytes(bytes))
        }
    };
    for dir in dirs {
        if dir.read_identity().ok().flatten() != Some(id) {
            dir.write_identity(id).map_err(|source| StoreError::Io {
                path: dir.root.clone(),
                source,
            })?;
        }
    }
    Ok(id)
}
