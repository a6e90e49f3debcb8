//! The thread that runs a data directory's blocking I/O, with syncs made in batches.
//!
//! Jobs run one at a time, in the order they were sent, so operations on one chunk never
//! interleave. A *durable* job ([`DirWorker::run_durable`]) answers only once the files it
//! names are synced and the directory entries changed since the last batch are synced too: the
//! thread runs the jobs waiting in its queue first (at most [`MOST_PER_BATCH`] durable ones,
//! `MOST_JOBS_PER_BATCH` jobs of any kind, or `LONGEST_WAIT` after the batch's first durable
//! job, so a steady stream of reads never holds syncs back), then syncs each named file once and
//! each changed directory once, and answers them all. Under load many writers' syncs share one
//! directory `fsync`; alone, a sync is answered as soon as it is made.
//!
//! Invariants: a durable job's answer is `Ok` only if every file it named was synced after the job
//! ran, and every directory whose entries changed before it answered was synced after the change;
//! once a sync failed on a dir, no durable job there is answered `Ok` again (the kernel reports
//! a lost writeback once: a later sync that succeeds proves nothing).

use super::chunk_file::ChunkError;
use super::data_dir::DataDir;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use tokio::sync::oneshot;

/// Durable jobs answered together at most.
pub const MOST_PER_BATCH: usize = 256;
/// Jobs of any kind run after the first durable job of a batch before the batch is synced, so
/// a steady stream of reads never holds syncs back.
const MOST_JOBS_PER_BATCH: usize = 1024;
/// The longest a durable job waits for its batch to be synced while other jobs keep coming.
const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// A durable job as the thread runs it: `None` once it failed (and was answered).
type DurableJob = Box<dyn FnOnce(&DataDir) -> Option<Waiter> + Send>;
/// A sync's outcome, kept to answer every waiter that named the file.
type Synced = Result<(), (io::ErrorKind, String)>;

enum Job {
    Now(Box<dyn FnOnce(&DataDir) + Send>),
    Durable(DurableJob),
}

/// A durable job that ran and waits for its batch's syncs.
struct Waiter {
    files: Vec<Arc<File>>,
    answer: Box<dyn FnOnce(io::Result<()>) + Send>,
}

/// The thread that runs a data directory's blocking I/O.
pub struct DirWorker {
    tx: Sender<Job>,
}

impl DirWorker {
    pub fn start(dir: Arc<DataDir>, index: usize) -> io::Result<DirWorker> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("kfs-disk-{index}"))
            .spawn(move || serve(&dir, &rx))?;
        Ok(DirWorker { tx })
    }

    /// Runs `job` on the directory's thread and waits for its result; `None` if the thread is
    /// gone.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&DataDir) -> R + Send + 'static,
    ) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Now(Box::new(move |dir| {
            let _ = reply.send(job(dir));
        }));
        self.tx.send(job).ok()?;
        answer.await.ok()
    }

    /// Runs `job` on the directory's thread; once it succeeded, waits until the files it returned
    /// and the directory's changed entries are synced (see the module docs). `None` if the
    /// thread is gone.
    pub async fn run_durable(
        &self,
        job: impl FnOnce(&DataDir) -> Result<Vec<Arc<File>>, ChunkError> + Send + 'static,
    ) -> Option<Result<(), ChunkError>> {
        self.send_durable(job)?.await.ok()
    }

    /// Queues a durable job now (jobs run in the order they are queued); the answer comes on
    /// the receiver. `None` if the thread is gone.
    pub fn send_durable(
        &self,
        job: impl FnOnce(&DataDir) -> Result<Vec<Arc<File>>, ChunkError> + Send + 'static,
    ) -> Option<oneshot::Receiver<Result<(), ChunkError>>> {
        let (reply, answer) = oneshot::channel::<Result<(), ChunkError>>();
        let job = Job::Durable(Box::new(move |dir| match job(dir) {
            Err(e) => {
                let _ = reply.send(Err(e));
                None
            }
            Ok(files) => Some(Waiter {
                files,
                answer: Box::new(move |synced| {
                    let _ = reply.send(synced.map_err(ChunkError::Io));
                }),
            }),
        }));
        self.tx.send(job).ok()?;
        Some(answer)
    }
}

fn serve(dir: &DataDir, rx: &Receiver<Job>) {
    let mut waiting: Vec<Waiter> = Vec::new();
    // Since the first durable job of the batch: jobs run, and when it came.
    let mut since_first = (0usize, std::time::Instant::now());
    loop {
        let job = if waiting.is_empty() {
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Empty) => {
                    flush(dir, std::mem::take(&mut waiting));
                    continue;
                }
                Err(TryRecvError::Disconnected) => {
                    flush(dir, std::mem::take(&mut waiting));
                    return;
                }
            }
        };
        if waiting.is_empty() {
            since_first = (0, std::time::Instant::now());
        }
        match job {
            Job::Now(job) => job(dir),
            Job::Durable(job) => waiting.extend(job(dir)),
        }
        since_first.0 += 1;
        if waiting.len() >= MOST_PER_BATCH
            || (!waiting.is_empty()
                && (since_first.0 >= MOST_JOBS_PER_BATCH
                    || since_first.1.elapsed() >= LONGEST_WAIT))
        {
            flush(dir, std::mem::take(&mut waiting));
        }
    }
}

/// Syncs every file the waiters named (each once), then the changed directories, and answers.
/// Once a sync failed on this dir, every later durable job fails too: the kernel reports a
/// failed writeback once, and a later sync that succeeds proves nothing about the pages lost.
fn flush(dir: &DataDir, waiting: Vec<Waiter>) {
    if let Some(failed) = dir.sync_failure() {
        for waiter in waiting {
            (waiter.answer)(Err(io::Error::new(failed.0, failed.1.clone())));
        }
        return;
    }
    let mut synced: Vec<(Arc<File>, Synced)> = Vec::new();
    let mut results = Vec::with_capacity(waiting.len());
    for waiter in &waiting {
        let mut result = Ok(());
        for file in &waiter.files {
            let done = match synced.iter().find(|(f, _)| Arc::ptr_eq(f, file)) {
                Some((_, done)) => done.clone(),
                None => {
                    let done = dir.sync_file(file).map_err(|e| (e.kind(), e.to_string()));
                    synced.push((file.clone(), done.clone()));
                    done
                }
            };
            if result.is_ok() {
                result = done;
            }
        }
        results.push(result);
    }
    let entries = dir
        .sync_changed_entries()
        .map_err(|e| (e.kind(), e.to_string()));
    if let Some(failed) = results
        .iter()
        .chain([&entries])
        .find_map(|r| r.clone().err())
    {
        dir.record_sync_failure(failed);
    }
    for (waiter, result) in waiting.into_iter().zip(results) {
        let result = result.and(entries.clone());
        (waiter.answer)(result.map_err(|(kind, text)| io::Error::new(kind, text)));
    }
}
