//! What each shell command does.
//!
//! A command prints its output on standard output and each failure on standard error as
//! `kfs: cannot VERB 'PATH': REASON`; it goes on with its other arguments, and reports whether
//! anything failed, which becomes the exit status.

use crate::cli::{AdminCmd, Cmd, Line, XattrCmd};
use crate::format::{self, failure};
use crate::progress::Progress;
use crate::session::Session;
use clap::CommandFactory;
use futures::StreamExt;
use kfs_client::copy;
use kfs_common::proto::master::{MkdirOptions, ServerState, SetAttr};
use kfs_common::{FileKind, KfsError, KfsResult, path};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
fn out(bytes: &[u8]) {
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

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Runs one command.
pub async fn run(s: &mut Session, cmd: Cmd) -> Outcome {
    match cmd {
        Cmd::Ls {
            long,
            recursive,
            human,
            paths,
            ..
        } => done(ls(s, paths, long, recursive, human).await),
        Cmd::Mkdir { parents, paths } => done(
            each_path(s, &paths, "create directory", |p| {
                let client = s.client.clone();
                async move {
                    let options = MkdirOptions {
                        parents,
                        mode: None,
                    };
                    client.mkdir_with(&p, options).await.map(drop)
                }
            })
            .await,
        ),
        Cmd::Rm {
            recursive,
            force,
            paths,
        } => {
            let mut failed = false;
            for arg in &paths {
                let targets = match s.expand(arg).await {
                    Ok(t) => t,
                    Err(KfsError::NotFound { .. }) if force => continue,
                    Err(e) => {
                        report(failure("remove", arg, &e));
                        failed = true;
                        continue;
                    }
                };
                for p in targets {
                    let result = match s.client.stat(&p).await {
                        Ok(a) if a.kind == FileKind::Dir && !recursive => {
                            Err(KfsError::is_a_directory(p.as_str()))
                        }
                        Ok(a) if a.kind == FileKind::Dir => s.client.remove_all(&p).await.map(drop),
                        Ok(_) => s.client.remove(&p).await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => {}
                        Err(KfsError::NotFound { .. }) if force => {}
                        Err(e) => {
                            report(failure("remove", &p, &e));
                            failed = true;
                        }
                    }
                }
            }
            if failed {
                Err(Failed)
            } else {
                Ok(Flow::Continue)
            }
        }
        Cmd::Rmdir { paths } => done(
            each_path(s, &paths, "remove directory", |p| {
                let client = s.client.clone();
                async move { client.remove_dir(&p).await }
            })
            .await,
        ),
        Cmd::Mv { paths } => done(move_or_copy(s, paths, false, false).await),
        Cmd::Cp { recursive, paths } => done(move_or_copy(s, paths, true, recursive).await),
        Cmd::Put { replication, paths } => done(put(s, paths, replication).await),
        Cmd::Get { paths } => done(get(s, paths).await),
        Cmd::Cat { paths } => done(
            each_path(s, &paths, "read", |p| {
                let client = s.client.clone();
                async move { cat(&client, &p).await }
            })
            .await,
        ),
        Cmd::Head { lines, path } => done(head_tail(s, &path, lines, true, false).await),
        Cmd::Tail {
            lines,
            follow,
            path,
        } => done(head_tail(s, &path, lines, false, follow).await),
        Cmd::Touch { paths } => {
            let mut failed = false;
            for arg in &paths {
                let result = async {
                    let p = s.resolve(arg)?;
                    match s.client.stat(&p).await {
                        Ok(_) => {
                            let now = kfs_common::proto::now();
                            let attr = SetAttr {
                                mtime: Some(now),
                                atime: Some(now),
                                ..Default::default()
                            };
                            s.client.set_attr(&p, attr).await.map(drop)
                        }
                        Err(KfsError::NotFound { .. }) => {
                            let options = kfs_common::proto::master::CreateOptions {
                                exclusive: true,
                                ..Default::default()
                            };
                            s.client
                                .create_with(&p, options)
                                .await?
                                .close()
                                .await
                                .map(drop)
                        }
                        Err(e) => Err(e),
                    }
                };
                if let Err(e) = result.await {
                    report(failure("touch", arg, &e));
                    failed = true;
                }
            }
            if failed {
                Err(Failed)
            } else {
                Ok(Flow::Continue)
            }
        }
        Cmd::Stat { paths } => done(
            each_path(s, &paths, "stat", |p| {
                let client = s.client.clone();
                async move {
                    let a = client.stat(&p).await?;
                    let kind = if a.kind == FileKind::Dir {
                        "directory"
                    } else {
                        "file"
                    };
                    outln(format!("  File: {p}"));
                    outln(format!(
                        "  Type: {kind}  Size: {}  Replication: {}",
                        a.size, a.replication
                    ));
                    outln(format!(
                        "  Mode: {:04o} ({})  Owner: {}  Group: {}  Id: {}",
                        a.mode,
                        format::mode(a.kind, a.mode),
                        a.owner,
                        a.group,
                        a.fid
                    ));
                    outln(format!("Modify: {}", format::time_precise(a.mtime)));
                    outln(format!("Access: {}", format::time_precise(a.atime)));
                    Ok(())
                }
            })
            .await,
        ),
        Cmd::Du {
            summarize,
            human,
            paths,
            ..
        } => done(du(s, paths, summarize, human).await),
        Cmd::Df { human, .. } => match s.client.chunkservers().await {
            Ok(servers) => {
                let alive: Vec<_> = servers
                    .iter()
                    .filter(|x| x.state == ServerState::Alive)
                    .collect();
                let capacity: u64 = alive.iter().map(|x| x.space.capacity).sum();
                let used: u64 = alive.iter().map(|x| x.space.used).sum();
                let available: u64 = alive.iter().map(|x| x.space.available).sum();
                let percent = (used * 100).checked_div(capacity).unwrap_or(0);
                out(format::table(&[
                    vec![
                        "Size".into(),
                        "Used".into(),
                        "Available".into(),
                        "Use%".into(),
                        "Chunkservers".into(),
                    ],
                    vec![
                        format::size(capacity, human),
                        format::size(used, human),
                        format::size(available, human),
                        format!("{percent}%"),
                        format!("{} alive of {}", alive.len(), servers.len()),
                    ],
                ])
                .as_bytes());
                Ok(Flow::Continue)
            }
            Err(e) => {
                report(failure("read the space of", "the cluster", &e));
                Err(Failed)
            }
        },
        Cmd::Setrep {
            recursive,
            replication,
            paths,
        } => done(
            each_path(s, &paths, "set the replication of", |p| {
                let client = s.client.clone();
                async move { setrep(&client, &p, replication, recursive).await }
            })
            .await,
        ),
        Cmd::Xattr { action } => done(xattr(s, action).await),
        Cmd::Chunks { path } => done(chunks(s, &path).await),
        Cmd::Servers => done(servers(s).await),
        Cmd::Fsck => done(fsck(s).await),
        Cmd::Admin { action } => done(admin(s, action).await),
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

async fn ls(
    s: &Session,
    args: Vec<String>,
    long: bool,
    recursive: bool,
    human: bool,
) -> Result<(), Failed> {
    let args = if args.is_empty() {
        vec![s.cwd.clone()]
    } else {
        args
    };
    let mut failed = false;
    let mut dirs: Vec<String> = Vec::new();
    let several = args.len() > 1 || recursive;
    for arg in &args {
        let paths = match s.expand(arg).await {
            Ok(p) => p,
            Err(e) => {
                report(failure("access", arg, &e));
                failed = true;
                continue;
            }
        };
        for p in paths {
            match s.client.stat(&p).await {
                Ok(a) if a.kind == FileKind::Dir => dirs.push(p),
                Ok(a) => outln(if long {
                    format::long_entry(&p, &a, human)
                } else {
                    p.clone()
                }),
                Err(e) => {
                    report(failure("access", &p, &e));
                    failed = true;
                }
            }
        }
    }
    let mut first = true;
    while let Some(dir) = if recursive {
        dirs.pop()
    } else if dirs.is_empty() {
        None
    } else {
        Some(dirs.remove(0))
    } {
        if several {
            if !first {
                outln("");
            }
            outln(format!("{dir}:"));
        }
        first = false;
        let mut entries = if long {
            s.client.list_with_attrs(&dir)
        } else {
            s.client.list(&dir)
        };
        let mut subdirs = Vec::new();
        while let Some(entry) = entries.next().await {
            match entry {
                Ok(e) => {
                    if long {
                        let attr = e.attr.as_ref().expect("listed with attributes");
                        outln(format::long_entry(&e.name, attr, human));
                    } else if e.kind == FileKind::Dir {
                        outln(format!("{}/", e.name));
                    } else {
                        outln(&e.name);
                    }
                    if recursive && e.kind == FileKind::Dir {
                        subdirs.push(path::join(&dir, &e.name));
                    }
                }
                Err(e) => {
                    report(failure("list", &dir, &e));
                    failed = true;
                    break;
                }
            }
        }
        // Depth first, in name order.
        subdirs.reverse();
        dirs.extend(subdirs);
    }
    if failed { Err(Failed) } else { Ok(()) }
}

/// `mv` and `cp`: the last argument is the destination; with several sources, or an existing
/// directory as destination, each source goes inside it.
async fn move_or_copy(
    s: &Session,
    args: Vec<String>,
    copy: bool,
    recursive: bool,
) -> Result<(), Failed> {
    let verb = if copy { "copy" } else { "move" };
    let (dst_arg, srcs) = args.split_last().expect("clap requires two paths");
    let dst = match s.resolve(dst_arg) {
        Ok(d) => d,
        Err(e) => {
            report(failure(verb, dst_arg, &e));
            return Err(Failed);
        }
    };
    let mut sources = Vec::new();
    let mut failed = false;
    for arg in srcs {
        match s.expand(arg).await {
            Ok(p) => sources.extend(p),
            Err(e) => {
                report(failure(verb, arg, &e));
                failed = true;
            }
        }
    }
    let into_dir = s.is_dir(&dst).await;
    if sources.len() > 1 && !into_dir {
        report(format!("target '{dst}' is not a directory"));
        return Err(Failed);
    }
    for src in sources {
        let target = if into_dir {
            path::join(&dst, basename(&src))
        } else {
            dst.clone()
        };
        let result = if copy {
            copy_within(s, &src, &target, recursive).await
        } else {
            s.client.rename(&src, &target).await
        };
        if let Err(e) = result {
            report(failure(verb, &src, &e));
            failed = true;
        }
    }
    if failed { Err(Failed) } else { Ok(()) }
}

/// Copies a file (or with `recursive` a tree) within KFS.
async fn copy_within(s: &Session, src: &str, dst: &str, recursive: bool) -> KfsResult<()> {
    let attr = s.client.stat(src).await?;
    if attr.kind == FileKind::File {
        let mut from = s.client.open(src).await?;
        let options = kfs_common::proto::master::CreateOptions {
            replication: Some(attr.replication),
            ..Default::default()
        };
        let mut to = s.client.create_with(dst, options).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n]).await?;
        }
        to.close().await?;
        return Ok(());
    }
    if !recursive {
        return Err(KfsError::invalid_argument(format!(
            "'{src}' is a directory (use cp -r)"
        )));
    }
    if path::is_same_or_below(dst, src) {
        return Err(KfsError::invalid_argument(format!(
            "cannot copy '{src}' into itself, '{dst}'"
        )));
    }
    s.client.mkdir_all(dst).await?;
    let entries = s.client.list_all(src).await?;
    for e in entries {
        Box::pin(copy_within(
            s,
            &path::join(src, &e.name),
            &path::join(dst, &e.name),
            true,
        ))
        .await?;
    }
    Ok(())
}

