//! The interactive shell, and the same commands read from a script.
//!
//! Interactive: line editing and history (rustyline; history in `~/.kfs_history`), tab
//! completion (`complete.rs`), a prompt showing the working directory. Script
//! (standard input not a terminal): one command per line, `#` comments, stop at the first failure
//! unless told to keep going.

use crate::cli::Line;
use crate::commands::{self, Flow};
use crate::complete::KfsHelper;
use crate::session::Session;
use clap::Parser;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor};
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;

/// The terminal's settings when the shell started, to put back if the process must leave
/// while the line editor holds it in raw mode (`kfs local` on SIGTERM). Nothing when standard
/// input is not a terminal.
pub struct SavedTerminal(Option<rustix::termios::Termios>);

impl SavedTerminal {
    pub fn save() -> SavedTerminal {
        SavedTerminal(rustix::termios::tcgetattr(std::io::stdin()).ok())
    }

    pub fn restore(&self) {
        if let Some(settings) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                settings,
            );
        }
    }
}

/// Parses and runs one line; `None` for a blank line or a comment.
fn run_line(rt: &Handle, session: &mut Session, line: &str) -> Option<Result<Flow, ()>> {
    run_line_with(rt, session, line, false)
}

/// [`run_line`]; with `cancellable`, Ctrl-C (SIGINT) while the command runs cancels it (its
/// future is dropped: what it started cleans up after itself, e.g. a put's temporary file) and
/// the shell goes on, instead of the signal ending the process (and with `kfs local`, the
/// servers in it).
fn run_line_with(
    rt: &Handle,
    session: &mut Session,
    line: &str,
    cancellable: bool,
) -> Option<Result<Flow, ()>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let words = match shell_words::split(line) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("kfs: cannot read that line: {e}");
            return Some(Err(()));
        }
    };
    match Line::try_parse_from(words) {
        Ok(parsed) if cancellable => Some(rt.block_on(async {
            let finished = tokio::select! {
                done = commands::run(session, parsed.cmd) => Some(done.map_err(drop)),
                _ = tokio::signal::ctrl_c() => None,
            };
            match finished {
                Some(done) => done,
                None => {
                    // The command's future is dropped by now; what it started is undone
                    // before the prompt comes back.
                    kfs_client::copy::wait_for_cleanups(std::time::Duration::from_secs(10)).await;
                    eprintln!("\nkfs: cancelled");
                    Err(())
                }
            }
        })),
        Ok(parsed) => Some(
            rt.block_on(commands::run(session, parsed.cmd))
                .map_err(drop),
        ),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            let _ = e.print();
            Some(Ok(Flow::Continue))
        }
        Err(e) => {
            match crate::cli::mistake(&e, "help") {
                Some(line) => eprintln!("{line}"),
                None => {
                    let _ = e.print();
                }
            }
            Some(Err(()))
        }
    }
}

/// Runs the commands read from `input`; the exit status is 0 if they all succeeded.
pub fn script(rt: &Handle, session: &mut Session, input: impl BufRead, keep_going: bool) -> i32 {
    let mut status = 0;
    for line in input.lines() {
        let Ok(line) = line else { break };
        match run_line(rt, session, &line) {
            None | Some(Ok(Flow::Continue)) => {}
            Some(Ok(Flow::Exit)) => break,
            Some(Err(())) => {
                status = 1;
                if !keep_going {
                    break;
                }
            }
        }
    }
    status
}

/// The interactive shell; returns when the user leaves it.
pub fn interactive(rt: &Handle, session: &mut Session) -> i32 {
    let helper = KfsHelper {
        rt: rt.clone(),
        client: session.client.clone(),
        cwd: Arc::new(Mutex::new(session.cwd.clone())),
    };
    let cwd = helper.cwd.clone();
    // Tab completes what the candidates share; a second Tab lists them.
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<KfsHelper, DefaultHistory> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kfs: no line editor here ({e}); reading commands as a script");
            return script(rt, session, std::io::stdin().lock(), true);
        }
    };
    editor.set_helper(Some(helper));
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".kfs_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "KFS shell on {} (chunk size {} bytes). `help` lists commands, Ctrl-D leaves.",
        session.client.master_addr(),
        session.client.chunk_size()
    );
    let mut status = 0;
    loop {
        *cwd.lock().expect("cwd lock") = session.cwd.clone();
        let prompt = format!("kfs:{}> ", session.cwd);
        match editor.readline(&prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                    // Saved now, so a shell that is killed keeps what was typed.
                    if let Some(h) = &history {
                        let _ = editor.save_history(h);
                    }
                }
                match run_line_with(rt, session, &line, true) {
                    Some(Ok(Flow::Exit)) => break,
                    Some(Err(())) => status = 1,
                    _ => status = 0,
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("kfs: cannot read the line: {e}");
                break;
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    status
}
