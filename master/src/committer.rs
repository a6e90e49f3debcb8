//! Group commit: the one thread that writes the operation log and applies ops to the namespace.
//!
//! RPC handlers send ops here and wait. The thread takes every op waiting (a batch), writes them
//! as consecutive records, syncs them with one `fdatasync`, applies them to the namespace in
//! sequence order under one write lock, and answers (and then every `sync` waiting). So many
//! concurrent mutations share one fsync, and:
//! - an op is acknowledged only after its record is durable (`Synced`, the default) or written
//!   (`Logged`: it survives a crash of any process; the sync follows before the next batch is
//!   written);
//! - a batch of `Synced` ops only is applied after its sync, so readers never see a change a
//!   crash could take back; a batch with a `Logged` op is applied (and those answered) before
//!   its sync, the `Synced` ones answered after it;
//! - the namespace always equals the checkpoint plus the log up to the last record written, which
//!   is what a checkpoint snapshot and crash recovery rely on;
//! - if the log cannot be written, the batch is answered with an error and nothing of it is
//!   applied; if the log can no longer be trusted (a failed fsync), every later mutation is
//!   refused with `Unavailable` while reads go on.
//!
//! Checkpoints are scheduled here (by op count or interval) and written by a second thread from
//! an O(1) clone of the namespace, so mutations never pause for them.

use crate::namespace::Namespace;
use crate::namespace::op::{Applied, Op};
use crate::storage::checkpoint::write_checkpoint;
use crate::storage::log::{AppendError, LogWriter, MAX_BATCH_BYTES};
use crate::storage::recovery::prune;
use kfs_common::proto::master::Durability;
use kfs_common::worker::WorkerStatus;
use kfs_common::{KfsError, KfsResult};
use prometheus_client::metrics::histogram::Histogram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The namespace shared by readers (RPC handlers) and the committer (the only writer).
pub type SharedNamespace = Arc<RwLock<Namespace>>;

/// Told of every op the committer applied, in log order, before the op's caller is answered (so
/// state derived from the namespace is up to date when a client acts on the reply).
pub trait Observer: Send + Sync + 'static {
    fn applied(&self, op: &Op, result: &KfsResult<Applied>);
}

/// When to write checkpoints and how large log segments grow.
#[derive(Clone, Debug)]
pub struct CommitterConfig {
    pub meta_dir: PathBuf,
    /// Write a checkpoint after this many logged ops.
    pub checkpoint_every_ops: u64,
    /// ... or after this long, if anything was logged since the last one.
    pub checkpoint_interval: Duration,
    /// Checkpoints kept on disk (with the log segments after the oldest of them).
    pub keep_checkpoints: usize,
    /// Where the checkpoint thread reports each checkpoint (it is listed among the workers).
    pub checkpointer: WorkerStatus,
    /// The sequence number the newest checkpoint on disk holds at start (0: none).
    pub recovered_checkpoint_seq: u64,
}

/// Counters of the committer's work, for logs, the status page, metrics and benchmarks.
#[derive(Debug)]
pub struct CommitStats {
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Sequence number of the newest durable checkpoint.
    pub checkpoint_seq: AtomicU64,
    /// Sequence number of the newest durable log record.
    pub last_seq: AtomicU64,
    /// When the newest checkpoint was written (Unix seconds; 0: none by this process).
    pub checkpoint_unix_secs: AtomicU64,
    pub checkpoint_failures: AtomicU64,
    /// A checkpoint is being written.
    pub checkpointing: AtomicBool,
    /// The log can no longer be written (a failed fsync): mutations are refused until restart.
    pub log_broken: AtomicBool,
    /// Time to write and fdatasync one batch, in seconds.
    pub commit_seconds: Histogram,
    /// The same times, summed, in microseconds (the status page's mean commit time).
    pub commit_micros: AtomicU64,
    /// Ops in one batch (one fdatasync).
    pub batch_ops: Histogram,
}

impl Default for CommitStats {
    fn default() -> Self {
        CommitStats {
            batches: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            commit_micros: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            checkpoint_seq: AtomicU64::new(0),
            checkpoint_unix_secs: AtomicU64::new(0),
            checkpoint_failures: AtomicU64::new(0),
            last_seq: AtomicU64::new(0),
            checkpointing: AtomicBool::new(false),
            log_broken: AtomicBool::new(false),
            commit_seconds: kfs_common::metrics::latency_histogram(),
            batch_ops: kfs_common::metrics::count_histogram(),
        }
    }
}

type CommitReply = oneshot::Sender<KfsResult<Applied>>;
type SyncReply = oneshot::Sender<KfsResult<u64>>;

