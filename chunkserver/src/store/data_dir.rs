//! One data directory: its identity file, its chunk files, and what its I/O thread keeps.
//!
//! ```text
//! <root>/kfs-chunkserver.id     the server's id (32 hex digits), the same in every data dir
//! <root>/chunks/<ss>/           one file per replica (see `chunk_file`; `.corrupt` once found
//!                               corrupt), in 256 subdirectories: <ss> is bits 8-15 of the chunk
//!                               id in two hex digits, so no directory holds more than a 256th
//!                               of the replicas and chunks made together share a directory
//! ```
//! Layout 1 kept every file directly in `chunks/`; [`DataDir::open`] moves such files into their
//! subdirectories (each move one `rename`, so a crash midway leaves every file in one place or
//! the other, and the next open finishes the move).
//!
//! All blocking I/O of a directory runs on its [`super::worker::DirWorker`] thread, one job at a
//! time, so async code never blocks on a disk, and operations on one chunk never interleave.
//! A job that creates or renames a file records its subdirectory as changed
//! ([`DataDir::entries_changed`]); the worker syncs the changed ones before it answers a durable
//! job.

use super::aligned::BufPool;
use super::chunk_file::{self, ChunkError};
use super::index::Kind;
use super::io::FileIo;
use super::open_files::OpenFiles;
use super::volume_file;
use kfs_common::{ChunkId, ChunkVersion, ServerId};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Subdirectories of `chunks/`.
const SUBDIRS: u64 = 256;

/// Where the file of the replica of `chunk` at `version` lives in the data dir `root`.
pub fn replica_path(root: &Path, chunk: ChunkId, version: ChunkVersion) -> PathBuf {
    root.join("chunks")
        .join(format!("{:02x}", DataDir::subdir_of(chunk)))
        .join(chunk_file::file_name(chunk, version))
}

/// Counts of a data dir's system calls that cost the most on small files.
#[derive(Debug, Default)]
pub struct IoCounts {
    /// Data syncs (`fdatasync`) of chunk files.
    pub data_syncs: AtomicU64,
    /// Directory syncs (`fsync` of a chunk subdirectory).
    pub dir_syncs: AtomicU64,
}

const IDENTITY_FILE: &str = "kfs-chunkserver.id";

/// A data directory.
pub struct DataDir {
    pub root: PathBuf,
    chunks: PathBuf,
    pub io: Arc<dyn FileIo>,
    /// Buffers for reads and partial writes.
    pub pool: Arc<BufPool>,
    /// Chunk files kept open.
    pub files: OpenFiles,
    /// Subdirectories whose entries changed since they were last synced.
    changed: Mutex<BTreeSet<u64>>,
    /// The first sync that failed here (kind, message): every later durable job fails too
    /// (`worker.rs`), until the dir is taken out of service.
    sync_failed: Mutex<Option<(io::ErrorKind, String)>>,
    pub counts: IoCounts,
}