/// Bytes below a local path.
fn local_size(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|entries| entries.flatten().map(|e| local_size(&e.path())).sum())
            .unwrap_or(0),
        _ => 0,
    }
}

async fn put(s: &Session, args: Vec<String>, replication: Option<u8>) -> Result<(), Failed> {
    let (dst_arg, locals) = args.split_last().expect("clap requires two paths");
    let dst = match s.resolve(dst_arg) {
        Ok(d) => d,
        Err(e) => {
            report(failure("copy to", dst_arg, &e));
            return Err(Failed);
        }
    };
    let into_dir = dst_arg.ends_with('/') || s.is_dir(&dst).await;
    if locals.len() > 1 && !into_dir {
        report(format!("target '{dst}' is not a directory"));
        return Err(Failed);
    }
    let total: u64 = locals.iter().map(|l| local_size(Path::new(l))).sum();
    let progress = Progress::new(total);
    let mut failed = false;
    for local in locals {
        let local_path = PathBuf::from(local);
        let name = local_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let target = if into_dir {
            path::join(&dst, &name)
        } else {
            dst.clone()
        };
        if let Err(e) = copy::put(&s.client, &local_path, &target, replication, &|n| {
            progress.add(n)
        })
        .await
        {
            progress.suspend(|| report(failure("copy", local, &e)));
            failed = true;
        }
    }
    progress.finish();
    if failed { Err(Failed) } else { Ok(()) }
}

