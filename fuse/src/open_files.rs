//! [`OpenFiles`]: the KFS files the kernel has open, one [`kfs_client::File`] per inode.
//!
//! Every handle the kernel opens on an inode shares that inode's one `File`, so a read through
//! any handle sees what any handle of this mount wrote. Writes are gathered and sent by the
//! `File` (several in flight); `flush` (each `close(2)`) waits for them and records the file's
//! new length at the master, `fsync` also has every replica make them durable. The `File` is
//! closed when the last handle is released.
//!
//! Invariants:
//! - an inode is in the table from its first open until its last release (`handles` > 0);
//! - `state.file` is `Some` once any opener got past `File::open`, and every write goes
//!   through it under the state lock, so writes to one inode are applied in arrival order;
//! - `state.dirty`: bytes written since the last flush (a read first flushes them);
//! - `state.error`: a write failure found by something other than the writer's own `flush` or
//!   `fsync` (a read's flush, a truncate's): kept until the next `flush` or `fsync` reports it,
//!   so a failed write is never acknowledged by a later `close` that found nothing to send;
//! - `end` is at least the end of every write acknowledged here (`stat` shows the larger of it
//!   and the master's length).

use kfs_client::File;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One inode's open file.
pub struct OpenFile {
    pub state: tokio::sync::Mutex<FileState>,
    /// The end of the furthest write through this mount (0 until one).
    end: AtomicU64,
}

pub struct FileState {
    pub file: Option<File>,
    pub dirty: bool,
    pub error: Option<fuser::Errno>,
}

impl FileState {
    /// The write failure kept for the next `flush` or `fsync`, taken (reported once).
    pub fn take_error(&mut self) -> Result<(), fuser::Errno> {
        self.error.take().map_or(Ok(()), Err)
    }
}

impl OpenFile {
    /// Notes a write ending at `end`.
    pub fn wrote_to(&self, end: u64) {
        self.end.fetch_max(end, Ordering::AcqRel);
    }

    /// After a truncate: the file is `len` long.
    pub fn set_end(&self, len: u64) {
        self.end.store(len, Ordering::Release);
    }

    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }
}

/// What a handle the kernel holds refers to.
#[derive(Clone, Copy, Debug)]
pub struct Handle {
    pub ino: u64,
    pub writable: bool,
}

#[derive(Default)]
struct Table {
    by_ino: HashMap<u64, (Arc<OpenFile>, u32)>,
    handles: HashMap<u64, Handle>,
    next_handle: u64,
}

/// The open files and handles of a mount.
#[derive(Default)]
pub struct OpenFiles {
    table: Mutex<Table>,
}

impl OpenFiles {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("open files lock")
    }

    /// A new handle on `ino`: its number and the inode's open file (`file` is `None` in it if
    /// this is the first handle: the caller opens it).
    pub fn open(&self, ino: u64, writable: bool) -> (u64, Arc<OpenFile>) {
        let mut table = self.lock();
        table.next_handle += 1;
        let fh = table.next_handle;
        table.handles.insert(fh, Handle { ino, writable });
        let entry = table.by_ino.entry(ino).or_insert_with(|| {
            let file = Arc::new(OpenFile {
                state: tokio::sync::Mutex::new(FileState {
                    file: None,
                    dirty: false,
                    error: None,
                }),
                end: AtomicU64::new(0),
            });
            (file, 0)
        });
        entry.1 += 1;
        (fh, entry.0.clone())
    }

    /// The handle `fh` and its inode's open file.
    pub fn get(&self, fh: u64) -> Option<(Handle, Arc<OpenFile>)> {
        let table = self.lock();
        let handle = *table.handles.get(&fh)?;
        let file = table.by_ino.get(&handle.ino)?.0.clone();
        Some((handle, file))
    }

    /// The open file of `ino`, if a handle holds it.
    pub fn of_inode(&self, ino: u64) -> Option<Arc<OpenFile>> {
        self.lock().by_ino.get(&ino).map(|(file, _)| file.clone())
    }

    /// Releases handle `fh`: its inode, and the inode's open file when that was its last
    /// handle (the caller closes it); `None` for a handle not open.
    pub fn release(&self, fh: u64) -> Option<(u64, Option<Arc<OpenFile>>)> {
        let mut table = self.lock();
        let handle = table.handles.remove(&fh)?;
        let entry = table.by_ino.get_mut(&handle.ino)?;
        entry.1 -= 1;
        if entry.1 > 0 {
            return Some((handle.ino, None));
        }
        let last = table.by_ino.remove(&handle.ino).map(|(file, _)| file);
        Some((handle.ino, last))
    }

    /// Handles open now (for tests and the mount's report).
    pub fn handles(&self) -> usize {
        self.lock().handles.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_share_one_file_until_the_last_release() {
        let files = OpenFiles::default();
        let (a, first) = files.open(5, false);
        let (b, second) = files.open(5, true);
        assert!(Arc::ptr_eq(&first, &second));
        assert!(files.get(b).unwrap().0.writable);
        assert!(matches!(files.release(a), Some((5, None))));
        assert!(files.of_inode(5).is_some());
        let (ino, last) = files.release(b).expect("an open handle");
        assert_eq!(ino, 5);
        assert!(Arc::ptr_eq(&first, &last.expect("the last handle")));
        assert!(files.release(b).is_none());
        assert!(files.of_inode(5).is_none());
        assert_eq!(files.handles(), 0);
    }
}
