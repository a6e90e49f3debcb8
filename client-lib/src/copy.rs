//! Copying local files and directory trees into KFS and back.
//!
//! Trees are copied with several files in flight at once. Symbolic links and special files are
//! skipped, and each one named in the summary; a local path that cannot be read is an error
//! naming it. A copy tells its [`CopyProgress`] of every piece of bytes moved, of the files a
//! tree holds once it has been walked, and of each file as it starts and ends (any
//! `Fn(u64)` closure is a `CopyProgress` that hears of the bytes only).

use crate::Client;
use futures::stream::{self, StreamExt, TryStreamExt};
use kfs_common::{FileKind, KfsError, KfsResult, path};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Files copied at once when copying a tree.
const TREE_PARALLELISM: usize = 8;
/// Bytes moved per read of the source.
const COPY_BUF: usize = 1 << 20;

/// What a copy tells as it goes (for a progress bar).
pub trait CopyProgress: Sync {
    /// `n` more bytes were copied.
    fn bytes(&self, n: u64);
    /// The copy holds `files` files in all (a tree, once walked; 1 for a file).
    fn files_found(&self, _files: u64) {}
    /// The file `name` (its path below what was asked) starts.
    fn file_started(&self, _name: &str) {}
    /// A file is done.
    fn file_done(&self) {}
}

impl<F: Fn(u64) + Sync> CopyProgress for F {
    fn bytes(&self, n: u64) {
        self(n)
    }
}

/// What a copy moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopySummary {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Symbolic links, special files (FIFOs, sockets, devices) and names that are not UTF-8,
    /// left out: `(path, what it is)`.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

impl CopySummary {
    fn add(mut self, other: CopySummary) -> CopySummary {
        self.files += other.files;
        self.dirs += other.dirs;
        self.bytes += other.bytes;
        self.skipped.extend(other.skipped);
        self
    }
}

/// A local file's error, as coreutils words it (`/tmp/x: No such file or directory`, without
/// Rust's `(os error 2)`).
fn local(path: &Path, e: impl std::fmt::Display) -> KfsError {
    let text = e.to_string();
    let reason = text
        .find(" (os error ")
        .map_or(text.as_str(), |at| &text[..at]);
    KfsError::Io(format!("{}: {reason}", path.display()))
}

pub use kfs_common::path::UPLOAD_PREFIX;

/// A fresh random name for an upload's temporary file (`.kfs-upload-<16 hex digits>`).
pub fn upload_temp_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{UPLOAD_PREFIX}{random:016x}")
}

/// Copies a local file into KFS at `remote` (with `replication` or the cluster's default);
/// `progress` is told of every piece of bytes copied.
///
/// The copy is all or nothing, as HDFS's `put` is: the bytes go to a temporary file beside
/// `remote` ([`upload_temp_name`]), which is renamed over `remote` once closed. A copy that
/// fails leaves `remote` as it was (or absent) and removes the temporary file; its error names
/// `remote`, never an internal id.
pub async fn put_file(
    client: &Client,
    local_path: &Path,
    remote: &str,
    replication: Option<u8>,
    progress: &dyn CopyProgress,
) -> KfsResult<u64> {
    let mut src = tokio::fs::File::open(local_path)
        .await
        .map_err(|e| local(local_path, e))?;
    let options = kfs_common::proto::master::CreateOptions {
        replication,
        exclusive: true,
        ..Default::default()
    };
    let parent = path::split_parent(remote)
        .ok()
        .flatten()
        .map_or("/", |(parent, _)| parent);
    let temp = path::join(parent, &upload_temp_name());
    // A put dropped midway (a cancelled command) removes its temporary file too, even when it
    // is dropped while the create is in flight: the create runs to its end in a task of its
    // own, and the removal waits for it.
    let create = tokio::spawn({
        let (client, temp) = (client.clone(), temp.clone());
        async move { client.create_with(&temp, options).await }
    });
    let mut guard = RemoveOnDrop {
        client: client.clone(),
        path: Some(temp.clone()),
        creating: Some(create),
    };
    let created = guard
        .creating
        .as_mut()
        .expect("just set")
        .await
        .map_err(|e| KfsError::Internal(format!("the create of {temp} failed: {e}")));
    guard.creating = None;
    let mut dst = match created {
        Ok(Ok(file)) => file,
        Ok(Err(e)) | Err(e) => {
            guard.path = None;
            return Err(e.naming(&temp, remote));
        }
    };
    let internal = dst.fid().to_string();
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    let copied: KfsResult<()> = async {
        loop {
            let n = src.read(&mut buf).await.map_err(|e| local(local_path, e))?;
            if n == 0 {
                return Ok(());
            }
            dst.write_all(&buf[..n]).await.map_err(KfsError::from)?;
            total += n as u64;
            progress.bytes(n as u64);
        }
    }
    .await;
    let finished = match copied {
        Ok(()) => match dst.close().await {
            Ok(_) => client.rename(&temp, remote).await,
            Err(e) => Err(e),
        },
        Err(e) => {
            dst.abandon();
            Err(e)
        }
    };
    guard.path = None;
    if let Err(e) = finished {
        if let Err(removing) = client.remove(&temp).await {
            tracing::warn!(path = %temp, error = %removing, "could not remove a failed put's temporary file");
        }
        return Err(e.naming(&internal, remote).naming(&temp, remote));
    }
    Ok(total)
}

