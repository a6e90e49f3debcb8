//! What a benchmark runs against: a KFS cluster through `kfs-client`, or a directory of any
//! mounted file system (each POSIX operation whole on one blocking thread, with `std::fs`). Both offer the same operations with the same meaning, so a workload is
//! written once and measures the same thing on both: a file write ends with a sync in both
//! (`File::sync` in KFS, `fsync` on POSIX), a read reads every byte, a listing reads every entry.

use anyhow::Context as _;
use kfs_client::Client;
use kfs_common::proto::master::CreateOptions;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the operations go. Paths are relative to the benchmark's own directory.
#[derive(Clone)]
pub enum Target {
    /// A KFS cluster; `root` is an absolute KFS path.
    Kfs { client: Client, root: String },
    /// A directory of a mounted file system.
    Posix { root: PathBuf },
}

impl Target {
    fn kfs_path(root: &str, rel: &str) -> String {
        if rel.is_empty() {
            root.to_string()
        } else {
            format!("{root}/{rel}")
        }
    }

    /// What the report calls it.
    pub fn describe(&self) -> String {
        match self {
            Target::Kfs { client, root } => {
                format!("kfs (master {}) {root}", client.master_addr())
            }
            Target::Posix { root } => format!("posix {}", root.display()),
        }
    }

