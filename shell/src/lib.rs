//! The `kfs` shell: one-shot commands (`kfs ls /photos`), an interactive shell (`kfs`), scripts
//! (commands on standard input), and `kfs local`, a whole cluster in one process.
//!
//! - [`cli`]: arguments and the commands, parsed the same way everywhere.
//! - [`commands`]: what each command does, and its messages (coreutils style).
//! - [`session`]: the working directory, relative paths and glob patterns.
//! - [`repl`]: the interactive shell (history) and scripts; [`complete`]: its tab completion.
//! - [`local`]: `kfs local`; [`secrets`]: `kfs init-cluster` and `kfs local`'s secrets.
//! - [`bench`]: `kfs bench` and `kfs bench-report`.
//! - [`format`], [`progress`]: how things are printed; [`json`]: what `--json` prints.
//!
//! `kfs gateway` is the kfs-gateway crate's: its flags are [`kfs_gateway::GatewayOptions`],
//! and [`main_with`] hands them to [`kfs_gateway::run`].

pub mod bench;
pub mod cli;
pub mod commands;
pub mod complete;
pub mod format;
pub mod json;
pub mod local;
pub mod progress;
pub mod repl;
pub mod secrets;
pub mod session;

use cli::{Cli, Top};
use commands::Flow;
use session::Session;
use std::io::IsTerminal;

/// Runs the `kfs` binary; returns its exit status.
pub fn main_with(cli: Cli) -> i32 {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kfs: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let handle = rt.handle().clone();
    match cli.command {
        Some(Top::Local(args)) => {
            let cluster = match rt.block_on(local::LocalCluster::start(&args)) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("kfs: {e:#}");
                    return 1;
                }
            };
            println!("{}", cluster.describe(&args));
            let master = cluster.master.local_addr();
            let client_security = cluster.security.client.clone();
            let cluster: local::SharedCluster =
                std::sync::Arc::new(tokio::sync::Mutex::new(Some(cluster)));
            let status = if args.no_shell {
                println!(
                    "Serving until Ctrl-C or SIGTERM; from other terminals: kfs --master {master} ..."
                );
                let signal = rt.block_on(async {
                    let mut signals = kfs_common::service::Signals::install()?;
                    Ok::<_, anyhow::Error>(signals.wait().await)
                });
                match signal {
                    Ok(signal) => {
                        eprintln!("kfs local: {signal}: stopping the servers");
                        0
                    }
                    Err(e) => {
                        eprintln!("kfs local: {e:#}");
                        1
                    }
                }
            } else {
                local::stop_on_sigterm(&rt, cluster.clone());
                let options = kfs_client::ClientOptions::default().with_security(client_security);
                match rt.block_on(kfs_client::Client::connect_with(master, options)) {
                    Ok(client) => shell(&handle, client, args.keep_going),
                    Err(e) => {
                        eprintln!("kfs: {e}");
                        1
                    }
                }
            };
            rt.block_on(local::stop(&cluster));
            status
        }
        Some(Top::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "kfs", &mut std::io::stdout());
            0
        }
        Some(Top::InitCluster(args)) => secrets::init_cluster(&args),
        Some(Top::Man) => {
            use clap::CommandFactory;
            let mut out = std::io::stdout().lock();
            match clap_mangen::Man::new(Cli::command()).render(&mut out) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("kfs: man: {e}");
                    1
                }
            }
        }
        Some(Top::Bench(args)) => {
            let json = args.json;
            match rt.block_on(bench::run(&cli.master, args)) {
                Ok(report) if json => match serde_json::to_string_pretty(&report) {
                    Ok(text) => print_out(&format!("{text}\n")),
                    Err(e) => {
                        eprintln!("kfs: bench: {e}");
                        1
                    }
                },
                Ok(report) => print_out(&report.to_table()),
                Err(e) => {
                    eprintln!("kfs: bench: {e:#}");
                    1
                }
            }
        }
        Some(Top::Gateway(options)) => match rt.block_on(kfs_gateway::run(&cli.master, options)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("kfs: gateway: {e:#}");
                if e.downcast_ref::<kfs_gateway::ConfigError>().is_some() {
                    kfs_common::service::EX_CONFIG.into()
                } else {
                    1
                }
            }
        },
        Some(Top::Mount(options)) => match rt.block_on(kfs_fuse::run(&cli.master, options)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("kfs: mount: {e:#}");
                if e.downcast_ref::<kfs_fuse::OptionError>().is_some() {
                    kfs_common::service::EX_CONFIG.into()
                } else {
                    1
                }
            }
        },
        Some(Top::BenchReport { reports }) => {
            let mut parsed = Vec::new();
            for path in &reports {
                match std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
                {
                    Ok(report) => parsed.push(report),
                    Err(e) => {
                        eprintln!("kfs: bench-report: {}: {e}", path.display());
                        return 1;
                    }
                }
            }
            print_out(&bench::report::markdown(&parsed))
        }
        Some(Top::Shell { keep_going }) => match connect(&rt, &cli.master) {
            Some(client) => shell(&handle, client, keep_going),
            None => 1,
        },
        None => match connect(&rt, &cli.master) {
            Some(client) => shell(&handle, client, false),
            None => 1,
        },
        Some(Top::Fs(cmd)) => {
            let Some(client) = connect(&rt, &cli.master) else {
                return 1;
            };
            let mut session = Session::new(client, false);
            if matches!(cmd, cli::Cmd::Cd { .. }) {
                eprintln!("kfs: cd only works in the interactive shell; paths here start at /");
                return 1;
            }
            match rt.block_on(commands::run(&mut session, cmd)) {
                Ok(Flow::Continue | Flow::Exit) => 0,
                Err(_) => 1,
            }
        }
    }
}

/// Writes `text` to standard output; a closed pipe (`| head`) is not an error.
fn print_out(text: &str) -> i32 {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("kfs: cannot write to standard output: {e}");
            1
        }
    }
}

fn connect(rt: &tokio::runtime::Runtime, master: &str) -> Option<kfs_client::Client> {
    match rt.block_on(kfs_client::Client::connect(master)) {
        Ok(client) => Some(client),
        Err(e) => {
            eprintln!("kfs: cannot reach the master at {master}: {e}");
            eprintln!(
                "kfs: start one (`kfs local`, or kfs-master) or point at it with --master / KFS_MASTER"
            );
            None
        }
    }
}

/// The interactive shell when a person is at the terminal, else a script from standard input.
fn shell(rt: &tokio::runtime::Handle, client: kfs_client::Client, keep_going: bool) -> i32 {
    let interactive = std::io::stdin().is_terminal();
    let mut session = Session::new(client, interactive);
    if interactive {
        repl::interactive(rt, &mut session)
    } else {
        repl::script(rt, &mut session, std::io::stdin().lock(), keep_going)
    }
}