/// How a skipped local entry is named in the summary.
fn what_it_is(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// A file's name for the progress bar.
fn file_label(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Removes a put's temporary file if the put is dropped before it finished (its future
/// cancelled): on the runtime it was dropped in, in the background.
struct RemoveOnDrop {
    client: Client,
    path: Option<String>,
    /// The create of the temporary file, while it is in flight.
    creating: Option<tokio::task::JoinHandle<KfsResult<crate::File>>>,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let (Some(path), Ok(rt)) = (self.path.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let client = self.client.clone();
        let creating = self.creating.take();
        let cleanup = rt.spawn(async move {
            if let Some(create) = creating {
                match create.await {
                    // Not made: nothing to remove.
                    Ok(Err(_)) | Err(_) => return,
                    // Made: its handle goes without a flush (nothing was written).
                    Ok(Ok(file)) => file.abandon(),
                }
            }
            if let Err(e) = client.remove(&path).await {
                tracing::warn!(%path, error = %e, "could not remove a cancelled put's temporary file");
            }
        });
        let mut cleanups = CLEANUPS.lock().expect("cleanups lock");
        cleanups.retain(|c| !c.is_finished());
        cleanups.push(cleanup);
    }
}

/// The removals cancelled puts started, not yet awaited ([`wait_for_cleanups`]).
static CLEANUPS: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Waits (at most `limit`) for the temporary files of cancelled puts to be removed: a program
/// that cancels a copy and goes on (the shell, at Ctrl-C) calls this before it says the copy is
/// gone. What is not done by then finishes in the background (and the master removes an
/// abandoned upload's file in the end).
pub async fn wait_for_cleanups(limit: std::time::Duration) {
    let pending: Vec<_> = std::mem::take(&mut *CLEANUPS.lock().expect("cleanups lock"));
    let _ = tokio::time::timeout(limit, futures::future::join_all(pending)).await;
}

/// Copies a KFS file to a local file (created or truncated); `progress` is told of every piece.
pub async fn get_file(
    client: &Client,
    remote: &str,
    local_path: &Path,
    progress: &dyn CopyProgress,
) -> KfsResult<u64> {
    let mut src = client.open(remote).await?;
    let mut dst = tokio::fs::File::create(local_path)
        .await
        .map_err(|e| local(local_path, e))?;
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])
            .await
            .map_err(|e| local(local_path, e))?;
        total += n as u64;
        progress.bytes(n as u64);
    }
    dst.flush().await.map_err(|e| local(local_path, e))?;
    Ok(total)
}