    /// Makes the benchmark's directory `rel` (its parent must exist).
    pub async fn mkdir(&self, rel: &str) -> anyhow::Result<()> {
        match self {
            Target::Kfs { client, root } => {
                let path = Self::kfs_path(root, rel);
                client
                    .mkdir(&path)
                    .await
                    .with_context(|| format!("mkdir {path}"))?;
            }
            Target::Posix { root } => {
                let path = root.join(rel);
                blocking(move || {
                    std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Creates an empty file (no data, no sync: a metadata operation).
    pub async fn create_empty(&self, rel: &str) -> anyhow::Result<()> {
        match self {
            Target::Kfs { client, root } => {
                let path = Self::kfs_path(root, rel);
                let file = client
                    .create(&path)
                    .await
                    .with_context(|| format!("create {path}"))?;
                file.close()
                    .await
                    .with_context(|| format!("close {path}"))?;
            }
            Target::Posix { root } => {
                let path = root.join(rel);
                blocking(move || {
                    std::fs::File::create(&path)
                        .map(drop)
                        .with_context(|| format!("create {}", path.display()))
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Writes `size` bytes of `pattern` (repeated) in calls of `block` bytes, syncs and closes.
    pub async fn write_file(
        &self,
        rel: &str,
        size: u64,
        block: usize,
        replication: u8,
        pattern: &Arc<Vec<u8>>,
    ) -> anyhow::Result<u64> {
        match self {
            Target::Kfs { client, root } => {
                let path = Self::kfs_path(root, rel);
                let options = CreateOptions {
                    replication: Some(replication),
                    ..Default::default()
                };
                let mut file = client
                    .create_with(&path, options)
                    .await
                    .with_context(|| format!("create {path}"))?;
                write_blocks(&mut file, size, block, pattern)
                    .await
                    .with_context(|| format!("write {path}"))?;
                file.sync().await.with_context(|| format!("sync {path}"))?;
                file.close()
                    .await
                    .with_context(|| format!("close {path}"))?;
            }
            Target::Posix { root } => {
                let path = root.join(rel);
                let pattern = pattern.clone();
                blocking(move || {
                    let mut file = std::fs::File::create(&path)
                        .with_context(|| format!("create {}", path.display()))?;
                    write_blocks_sync(&mut file, size, block, &pattern)
                        .with_context(|| format!("write {}", path.display()))?;
                    file.sync_all()
                        .with_context(|| format!("fsync {}", path.display()))
                })
                .await?;
            }
        }
        Ok(size)
    }

    /// Reads the whole file in calls of `block` bytes; returns the bytes read.
    pub async fn read_file(&self, rel: &str, block: usize) -> anyhow::Result<u64> {
        match self {
            Target::Kfs { client, root } => {
                let mut buf = vec![0u8; block];
                let path = Self::kfs_path(root, rel);
                let mut file = client
                    .open(&path)
                    .await
                    .with_context(|| format!("open {path}"))?;
                read_all(&mut file, &mut buf)
                    .await
                    .with_context(|| format!("read {path}"))
            }
            Target::Posix { root } => {
                let path = root.join(rel);
                blocking(move || {
                    use std::io::Read as _;
                    let mut file = std::fs::File::open(&path)
                        .with_context(|| format!("open {}", path.display()))?;
                    let mut buf = vec![0u8; block];
                    let mut total = 0u64;
                    loop {
                        let n = file
                            .read(&mut buf)
                            .with_context(|| format!("read {}", path.display()))?;
                        if n == 0 {
                            return Ok(total);
                        }
                        total += n as u64;
                    }
                })
                .await
            }
        }
    }

    pub async fn stat(&self, rel: &str) -> anyhow::Result<u64> {
        match self {
            Target::Kfs { client, root } => {
                let path = Self::kfs_path(root, rel);
                Ok(client
                    .stat(&path)
                    .await
                    .with_context(|| format!("stat {path}"))?
                    .size)
            }
            Target::Posix { root } => {
                let path = root.join(rel);
                blocking(move || {
                    Ok(std::fs::metadata(&path)
                        .with_context(|| format!("stat {}", path.display()))?
                        .len())
                })
                .await
            }
        }
    }

    /// Lists a directory entirely (KFS: every page); returns the number of entries.
    pub async fn list(&self, rel: &str) -> anyhow::Result<u64> {
        match self {
            Target::Kfs { client, root } => {
                let path = Self::kfs_path(root, rel);
                Ok(client
                    .list_all(&path)
                    .await
                    .with_context(|| format!("list {path}"))?
                    .len() as u64)
            }
            Target::Posix { root } => {
                let path = root.join(rel);
                blocking(move || {
                    let mut n = 0;
                    for entry in std::fs::read_dir(&path)
                        .with_context(|| format!("list {}", path.display()))?
                    {
                        entry.with_context(|| format!("list {}", path.display()))?;
                        n += 1;
                    }
                    Ok(n)
                })
                .await
            }
        }
    }

    pub async fn rename(&self, from: &str, to: &str) -> anyhow::Result<()> {
        match self {
            Target::Kfs { client, root } => {
                let (a, b) = (Self::kfs_path(root, from), Self::kfs_path(root, to));
                client
                    .rename(&a, &b)
                    .await
                    .with_context(|| format!("rename {a} {b}"))?;
            }
            Target::Posix { root } => {
                let (a, b) = (root.join(from), root.join(to));
                blocking(move || {
                    std::fs::rename(&a, &b)
                        .with_context(|| format!("rename {} {}", a.display(), b.display()))
                })
                .await?;
            }
        }
        Ok(())
    }

    pub async fn remove(&self, rel: &str) -> anyhow::Result<()> {
        match self {
            Target::Kfs { client, root } => {
                let path = Self::kfs_path(root, rel);
                client
                    .remove(&path)
                    .await
                    .with_context(|| format!("remove {path}"))?;
            }
            Target::Posix { root } => {
                let path = root.join(rel);
                blocking(move || {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("remove {}", path.display()))
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Removes the benchmark's directory `rel` and everything in it.
    pub async fn remove_tree(&self, rel: &str) -> anyhow::Result<()> {
        match self {
            Target::Kfs { client, root } => {
                let path = Self::kfs_path(root, rel);
                client
                    .remove_all(&path)
                    .await
                    .with_context(|| format!("rm -r {path}"))?;
            }
            Target::Posix { root } => {
                let path = root.join(rel);
                blocking(move || {
                    std::fs::remove_dir_all(&path)
                        .with_context(|| format!("rm -r {}", path.display()))
                })
                .await?;
            }
        }
        Ok(())
    }
}

/// Runs one whole POSIX operation (open, I/O, sync, close) on one blocking thread: one hand-off
/// per operation, as a program using the file system directly would pay none.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// The parts of the pattern written for a file of `size` bytes in calls of `block` bytes: a
/// window of the pattern that moves from call to call, so blocks differ from each other.
fn windows(
    size: u64,
    block: usize,
    pattern_len: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let mut left = size;
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = (block as u64).min(left) as usize;
        let start = at % (pattern_len - n.min(pattern_len) + 1);
        left -= n as u64;
        at = at.wrapping_add(4099);
        Some(start..start + n)
    })
}

fn write_blocks_sync(
    out: &mut std::fs::File,
    size: u64,
    block: usize,
    pattern: &[u8],
) -> std::io::Result<()> {
    use std::io::Write as _;
    for window in windows(size, block, pattern.len()) {
        out.write_all(&pattern[window])?;
    }
    Ok(())
}

async fn write_blocks<W: AsyncWriteExt + Unpin>(
    out: &mut W,
    size: u64,
    block: usize,
    pattern: &[u8],
) -> std::io::Result<()> {
    for window in windows(size, block, pattern.len()) {
        out.write_all(&pattern[window]).await?;
    }
    out.flush().await
}

async fn read_all<R: AsyncReadExt + Unpin>(input: &mut R, buf: &mut [u8]) -> std::io::Result<u64> {
    let mut total = 0;
    loop {
        let n = input.read(buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}
