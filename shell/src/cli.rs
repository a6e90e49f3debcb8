//! The command line: the `kfs` binary's arguments, and the commands both the one-shot and the
//! interactive shell understand.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

mod line;
pub use line::*;

/// The KFS shell: run one command, or with none an interactive shell.
#[derive(Parser, Debug)]
#[command(name = "kfs", version, about, long_about = None, disable_help_subcommand = true)]
pub struct Cli {
    /// Address of the master.
    #[arg(
        long,
        env = "KFS_MASTER",
        default_value = "127.0.0.1:20000",
        global = true
    )]
    pub master: String,
    #[command(subcommand)]
    pub command: Option<Top>,
}

#[derive(Subcommand, Debug)]
pub enum Top {
    /// The interactive shell (also what `kfs` alone starts); with standard input not a terminal,
    /// run the commands read from it, one per line.
    Shell {
        /// Keep going after a command fails (scripts stop at the first failure).
        #[arg(short = 'k', long)]
        keep_going: bool,
    },
    /// Run a master and chunkservers in this process, then the shell on them.
    Local(LocalArgs),
    /// Benchmark KFS (or any mounted file system with --posix): meta, seq, small, mixed.
    Bench(BenchArgs),
    /// Serve KFS over HTTP: GET/HEAD files (ranges, conditional requests) and directory
    /// listings; PUT and DELETE with a write token.
    Gateway(kfs_gateway::GatewayOptions),
    /// Mount KFS at MOUNTPOINT as a file system (FUSE): detaches once mounted (--foreground to
    /// stay); unmount with `umount MOUNTPOINT` (or SIGTERM to the daemon).
    Mount(kfs_fuse::MountOptions),
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell), e.g.
    /// `kfs completions bash > /etc/bash_completion.d/kfs`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the kfs(1) manual page (roff), e.g. `kfs man | man -l -`.
    Man,
    /// Make a cluster's secrets in DIR (its CA, the admin's credentials); with --node, issue a
    /// certificate for a new host from the cluster in DIR instead.
    InitCluster(InitClusterArgs),
    /// Turn `kfs bench --json` reports into Markdown tables (medians per phase and target).
    BenchReport {
        /// JSON reports written by `kfs bench --json`.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
    },
    #[command(flatten)]
    Fs(Cmd),
}

/// `kfs init-cluster`.
#[derive(Args, Debug, Clone)]
pub struct InitClusterArgs {
    /// The secrets directory (made 0700; its files 0600). Servers take it with --secrets DIR
    /// or KFS_SECRETS; clients the admin's credentials, DIR/admin.credentials, with
    /// KFS_CREDENTIALS or at ~/.config/kfs/credentials.
    pub dir: PathBuf,
    /// The cluster's name, in its CA's certificate.
    #[arg(long, default_value = "kfs")]
    pub name: String,
    /// Issue a certificate for host NAME from the cluster in DIR: writes DIR/nodes/NAME/ (the
    /// CA certificate and ROLE.credentials, no CA key), to copy to that host as its secrets
    /// directory.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// What the host of --node is: master, chunkserver or gateway.
    #[arg(long, default_value = "chunkserver", requires = "node")]
    pub role: kfs_common::security::Role,
    /// Days the host's certificate is valid.
    #[arg(long, default_value_t = 825, requires = "node")]
    pub days: i64,
}

#[derive(Args, Debug, Clone)]
pub struct LocalArgs {
    /// Where the cluster keeps its data (the master's log and each chunkserver's chunks).
    #[arg(long, default_value = "./kfs-data")]
    pub data: PathBuf,
    /// Number of chunkservers.
    #[arg(long, default_value_t = 3)]
    pub chunkservers: usize,
    /// Address of the master.
    #[arg(long, default_value = "127.0.0.1:20000")]
    pub listen: std::net::SocketAddr,
    /// Address of the master's status page and /metrics (default: the --listen address, port
    /// 80 higher: 20080 for 20000; a free port when --listen asks for port 0).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// Serve until Ctrl-C without a shell (use `kfs` from other terminals).
    #[arg(long)]
    pub no_shell: bool,
    /// Keep going after a command read from standard input fails.
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// Plain TCP, no authentication (anyone on this machine owns the cluster): for measuring
    /// what TLS costs. By default the cluster is secured with DATA/secrets.
    #[arg(long)]
    pub insecure: bool,
    /// Leave ~/.config/kfs/credentials alone (other terminals then need KFS_CREDENTIALS).
    #[arg(long)]
    pub no_install: bool,
}