/// A chunk file found by [`DataDir::scan`].
pub struct Found {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    /// Its length, or why it cannot be used.
    pub length: Result<u64, ChunkError>,
    /// Renamed when found corrupt (before a restart).
    pub marked_corrupt: bool,
    /// What the file holds, by its magic (a volume found at start is sealed).
    pub kind: Kind,
    /// The file, as found.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

impl DataDir {
    /// Opens `root`, creating it, its `chunks/` directory and their subdirectories if needed, and
    /// moving files of layout 1 into their subdirectories; keeps up to `open_files` files open.
    pub fn open(
        root: &Path,
        io: Arc<dyn FileIo>,
        pool: Arc<BufPool>,
        open_files: usize,
    ) -> io::Result<DataDir> {
        let chunks = root.join("chunks");
        std::fs::create_dir_all(&chunks)?;
        let dir = DataDir {
            root: root.to_path_buf(),
            chunks,
            io,
            pool,
            files: OpenFiles::new(open_files),
            changed: Mutex::new(BTreeSet::new()),
            sync_failed: Mutex::new(None),
            counts: IoCounts::default(),
        };
        let mut made = false;
        for sub in 0..SUBDIRS {
            match std::fs::create_dir(dir.subdir(sub)) {
                Ok(()) => made = true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        if made {
            File::open(&dir.chunks)?.sync_all()?;
        }
        dir.move_flat_files()?;
        Ok(dir)
    }

    fn subdir(&self, sub: u64) -> PathBuf {
        self.chunks.join(format!("{sub:02x}"))
    }

    fn subdir_of(chunk: ChunkId) -> u64 {
        (chunk.0 >> 8) % SUBDIRS
    }

    /// Moves the chunk files of layout 1 (directly in `chunks/`) into their subdirectories.
    fn move_flat_files(&self) -> io::Result<()> {
        let mut moved = BTreeSet::new();
        for entry in std::fs::read_dir(&self.chunks)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some((chunk, _, _)) = name.to_str().and_then(chunk_file::parse_any_file_name)
            else {
                continue;
            };
            let sub = Self::subdir_of(chunk);
            std::fs::rename(entry.path(), self.subdir(sub).join(&name))?;
            moved.insert(sub);
        }
        if moved.is_empty() {
            return Ok(());
        }
        tracing::info!(dir = %self.root.display(), "moved chunk files into subdirectories (layout 2)");
        for sub in moved {
            File::open(self.subdir(sub))?.sync_all()?;
        }
        File::open(&self.chunks)?.sync_all()
    }

    pub fn path(&self, chunk: ChunkId, version: ChunkVersion) -> PathBuf {
        replica_path(&self.root, chunk, version)
    }

    /// The replica's open file (from the cache, or opened now).
    pub fn file(&self, chunk: ChunkId, version: ChunkVersion) -> io::Result<Arc<File>> {
        self.files.get(chunk, version, &self.path(chunk, version))
    }

    /// Records that the entries of the replica's subdirectory changed (a file made or renamed).
    pub fn entries_changed(&self, chunk: ChunkId) {
        self.changed
            .lock()
            .expect("changed lock")
            .insert(Self::subdir_of(chunk));
    }

    /// The first sync that failed on this dir, if one did.
    pub fn sync_failure(&self) -> Option<(io::ErrorKind, String)> {
        self.sync_failed.lock().expect("sync failure lock").clone()
    }

    pub fn record_sync_failure(&self, failed: (io::ErrorKind, String)) {
        self.sync_failed
            .lock()
            .expect("sync failure lock")
            .get_or_insert(failed);
    }

    /// Makes a chunk file's data durable.
    pub fn sync_file(&self, file: &File) -> io::Result<()> {
        self.counts.data_syncs.fetch_add(1, Ordering::Relaxed);
        self.io.sync(file)
    }

    /// Syncs each subdirectory whose entries changed since its last sync. One that fails stays
    /// marked, so the next batch tries it again.
    pub fn sync_changed_entries(&self) -> io::Result<()> {
        let changed = std::mem::take(&mut *self.changed.lock().expect("changed lock"));
        let mut failed = None;
        for sub in changed {
            self.counts.dir_syncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = File::open(self.subdir(sub)).and_then(|d| self.io.sync_dir(&d)) {
                self.changed.lock().expect("changed lock").insert(sub);
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Whether the `chunks/` directory is still there (an unmounted disk takes it away).
    pub fn chunks_dir_exists(&self) -> bool {
        self.chunks.is_dir()
    }

    /// Where a replica's file goes once it is found corrupt.
    pub fn corrupt_path(&self, chunk: ChunkId, version: ChunkVersion) -> PathBuf {
        self.subdir(Self::subdir_of(chunk))
            .join(chunk_file::corrupt_file_name(chunk, version))
    }

    /// Every chunk file, with its header checked (a file marked corrupt is not read).
    pub fn scan(&self) -> io::Result<Vec<Found>> {
        let mut found = Vec::new();
        let mut entries = Vec::new();
        for sub in 0..SUBDIRS {
            for entry in std::fs::read_dir(self.subdir(sub))? {
                entries.push(entry?);
            }
        }
        for entry in entries {
            let name = entry.file_name();
            let Some((chunk, version, marked_corrupt)) =
                name.to_str().and_then(chunk_file::parse_any_file_name)
            else {
                tracing::warn!(file = %entry.path().display(), "ignoring a file that is not a chunk");
                continue;
            };
            let path = entry.path();
            let size = entry.metadata()?.len();
            let kind = self.kind_of(&path)?;
            if marked_corrupt {
                found.push(Found {
                    chunk,
                    version,
                    length: Err(ChunkError::Damaged("found corrupt before a restart".into())),
                    marked_corrupt,
                    kind,
                    path,
                    size,
                });
                continue;
            }
            let length = match kind {
                Kind::Chunk => chunk_file::check_path(self.io.as_ref(), &path, chunk),
                Kind::Volume { .. } => volume_file::check_path(self.io.as_ref(), &path, chunk),
            };
            if let Err(ChunkError::Io(e)) = &length {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", entry.path().display()),
                ));
            }
            found.push(Found {
                chunk,
                version,
                length,
                marked_corrupt,
                kind,
                path,
                size,
            });
        }
        Ok(found)
    }

    /// What a replica's file holds, by its first bytes (a file too short for either magic is
    /// taken for a chunk file, whose check finds it unfinished).
    fn kind_of(&self, path: &Path) -> io::Result<Kind> {
        let file = File::open(path)?;
        let mut magic = [0u8; 8];
        if file.metadata()?.len() >= volume_file::HEADER_LEN {
            self.io.read_at(&file, &mut magic, 0)?;
        }
        Ok(if &magic == volume_file::MAGIC {
            Kind::Volume { appendable: false }
        } else {
            Kind::Chunk
        })
    }

    /// `(capacity, available)` bytes of the file system holding this directory.
    pub fn space(&self) -> io::Result<(u64, u64)> {
        self.io.space(&self.root)
    }

    pub fn read_identity(&self) -> io::Result<Option<ServerId>> {
        match std::fs::read_to_string(self.root.join(IDENTITY_FILE)) {
            Ok(text) => text.parse().map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: not a server id: {e}",
                        self.root.join(IDENTITY_FILE).display()
                    ),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the identity file durably (temp file, fsync, rename, directory fsync).
    pub fn write_identity(&self, id: ServerId) -> io::Result<()> {
        let path = self.root.join(IDENTITY_FILE);
        let tmp = self.root.join(format!("{IDENTITY_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        writeln!(file, "{id}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.root)?.sync_all()
    }
}
