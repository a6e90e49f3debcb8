//! Background workers of a server: every loop that runs beside the RPC service (the master's
//! healer and heartbeat timeouts, its checkpointer; a chunkserver's link to the master, its
//! scrubber and sequence sweeps) is a [`Worker`] run by one [`Workers`] registry, which lists
//! them (the status page, `kfs admin workers`) and stops them all at shutdown.
//!
//! Invariants: a worker stops when its [`CancellationToken`] is cancelled: the registry drops
//! its future then (so a worker need not check the token between awaits, only where it must
//! finish something first); [`Workers::shutdown`] returns only once every spawned worker has
//! stopped. A loop that runs on its own thread (the checkpointer) is [`Workers::register`]ed and
//! reports through the same [`WorkerStatus`], so the listing shows every loop alike.

use crate::proto::master::{WorkerInfo, WorkerState};
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};
use std::time::Instant;
pub use tokio_util::sync::CancellationToken;

/// A background loop; see the module docs.
pub trait Worker: Send + 'static {
    /// Its name in listings (`healer`, `scrubber`, ...).
    fn name(&self) -> String;

    /// The loop. It reports each round through `status`, and ends when `cancel` is cancelled
    /// (or by itself, when it has nothing to do).
    fn run(
        self: Box<Self>,
        cancel: CancellationToken,
        status: WorkerStatus,
    ) -> BoxFuture<'static, ()>;
}

/// A worker made of a name and its loop, for loops that need nothing but their status (the
/// cancellation drops them).
pub struct Loop<F> {
    name: String,
    body: F,
}

impl<F> Loop<F> {
    pub fn new(name: impl Into<String>, body: F) -> Loop<F> {
        Loop {
            name: name.into(),
            body,
        }
    }
}

impl<F, Fut> Worker for Loop<F>
where
    F: FnOnce(WorkerStatus) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run(self: Box<Self>, _: CancellationToken, status: WorkerStatus) -> BoxFuture<'static, ()> {
        Box::pin((self.body)(status))
    }
}

#[derive(Debug)]
struct Progress {
    state: WorkerState,
    rounds: u64,
    last_round: Option<Instant>,
    note: String,
}

/// Where a worker reports what it does; cheap to clone.
#[derive(Clone, Debug)]
pub struct WorkerStatus(Arc<Mutex<Progress>>);

impl WorkerStatus {
    fn new() -> WorkerStatus {
        WorkerStatus(Arc::new(Mutex::new(Progress {
            state: WorkerState::Running,
            rounds: 0,
            last_round: None,
            note: String::new(),
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Progress) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A round of work is done; `note` says what it did.
    pub fn round(&self, note: impl Into<String>) {
        let note = note.into();
        self.with(|p| {
            p.rounds += 1;
            p.last_round = Some(Instant::now());
            p.note = note;
        });
    }

    /// What the worker is doing or waiting for, between rounds.
    pub fn note(&self, note: impl Into<String>) {
        let note = note.into();
        self.with(|p| p.note = note);
    }

    fn set_state(&self, state: WorkerState) {
        self.with(|p| p.state = state);
    }

    fn info(&self, name: &str) -> WorkerInfo {
        self.with(|p| WorkerInfo {
            name: name.to_string(),
            state: p.state,
            rounds: p.rounds,
            since_last_round_ms: p.last_round.map(|t| t.elapsed().as_millis() as u64),
            note: p.note.clone(),
        })
    }
}

struct Entry {
    name: String,
    status: WorkerStatus,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The workers of one server; cheap to clone (clones share them).
#[derive(Clone, Default)]
pub struct Workers {
    cancel: CancellationToken,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Workers {
    pub fn new() -> Workers {
        Workers::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `worker` on the current tokio runtime.
    pub fn spawn(&self, worker: impl Worker) {
        let name = worker.name();
        let status = WorkerStatus::new();
        let cancel = self.cancel.child_token();
        let run = Box::new(worker).run(cancel.clone(), status.clone());
        let reported = status.clone();
        let span = tracing::info_span!("worker", worker = %name);
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                tokio::select! {
                    _ = cancel.cancelled() => reported.set_state(WorkerState::Stopped),
                    _ = run => reported.set_state(if cancel.is_cancelled() {
                        WorkerState::Stopped
                    } else {
                        WorkerState::Ended
                    }),
                }
            },
            span,
        ));
        self.entries().push(Entry {
            name,
            status,
            task: Some(task),
        });
    }

    /// Lists a loop that runs elsewhere (on a thread of its own) under `name`; it reports
    /// through the status returned.
    pub fn register(&self, name: &str) -> WorkerStatus {
        let status = WorkerStatus::new();
        self.entries().push(Entry {
            name: name.to_string(),
            status: status.clone(),
            task: None,
        });
        status
    }

    /// Every worker, in the order they were started.
    pub fn list(&self) -> Vec<WorkerInfo> {
        self.entries()
            .iter()
            .map(|e| e.status.info(&e.name))
            .collect()
    }

    /// Tells every spawned worker to stop, without waiting (for a `Drop`).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Stops every spawned worker and waits until they have stopped.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let tasks: Vec<_> = self
            .entries()
            .iter_mut()
            .filter_map(|e| e.task.take())
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        for e in self.entries().iter() {
            e.status.set_state(WorkerState::Stopped);
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Ticker;

    impl Worker for Ticker {
        fn name(&self) -> String {
            "ticker".into()
        }

        fn run(
            self: Box<Self>,
            _cancel: CancellationToken,
            status: WorkerStatus,
        ) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                loop {
                    status.round("ticked");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        }
    }

    struct Idle;

    impl Worker for Idle {
        fn name(&self) -> String {
            "idle".into()
        }

        fn run(
            self: Box<Self>,
            _: CancellationToken,
            status: WorkerStatus,
        ) -> BoxFuture<'static, ()> {
            Box::pin(async move { status.note("nothing to do") })
        }
    }

    #[tokio::test]
    async fn workers_are_listed_and_stopped_together() {
        let workers = Workers::new();
        workers.spawn(Ticker);
        workers.spawn(Idle);
        let thread = workers.register("thread");
        thread.round("checkpoint at op 7");
        let deadline = Instant::now() + Duration::from_secs(20);
        while workers.list()[0].rounds < 3 || workers.list()[1].state != WorkerState::Ended {
            assert!(Instant::now() < deadline, "{:?}", workers.list());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let listed = workers.list();
        assert_eq!(
            listed.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["ticker", "idle", "thread"]
        );
        assert_eq!(listed[0].state, WorkerState::Running);
        assert_eq!(listed[1].note, "nothing to do");
        assert_eq!(
            (listed[2].rounds, listed[2].note.as_str()),
            (1, "checkpoint at op 7")
        );
        workers.shutdown().await;
        let after = workers.list();
        assert!(
            after.iter().all(|w| w.state == WorkerState::Stopped),
            "{after:?}"
        );
        let rounds = after[0].rounds;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            workers.list()[0].rounds,
            rounds,
            "a stopped worker does no more rounds"
        );
    }
}
