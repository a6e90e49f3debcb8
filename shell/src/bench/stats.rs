//! Running a phase of a benchmark on many concurrent clients and measuring it: operations,
//! bytes, wall time, and the latency of every operation in an HDR histogram (microseconds, 3
//! significant digits). Each client records into its own histogram; they are merged at the end,
//! so measuring never makes clients wait for each other.

use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The measured result of one phase (one kind of operation).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseResult {
    /// What was done, e.g. `create`, `write`, `read`.
    pub phase: String,
    pub ops: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// Megabytes (10^6 bytes) per second; 0 for metadata operations.
    pub mb_per_sec: f64,
    pub latency_us: Latency,
}

/// Latency percentiles of one phase, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// An operation of a phase: given its index, does it and returns the bytes it moved.
pub type Op = Arc<dyn Fn(u64) -> BoxFuture<'static, anyhow::Result<u64>> + Send + Sync>;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn progress(name: &str, total: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{prefix:>10} {pos}/{len} ops {per_sec} {wide_bar} {eta} left"
    } else {
        "{prefix:>10} {pos} ops {per_sec} {elapsed}"
    };
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    bar.set_prefix(name.to_string());
    bar
}

fn result(
    name: &str,
    ops: u64,
    bytes: u64,
    elapsed: Duration,
    hist: &Histogram<u64>,
) -> PhaseResult {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    PhaseResult {
        phase: name.to_string(),
        ops,
        bytes,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        mb_per_sec: bytes as f64 / seconds / 1e6,
        latency_us: Latency {
            p50: hist.value_at_quantile(0.5),
            p99: hist.value_at_quantile(0.99),
            max: hist.max(),
        },
    }
}

/// Runs operations `0..total` on `clients` concurrent tasks, each taking the next index as it
/// finishes one. The first failure stops the phase and is returned.
pub async fn run_phase(
    name: &str,
    total: u64,
    clients: usize,
    op: Op,
) -> anyhow::Result<PhaseResult> {
    let next = Arc::new(AtomicU64::new(0));
    let bar = progress(name, Some(total));
    let started = Instant::now();
    // Dropping the set (on a panic below) aborts every task still running.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (next, op, bar) = (next.clone(), op.clone(), bar.clone());
        tasks.spawn(async move {
            let mut hist = histogram();
            let mut bytes = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>((hist, bytes));
                }
                let t = Instant::now();
                match op(i).await {
                    Ok(b) => bytes += b,
                    Err(e) => {
                        // Stop handing out work: the others finish the op they are in.
                        next.store(total, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                hist.saturating_record(t.elapsed().as_micros() as u64);
                bar.inc(1);
            }
        });
    }
    let mut hist = histogram();
    let mut bytes = 0;
    let mut failure = None;
    while let Some(task) = tasks.join_next().await {
        match task? {
            Ok((h, b)) => {
                hist.add(&h).expect("histograms with the same bounds");
                bytes += b;
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e.context(format!("phase {name}")));
    }
    Ok(result(name, total, bytes, started.elapsed(), &hist))
}

/// Runs for `duration` on `clients` tasks; each time a task picks a kind of operation with
/// `pick(random)` and runs `ops[kind]` with a fresh index. Returns one result per kind.
pub async fn run_timed(
    names: &[&str],
    clients: usize,
    duration: Duration,
    pick: Arc<dyn Fn(u64) -> usize + Send + Sync>,
    ops: Vec<Op>,
) -> anyhow::Result<Vec<PhaseResult>> {
    let ops = Arc::new(ops);
    let next = Arc::new(AtomicU64::new(0));
    let bar = progress("mixed", None);
    let started = Instant::now();
    let deadline = started + duration;
    let kinds = names.len();
    // Set by the first failure: every client stops after the op it is in.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients.max(1) {
        let (next, ops, pick, bar, stop) = (
            next.clone(),
            ops.clone(),
            pick.clone(),
            bar.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            let mut hists: Vec<Histogram<u64>> = (0..kinds).map(|_| histogram()).collect();
            let mut counts = vec![(0u64, 0u64); kinds];
            let mut rng =
                0x9e37_79b9_7f4a_7c15u64 ^ (client as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let kind = pick(super::workloads::xorshift(&mut rng));
                let i = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let bytes = match ops[kind](i).await {
                    Ok(b) => b,
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                };
                hists[kind].saturating_record(t.elapsed().as_micros() as u64);
                counts[kind].0 += 1;
                counts[kind].1 += bytes;
                bar.inc(1);
            }
            Ok::<_, anyhow::Error>((hists, counts))
        });
    }
    let mut hists: Vec<Histogram<u64>> = (0..kinds).map(|_| histogram()).collect();
    let mut counts = vec![(0u64, 0u64); kinds];
    let mut failure = None;
    while let Some(task) = tasks.join_next().await {
        match task? {
            Ok((h, c)) => {
                for k in 0..kinds {
                    hists[k]
                        .add(&h[k])
                        .expect("histograms with the same bounds");
                    counts[k].0 += c[k].0;
                    counts[k].1 += c[k].1;
                }
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(e.context("mixed workload"));
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    Ok((0..kinds)
        .map(|k| result(names[k], counts[k].0, counts[k].1, elapsed, &hists[k]))
        .collect())
}
