//! The file I/O primitives of the chunk store, behind a trait so tests can inject faults.
//!
//! [`RealIo`] is positional I/O on a `File`. [`FaultyIo`] wraps it and, on request, flips a bit
//! in the next read, tears the next write (writes a prefix, then fails as a crash would), fails
//! every call with an error (a dying disk), makes every write slow (a loaded disk), or lets
//! writes have only so many more bytes (a filling disk: what fits is written, then `ENOSPC`), or
//! fails the next sync (the work done, its durability not promised).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// Positional file I/O.
pub trait FileIo: Send + Sync + 'static {
    /// Fills `buf` from `offset`; an end of file before `buf` is full is an error.
    fn read_at(&self, file: &File, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data durable.
    fn sync(&self, file: &File) -> io::Result<()>;
    /// Makes a directory's entries (files made, renamed or removed in it) durable.
    fn sync_dir(&self, dir: &File) -> io::Result<()>;
    /// Allocates disk space for `len` bytes from `offset` without changing the file's size, so
    /// a full disk fails here, before any byte is written. File systems that cannot allocate
    /// ahead succeed without doing it.
    fn allocate(&self, file: &File, offset: u64, len: u64) -> io::Result<()>;
    /// `(capacity, available)` bytes of the file system holding `path`.
    fn space(&self, path: &Path) -> io::Result<(u64, u64)>;
}

/// The operating system's I/O.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealIo;

impl FileIo for RealIo {
    fn read_at(&self, file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        file.read_exact_at(buf, offset)
    }

    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }

    fn sync(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_dir(&self, dir: &File) -> io::Result<()> {
        dir.sync_all()
    }

    fn allocate(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, offset, len) {
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(()),
            other => other.map_err(io::Error::from),
        }
    }

    fn space(&self, path: &Path) -> io::Result<(u64, u64)> {
        let st = rustix::fs::statvfs(path)?;
        Ok((st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize))
    }
}

/// Faults [`FaultyIo`] injects; each one-shot fault clears itself when it fires.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Flip this bit (counted from the start of the buffer) of the next read.
    pub flip_bit_in_next_read: Option<usize>,
    /// Write only this many bytes of the next write, then fail.
    pub tear_next_write_after: Option<usize>,
    /// Fail every call with this error kind.
    pub fail_everything: Option<io::ErrorKind>,
    /// Take at least this long over every write (a slow disk; the data dir's I/O thread is
    /// busy meanwhile, as with a real one).
    pub slow_writes: Option<std::time::Duration>,
    /// Bytes writes may still add past the ends of files (overwrites take none); a write that
    /// needs more writes what fits and fails with `StorageFull`, as a full file system does.
    /// The free space measured is at most this.
    pub space_left: Option<u64>,
    /// Fail the next sync (of a file or a directory) with this error kind, after the work
    /// before it was done: what a store sees when a call did its work but cannot promise it.
    pub fail_next_sync: Option<io::ErrorKind>,
}

/// [`RealIo`] with injectable faults.
#[derive(Debug, Default)]
pub struct FaultyIo {
    faults: Mutex<Faults>,
}

impl FaultyIo {
    pub fn new() -> FaultyIo {
        FaultyIo::default()
    }

    /// Changes the faults to inject.
    pub fn set(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.faults.lock().expect("faults lock"));
    }

    /// The faults still to fire.
    pub fn faults(&self) -> Faults {
        self.faults.lock().expect("faults lock").clone()
    }

    fn failing_sync(&self) -> io::Result<()> {
        match self
            .faults
            .lock()
            .expect("faults lock")
            .fail_next_sync
            .take()
        {
            Some(kind) => Err(io::Error::new(kind, "injected sync failure")),
            None => Ok(()),
        }
    }

    fn failing(&self) -> io::Result<()> {
        match self.faults.lock().expect("faults lock").fail_everything {
            Some(kind) => Err(io::Error::new(kind, "injected I/O failure")),
            None => Ok(()),
        }
    }
}

impl FileIo for FaultyIo {
    fn read_at(&self, file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.failing()?;
        RealIo.read_at(file, buf, offset)?;
        if let Some(bit) = self
            .faults
            .lock()
            .expect("faults lock")
            .flip_bit_in_next_read
            .take()
            && bit / 8 < buf.len()
        {
            buf[bit / 8] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    fn write_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        self.failing()?;
        let (tear, slow, fits) = {
            let mut faults = self.faults.lock().expect("faults lock");
            // Only bytes past the end of the file take space.
            let fits = match faults.space_left {
                None => None,
                Some(left) => {
                    let size = file.metadata()?.len();
                    let end = offset + buf.len() as u64;
                    let new = end.saturating_sub(size.max(offset));
                    let taken = new.min(left);
                    faults.space_left = Some(left - taken);
                    Some(if taken < new {
                        (size.max(offset) + taken - offset) as usize
                    } else {
                        buf.len()
                    })
                }
            };
            (
                faults.tear_next_write_after.take(),
                faults.slow_writes,
                fits,
            )
        };
        if let Some(pause) = slow {
            // On the data dir's own I/O thread, never on an async task.
            std::thread::sleep(pause);
        }
        if let Some(fits) = fits
            && fits < buf.len()
        {
            RealIo.write_at(file, &buf[..fits], offset)?;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (injected)",
            ));
        }
        match tear {
            Some(prefix) => {
                RealIo.write_at(file, &buf[..prefix.min(buf.len())], offset)?;
                Err(io::Error::other("injected torn write"))
            }
            None => RealIo.write_at(file, buf, offset),
        }
    }

    fn sync(&self, file: &File) -> io::Result<()> {
        self.failing()?;
        self.failing_sync()?;
        RealIo.sync(file)
    }

    fn sync_dir(&self, dir: &File) -> io::Result<()> {
        self.failing()?;
        self.failing_sync()?;
        RealIo.sync_dir(dir)
    }

    fn allocate(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        self.failing()?;
        if let Some(left) = self.faults.lock().expect("faults lock").space_left {
            let new = (offset + len).saturating_sub(file.metadata()?.len().max(offset));
            if new > left {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "No space left on device (injected)",
                ));
            }
        }
        RealIo.allocate(file, offset, len)
    }

    fn space(&self, path: &Path) -> io::Result<(u64, u64)> {
        self.failing()?;
        let (capacity, available) = RealIo.space(path)?;
        let left = self.faults.lock().expect("faults lock").space_left;
        Ok((capacity, left.map_or(available, |left| left.min(available))))
    }
}