async fn get(s: &Session, args: Vec<String>) -> Result<(), Failed> {
    let (dst, remotes) = args.split_last().expect("clap requires two paths");
    let mut sources = Vec::new();
    let mut failed = false;
    for arg in remotes {
        match s.expand(arg).await {
            Ok(p) => sources.extend(p),
            Err(e) => {
                report(failure("copy", arg, &e));
                failed = true;
            }
        }
    }
    let dst_path = PathBuf::from(dst);
    let into_dir = dst_path.is_dir();
    if sources.len() > 1 && !into_dir {
        report(format!("target '{dst}' is not a directory"));
        return Err(Failed);
    }
    let mut total = 0;
    for src in &sources {
        total += remote_size(s, src).await.unwrap_or(0);
    }
    let progress = Progress::new(total);
    for src in sources {
        let target = if into_dir {
            dst_path.join(basename(&src))
        } else {
            dst_path.clone()
        };
        if let Err(e) = copy::get(&s.client, &src, &target, &|n| progress.add(n)).await {
            progress.suspend(|| report(failure("copy", &src, &e)));
            failed = true;
        }
    }
    progress.finish();
    if failed { Err(Failed) } else { Ok(()) }
}

/// Bytes of a file, or below a directory.
async fn remote_size(s: &Session, p: &str) -> KfsResult<u64> {
    let attr = s.client.stat(p).await?;
    if attr.kind == FileKind::File {
        return Ok(attr.size);
    }
    let mut total = 0;
    let mut dirs = vec![p.to_string()];
    while let Some(dir) = dirs.pop() {
        let mut entries = s.client.list_with_attrs(&dir);
        while let Some(e) = entries.next().await {
            let e = e?;
            match e.kind {
                FileKind::Dir => dirs.push(path::join(&dir, &e.name)),
                FileKind::File => total += e.attr.map_or(0, |a| a.size),
            }
        }
    }
    Ok(total)
}

