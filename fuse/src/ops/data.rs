//! Files' data: `create`, `open`, `read`, `write`, `flush`, `fsync`, `release`, and truncation.
//!
//! What a write promises (docs/fuse.md): its bytes are on every replica, durably, once `fsync`
//! returns; `close` (the kernel's `flush`) waits for every write to land on every replica and
//! records the file's length at the master, so any client opening the file afterwards reads
//! them; a write error not yet reported by `write` is reported by the `close` or `fsync` after it.

use crate::open_files::OpenFile;
use crate::state::{MountState, OpResult, fail};
use fuser::{Errno, FileAttr as KernelAttr, OpenAccMode, OpenFlags};
use kfs_client::File;
use kfs_common::KfsError;
use kfs_common::proto::master::CreateOptions;
use std::ffi::OsStr;
use std::io::SeekFrom;
use std::sync::Arc;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// An `io::Error` from a `File`'s `AsyncWrite` side as an `errno`.
fn io_errno(what: &str, e: std::io::Error) -> Errno {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<KfsError>())
    {
        Some(kfs) => fail(what, kfs.clone()),
        None => {
            tracing::debug!(%what, error = %e, "request failed");
            Errno::EIO
        }
    }
}

/// What `create` and `open` answer: the handle, and whether the kernel keeps its cached pages.
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
}

