//! The report of a `kfs bench` run: what ran where, on which machine and commit, with every
//! parameter and every phase's figures; printed as a table or as JSON (`--json`). And
//! `kfs bench-report`: several JSON reports in, one Markdown table out (the median of the runs of
//! each workload and target, phase by phase), the form `docs/benchmarks.md` quotes.

use super::Settings;
use super::stats::PhaseResult;
use crate::cli::Workload;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One run of `kfs bench`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    /// `kfs` version and the git commit it was built from.
    pub version: String,
    pub commit: String,
    /// When the run started (UTC, RFC 3339).
    pub started: String,
    pub machine: Machine,
    pub workload: String,
    /// `kfs`, `kfs --local (...)` or `posix`.
    pub target: String,
    /// Where exactly: the master's address or the directory.
    pub target_detail: String,
    pub settings: Settings,
    pub results: Vec<PhaseResult>,
    /// `--local` `meta` only: growth of the master process's resident memory per file, measured
    /// once every file exists.
    pub master_rss_bytes_per_file: Option<f64>,
    /// Free text given with `--note`.
    pub note: Option<String>,
}

/// The machine a run was measured on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub cores: usize,
    pub cpu: String,
    pub memory_bytes: u64,
    pub kernel: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Machine {
    pub fn this() -> Machine {
        let meminfo = read("/proc/meminfo");
        let memory_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|v| v.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        Machine {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory_bytes: memory_kib * 1024,
            kernel: format!(
                "{} {}",
                read("/proc/sys/kernel/ostype").trim(),
                read("/proc/sys/kernel/osrelease").trim()
            ),
        }
    }
}

/// The resident set size of process `pid`, from `/proc/<pid>/status`.
pub fn rss_bytes_of(pid: u32) -> Option<u64> {
    read(&format!("/proc/{pid}/status"))
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        workload: Workload,
        target: String,
        target_detail: String,
        settings: Settings,
        results: Vec<PhaseResult>,
        master_rss_bytes_per_file: Option<f64>,
        started: chrono::DateTime<chrono::Utc>,
        note: Option<String>,
    ) -> Report {
        Report {
            tool: "kfs bench".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            commit: env!("KFS_GIT_COMMIT").into(),
            started: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine: Machine::this(),
            workload: workload.name().into(),
            target,
            target_detail,
            settings,
            results,
            master_rss_bytes_per_file,
            note,
        }
    }

    /// The table for people.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "kfs bench {} on {} ({})\n{} cores ({}), {:.1} GiB, {}; kfs {} ({}), {}",
            self.workload,
            self.target,
            self.target_detail,
            m.cores,
            m.cpu,
            m.memory_bytes as f64 / (1u64 << 30) as f64,
            m.kernel,
            self.version,
            self.commit,
            self.started
        );
        let s = &self.settings;
        let _ = writeln!(
            out,
            "clients {}, files {}{}, size {}, block {}, file size {}{}, reads {}, replication {}, mix {:?}, duration {} s\n",
            s.clients,
            s.files,
            if s.layout.spread { " (spread)" } else { "" },
            s.size,
            s.block,
            s.file_size,
            s.file_size_max.map(|m| format!("-{m}")).unwrap_or_default(),
            s.reads,
            s.replication,
            s.mix,
            s.duration_secs
        );
        let _ = writeln!(
            out,
            "{:<14} {:>10} {:>9} {:>12} {:>10} {:>10} {:>10} {:>10}",
            "PHASE", "OPS", "SECONDS", "OPS/S", "MB/S", "P50 µs", "P99 µs", "MAX µs"
        );
        for r in &self.results {
            let _ = writeln!(
                out,
                "{:<14} {:>10} {:>9.2} {:>12.0} {:>10.1} {:>10} {:>10} {:>10}",
                r.phase,
                r.ops,
                r.seconds,
                r.ops_per_sec,
                r.mb_per_sec,
                r.latency_us.p50,
                r.latency_us.p99,
                r.latency_us.max
            );
        }
        if let Some(rss) = self.master_rss_bytes_per_file {
            let _ = writeln!(
                out,
                "\nmaster memory: {rss:.0} bytes of resident memory (RSS growth of the kfs-master process) per file"
            );
        }
        out
    }
}

