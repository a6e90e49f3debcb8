//! `tokio::fs`-style conveniences on a [`Client`]: [`OpenOptions`] (read, write, create,
//! create_new, truncate, append, as `std::fs::OpenOptions`), and whole-file helpers: `read`,
//! `write`, `metadata`, `exists`, `walk`.
//!
//! A KFS [`File`] handle reads and writes whatever it was opened with (the flags say what to
//! do at open, as `std` does: create or not, truncate or not, start at the end); the
//! combinations `std` refuses are refused here the same way (`InvalidArgument`).

use crate::{Client, File};
use futures::stream::{self, BoxStream, StreamExt};
use kfs_common::proto::master::{CreateOptions, FileAttr};
use kfs_common::{FileKind, KfsError, KfsResult, path};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// How to open a file, as `std::fs::OpenOptions`: `OpenOptions::new().write(true).create(true)`.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    replication: Option<u8>,
}

impl OpenOptions {
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }
    pub fn read(&mut self, read: bool) -> &mut Self {
        self.read = read;
        self
    }
    pub fn write(&mut self, write: bool) -> &mut Self {
        self.write = write;
        self
    }
    /// Start at the end of the file (implies writing).
    pub fn append(&mut self, append: bool) -> &mut Self {
        self.append = append;
        self
    }
    /// Cut an existing file to length 0 (needs `write`).
    pub fn truncate(&mut self, truncate: bool) -> &mut Self {
        self.truncate = truncate;
        self
    }
    /// Create the file if it does not exist (needs `write` or `append`).
    pub fn create(&mut self, create: bool) -> &mut Self {
        self.create = create;
        self
    }
    /// Create the file, failing with `AlreadyExists` if it exists (needs `write` or `append`).
    pub fn create_new(&mut self, create_new: bool) -> &mut Self {
        self.create_new = create_new;
        self
    }
    /// Replication factor of a file this creates (default: the cluster's).
    pub fn replication(&mut self, replication: u8) -> &mut Self {
        self.replication = Some(replication);
        self
    }

    /// Opens `path` on `client` as set.
    pub async fn open(&self, client: &Client, path: &str) -> KfsResult<File> {
        let writes = self.write || self.append;
        if !self.read && !writes {
            return Err(KfsError::invalid_argument(
                "open options: neither read, write nor append",
            ));
        }
        if (self.create || self.create_new || self.truncate) && !writes {
            return Err(KfsError::invalid_argument(
                "open options: create, create_new and truncate need write or append",
            ));
        }
        if self.truncate && self.append {
            return Err(KfsError::invalid_argument(
                "open options: truncate and append together",
            ));
        }
        let create = |exclusive| CreateOptions {
            exclusive,
            replication: self.replication,
            ..Default::default()
        };
        let mut file = if self.create_new {
            client.create_with(path, create(true)).await?
        } else if self.create && self.truncate {
            client.create_with(path, create(false)).await?
        } else {
            match client.open(path).await {
                Ok(file) if self.truncate => {
                    // Cut in place (never made again if it went meanwhile), then opened anew.
                    drop(file);
                    client.truncate(path, 0).await?;
                    client.open(path).await?
                }
                Ok(file) => file,
                Err(KfsError::NotFound { .. }) if self.create => {
                    match client.create_with(path, create(true)).await {
                        // Made by someone else meanwhile: open theirs, as O_CREAT does.
                        Err(KfsError::AlreadyExists { .. }) => client.open(path).await?,
                        made => made?,
                    }
                }
                Err(e) => return Err(e),
            }
        };
        if self.append {
            file.seek(std::io::SeekFrom::End(0))
                .await
                .map_err(|e| KfsError::Io(e.to_string()))?;
        }
        Ok(file)
    }
}

impl Client {
    /// Opens `path` with `options` ([`OpenOptions::open`]).
    pub async fn open_with(&self, path: &str, options: &OpenOptions) -> KfsResult<File> {
        options.open(self, path).await
    }

    /// The whole file at `path` (as `tokio::fs::read`).
    pub async fn read(&self, path: &str) -> KfsResult<Vec<u8>> {
        let (file, attr) = self.open_with_attr(path).await?;
        if attr.kind == FileKind::Dir {
            return Err(KfsError::is_a_directory(path));
        }
        file.read_at(0, attr.size as usize).await
    }

    /// Makes `path` hold `data`, created or truncated (as `tokio::fs::write`), on every replica
    /// when this returns.
    pub async fn write(&self, path: &str, data: impl AsRef<[u8]>) -> KfsResult<FileAttr> {
        let mut file = self.create(path).await?;
        file.write_all(data.as_ref())
            .await
            .map_err(KfsError::from)?;
        file.sync().await?;
        file.close().await
    }

    /// The attributes of `path` (as `tokio::fs::metadata`; [`Client::stat`]).
    pub async fn metadata(&self, path: &str) -> KfsResult<FileAttr> {
        self.stat(path).await
    }

    /// Whether `path` exists (as `tokio::fs::try_exists`): `Ok(false)` only when it does not;
    /// other failures are errors.
    pub async fn exists(&self, path: &str) -> KfsResult<bool> {
        match self.stat(path).await {
            Ok(_) => Ok(true),
            Err(KfsError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every path at or below `path` with its attributes: `path` first, each directory before
    /// what it holds, a directory's entries in name order; the stream ends after an error.
    pub fn walk(&self, path: &str) -> BoxStream<'static, KfsResult<(String, FileAttr)>> {
        let client = self.clone();
        let start = path.to_string();
        // (paths still to list, entries of the directory being listed)
        let state: (Vec<String>, Vec<(String, FileAttr)>, bool) = (Vec::new(), Vec::new(), false);
        stream::unfold(
            (client, Some(start), state),
            |(client, first, (mut dirs, mut ready, mut failed))| async move {
                if failed {
                    return None;
                }
                if let Some(top) = first {
                    return match client.stat(&top).await {
                        Ok(attr) => {
                            if attr.kind == FileKind::Dir {
                                dirs.push(top.clone());
                            }
                            Some((Ok((top, attr)), (client, None, (dirs, ready, failed))))
                        }
                        Err(e) => Some((Err(e), (client, None, (dirs, ready, true)))),
                    };
                }
                loop {
                    if let Some((p, attr)) = ready.pop() {
                        if attr.kind == FileKind::Dir {
                            dirs.push(p.clone());
                        }
                        return Some((Ok((p, attr)), (client, None, (dirs, ready, failed))));
                    }
                    let dir = dirs.pop()?;
                    let mut entries = client.list_with_attrs(&dir);
                    let mut listed = Vec::new();
                    while let Some(e) = entries.next().await {
                        match e {
                            Ok(e) => {
                                let attr = e.attr.expect("listed with attributes");
                                listed.push((path::join(&dir, &e.name), attr));
                            }
                            Err(e) => {
                                failed = true;
                                return Some((Err(e), (client, None, (dirs, ready, failed))));
                            }
                        }
                    }
                    // Popped from the end: reversed, so the first name comes first.
                    listed.reverse();
                    ready = listed;
                }
            },
        )
        .boxed()
    }
}
