//! What each shell command does.
//!
//! A command prints its output on standard output and each failure on standard error as
//! `kfs: cannot VERB 'PATH': REASON`; it goes on with its other arguments, and reports whether
//! anything failed, which becomes the exit status.
//!
//! This module dispatches a parsed command ([`run`]) and holds what every command shares (how
//! failures and output are printed, paths expanded); the commands live by what they touch:
//!
//! - `fs`: the namespace (`mkdir`, `rm`, `rmdir`, `touch`, `stat`, `test`, `count`, `du`,
//!   `setrep`, `xattr`).
//! - `list`: walking listings (`ls`, `find`, `tree`).
//! - `attrs`: permissions and owners (`chmod`, `chown`, `chgrp`).
//! - `copy`: moving and copying bytes (`mv` and `cp` within KFS, `put`, `get`).
//! - `bytes`: a file's bytes in place (`checksum`, `truncate`, `appendToFile`).
//! - `view`: printing a file (`cat`, `head`, `tail`).
//! - `admin`: the cluster (`df`, `chunks`, `servers`, `admin`, `fsck`).
//! - `users`: who may do what (`admin user add|remove|list`, `whoami`).
//!
//! `--json` (on `ls`, `stat`, `du`, `df`, `servers`, `fsck`, `chunks`) prints what
//! `crate::json` describes instead of text; failures still go to standard error.

mod admin;
mod attrs;
mod bytes;
mod copy;
mod fs;
mod list;
mod users;
mod view;

pub(crate) use admin::state_name;

use crate::cli::{Cmd, Line};
use crate::format::{self, failure};
use crate::session::Session;
use clap::CommandFactory;
use kfs_common::{FileKind, KfsError, KfsResult};
use std::io::Write;

/// What the shell does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Exit,
}

/// A command failed; its failures were printed.
#[derive(Debug)]
pub struct Failed;

pub type Outcome = Result<Flow, Failed>;

/// Prints a failure.
fn report(message: impl std::fmt::Display) {
    eprintln!("kfs: {message}");
}