/// The parameters that matter to `workload`, in words.
fn settings_line(workload: &str, s: &Settings) -> String {
    let size = match s.file_size_max {
        Some(max) => format!("{}-{} B", s.file_size, max),
        None => format!("{} B", s.file_size),
    };
    let line = match workload {
        "meta" => format!("{} clients, {} files", s.clients, s.files),
        "seq" => format!(
            "{} clients, {} files, {} bytes in all, calls of {} bytes, replication {}",
            s.clients, s.files, s.size, s.block, s.replication
        ),
        "small" => format!(
            "{} clients, {} files of {size}, {} random reads, replication {}",
            s.clients, s.files, s.reads, s.replication
        ),
        _ => format!(
            "{} clients, {} files of {size} first, then for {} s: read/write/stat/list in shares \
             {:?} (each kind's ops/s is its share of the whole), replication {}",
            s.clients, s.files, s.duration_secs, s.mix, s.replication
        ),
    };
    match (workload, s.layout.spread) {
        ("seq", _) | (_, false) => line,
        (_, true) => format!("{line}, spread over {} directories", s.layout.dirs),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// (target, position of the phase in the run, phase) -> that phase in each run.
type PhaseRuns<'a> = BTreeMap<(String, usize, String), Vec<&'a PhaseResult>>;

/// Markdown for `docs/benchmarks.md` from several reports: one table per workload, a row per
/// phase and target, medians over the runs (each run's figure listed too).
pub fn markdown(reports: &[Report]) -> String {
    // (workload, its settings) -> (target, phase) -> runs: runs with other settings are not
    // mixed into one median.
    let mut by_workload: BTreeMap<(&str, String), PhaseRuns> = BTreeMap::new();
    for r in reports {
        let key = (r.workload.as_str(), settings_line(&r.workload, &r.settings));
        for (i, p) in r.results.iter().enumerate() {
            by_workload
                .entry(key.clone())
                .or_default()
                .entry((r.target.clone(), i, p.phase.clone()))
                .or_default()
                .push(p);
        }
    }
    let mut out = String::new();
    for ((workload, settings), rows) in &by_workload {
        let runs: Vec<&Report> = reports
            .iter()
            .filter(|r| {
                r.workload == *workload && settings_line(&r.workload, &r.settings) == *settings
            })
            .collect();
        let first = runs[0];
        let mut per_target: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &runs {
            *per_target.entry(r.target.as_str()).or_default() += 1;
        }
        let counts: Vec<String> = per_target
            .iter()
            .map(|(t, n)| format!("{n} on {}", t.split(" (").next().unwrap_or(t)))
            .collect();
        let _ = writeln!(
            out,
            "### `{workload}`: runs {}; {} ({} cores, {:.0} GiB, {}), commit {}, {}\n",
            counts.join(", "),
            first.machine.cpu,
            first.machine.cores,
            first.machine.memory_bytes as f64 / (1u64 << 30) as f64,
            first.machine.kernel,
            first.commit,
            &first.started[..10.min(first.started.len())]
        );
        let _ = writeln!(out, "{settings}\n");
        let _ = writeln!(
            out,
            "| target | phase | median ops/s | median MB/s | p50 µs | p99 µs | runs (ops/s) |\n|---|---|---:|---:|---:|---:|---|"
        );
        // Group phases by target, in run order.
        let mut keys: Vec<&(String, usize, String)> = rows.keys().collect();
        keys.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        for key in keys {
            let results = &rows[key];
            let mut ops: Vec<f64> = results.iter().map(|p| p.ops_per_sec).collect();
            let mut mbs: Vec<f64> = results.iter().map(|p| p.mb_per_sec).collect();
            let mut p50: Vec<f64> = results.iter().map(|p| p.latency_us.p50 as f64).collect();
            let mut p99: Vec<f64> = results.iter().map(|p| p.latency_us.p99 as f64).collect();
            let each: Vec<String> = results
                .iter()
                .map(|p| format!("{:.0}", p.ops_per_sec))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.1} | {:.0} | {:.0} | {} |",
                key.0,
                key.2,
                median(&mut ops),
                median(&mut mbs),
                median(&mut p50),
                median(&mut p99),
                each.join(", ")
            );
        }
        let mut rss: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.master_rss_bytes_per_file)
            .collect();
        if !rss.is_empty() {
            let _ = writeln!(
                out,
                "\nMaster memory per file (RSS growth of the `kfs-master` process while every file exists), median: {:.0} B",
                median(&mut rss)
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn this_machine_is_described() {
        let m = Machine::this();
        assert!(
            m.cores >= 1 && m.memory_bytes > 0 && !m.kernel.trim().is_empty(),
            "{m:?}"
        );
        assert!(rss_bytes_of(std::process::id()).unwrap() > 0);
    }
}
