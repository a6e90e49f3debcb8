//! The commands that move and copy bytes: `mv` and `cp` within KFS, `put` (local to KFS) and
//! `get` (KFS to local).
//!
//! The last argument is the destination; with several sources, or an existing directory as the
//! destination, each source goes inside it under its own name. `mv` is a rename at the master
//! (nothing is copied) and shares that resolution with `cp`. `put` and `get` go through
//! [`kfs_client::copy`] (a put lands under a temporary name and is renamed over the target: all
//! or nothing) and show one progress bar for all their sources, naming the file going, and a
//! summary line once done (on a terminal); entries a put leaves out (symbolic links, FIFOs) are
//! named, each on a line.
//!
//! None of them replaces a target that exists unless `-f` (as `hdfs dfs -put`): the refusal
//! names the target, `File exists`, and the source is left as it was.

use super::fs::remote_size;
use super::{Failed, report};
use crate::format::failure;
use crate::progress::Progress;
use crate::session::Session;
use kfs_client::copy;
use kfs_common::{FileKind, KfsError, KfsResult, path};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `mv` and `cp`: the last argument is the destination; with several sources, or an existing
/// directory as destination, each source goes inside it.
pub(super) async fn move_or_copy(
    s: &Session,
    args: Vec<String>,
    copy: bool,
    recursive: bool,
    force: bool,
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
        if !force && s.client.stat(&target).await.is_ok() {
            report(exists(verb, &src, &target));
            failed = true;
            continue;
        }
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

/// `put`: local files and trees into KFS.
pub(super) async fn put(
    s: &Session,
    args: Vec<String>,
    replication: Option<u8>,
    force: bool,
) -> Result<(), Failed> {
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
        if let Err(e) = std::fs::symlink_metadata(&local_path) {
            // As cp(1) says it.
            progress.suspend(|| {
                report(format!(
                    "cannot stat '{local}': {}",
                    crate::format::io_reason(&e)
                ))
            });
            failed = true;
            continue;
        }
        if !force && s.client.stat(&target).await.is_ok() {
            progress.suspend(|| report(exists("copy", local, &target)));
            failed = true;
            continue;
        }
        match copy::put(&s.client, &local_path, &target, replication, &progress).await {
            Ok(summary) => report_skipped(&progress, &summary),
            Err(e) => {
                progress.suspend(|| report(failure("copy", local, &e)));
                failed = true;
            }
        }
    }
    progress.finish();
    if failed { Err(Failed) } else { Ok(()) }
}

/// `get`: KFS files and trees to local ones.
pub(super) async fn get(s: &Session, args: Vec<String>, force: bool) -> Result<(), Failed> {
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
        if !force && std::fs::symlink_metadata(&target).is_ok() {
            progress.suspend(|| report(exists("copy", &src, &target.display().to_string())));
            failed = true;
            continue;
        }
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Err(e) = std::fs::metadata(parent) {
            // As cp(1) says it.
            progress.suspend(|| {
                report(format!(
                    "cannot create '{}': {}",
                    target.display(),
                    crate::format::io_reason(&e)
                ))
            });
            failed = true;
            continue;
        }
        if let Err(e) = copy::get(&s.client, &src, &target, &progress).await {
            progress.suspend(|| report(failure("copy", &src, &e)));
            failed = true;
        }
    }
    progress.finish();
    if failed { Err(Failed) } else { Ok(()) }
}

/// Names each entry a copy left out (it is no failure: cp(1) -r copies links as links; KFS
/// has none, so it says so).
fn report_skipped(progress: &Progress, summary: &copy::CopySummary) {
    for (path, what) in &summary.skipped {
        progress.suspend(|| report(format!("skipped '{}': {what} (not copied)", path.display())));
    }
}

/// The refusal to replace `target`, which exists (coreutils' words, and what `-f` does).
fn exists(verb: &str, src: &str, target: &str) -> String {
    format!("cannot {verb} '{src}' to '{target}': File exists (-f replaces it)")
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}