async fn cat(client: &kfs_client::Client, p: &str) -> KfsResult<()> {
    let mut file = client.open(p).await?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        out(&buf[..n]);
    }
}

/// `head` and `tail`: the first or last `lines` lines; with `follow`, then what is appended.
async fn head_tail(
    s: &Session,
    arg: &str,
    lines: usize,
    head: bool,
    follow: bool,
) -> Result<(), Failed> {
    let verb = "read";
    let result = async {
        let p = one_path(s, arg).await?;
        let file = s.client.open(&p).await?;
        let size = file.len();
        if head {
            // Read forward until enough lines.
            let mut text = Vec::new();
            while (text.len() as u64) < size && text.iter().filter(|b| **b == b'\n').count() < lines
            {
                text.extend(file.read_at(text.len() as u64, 64 * 1024).await?);
            }
            out(first_lines(&text, lines));
            return Ok(());
        }
        // Read backward until enough lines.
        let mut start = size;
        let mut text: Vec<u8> = Vec::new();
        while start > 0 && text.iter().filter(|b| **b == b'\n').count() <= lines {
            let from = start.saturating_sub(64 * 1024);
            let mut piece = file.read_at(from, (start - from) as usize).await?;
            piece.extend(text);
            text = piece;
            start = from;
        }
        out(last_lines(&text, lines));
        if !follow {
            return Ok(());
        }
        let mut at = size;
        let follow_loop = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let attr = file.refresh().await?;
                if attr.size > at {
                    let piece = file.read_at(at, (attr.size - at) as usize).await?;
                    at += piece.len() as u64;
                    out(&piece);
                }
            }
        };
        tokio::select! {
            r = follow_loop => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    };
    result.await.map_err(|e: KfsError| {
        report(failure(verb, arg, &e));
        Failed
    })
}

/// The first `n` lines of `text`.
fn first_lines(text: &[u8], n: usize) -> &[u8] {
    match text
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n.wrapping_sub(1))
    {
        _ if n == 0 => &[],
        Some((i, _)) => &text[..=i],
        None => text,
    }
}