/// Copies a local file or directory tree into KFS at `remote` (files get `replication`, or the
/// cluster's default).
pub async fn put(
    client: &Client,
    local_path: &Path,
    remote: &str,
    replication: Option<u8>,
    progress: &dyn CopyProgress,
) -> KfsResult<CopySummary> {
    let meta = tokio::fs::symlink_metadata(local_path)
        .await
        .map_err(|e| local(local_path, e))?;
    if meta.is_file() {
        progress.files_found(1);
        progress.file_started(&file_label(local_path));
        let bytes = put_file(client, local_path, remote, replication, progress).await?;
        progress.file_done();
        return Ok(CopySummary {
            files: 1,
            bytes,
            ..Default::default()
        });
    }
    if !meta.is_dir() {
        return Ok(CopySummary {
            skipped: vec![(local_path.to_path_buf(), what_it_is(&meta.file_type()))],
            ..Default::default()
        });
    }
    // Directories first (parents before children), then the files, several at once.
    let mut dirs = vec![(local_path.to_path_buf(), remote.to_string())];
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut summary = CopySummary::default();
    while let Some((dir, remote_dir)) = dirs.pop() {
        client.mkdir_all(&remote_dir).await?;
        summary.dirs += 1;
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| local(&dir, e))?;
        while let Some(entry) = entries.next_entry().await.map_err(|e| local(&dir, e))? {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                summary
                    .skipped
                    .push((entry.path(), "a name that is not UTF-8"));
                continue;
            };
            let kind = entry
                .file_type()
                .await
                .map_err(|e| local(&entry.path(), e))?;
            let target = path::join(&remote_dir, name);
            if kind.is_dir() {
                dirs.push((entry.path(), target));
            } else if kind.is_file() {
                files.push((entry.path(), target));
            } else {
                summary.skipped.push((entry.path(), what_it_is(&kind)));
            }
        }
    }
    progress.files_found(files.len() as u64);
    let copied: Vec<CopySummary> = stream::iter(files)
        .map(|(from, to)| async move {
            let label = from.strip_prefix(local_path).unwrap_or(&from);
            progress.file_started(&label.to_string_lossy());
            let bytes = put_file(client, &from, &to, replication, progress).await?;
            progress.file_done();
            Ok::<_, KfsError>(CopySummary {
                files: 1,
                bytes,
                ..Default::default()
            })
        })
        .buffer_unordered(TREE_PARALLELISM)
        .try_collect()
        .await?;
    Ok(copied.into_iter().fold(summary, CopySummary::add))
}

/// Copies a KFS file or directory tree to `local_path`.
pub async fn get(
    client: &Client,
    remote: &str,
    local_path: &Path,
    progress: &dyn CopyProgress,
) -> KfsResult<CopySummary> {
    let attr = client.stat(remote).await?;
    if attr.kind.is_special() {
        return Ok(CopySummary {
            skipped: vec![(local_path.to_path_buf(), attr.kind.name())],
            ..Default::default()
        });
    }
    if attr.kind == FileKind::File {
        progress.files_found(1);
        progress.file_started(remote.rsplit('/').next().unwrap_or(remote));
        let bytes = get_file(client, remote, local_path, progress).await?;
        progress.file_done();
        return Ok(CopySummary {
            files: 1,
            bytes,
            ..Default::default()
        });
    }
    let mut dirs = vec![(remote.to_string(), local_path.to_path_buf())];
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut summary = CopySummary::default();
    while let Some((remote_dir, dir)) = dirs.pop() {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| local(&dir, e))?;
        summary.dirs += 1;
        let mut entries = client.list(&remote_dir);
        while let Some(entry) = entries.next().await {
            let entry = entry?;
            let from = path::join(&remote_dir, &entry.name);
            let to = dir.join(&entry.name);
            match entry.kind {
                FileKind::Dir => dirs.push((from, to)),
                FileKind::File => files.push((from, to)),
                special => summary.skipped.push((to, special.name())),
            }
        }
    }
    progress.files_found(files.len() as u64);
    let copied: Vec<CopySummary> = stream::iter(files)
        .map(|(from, to)| async move {
            let label = from.strip_prefix(remote).unwrap_or(&from);
            progress.file_started(label.trim_start_matches('/'));
            let bytes = get_file(client, &from, &to, progress).await?;
            progress.file_done();
            Ok::<_, KfsError>(CopySummary {
                files: 1,
                bytes,
                ..Default::default()
            })
        })
        .buffer_unordered(TREE_PARALLELISM)
        .try_collect()
        .await?;
    Ok(copied.into_iter().fold(summary, CopySummary::add))
}