enum Msg {
    Commit(Op, CommitReply, Durability),
    /// Answer once everything written before it is synced, with the last sequence number.
    Sync(SyncReply),
    /// Write a checkpoint of everything logged (unless the newest one holds it); answer with
    /// its sequence number once durable.
    Checkpoint(CheckpointReply),
    /// Finish what came before, then stop.
    Stop,
}

type CheckpointReply = oneshot::Sender<KfsResult<u64>>;

/// Handle to the committer thread.
pub struct Committer {
    tx: Mutex<Sender<Msg>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<CommitStats>,
}

/// Ops per batch at most (batches are also bounded by bytes).
const MAX_BATCH_OPS: usize = 4096;
/// How often an idle committer checks whether a checkpoint is due.
const IDLE_TICK: Duration = Duration::from_millis(500);

impl Committer {
    /// Starts the committer over `ns`, appending to `writer`, telling `observer` of every op.
    pub fn start(
        ns: SharedNamespace,
        writer: LogWriter,
        config: CommitterConfig,
        observer: Arc<dyn Observer>,
    ) -> Committer {
        let (tx, rx) = std::sync::mpsc::channel();
        let stats = Arc::new(CommitStats::default());
        stats.last_seq.store(writer.last_seq(), Ordering::Relaxed);
        stats
            .checkpoint_seq
            .store(config.recovered_checkpoint_seq, Ordering::Relaxed);
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("kfs-commit".into())
            .spawn(move || run(rx, ns, writer, config, thread_stats, observer))
            .expect("spawn the commit thread");
        Committer {
            tx: Mutex::new(tx),
            thread: Mutex::new(Some(thread)),
            stats,
        }
    }

    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// The stats, shared (for the status page and metrics).
    pub fn shared_stats(&self) -> Arc<CommitStats> {
        self.stats.clone()
    }

    /// Logs `op`, applies it, and returns what applying it gave, once its record is durable.
    pub async fn commit(&self, op: Op) -> KfsResult<Applied> {
        self.commit_with(op, Durability::Synced).await
    }