/// Writes to standard output; a closed pipe (`kfs cat f | head`) ends the program quietly.
pub(crate) fn out(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes).and_then(|()| stdout.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

fn outln(line: impl AsRef<str>) {
    out(format!("{}\n", line.as_ref()).as_bytes());
}

/// [`outln`] for the rest of the shell (`json`).
pub(crate) fn print_line(line: &str) {
    outln(line);
}

/// Runs `f` on every path an argument names, printing each failure; `Err` if any failed.
async fn each_path<F, Fut>(s: &Session, args: &[String], verb: &str, mut f: F) -> Result<(), Failed>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = KfsResult<()>>,
{
    let mut failed = false;
    for arg in args {
        match s.expand(arg).await {
            Ok(paths) => {
                for p in paths {
                    if let Err(e) = f(p.clone()).await {
                        report(failure(verb, &p, &e));
                        failed = true;
                    }
                }
            }
            Err(e) => {
                report(failure(verb, arg, &e));
                failed = true;
            }
        }
    }
    if failed { Err(Failed) } else { Ok(()) }
}

fn done(r: Result<(), Failed>) -> Outcome {
    r.map(|()| Flow::Continue)
}

/// Sources then the target, as the copy commands take them.
fn joined(mut sources: Vec<String>, target: String) -> Vec<String> {
    sources.push(target);
    sources
}

/// One path from an argument (patterns must match exactly one).
async fn one_path(s: &Session, arg: &str) -> KfsResult<String> {
    let mut paths = s.expand(arg).await?;
    if paths.len() != 1 {
        return Err(KfsError::invalid_argument(format!(
            "'{arg}' matches {} paths, not one",
            paths.len()
        )));
    }
    Ok(paths.remove(0))
}

/// Runs one command.
pub async fn run(s: &mut Session, cmd: Cmd) -> Outcome {
    match cmd {
        Cmd::Ls { flags, paths, .. } => done(list::ls(s, paths, flags).await),
        Cmd::Mkdir { parents, paths } => done(fs::mkdir(s, &paths, parents).await),
        Cmd::Rm {
            recursive,
            force,
            paths,
        } => done(fs::rm(s, &paths, recursive, force).await),
        Cmd::Rmdir { paths } => done(fs::rmdir(s, &paths).await),
        Cmd::Mv {
            force,
            sources,
            target,
        } => done(copy::move_or_copy(s, joined(sources, target), false, false, force).await),
        Cmd::Cp {
            recursive,
            force,
            sources,
            target,
        } => done(copy::move_or_copy(s, joined(sources, target), true, recursive, force).await),
        Cmd::Put {
            replication,
            force,
            sources,
            target,
        } => done(copy::put(s, joined(sources, target), replication, force).await),
        Cmd::Get {
            force,
            sources,
            target,
        } => done(copy::get(s, joined(sources, target), force).await),
        Cmd::AppendToFile { sources, target } => {
            done(bytes::append_to_file(s, &sources, &target).await)
        }
        Cmd::Cat { paths } => done(view::cat_each(s, &paths).await),
        Cmd::Head { lines, path } => done(view::head_tail(s, &path, lines, true, false).await),
        Cmd::Tail {
            lines,
            follow,
            path,
        } => done(view::head_tail(s, &path, lines, false, follow).await),
        Cmd::Touch { paths } => done(fs::touch(s, &paths).await),
        Cmd::Ln {
            symbolic,
            target,
            link,
        } => done(fs::ln(s, symbolic, &target, &link).await),
        Cmd::Readlink { paths } => done(fs::readlink(s, &paths).await),
        Cmd::Truncate { length, paths, .. } => done(bytes::truncate(s, length, &paths).await),
        Cmd::Stat {
            format,
            json,
            paths,
        } => done(fs::stat(s, &paths, format.as_deref(), json).await),
        Cmd::Test {
            dir,
            file,
            empty,
            path,
            ..
        } => done(fs::test(s, &path, dir, file, empty).await),
        Cmd::Count { paths } => done(fs::count(s, &paths).await),
        Cmd::Find { expression } => done(list::find(s, &expression).await),
        Cmd::Tree {
            levels,
            dirs_only,
            path,
        } => done(list::tree(s, path, levels, dirs_only).await),
        Cmd::Checksum { paths } => done(bytes::checksum(s, &paths).await),
        Cmd::Du {
            summarize,
            human,
            json,
            paths,
            ..
        } => done(fs::du(s, paths, summarize, human, json).await),
        Cmd::Df { human, json, .. } => done(admin::df(s, human, json).await),
        Cmd::Setrep {
            recursive,
            wait,
            replication,
            paths,
        } => done(fs::setrep_each(s, &paths, replication, recursive, wait).await),
        Cmd::Chmod {
            recursive,
            mode,
            paths,
        } => done(attrs::chmod(s, mode, &paths, recursive).await),
        Cmd::Chown {
            recursive,
            owner,
            paths,
        } => done(attrs::chown(s, &owner, &paths, recursive).await),
        Cmd::Chgrp {
            recursive,
            group,
            paths,
        } => done(attrs::chgrp(s, &group, &paths, recursive).await),
        Cmd::Xattr { action } => done(fs::xattr(s, action).await),
        Cmd::Chunks { json, path } => done(admin::chunks(s, &path, json).await),
        Cmd::Servers { json } => done(admin::servers(s, json).await),
        Cmd::Fsck {
            open_files: true,
            json,
            ..
        } => done(admin::open_files(s, json).await),
        Cmd::Fsck {
            path, list, json, ..
        } => done(admin::fsck(s, path, list, json).await),
        Cmd::Admin { action } => done(admin::admin(s, action).await),
        Cmd::Whoami { json } => done(users::whoami(s, json).await),
        Cmd::Cd { path } => {
            let target = path.unwrap_or_else(|| "/".into());
            let result = async {
                let p = one_path(s, &target).await?;
                let a = s.client.stat(&p).await?;
                if a.kind != FileKind::Dir {
                    return Err(KfsError::not_a_directory(p));
                }
                Ok(p)
            };
            match result.await {
                Ok(p) => {
                    s.cwd = p;
                    Ok(Flow::Continue)
                }
                Err(e) => {
                    report(failure("change to", &target, &e));
                    Err(Failed)
                }
            }
        }
        Cmd::Pwd => {
            outln(&s.cwd);
            Ok(Flow::Continue)
        }
        Cmd::Help { command } => {
            help(command.as_deref());
            Ok(Flow::Continue)
        }
        Cmd::Exit => Ok(Flow::Exit),
    }
}

/// `help` and `help COMMAND`.
pub fn help(command: Option<&str>) {
    let mut cli = Line::command();
    match command {
        Some(name) => match cli.find_subcommand_mut(name) {
            Some(sub) => out(sub.render_long_help().to_string().as_bytes()),
            None => report(format!("no command '{name}'; `help` lists them")),
        },
        None => {
            let mut rows = Vec::new();
            for sub in cli.get_subcommands() {
                let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
                rows.push(vec![sub.get_name().to_string(), about]);
            }
            out(format::table(&rows).as_bytes());
            outln(
                "`help COMMAND` explains one; paths may be relative and may hold * ? [..] patterns.",
            );
        }
    }
}
