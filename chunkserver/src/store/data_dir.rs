//! One data directory: its identity file, its chunk files, and the one thread doing its I/O.
//!
//! ```text
//! <root>/kfs-chunkserver.id     the server's id (32 hex digits), the same in every data dir
//! <root>/chunks/                one file per replica (see `chunk_file`; `.corrupt` once found
//!                               corrupt)
//! ```
//! All blocking I/O of a directory runs on its [`DirWorker`] thread, one job at a time, so async
//! code never blocks on a disk, and operations on one chunk never interleave.

use super::aligned::BufPool;
use super::chunk_file::{self, ChunkError};
use super::io::FileIo;
use kfs_common::{ChunkId, ChunkVersion, ServerId};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use tokio::sync::oneshot;

const IDENTITY_FILE: &str = "kfs-chunkserver.id";

/// A data directory.
pub struct DataDir {
    pub root: PathBuf,
    chunks: PathBuf,
    pub io: Arc<dyn FileIo>,
    /// Buffers for reads and partial writes.
    pub pool: Arc<BufPool>,
}

/// A chunk file found by [`DataDir::scan`].
pub struct Found {
    pub chunk: ChunkId,
    pub version: ChunkVersion,
    /// Its length, or why it cannot be used.
    pub length: Result<u64, ChunkError>,
    /// Renamed when found corrupt (before a restart).
    pub marked_corrupt: bool,
    /// The file, as found.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

impl DataDir {
    /// Opens `root`, creating it and its `chunks/` directory if needed.
    pub fn open(root: &Path, io: Arc<dyn FileIo>, pool: Arc<BufPool>) -> io::Result<DataDir> {
        let chunks = root.join("chunks");
        std::fs::create_dir_all(&chunks)?;
        Ok(DataDir {
            root: root.to_path_buf(),
            chunks,
            io,
            pool,
        })
    }

    pub fn path(&self, chunk: ChunkId, version: ChunkVersion) -> PathBuf {
        self.chunks.join(chunk_file::file_name(chunk, version))
    }

    /// Whether the `chunks/` directory is still there (an unmounted disk takes it away).
    pub fn chunks_dir_exists(&self) -> bool {
        self.chunks.is_dir()
    }

    /// Where a replica's file goes once it is found corrupt.
    pub fn corrupt_path(&self, chunk: ChunkId, version: ChunkVersion) -> PathBuf {
        self.chunks
            .join(chunk_file::corrupt_file_name(chunk, version))
    }

    /// Every chunk file, with its header checked (a file marked corrupt is not read).
    pub fn scan(&self) -> io::Result<Vec<Found>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.chunks)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some((chunk, version, marked_corrupt)) =
                name.to_str().and_then(chunk_file::parse_any_file_name)
            else {
                tracing::warn!(file = %entry.path().display(), "ignoring a file that is not a chunk");
                continue;
            };
            let path = entry.path();
            let size = entry.metadata()?.len();
            if marked_corrupt {
                found.push(Found {
                    chunk,
                    version,
                    length: Err(ChunkError::Damaged("found corrupt before a restart".into())),
                    marked_corrupt,
                    path,
                    size,
                });
                continue;
            }
            let length = chunk_file::check(self.io.as_ref(), &path, chunk);
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
                path,
                size,
            });
        }
        Ok(found)
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

    /// Makes the chunk directory's entries (created, renamed, removed files) durable.
    pub fn sync_entries(&self) -> io::Result<()> {
        std::fs::File::open(&self.chunks)?.sync_all()
    }
}

type Job = Box<dyn FnOnce(&DataDir) + Send>;

/// The thread that runs a data directory's blocking I/O.
pub struct DirWorker {
    tx: Sender<Job>,
}

impl DirWorker {
    pub fn start(dir: Arc<DataDir>, index: usize) -> io::Result<DirWorker> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("kfs-disk-{index}"))
            .spawn(move || {
                for job in rx {
                    job(&dir);
                }
            })?;
        Ok(DirWorker { tx })
    }

    /// Runs `job` on the directory's thread and waits for its result; `None` if the thread is
    /// gone.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&DataDir) -> R + Send + 'static,
    ) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |dir| {
            let _ = reply.send(job(dir));
        });
        self.tx.send(job).ok()?;
        answer.await.ok()
    }
}
