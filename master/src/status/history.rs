//! The status page's graphs: the last hour of the master's activity, sampled in memory (no
//! store, nothing on disk: a restart starts them afresh), drawn as small inline SVG (no script,
//! no external asset).
//!
//! A sample every `status_sample_ms` (10 s: 360 of them for the hour) records the committer's
//! counters; the graphs are the rates between samples: namespace operations logged per second,
//! file bytes added per second (the namespace's byte count; data rewritten in place or removed
//! shows as none or as a drop), chunk data read and written per second on the chunkservers (as
//! they report it with their heartbeats), and the mean time of a group commit (write and
//! `fdatasync`).
//!
//! Invariant: samples are in time order and at most [`KEEP`] are kept.

use crate::committer::{CommitStats, SharedNamespace};
use futures::future::BoxFuture;
use kfs_common::worker::{CancellationToken, Worker, WorkerStatus};
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Samples kept: an hour at the default interval.
pub const KEEP: usize = 361;

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    ops: u64,
    bytes: u64,
    batches: u64,
    commit_micros: u64,
    /// Chunk data the chunkservers reported read and written, in all.
    data_read: u64,
    data_written: u64,
}

/// The rates between consecutive samples, for the page and `/status.json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rates {
    /// Seconds before now of each point (oldest first).
    pub ago_secs: Vec<f64>,
    pub ops_per_sec: Vec<f64>,
    pub bytes_per_sec: Vec<f64>,
    /// Chunk data read from and written to chunkservers per second (every replica counts).
    pub data_read_per_sec: Vec<f64>,
    pub data_written_per_sec: Vec<f64>,
    /// Mean group commit time in the interval, milliseconds (0 with no commit).
    pub commit_ms: Vec<f64>,
}

/// The samples, shared by the sampler and the page.
#[derive(Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    fn push(&self, s: Sample) {
        let mut samples = self.samples.lock().expect("history lock");
        samples.push_back(s);
        while samples.len() > KEEP {
            samples.pop_front();
        }
    }

    /// The rates between the samples, as of `now`.
    pub fn rates(&self, now: Instant) -> Rates {
        let samples = self.samples.lock().expect("history lock");
        let mut r = Rates::default();
        for (a, b) in samples.iter().zip(samples.iter().skip(1)) {
            let secs = b.at.saturating_duration_since(a.at).as_secs_f64();
            if secs <= 0.0 {
                continue;
            }
            let batches = b.batches.saturating_sub(a.batches);
            r.ago_secs
                .push(now.saturating_duration_since(b.at).as_secs_f64());
            r.ops_per_sec
                .push(b.ops.saturating_sub(a.ops) as f64 / secs);
            r.bytes_per_sec
                .push(b.bytes.saturating_sub(a.bytes) as f64 / secs);
            r.data_read_per_sec
                .push(b.data_read.saturating_sub(a.data_read) as f64 / secs);
            r.data_written_per_sec
                .push(b.data_written.saturating_sub(a.data_written) as f64 / secs);
            r.commit_ms.push(if batches == 0 {
                0.0
            } else {
                b.commit_micros.saturating_sub(a.commit_micros) as f64 / batches as f64 / 1000.0
            });
        }
        r
    }
}

/// Takes a sample every interval (a [`Worker`], "status history").
pub struct Sampler {
    pub history: Arc<History>,
    pub ns: SharedNamespace,
    pub commit: Arc<CommitStats>,
    pub reports: Arc<super::Reports>,
    pub interval: Duration,
}

impl Worker for Sampler {
    fn name(&self) -> String {
        "status history".into()
    }

    fn run(self: Box<Self>, _: CancellationToken, status: WorkerStatus) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut ticks = tokio::time::interval(self.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let bytes = self.ns.read().expect("namespace lock").counters().bytes;
                let c = &self.commit;
                let (data_read, data_written) = self.reports.data_totals();
                self.history.push(Sample {
                    at: Instant::now(),
                    ops: c.ops.load(Ordering::Relaxed),
                    bytes,
                    batches: c.batches.load(Ordering::Relaxed),
                    commit_micros: c.commit_micros.load(Ordering::Relaxed),
                    data_read,
                    data_written,
                });
                status.round(format!("every {} ms", self.interval.as_millis()));
            }
        })
    }
}

/// A small line graph of `values` against `ago` (seconds before now, the last hour), with its
/// title and latest value: inline SVG, 360 × 80.
pub fn svg(id: &str, title: &str, unit: &str, ago: &[f64], values: &[f64]) -> String {
    const W: f64 = 360.0;
    const H: f64 = 80.0;
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let mut points = String::new();
    for (a, v) in ago.iter().zip(values) {
        let x = W - (a / 3600.0).min(1.0) * W;
        let y = H - v / top * H;
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    let last = values.last().copied().unwrap_or(0.0);
    format!(
        r##"<figure class="graph"><figcaption>{title}: {last:.1} {unit} now, at most {max:.1} (last hour)</figcaption>
<svg id="{id}" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{title}">
<rect width="{W}" height="{H}" fill="#f6f6f6"/><polyline fill="none" stroke="#2a6" stroke-width="1.5" points="{points}"/>
</svg></figure>"##
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_consecutive_samples_and_an_hour_is_kept() {
        let h = History::default();
        let t0 = Instant::now();
        for i in 0..(KEEP as u64 + 10) {
            h.push(Sample {
                at: t0 + Duration::from_secs(10 * i),
                ops: 100 * i,
                bytes: 1000 * i,
                batches: 10 * i,
                commit_micros: 2500 * i,
                data_read: 3000 * i,
                data_written: 0,
            });
        }
        let r = h.rates(t0 + Duration::from_secs(10 * (KEEP as u64 + 9)));
        assert_eq!(r.ops_per_sec.len(), KEEP - 1);
        assert!(r.ops_per_sec.iter().all(|v| (*v - 10.0).abs() < 1e-9));
        assert!(r.bytes_per_sec.iter().all(|v| (*v - 100.0).abs() < 1e-9));
        assert!(r.commit_ms.iter().all(|v| (*v - 0.25).abs() < 1e-9));
        assert!(
            r.data_read_per_sec
                .iter()
                .all(|v| (*v - 300.0).abs() < 1e-9)
        );
        assert!(r.data_written_per_sec.iter().all(|v| *v == 0.0));
        assert_eq!(r.ago_secs.last(), Some(&0.0));
        let drawn = svg("g", "ops", "/s", &r.ago_secs, &r.ops_per_sec);
        assert!(drawn.contains("<svg id=\"g\"") && drawn.contains("polyline"));
    }
}
