//! `kfs bench`: one benchmark tool for KFS and any mounted file system.
//!
//! - [`target`]: the operations, on KFS (`kfs-client`) or on a POSIX directory, with the same
//!   meaning (a write ends with a sync on both).
//! - [`workloads`]: `meta`, `seq`, `small`, `mixed`.
//! - [`stats`]: concurrent phases, throughput and latency histograms.
//! - [`report`]: the report (machine, version, parameters, results) as a table or JSON, and
//!   `kfs bench-report`, which turns several JSON reports into the Markdown of
//!   `docs/benchmarks.md` (medians per phase).
//!
//! Invariant: a run touches only its own directory (`kfs-bench-<workload>-<pid>` under the KFS
//! root or the POSIX directory), which must not exist before and is removed afterwards unless
//! `--keep` is given.

pub mod report;
pub mod stats;
pub mod target;
pub mod workloads;

use crate::cli::{BenchArgs, Workload};
use crate::local::LocalCluster;
use anyhow::Context as _;
use report::Report;
use serde::{Deserialize, Serialize};
use target::Target;

/// Every parameter of a run, with the workload's defaults filled in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    /// Concurrent clients (tasks sharing one connection to the master).
    pub clients: usize,
    /// Files: created (`meta`), written (`seq`, `small`), or written first (`mixed`).
    pub files: u64,
    /// `seq`: bytes written in all, split evenly over the files.
    pub size: u64,
    /// `seq`: bytes per write and read call.
    pub block: usize,
    /// `small`, `mixed`: bytes per file (the smallest, with `file_size_max`).
    pub file_size: u64,
    /// `small`: file sizes spread evenly over `file_size..=file_size_max`.
    pub file_size_max: Option<u64>,
    /// `small`: random reads after the writes.
    pub reads: u64,
    /// Replication factor of the files written (KFS only; POSIX has its own).
    pub replication: u8,
    /// `mixed`: shares of read, write, stat and list.
    pub mix: [u32; 4],
    /// `mixed`: how long it runs.
    pub duration_secs: f64,
    /// Which directory each file is in (reports from before it have the shared layout).
    #[serde(default)]
    pub layout: workloads::Layout,
}

impl Settings {
    pub fn from_args(workload: Workload, a: &BenchArgs) -> anyhow::Result<Settings> {
        use Workload::*;
        let files = a.files.unwrap_or(match workload {
            Meta | Small => 100_000,
            Seq => 4,
            Mixed => 1_000,
        });
        let clients = a.clients.unwrap_or(match workload {
            Seq => files.min(64) as usize,
            _ => 64,
        });
        let (file_size, file_size_max) = match &a.file_size {
            Some(spec) => parse_size_range(spec)?,
            None => (
                match workload {
                    Mixed => 64 << 10,
                    _ => 6 << 10,
                },
                None,
            ),
        };
        let mix = match &a.mix {
            Some(spec) => parse_mix(spec)?,
            None => [60, 20, 15, 5],
        };
        anyhow::ensure!(files >= 1, "--files must be at least 1");
        anyhow::ensure!(clients >= 1, "--clients must be at least 1");
        anyhow::ensure!(a.block >= 1, "--block must be at least 1");
        anyhow::ensure!(
            (1..=16).contains(&a.replication),
            "--replication must be 1 to 16"
        );
        Ok(Settings {
            clients,
            files,
            size: a.size,
            block: a.block,
            file_size,
            file_size_max,
            reads: a.reads.unwrap_or(files),
            replication: a.replication,
            mix,
            duration_secs: a.duration,
            layout: workloads::Layout::new(files, a.spread),
        })
    }
}

/// `6144`, `6KiB`, `4KiB-64KiB`.
fn parse_size_range(spec: &str) -> anyhow::Result<(u64, Option<u64>)> {
    let parse = |s: &str| -> anyhow::Result<u64> {
        Ok(s.trim()
            .parse::<bytesize::ByteSize>()
            .map_err(|e| anyhow::anyhow!("bad size {s:?}: {e}"))?
            .as_u64())
    };
    match spec.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            anyhow::ensure!(
                lo <= hi,
                "--file-size {spec}: the first size must be the smaller"
            );
            Ok((lo, Some(hi)))
        }
        None => Ok((parse(spec)?, None)),
    }
}