    /// [`Committer::commit`], answered once the record is durable or only written.
    pub async fn commit_with(&self, op: Op, durability: Durability) -> KfsResult<Applied> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Msg::Commit(op, reply, durability)) {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Returns once every op answered before the call is durable, with the sequence number of
    /// the last record synced.
    pub async fn sync(&self) -> KfsResult<u64> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Msg::Sync(reply)) {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    fn send(&self, msg: Msg) -> bool {
        self.tx
            .lock()
            .expect("commit sender lock")
            .send(msg)
            .is_ok()
    }

    /// Has a checkpoint written of every op logged so far (none if the newest checkpoint
    /// already holds them all) and returns, once it is durable, the sequence number of the last
    /// op it holds.
    pub async fn checkpoint(&self) -> KfsResult<u64> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Msg::Checkpoint(reply)) {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Commits what was sent before, waits for a checkpoint being written, and stops the thread.
    /// Later commits are refused with `Unavailable`. Blocks; call it off the async reactor.
    pub fn stop(&self) {
        let _ = self.tx.lock().expect("commit sender lock").send(Msg::Stop);
        if let Some(thread) = self.thread.lock().expect("commit thread lock").take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> KfsError {
    KfsError::Unavailable("the master is shutting down".into())
}

fn run(
    rx: Receiver<Msg>,
    ns: SharedNamespace,
    mut writer: LogWriter,
    config: CommitterConfig,
    stats: Arc<CommitStats>,
    observer: Arc<dyn Observer>,
) {
    let checkpointer = Checkpointer::start(config.clone(), stats.clone());
    let mut broken: Option<String> = None;
    let mut since_checkpoint = 0u64;
    let mut last_checkpoint = Instant::now();
    let mut batch: Vec<Waiting> = Vec::new();
    // Callers of `sync`, answered after this round's batch is synced.
    let mut syncs: Vec<SyncReply> = Vec::new();
    // Operators waiting for a checkpoint (`kfs admin checkpoint`).
    let mut asked: Vec<CheckpointReply> = Vec::new();
    let mut stop = false;
    while !stop {
        batch.clear();
        match rx.recv_timeout(IDLE_TICK) {
            Ok(Msg::Commit(op, reply, durability)) => batch.push((op, reply, durability)),
            Ok(Msg::Sync(reply)) => syncs.push(reply),
            Ok(Msg::Checkpoint(reply)) => asked.push(reply),
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let mut bytes: usize = batch.iter().map(|(op, _, _)| op.size_hint()).sum();
        while !stop && batch.len() < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(Msg::Commit(op, reply, durability)) => {
                    bytes += op.size_hint();
                    batch.push((op, reply, durability));
                }
                Ok(Msg::Sync(reply)) => syncs.push(reply),
                Ok(Msg::Checkpoint(reply)) => asked.push(reply),
                Ok(Msg::Stop) => stop = true,
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            since_checkpoint += batch.len() as u64;
            commit_batch(
                &mut batch,
                &ns,
                &mut writer,
                &mut broken,
                &stats,
                observer.as_ref(),
            );
        }
        // Every batch before this point is synced (a batch is synced before the next is taken).
        for reply in syncs.drain(..) {
            let _ = reply.send(match &broken {
                Some(reason) => Err(KfsError::Unavailable(reason.clone())),
                None => Ok(writer.last_seq()),
            });
        }
        if let Some(reason) = &broken {
            for reply in asked.drain(..) {
                let _ = reply.send(Err(KfsError::Unavailable(reason.clone())));
            }
            continue;
        }
        if !asked.is_empty()
            && !checkpointer.busy()
            && stats.checkpoint_seq.load(Ordering::Relaxed) == writer.last_seq()
        {
            // The newest durable checkpoint already holds every op logged.
            let seq = writer.last_seq();
            for reply in asked.drain(..) {
                let _ = reply.send(Ok(seq));
            }
        }
        let due = since_checkpoint >= config.checkpoint_every_ops
            || (since_checkpoint > 0 && last_checkpoint.elapsed() >= config.checkpoint_interval)
            || !asked.is_empty();
        if due && !checkpointer.busy() {
            // The snapshot is exactly the state after the last record written; the new segment
            // starts right after it, so the checkpoint covers whole segments.
            let snapshot = ns.read().expect("namespace lock").clone();
            let seq = writer.last_seq();
            match writer.rotate() {
                Ok(()) => {
                    checkpointer.submit(snapshot, seq, std::mem::take(&mut asked));
                    since_checkpoint = 0;
                    last_checkpoint = Instant::now();
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not start a new log segment; checkpoint postponed");
                    for reply in asked.drain(..) {
                        let _ = reply.send(Err(KfsError::Io(format!(
                            "could not start a new log segment for the checkpoint: {e}"
                        ))));
                    }
                }
            }
        } else if writer.segment_full()
            && let Err(e) = writer.rotate()
        {
            tracing::error!(error = %e, "could not start a new log segment; the current one keeps growing");
        }
    }
    checkpointer.stop();
}

/// An op waiting in a batch: its reply, and when it is to be answered.
type Waiting = (Op, CommitReply, Durability);

fn commit_batch(
    batch: &mut Vec<Waiting>,
    ns: &SharedNamespace,
    writer: &mut LogWriter,
    broken: &mut Option<String>,
    stats: &CommitStats,
    observer: &dyn Observer,
) {
    if let Some(reason) = broken {
        for (_, reply, _) in batch.drain(..) {
            let _ = reply.send(Err(KfsError::Unavailable(reason.clone())));
        }
        return;
    }
    let started = Instant::now();
    if let Err(e) = writer.write(batch.iter().map(|(op, _, _)| op)) {
        refuse(batch, e, broken, stats);
        return;
    }
    stats.last_seq.store(writer.last_seq(), Ordering::Relaxed);
    // A batch of `Synced` ops only is synced before it is applied, so no reader sees a change
    // that a crash could take back. A batch with a `Logged` op is applied first (those answered
    // at once) and then synced: its changes are visible up to one fsync before they are durable.
    let apply_first = batch.iter().any(|(_, _, d)| *d == Durability::Logged);
    if !apply_first && let Err(e) = sync_batch(writer, started, stats) {
        let reason = broken_log(&e, broken, stats);
        for (_, reply, _) in batch.drain(..) {
            let _ = reply.send(Err(KfsError::Unavailable(reason.clone())));
        }
        return;
    }
    let results: Vec<KfsResult<Applied>> = {
        let mut ns = ns.write().expect("namespace lock");
        batch.iter().map(|(op, _, _)| ns.apply(op)).collect()
    };
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
    stats.batch_ops.observe(batch.len() as f64);
    for ((op, _, _), result) in batch.iter().zip(&results) {
        observer.applied(op, result);
    }
    let mut synced_later = Vec::new();
    for ((_, reply, durability), result) in batch.drain(..).zip(results) {
        if apply_first && durability == Durability::Synced {
            synced_later.push((reply, result));
        } else {
            let _ = reply.send(result);
        }
    }
    if !apply_first {
        return;
    }
    match sync_batch(writer, started, stats) {
        Ok(()) => {
            for (reply, result) in synced_later {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            // Applied here, but perhaps not on disk: the callers cannot know (`Unavailable`),
            // and no mutation is taken until a restart recovers what the disk holds.
            let reason = broken_log(&e, broken, stats);
            for (reply, _) in synced_later {
                let _ = reply.send(Err(KfsError::Unavailable(reason.clone())));
            }
        }
    }
}

/// Syncs what the batch wrote and records how long writing and syncing it took.
fn sync_batch(
    writer: &mut LogWriter,
    started: Instant,
    stats: &CommitStats,
) -> Result<(), AppendError> {
    writer.sync()?;
    let took = started.elapsed();
    stats.commit_seconds.observe(took.as_secs_f64());
    stats
        .commit_micros
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    Ok(())
}

/// Answers a batch whose write failed: nothing of it was applied.
fn refuse(
    batch: &mut Vec<Waiting>,
    e: AppendError,
    broken: &mut Option<String>,
    stats: &CommitStats,
) {
    let error = match &e {
        AppendError::NotWritten { path, source } => {
            tracing::error!(path = %path.display(), error = %source, "operation log write failed; batch refused");
            if source.kind() == std::io::ErrorKind::StorageFull {
                KfsError::NoSpace(format!("operation log {}: {source}", path.display()))
            } else {
                KfsError::Io(format!("operation log {}: {source}", path.display()))
            }
        }
        AppendError::Broken { .. } => KfsError::Unavailable(broken_log(&e, broken, stats)),
    };
    for (_, reply, _) in batch.drain(..) {
        let _ = reply.send(Err(error.clone()));
    }
}

/// Marks the log broken (every later mutation is refused until restart); returns why.
fn broken_log(e: &AppendError, broken: &mut Option<String>, stats: &CommitStats) -> String {
    tracing::error!(error = %e, "operation log broken: refusing every mutation until restart");
    let reason = format!("{e}; restart the master");
    *broken = Some(reason.clone());
    stats.log_broken.store(true, Ordering::Relaxed);
    reason
}

/// The checkpoint-writing thread.
struct Checkpointer {
    tx: Option<SyncSender<(Namespace, u64, Vec<CheckpointReply>)>>,
    busy: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(config: CommitterConfig, stats: Arc<CommitStats>) -> Checkpointer {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Namespace, u64, Vec<CheckpointReply>)>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let thread_busy = busy.clone();
        let thread = std::thread::Builder::new()
            .name("kfs-checkpoint".into())
            .spawn(move || {
                for (snapshot, seq, asked) in rx {
                    stats.checkpointing.store(true, Ordering::Relaxed);
                    let started = Instant::now();
                    let now = kfs_common::proto::now();
                    match write_checkpoint(&config.meta_dir, seq, &snapshot, now) {
                        Ok(path) => {
                            drop(snapshot);
                            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                            config.checkpointer.round(format!(
                                "checkpoint at op {seq} in {} ms",
                                started.elapsed().as_millis()
                            ));
                            stats.checkpoint_seq.store(seq, Ordering::Relaxed);
                            stats.checkpoint_unix_secs.store(now.max(0) as u64 / 1_000_000_000, Ordering::Relaxed);
                            tracing::info!(
                                path = %path.display(),
                                seq,
                                ms = started.elapsed().as_millis() as u64,
                                "checkpoint written"
                            );
                            if let Err(e) = prune(&config.meta_dir, config.keep_checkpoints) {
                                tracing::warn!(error = %e, "could not remove old checkpoints or log segments");
                            }
                            for reply in asked {
                                let _ = reply.send(Ok(seq));
                            }
                        }
                        Err(e) => {
                            stats.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
                            config.checkpointer.note(format!("checkpoint at op {seq} failed: {e}"));
                            tracing::error!(error = %e, seq, "checkpoint failed; the log keeps everything until the next one");
                            for reply in asked {
                                let _ = reply.send(Err(KfsError::Io(format!(
                                    "the checkpoint at op {seq} failed: {e}"
                                ))));
                            }
                        }
                    }
                    stats.checkpointing.store(false, Ordering::Relaxed);
                    thread_busy.store(false, Ordering::Release);
                }
            })
            .expect("spawn the checkpoint thread");
        Checkpointer {
            tx: Some(tx),
            busy,
            thread: Some(thread),
        }
    }

    fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    fn submit(&self, snapshot: Namespace, seq: u64, asked: Vec<CheckpointReply>) {
        self.busy.store(true, Ordering::Release);
        if let Some(tx) = &self.tx
            && let Err(
                TrySendError::Full((_, _, asked)) | TrySendError::Disconnected((_, _, asked)),
            ) = tx.try_send((snapshot, seq, asked))
        {
            self.busy.store(false, Ordering::Release);
            for reply in asked {
                let _ = reply.send(Err(KfsError::Unavailable(
                    "the checkpoint thread is not taking work".into(),
                )));
            }
        }
    }

    /// Waits for a checkpoint being written, then stops the thread.
    fn stop(mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