/// The last `n` lines of `text` (a final newline ends the last line, it does not start another).
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    match body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
    {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}

async fn du(s: &Session, args: Vec<String>, summarize: bool, human: bool) -> Result<(), Failed> {
    let args = if args.is_empty() {
        vec![s.cwd.clone()]
    } else {
        args
    };
    each_path(s, &args, "measure", |p| async move {
        if summarize {
            let total = remote_size(s, &p).await?;
            outln(format!("{}\t{p}", format::size(total, human)));
            return Ok(());
        }
        // Every directory's total, deepest first, then the argument's.
        async fn walk(s: &Session, p: &str, human: bool) -> KfsResult<u64> {
            let attr = s.client.stat(p).await?;
            if attr.kind == FileKind::File {
                outln(format!("{}\t{p}", format::size(attr.size, human)));
                return Ok(attr.size);
            }
            let mut total = 0;
            for e in s.client.list_all(p).await? {
                let child = path::join(p, &e.name);
                total += match e.kind {
                    FileKind::Dir => Box::pin(walk(s, &child, human)).await?,
                    FileKind::File => s.client.stat(&child).await?.size,
                };
            }
            outln(format!("{}\t{p}", format::size(total, human)));
            Ok(total)
        }
        walk(s, &p, human).await.map(drop)
    })
    .await
}

async fn setrep(
    client: &kfs_client::Client,
    p: &str,
    replication: u8,
    recursive: bool,
) -> KfsResult<()> {
    let attr = client.stat(p).await?;
    if attr.kind == FileKind::File {
        return client.set_replication(p, replication).await.map(drop);
    }
    if !recursive {
        return Err(KfsError::is_a_directory(p));
    }
    let mut dirs = vec![p.to_string()];
    while let Some(dir) = dirs.pop() {
        for e in client.list_all(&dir).await? {
            let child = path::join(&dir, &e.name);
            match e.kind {
                FileKind::Dir => dirs.push(child),
                FileKind::File => {
                    client.set_replication(&child, replication).await?;
                }
            }
        }
    }
    Ok(())
}

async fn xattr(s: &Session, action: XattrCmd) -> Result<(), Failed> {
    let result = async {
        match &action {
            XattrCmd::Get { path: p, name } => {
                let value = s.client.get_xattr(&s.resolve(p)?, name).await?;
                out(&value);
                if value.last() != Some(&b'\n') {
                    outln("");
                }
            }
            XattrCmd::Set {
                path: p,
                name,
                value,
            } => {
                s.client
                    .set_xattr(&s.resolve(p)?, name, value.as_bytes())
                    .await?
            }
            XattrCmd::List { path: p } => {
                let p = s.resolve(p)?;
                for name in s.client.list_xattrs(&p).await? {
                    let value = s.client.get_xattr(&p, &name).await?;
                    outln(format!("{name}={}", String::from_utf8_lossy(&value)));
                }
            }
            XattrCmd::Rm { path: p, name } => s.client.remove_xattr(&s.resolve(p)?, name).await?,
        }
        Ok::<(), KfsError>(())
    };
    let target = match &action {
        XattrCmd::Get { path, .. }
        | XattrCmd::Set { path, .. }
        | XattrCmd::List { path }
        | XattrCmd::Rm { path, .. } => path.clone(),
    };
    result.await.map_err(|e| {
        report(failure("use the attributes of", &target, &e));
        Failed
    })
}

async fn chunks(s: &Session, arg: &str) -> Result<(), Failed> {
    let result = async {
        let p = one_path(s, arg).await?;
        let attr = s.client.stat(&p).await?;
        let chunk_size = s.client.chunk_size();
        let mut rows = vec![vec![
            "OFFSET".into(),
            "CHUNK".into(),
            "VERSION".into(),
            "LENGTH".into(),
            "REPLICAS".into(),
        ]];
        for c in s.client.file_chunks(&p).await? {
            let length = attr.size.saturating_sub(c.offset).min(chunk_size);
            let replicas: Vec<String> = c.replicas.iter().map(|r| r.addr.to_string()).collect();
            let replicas = if replicas.is_empty() {
                "(none live)".to_string()
            } else {
                replicas.join(" ")
            };
            rows.push(vec![
                c.offset.to_string(),
                c.chunk.to_string(),
                c.version.to_string(),
                length.to_string(),
                replicas,
            ]);
        }
        out(format::table(&rows).as_bytes());
        outln(format!(
            "{} chunks of {} bytes each at most; replication {}",
            rows.len() - 1,
            chunk_size,
            attr.replication
        ));
        Ok::<(), KfsError>(())
    };
    result.await.map_err(|e| {
        report(failure("list the chunks of", arg, &e));
        Failed
    })
}