/// `read=60,write=20,stat=15,list=5` (missing kinds get 0).
fn parse_mix(spec: &str) -> anyhow::Result<[u32; 4]> {
    let mut mix = [0; 4];
    for part in spec.split(',') {
        let (kind, share) = part
            .split_once('=')
            .with_context(|| format!("--mix: {part:?} is not KIND=SHARE"))?;
        let k = match kind.trim() {
            "read" => 0,
            "write" => 1,
            "stat" => 2,
            "list" => 3,
            other => anyhow::bail!("--mix: unknown kind {other:?} (read, write, stat, list)"),
        };
        mix[k] = share
            .trim()
            .parse()
            .with_context(|| format!("--mix: {share:?} is not a number"))?;
    }
    anyhow::ensure!(mix.iter().sum::<u32>() > 0, "--mix: every share is 0");
    Ok(mix)
}

/// Runs `kfs bench`; prints the report (JSON with `--json`).
pub async fn run(master: &str, args: BenchArgs) -> anyhow::Result<Report> {
    let settings = Settings::from_args(args.workload, &args)?;
    let dir_name = format!("kfs-bench-{}-{}", args.workload.name(), std::process::id());
    let mut local: Option<LocalBench> = None;
    let mut local_dir = None;
    let (target, target_kind) = if let Some(root) = &args.posix {
        anyhow::ensure!(root.is_dir(), "--posix {}: not a directory", root.display());
        (
            Target::Posix {
                root: root.join(&dir_name),
            },
            "posix".to_string(),
        )
    } else {
        let addr = if args.local {
            let dir = tempfile::Builder::new()
                .prefix("kfs-bench-local-")
                .tempdir_in(args.local_data.clone().unwrap_or_else(std::env::temp_dir))
                .context("cannot make the local cluster's directory")?;
            let cluster =
                LocalBench::start(dir.path(), args.local_chunkservers, args.insecure).await?;
            let addr = cluster.master_addr().to_string();
            local = Some(cluster);
            local_dir = Some(dir);
            addr
        } else {
            master.to_string()
        };
        let mut options = kfs_client::ClientOptions::default();
        if let Some(cluster) = &local {
            options = options.with_security(cluster.security().clone());
        }
        let client = kfs_client::Client::connect_with(addr.as_str(), options)
            .await
            .with_context(|| format!("cannot reach the master at {addr}"))?;
        let kind = if let Some(cluster) = &local {
            cluster.describe()
        } else {
            "kfs".to_string()
        };
        (
            Target::Kfs {
                client,
                root: format!("/{dir_name}"),
            },
            kind,
        )
    };

    // Files written at replication R need R live chunkservers: check, rather than let the
    // master place fewer replicas and report figures for a replication that did not happen.
    if let Target::Kfs { client, .. } = &target
        && args.workload != Workload::Meta
    {
        let alive = client
            .chunkservers()
            .await
            .context("listing the chunkservers")?
            .iter()
            .filter(|s| s.state == kfs_common::proto::master::ServerState::Alive)
            .count();
        anyhow::ensure!(
            alive >= settings.replication as usize,
            "replication {} needs {} live chunkservers; the master lists {alive}",
            settings.replication,
            settings.replication
        );
    }
    let described = target.describe();
    // The benchmark's own directory: created here, removed at the end.
    match &target {
        Target::Kfs { client, root } => {
            client
                .mkdir(root)
                .await
                .with_context(|| format!("mkdir {root}"))?;
        }
        Target::Posix { root } => {
            std::fs::create_dir(root).with_context(|| format!("mkdir {}", root.display()))?;
        }
    }

    // The master-memory probe: the master's resident memory before and with every file.
    let master_pid = local.as_ref().and_then(LocalBench::master_pid);
    let rss_before = master_pid.and_then(report::rss_bytes_of);
    let mut rss_per_file = None;
    let files = settings.files;
    let mut probe = || {
        if let (Some(before), Some(after)) = (rss_before, master_pid.and_then(report::rss_bytes_of))
        {
            rss_per_file = Some(after.saturating_sub(before) as f64 / files as f64);
        }
    };
    let started = chrono::Utc::now();
    // Ctrl-C ends the run early but still removes its files and stops the --local cluster.
    let outcome = tokio::select! {
        outcome = workloads::run(args.workload, &target, &settings, &mut probe) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let cleanup = if args.keep {
        Ok(())
    } else {
        target.remove_tree("").await
    };
    if let Some(cluster) = local {
        cluster.shutdown().await;
    }
    drop(local_dir);
    let results = outcome?;
    cleanup.context("removing the benchmark's directory")?;

    Ok(Report::new(
        args.workload,
        args.label.clone().unwrap_or(target_kind),
        described,
        settings,
        results,
        rss_per_file,
        started,
        args.note.clone(),
    ))
}

/// The cluster of `--local`: the master as a child process when `kfs-master` is installed beside
/// this binary (so its memory is measured alone), else in this process; chunkservers here.
enum LocalBench {
    Child {
        master: tokio::process::Child,
        addr: std::net::SocketAddr,
        chunkservers: Vec<kfs_chunkserver::ChunkserverHandle>,
        security: kfs_common::security::Security,
    },
    InProcess(LocalCluster),
}

impl LocalBench {
    async fn start(
        dir: &std::path::Path,
        chunkservers: usize,
        insecure: bool,
    ) -> anyhow::Result<LocalBench> {
        anyhow::ensure!(chunkservers >= 1, "--local-chunkservers must be at least 1");
        let master_bin = std::env::current_exe()
            .context("the path of this program")?
            .with_file_name("kfs-master");
        if !master_bin.exists() {
            eprintln!(
                "kfs: bench: {} is not there: the master runs in this process and its memory is \
                 not measured",
                master_bin.display()
            );
            let args = crate::cli::LocalArgs {
                data: dir.to_path_buf(),
                chunkservers,
                listen: "127.0.0.1:0".parse().expect("an address"),
                http: None,
                no_shell: true,
                keep_going: false,
                insecure,
                no_install: true,
            };
            return Ok(LocalBench::InProcess(LocalCluster::start(&args).await?));
        }
        let security = crate::secrets::local(dir, insecure, false)?;
        let mut master = tokio::process::Command::new(&master_bin);
        match &security.secrets {
            Some(secrets) => master.arg("--secrets").arg(secrets),
            None => master.arg("--insecure"),
        };
        let mut master = master
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--meta-dir")
            .arg(dir.join("master"))
            .arg("--default-replication")
            .arg(chunkservers.min(3).to_string())
            .args([
                "--heartbeat-interval-ms",
                "1000",
                "--chunkserver-timeout-ms",
                "10000",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", master_bin.display()))?;
        let stdout = master.stdout.take().expect("piped");
        let mut line = String::new();
        use tokio::io::AsyncBufReadExt as _;
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .context("kfs-master did not start within 30 s")??;
        let addr: std::net::SocketAddr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("kfs-master printed {line:?}"))?;
        let chunkservers = LocalCluster::start_chunkservers(
            addr,
            chunkservers,
            dir,
            security.secrets.as_deref(),
            &security.client,
        )
        .await?;
        Ok(LocalBench::Child {
            master,
            addr,
            chunkservers,
            security: security.client,
        })
    }

    /// What the bench's client connects with.
    fn security(&self) -> &kfs_common::security::Security {
        match self {
            LocalBench::Child { security, .. } => security,
            LocalBench::InProcess(c) => &c.security.client,
        }
    }

    fn master_addr(&self) -> std::net::SocketAddr {
        match self {
            LocalBench::Child { addr, .. } => *addr,
            LocalBench::InProcess(c) => c.master.local_addr(),
        }
    }

    fn master_pid(&self) -> Option<u32> {
        match self {
            LocalBench::Child { master, .. } => master.id(),
            LocalBench::InProcess(_) => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            LocalBench::Child { chunkservers, .. } => format!(
                "kfs --local (master process, {} chunkservers in the bench process)",
                chunkservers.len()
            ),
            LocalBench::InProcess(c) => format!(
                "kfs --local (master and {} chunkservers in the bench process)",
                c.chunkservers.len()
            ),
        }
    }

    async fn shutdown(self) {
        match self {
            LocalBench::Child {
                mut master,
                chunkservers,
                ..
            } => {
                for cs in chunkservers {
                    cs.shutdown().await;
                }
                let _ = master.kill().await;
            }
            LocalBench::InProcess(c) => c.shutdown().await,
        }
    }
}