impl MountState {
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        uid: u32,
        gid: u32,
    ) -> OpResult<(KernelAttr, Opened)> {
        self.check_writable()?;
        let (path, name) = self.child_path(parent, name)?;
        let options = CreateOptions {
            exclusive: true,
            replication: None,
            mode: Some((mode & 0o7777) as u16),
        };
        self.known_names.add(parent, &name);
        let begun = self.dir_attrs.begin(parent);
        let created = self.client.create_with_attr(&path, options).await;
        if created.is_err() {
            // Refused, or perhaps made (an answer lost): nothing is known of the directory.
            self.dir_attrs.changing(parent);
        }
        let (file, attr) = match created {
            Ok((file, attr)) => {
                self.dir_attrs.made(parent, begun, &attr);
                (file, self.own(&path, attr, uid, gid).await)
            }
            Err(KfsError::AlreadyExists { .. }) if flags & libc::O_EXCL == 0 => {
                // Made by someone else since the kernel's lookup: open it as `open(2)` would.
                if flags & libc::O_TRUNC != 0 {
                    self.client
                        .truncate(&path, 0)
                        .await
                        .map_err(|e| fail("create", e))?;
                }
                self.client
                    .open_with_attr(&path)
                    .await
                    .map_err(|e| fail("create", e))?
            }
            Err(e) => return Err(fail("create", e)),
        };
        let kernel = self.entry(parent, &name, &attr);
        let ino = kernel.ino.0;
        let opened = self.attach(ino, flags, file).await;
        Ok((kernel, opened))
    }

    /// A new handle on `ino` whose KFS file the caller has opened as `file` (dropped unopened
    /// if this mount already has one for the inode).
    async fn attach(&self, ino: u64, flags: i32, file: File) -> Opened {
        let writable = OpenFlags(flags).acc_mode() != OpenAccMode::O_RDONLY;
        let (fh, open) = self.files.open(ino, writable);
        self.inodes.set_open(ino, true);
        let mut state = open.state.lock().await;
        if state.file.is_none() {
            state.file = Some(file);
        } else {
            file.abandon();
        }
        Opened {
            fh,
            keep_cache: false,
        }
    }

    pub async fn open(&self, ino: u64, flags: OpenFlags) -> OpResult<Opened> {
        let writable = flags.acc_mode() != OpenAccMode::O_RDONLY;
        if writable {
            self.check_writable()?;
        }
        let path = self.path(ino)?;
        let (fh, open) = self.files.open(ino, writable);
        self.inodes.set_open(ino, true);
        let mut state = open.state.lock().await;
        if state.file.is_some() {
            // Open here already: the kernel's pages hold this mount's own writes.
            return Ok(Opened {
                fh,
                keep_cache: true,
            });
        }
        match self.client.open_with_attr(&path).await {
            Ok((file, attr)) => {
                let keep_cache = self.unchanged(&attr);
                self.kernel_attr(&attr);
                state.file = Some(file);
                Ok(Opened { fh, keep_cache })
            }
            Err(e) => {
                drop(state);
                self.release_handle(fh).await;
                Err(fail("open", e))
            }
        }
    }

    fn handle(&self, fh: u64) -> OpResult<Arc<OpenFile>> {
        self.files.get(fh).map(|(_, open)| open).ok_or(Errno::EBADF)
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> OpResult<Vec<u8>> {
        let open = self.handle(fh)?;
        let reader = {
            let mut guard = open.state.lock().await;
            let state = &mut *guard;
            let file = state.file.as_mut().ok_or(Errno::EIO)?;
            if state.dirty {
                // What this mount wrote must be readable: let the writes in flight land.
                state.dirty = false;
                if let Err(e) = file.flush().await {
                    let errno = io_errno("read", e);
                    state.error = Some(errno);
                    return Err(errno);
                }
            }
            file.reader()
        };
        reader
            .read_at(offset, size as usize)
            .await
            .map_err(|e| fail("read", e))
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> OpResult<u32> {
        self.check_writable()?;
        let open = self.handle(fh)?;
        let mut state = open.state.lock().await;
        let file = state.file.as_mut().ok_or(Errno::EIO)?;
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| io_errno("write", e))?;
        file.write_all(data)
            .await
            .map_err(|e| io_errno("write", e))?;
        state.dirty = true;
        open.wrote_to(offset + data.len() as u64);
        Ok(data.len() as u32)
    }

    pub async fn flush(&self, fh: u64) -> OpResult<()> {
        let open = self.handle(fh)?;
        let mut state = open.state.lock().await;
        state.take_error()?;
        if !state.dirty {
            return Ok(());
        }
        let file = state.file.as_mut().ok_or(Errno::EIO)?;
        file.flush().await.map_err(|e| io_errno("flush", e))?;
        state.dirty = false;
        Ok(())
    }

    pub async fn fsync(&self, fh: u64) -> OpResult<()> {
        let open = self.handle(fh)?;
        let mut state = open.state.lock().await;
        state.take_error()?;
        let file = state.file.as_mut().ok_or(Errno::EIO)?;
        file.sync().await.map_err(|e| fail("fsync", e))?;
        state.dirty = false;
        drop(state);
        // The file's data is synced on every replica; its name, length and attributes (and
        // every change before them) now too.
        self.sync_names("fsync").await
    }

    /// Makes every namespace change this mount was answered durable on the master's disk (at
    /// once under `-o sync`: they already are).
    pub async fn sync_names(&self, what: &str) -> OpResult<()> {
        if self.settings.synced {
            return Ok(());
        }
        self.client
            .sync_namespace()
            .await
            .map(drop)
            .map_err(|e| fail(what, e))
    }

    pub async fn release(&self, fh: u64) -> OpResult<()> {
        self.release_handle(fh).await;
        Ok(())
    }

    /// Drops handle `fh`; the last handle of an inode closes its file (and removes it, if it
    /// was unlinked while open).
    async fn release_handle(&self, fh: u64) {
        let Some((ino, last)) = self.files.release(fh) else {
            return;
        };
        let Some(open) = last else {
            let _hiding = self.hiding.lock().await;
            self.inodes.set_open(ino, false);
            return;
        };
        let file = open.state.lock().await.file.take();
        if let Some(file) = file
            && let Err(e) = file.finish().await
        {
            tracing::warn!(ino, error = %e, "closing a released file failed");
        }
        // Whether it was unlinked is decided only now, under the lock unlink hides names with.
        let _hiding = self.hiding.lock().await;
        if self.inodes.is_hidden(ino)
            && let Ok(path) = self.inodes.path(ino)
        {
            let parent = self.inodes.parent(ino);
            self.dir_attrs.changing(parent);
            let removed = self.client.remove(&path).await;
            self.dir_attrs.changing(parent);
            if let Err(e) = removed {
                tracing::warn!(%path, error = %e, "cannot remove an unlinked file at its last close");
            }
        }
        self.inodes.set_open(ino, false);
    }

    /// Sets inode `ino`'s length (`truncate(2)`, `O_TRUNC`); an open file is flushed first and
    /// opened again after, so its handles see the new length.
    pub async fn truncate(&self, ino: u64, size: u64) -> OpResult<()> {
        let path = self.path(ino)?;
        let Some(open) = self.files.of_inode(ino) else {
            return self
                .client
                .truncate(&path, size)
                .await
                .map(drop)
                .map_err(|e| fail("truncate", e));
        };
        let mut state = open.state.lock().await;
        // The writes before the truncate land first; one that failed fails the truncate (the
        // file is left as it is) and is reported again at the next flush or fsync.
        if let Some(file) = state.file.take() {
            state.dirty = false;
            if let Err(e) = file.close().await {
                let errno = fail("truncate", e);
                state.error = Some(errno);
                // The handles carry on with the file as it is.
                if let Ok((file, _)) = self.client.open_with_attr(&path).await {
                    state.file = Some(file);
                }
                return Err(errno);
            }
        }
        let truncated = self.client.truncate(&path, size).await;
        let reopened = self.client.open_with_attr(&path).await;
        open.set_end(size);
        match reopened {
            Ok((file, _)) => state.file = Some(file),
            Err(e) => return Err(fail("truncate", e)),
        }
        truncated.map(drop).map_err(|e| fail("truncate", e))
    }
}
