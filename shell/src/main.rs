//! `kfs`: parses the command line, sets up logging, runs the shell.

use clap::Parser as _;
use std::io::IsTerminal;

/// mimalloc: the gateway allocates per request (headers, bodies, futures); under glibc's malloc
/// that was a sixth of its CPU time (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let parsed = kfs_shell::cli::Cli::try_parse();
    // The servers `kfs local` and `kfs gateway` run log their warnings; a command's own output
    // is never mixed with the library's log lines unless RUST_LOG asks for them.
    let serving = matches!(
        &parsed,
        Ok(kfs_shell::cli::Cli {
            command: Some(
                kfs_shell::cli::Top::Local(_)
                    | kfs_shell::cli::Top::Gateway(_)
                    | kfs_shell::cli::Top::Mount(_)
                    | kfs_shell::cli::Top::Bench(_)
            ),
            ..
        })
    );
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if serving { "warn" } else { "off" })
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = match parsed {
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
