//! Admission of requests that stream a body (a GET's response, a PUT's upload): limited by the
//! bytes they may hold buffered at once (`max_stream_bytes`) and by their number
//! (`max_streams`), not refused at the limit but queued for a while.
//!
//! A request costs the bytes it can hold in memory at once: a response, what it reads ahead
//! (at most its length; a 6 KB image costs 6 KB, a 4 GB video [`READ_WINDOW`]); an upload, what
//! the write path gathers. Past either limit a request waits in a queue of at most
//! `max_queued` for up to `queue_timeout`, and only then gets `503` with `Retry-After`. A small
//! file's response holds its admission only while it is read from KFS, so a burst of a thousand
//! clients on one image waits a few milliseconds each instead of failing.
//!
//! Invariants: the bytes admitted never exceed `max_stream_bytes` (a request costing more than
//! all of it costs all of it: it streams alone); the requests waiting never exceed `max_queued`;
//! a waiter that times out or is dropped (its client gone) takes nothing with it.

use super::read::{PIECE, READ_AHEAD};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most a response reads ahead of what its client has taken.
pub const READ_WINDOW: u64 = PIECE * (READ_AHEAD as u64 + 1);
/// The most an upload holds before its bytes are on the chunkservers.
pub const WRITE_WINDOW: u64 = 8 << 20;

/// Bytes are admitted in KiB (a semaphore's permits are counted in `u32` per request).
const UNIT: u64 = 1024;

/// The limits, and who waits for them.
pub struct Admission {
    bytes: Arc<Semaphore>,
    budget_units: u32,
    streams: Arc<Semaphore>,
    waiting: AtomicUsize,
    pub max_streams: usize,
    pub max_stream_bytes: u64,
    pub max_queued: usize,
    pub queue_timeout: Duration,
    /// `kfs_gateway_open_streams`.
    pub open: Gauge,
    /// `kfs_gateway_queued_streams`.
    pub queued: Gauge,
}

/// Held while a body streams: its bytes and its place among the streams.
pub struct StreamPermit {
    _bytes: OwnedSemaphorePermit,
    _stream: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Counts a waiter while it waits (dropped when it is admitted, gives up or is cancelled).
struct Waiting<'a>(&'a Admission);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.queued.dec();
    }
}

impl Admission {
    pub fn new(
        max_streams: usize,
        max_stream_bytes: u64,
        max_queued: usize,
        queue_timeout: Duration,
        open: Gauge,
        queued: Gauge,
    ) -> Admission {
        let budget_units = (max_stream_bytes / UNIT).clamp(1, u32::MAX as u64) as u32;
        let max_streams = max_streams.clamp(1, Semaphore::MAX_PERMITS);
        Admission {
            bytes: Arc::new(Semaphore::new(budget_units as usize)),
            budget_units,
            streams: Arc::new(Semaphore::new(max_streams)),
            waiting: AtomicUsize::new(0),
            max_streams,
            max_stream_bytes,
            max_queued,
            queue_timeout,
            open,
            queued,
        }
    }

    /// Admits a stream that may hold `cost` bytes at once: at once if both limits allow, else
    /// after waiting in the queue; `503` (with `Retry-After`) if the queue is full or the wait
    /// runs out.
    pub async fn admit(&self, cost: u64) -> Result<StreamPermit, Box<Response>> {
        let units = cost.div_ceil(UNIT).clamp(1, u64::from(self.budget_units)) as u32;
        if let (Ok(stream), Ok(bytes)) = (
            self.streams.clone().try_acquire_owned(),
            self.bytes.clone().try_acquire_many_owned(units),
        ) {
            return Ok(self.permit(stream, bytes));
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.busy(format!(
                "{} requests already wait for a stream (--max-queued)",
                self.max_queued
            )));
        }
        self.queued.inc();
        let waiting = Waiting(self);
        // Bytes first: a waiter holds no stream while it waits for room.
        let admitted = tokio::time::timeout(self.queue_timeout, async {
            let bytes = self.bytes.clone().acquire_many_owned(units).await;
            let stream = self.streams.clone().acquire_owned().await;
            (stream, bytes)
        })
        .await;
        drop(waiting);
        match admitted {
            Ok((Ok(stream), Ok(bytes))) => Ok(self.permit(stream, bytes)),
            Ok(_) => Err(self.busy("the gateway is stopping".into())),
            Err(_) => Err(self.busy(format!(
                "no stream became free within {} ms (--max-streams {}, --max-stream-bytes {})",
                self.queue_timeout.as_millis(),
                self.max_streams,
                self.max_stream_bytes
            ))),
        }
    }

    fn permit(&self, stream: OwnedSemaphorePermit, bytes: OwnedSemaphorePermit) -> StreamPermit {
        self.open.inc();
        StreamPermit {
            _bytes: bytes,
            _stream: stream,
            open: self.open.clone(),
        }
    }

    fn busy(&self, why: String) -> Box<Response> {
        let mut r = super::error_text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the gateway is busy: {why}; try again"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        Box::new(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(streams: usize, bytes: u64, queued: usize, wait_ms: u64) -> Admission {
        Admission::new(
            streams,
            bytes,
            queued,
            Duration::from_millis(wait_ms),
            Gauge::default(),
            Gauge::default(),
        )
    }

    #[tokio::test]
    async fn small_streams_share_the_byte_budget_and_waiters_are_let_in() {
        let a = Arc::new(admission(1000, 64 << 10, 10, 5_000));
        // Ten 6 KB responses fit in 64 KiB at once; the eleventh waits for one to end.
        let held: Vec<_> = futures::future::join_all((0..10).map(|_| a.admit(6000)))
            .await
            .into_iter()
            .map(|p| p.expect("admitted at once"))
            .collect();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.admit(6000).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.queued.get(), 1);
        drop(held);
        assert!(waiter.await.unwrap(), "admitted once room came back");
        assert_eq!(a.queued.get(), 0);
        assert_eq!(a.open.get(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_or_a_long_wait_answers_503() {
        let a = admission(1, 1 << 30, 1, 50);
        let held = a.admit(1).await.expect("admitted");
        // One may wait; it gives up after 50 ms.
        let timed_out = a.admit(1).await.err().expect("503 after the wait");
        assert_eq!(timed_out.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(timed_out.headers()[header::RETRY_AFTER], "1");
        // A huge request costs the whole budget, not more: it is admitted alone.
        drop(held);
        let huge = a.admit(u64::MAX).await.expect("a huge one streams alone");
        drop(huge);
        assert_eq!(a.waiting.load(Ordering::Relaxed), 0);
    }
}
