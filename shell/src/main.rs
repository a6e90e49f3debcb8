//! `kfs`: parses the command line, sets up logging, runs the shell.

use clap::Parser as _;
use std::io::IsTerminal;

/// mimalloc: the gateway allocates per request (headers, bodies, futures); under glibc's malloc
/// that was a sixth of its CPU time (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = match kfs_shell::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match kfs_shell::cli::mistake(&e, "kfs --help") {
            Some(line) => {
                eprintln!("{line}");
                std::process::exit(2);
            }
            None => e.exit(),
        },
    };
    std::process::exit(kfs_shell::main_with(cli));
}