/// The workloads of `kfs bench`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Metadata: mkdir, create, stat, readdir, rename, remove over many empty files.
    Meta,
    /// Sequential throughput: large files written (and synced) in parallel, then read.
    Seq,
    /// Small files, as a photo site: many small files written (each synced), then random reads.
    Small,
    /// Reads, writes, stats and listings together for a given time.
    Mixed,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Meta => "meta",
            Workload::Seq => "seq",
            Workload::Small => "small",
            Workload::Mixed => "mixed",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to run.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Run against this directory of a mounted file system instead of KFS (same workload, same
    /// report, an fsync where KFS syncs).
    #[arg(long, value_name = "DIR", conflicts_with = "local")]
    pub posix: Option<PathBuf>,
    /// Start a KFS cluster in this process (a master and --local-chunkservers) for the run.
    #[arg(long)]
    pub local: bool,
    /// Chunkservers of the --local cluster.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub local_chunkservers: usize,
    /// Where the --local cluster keeps its data (a temp dir under it; default the system's).
    #[arg(long, value_name = "DIR")]
    pub local_data: Option<PathBuf>,
    /// Run the --local cluster on plain TCP, no TLS (to measure what security costs).
    #[arg(long, requires = "local")]
    pub insecure: bool,
    /// Concurrent clients (default: 64; seq: one per file).
    #[arg(long, value_name = "N")]
    pub clients: Option<usize>,
    /// Files (default: meta and small 100000, seq 4, mixed 1000).
    #[arg(long, value_name = "N")]
    pub files: Option<u64>,
    /// meta, small, mixed: spread the files in flight over directories (file i in directory
    /// i mod D, as mdtest -u) instead of filling one directory at a time, where a kernel
    /// mount makes changes to that one directory wait for each other.
    #[arg(long)]
    pub spread: bool,
    /// seq: bytes written in all, over the files (e.g. 1GiB, 64MiB, 1000000).
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes, value_name = "SIZE")]
    pub size: u64,
    /// seq: bytes per write and read call.
    #[arg(long, default_value = "1MiB", value_parser = parse_block, value_name = "SIZE")]
    pub block: usize,
    /// small and mixed: bytes per file, or a range spread evenly (4KiB-64KiB). Default 6KiB
    /// (mixed: 64KiB).
    #[arg(long, value_name = "SIZE[-SIZE]")]
    pub file_size: Option<String>,
    /// small: random reads after the writes (default: as many as files).
    #[arg(long, value_name = "N")]
    pub reads: Option<u64>,
    /// Replication factor of the files written (KFS).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub replication: u8,
    /// mixed: shares of each kind of operation.
    #[arg(long, value_name = "read=60,write=20,stat=15,list=5")]
    pub mix: Option<String>,
    /// mixed: seconds to run.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub duration: f64,
    /// Print the report as JSON (for `kfs bench-report` and machines).
    #[arg(long)]
    pub json: bool,
    /// Keep the benchmark's files afterwards.
    #[arg(long)]
    pub keep: bool,
    /// A note recorded in the report.
    #[arg(long)]
    pub note: Option<String>,
    /// What to call the target in the report (e.g. "MooseFS 3.0.117 (FUSE)"); default `kfs`,
    /// `kfs --local (...)` or `posix`.
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
}

/// A size such as `1048576`, `64MiB` or `1GiB`.
fn parse_bytes(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size ({e})"))
}

fn parse_block(s: &str) -> Result<usize, String> {
    let n = parse_bytes(s)?;
    if n == 0 || n > 64 << 20 {
        return Err(format!("{s:?}: a block is 1 byte to 64 MiB"));
    }
    Ok(n as usize)
}

/// A short, coreutils-style line for a command-line mistake clap found, where its own message
/// would show a raw usage (`Usage: <COMMAND>`): an unknown command or option. `help` is how to
/// ask for help where the mistake was made (`help` in the shell, `kfs --help` outside); for an
/// unknown option it is followed by the command's name. `None`: clap's own message says it well.
pub fn mistake(e: &clap::Error, help: &str) -> Option<String> {
    use clap::error::{ContextKind, ErrorKind};
    // The command the usage line names (`Usage: kfs ls [OPTIONS] ...`, `Usage: ls ...`).
    let command = match e.get(ContextKind::Usage) {
        Some(clap::error::ContextValue::StyledStr(usage)) => {
            let text = usage.to_string();
            text.split_whitespace()
                .skip_while(|w| *w != "Usage:")
                .skip(1)
                .find(|w| *w != "kfs")
                .filter(|w| !w.starts_with(['[', '<']))
                .map(str::to_string)
        }
        _ => None,
    };
    let command = command.as_deref();
    let value = |kind| match e.get(kind) {
        Some(clap::error::ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    match e.kind() {
        ErrorKind::InvalidSubcommand => {
            let name = value(ContextKind::InvalidSubcommand)?;
            Some(format!("kfs: unknown command '{name}' (try '{help}')"))
        }
        ErrorKind::UnknownArgument => {
            let arg = value(ContextKind::InvalidArg)?;
            Some(match command {
                Some(cmd) if help == "help" => {
                    format!("kfs: {cmd}: unknown option '{arg}' (try 'help {cmd}')")
                }
                Some(cmd) => format!("kfs: {cmd}: unknown option '{arg}' (try 'kfs {cmd} --help')"),
                None => format!("kfs: unknown option '{arg}' (try '{help}')"),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_lines_are_well_formed() {
        Cli::command().debug_assert();
        Line::command().debug_assert();
        let names: Vec<String> = Line::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        for name in &names {
            assert!(
                COMMANDS.contains(&name.as_str()),
                "{name} is missing from COMMANDS"
            );
        }
    }
}