async fn servers(s: &Session) -> Result<(), Failed> {
    match s.client.chunkservers().await {
        Ok(list) => {
            let mut rows = vec![vec![
                "SERVER".into(),
                "ADDRESS".into(),
                "STATE".into(),
                "CHUNKS".into(),
                "CORRUPT".into(),
                "USED".into(),
                "AVAILABLE".into(),
                "CAPACITY".into(),
                "HEARD".into(),
            ]];
            for x in &list {
                let state = state_name(x.state);
                rows.push(vec![
                    x.server.to_string()[..8].to_string(),
                    x.addr.to_string(),
                    state.into(),
                    x.chunks.to_string(),
                    x.corrupt.to_string(),
                    format::size(x.space.used, true),
                    format::size(x.space.available, true),
                    format::size(x.space.capacity, true),
                    format!("{:.1}s ago", x.since_heartbeat_ms as f64 / 1000.0),
                ]);
            }
            out(format::table(&rows).as_bytes());
            Ok(())
        }
        Err(e) => {
            report(failure("list", "the chunkservers", &e));
            Err(Failed)
        }
    }
}

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Alive => "alive",
        ServerState::Dead => "dead",
        ServerState::Draining => "draining",
        ServerState::Drained => "drained (safe to remove)",
    }
}

async fn admin(s: &Session, action: AdminCmd) -> Result<(), Failed> {
    match action {
        AdminCmd::Decommission { server, cancel } => {
            match s.client.decommission(&server, !cancel).await {
                Ok(info) => {
                    outln(format!(
                        "{} {}: {}, {} chunks left on it",
                        &info.server.to_string()[..8],
                        info.addr,
                        state_name(info.state),
                        info.chunks
                    ));
                    Ok(())
                }
                Err(e) => {
                    report(failure("decommission", &server, &e));
                    Err(Failed)
                }
            }
        }
    }
}

async fn fsck(s: &Session) -> Result<(), Failed> {
    match s.client.fsck().await {
        Ok(r) => {
            out(format::table(&[
                vec!["files".into(), r.files.to_string()],
                vec!["chunks".into(), r.chunks.to_string()],
                vec!["healthy".into(), r.healthy.to_string()],
                vec!["under-replicated".into(), r.under_replicated.to_string()],
                vec!["over-replicated".into(), r.over_replicated.to_string()],
                vec!["missing".into(), r.missing.to_string()],
                vec!["corrupt replicas".into(), r.corrupt_replicas.to_string()],
                vec!["copies in flight".into(), r.copies_in_flight.to_string()],
                vec![
                    "safe mode".into(),
                    if r.safe_mode {
                        "on (just restarted: no deletion or repair yet)".into()
                    } else {
                        "off".into()
                    },
                ],
            ])
            .as_bytes());
            for p in &r.problems {
                let what = if p.live == 0 {
                    "MISSING"
                } else {
                    "under-replicated"
                };
                outln(format!(
                    "{what}: {} chunk at byte {} ({}): {} of {} replicas",
                    p.path, p.offset, p.chunk, p.live, p.replication
                ));
            }
            if r.missing > 0 {
                outln("status: CORRUPT (chunks with no live replica cannot be read)");
                Err(Failed)
            } else if r.under_replicated > 0 {
                outln("status: HEALTHY, some chunks under-replicated");
                Ok(())
            } else {
                outln("status: HEALTHY");
                Ok(())
            }
        }
        Err(e) => {
            report(failure("check", "the file system", &e));
            Err(Failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_lines() {
        let text = b"a\nb\nc\n";
        assert_eq!(first_lines(text, 2), b"a\nb\n");
        assert_eq!(first_lines(text, 5), text);
        assert_eq!(first_lines(text, 0), b"");
        assert_eq!(last_lines(text, 2), b"b\nc\n");
        assert_eq!(last_lines(text, 3), text);
        assert_eq!(last_lines(b"x\ny", 1), b"y");
        assert_eq!(last_lines(b"x\ny", 5), b"x\ny");
    }
}
