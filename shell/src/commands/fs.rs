//! The namespace commands: `ls`, `mkdir`, `rm`, `rmdir`, `touch`, `stat`, `du`, `setrep` and
//! `xattr`.
//!
//! Each asks only the master (no file's bytes are read) and goes on past a failed argument,
//! reporting it. Patterns in arguments are expanded against listings (`touch` and `xattr` take
//! paths as written; `rm -f` skips a pattern that matches nothing). `ls -R` walks depth first,
//! in name order; `rm` removes a directory only with `-r`, and `setrep` sets every file below
//! one only with `-r`.

use super::{Failed, each_path, out, outln, report};
use crate::cli::XattrCmd;
use crate::format::{self, failure};
use crate::session::Session;
use futures::StreamExt;
use kfs_common::proto::master::{MkdirOptions, SetAttr};
use kfs_common::{FileKind, KfsError, KfsResult, path};

/// `ls`: files, then each directory's entries (`-l`: with attributes; `-R`: and below).
pub(super) async fn ls(
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

/// `mkdir` (`-p`: with missing parents).
pub(super) async fn mkdir(s: &Session, paths: &[String], parents: bool) -> Result<(), Failed> {
    each_path(s, paths, "create directory", |p| {
        let client = s.client.clone();
        async move {
            let options = MkdirOptions {
                parents,
                mode: None,
            };
            client.mkdir_with(&p, options).await.map(drop)
        }
    })
    .await
}

/// `rm`: files, and with `recursive` directories and everything below; `force` skips what does
/// not exist.
pub(super) async fn rm(
    s: &Session,
    paths: &[String],
    recursive: bool,
    force: bool,
) -> Result<(), Failed> {
    let mut failed = false;
    for arg in paths {
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
    if failed { Err(Failed) } else { Ok(()) }
}

/// `rmdir`: empty directories.
pub(super) async fn rmdir(s: &Session, paths: &[String]) -> Result<(), Failed> {
    each_path(s, paths, "remove directory", |p| {
        let client = s.client.clone();
        async move { client.remove_dir(&p).await }
    })
    .await
}

/// `touch`: a file's times set to now, or an empty file where none is.
pub(super) async fn touch(s: &Session, paths: &[String]) -> Result<(), Failed> {
    let mut failed = false;
    for arg in paths {
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
    if failed { Err(Failed) } else { Ok(()) }
}

/// `stat`: what the master holds of each path.
pub(super) async fn stat(s: &Session, paths: &[String]) -> Result<(), Failed> {
    each_path(s, paths, "stat", |p| {
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
    .await
}

/// `test`: the exit status answers (`-d` a directory, `-f` a file, `-z` an empty file, else
/// whether it exists); a path that does not resolve is false, like a missing one.
pub(super) async fn test(
    s: &Session,
    p: &str,
    dir: bool,
    file: bool,
    empty: bool,
) -> Result<(), Failed> {
    let attr = match s.resolve(p) {
        Ok(p) => s.client.stat(&p).await.ok(),
        Err(_) => None,
    };
    let answer = match attr {
        None => false,
        Some(a) if dir => a.kind == FileKind::Dir,
        Some(a) if file => a.kind == FileKind::File,
        Some(a) if empty => a.kind == FileKind::File && a.size == 0,
        Some(_) => true,
    };
    if answer { Ok(()) } else { Err(Failed) }
}

/// `count`: directories (the path itself included), files and bytes below each path, as HDFS's
/// `count` prints them.
pub(super) async fn count(s: &Session, paths: &[String]) -> Result<(), Failed> {
    async fn walk(s: &Session, p: &str) -> KfsResult<(u64, u64, u64)> {
        let attr = s.client.stat(p).await?;
        if attr.kind == FileKind::File {
            return Ok((0, 1, attr.size));
        }
        let mut total = (1, 0, 0);
        for e in s.client.list_all(p).await? {
            let child = path::join(p, &e.name);
            let (d, f, b) = match e.kind {
                FileKind::Dir => Box::pin(walk(s, &child)).await?,
                FileKind::File => (0, 1, s.client.stat(&child).await?.size),
            };
            total = (total.0 + d, total.1 + f, total.2 + b);
        }
        Ok(total)
    }
    each_path(s, paths, "count", |p| async move {
        let (dirs, files, bytes) = walk(s, &p).await?;
        outln(format!("{dirs:>12} {files:>12} {bytes:>18} {p}"));
        Ok(())
    })
    .await
}

/// `du` (`-s`: only each argument's total).
pub(super) async fn du(
    s: &Session,
    args: Vec<String>,
    summarize: bool,
    human: bool,
) -> Result<(), Failed> {
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

/// Bytes of a file, or below a directory.
pub(super) async fn remote_size(s: &Session, p: &str) -> KfsResult<u64> {
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

/// `setrep`: the replication factor of each path's files.
pub(super) async fn setrep_each(
    s: &Session,
    paths: &[String],
    replication: u8,
    recursive: bool,
) -> Result<(), Failed> {
    each_path(s, paths, "set the replication of", |p| {
        let client = s.client.clone();
        async move { setrep(&client, &p, replication, recursive).await }
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

/// `xattr get`, `set`, `list` and `rm`.
pub(super) async fn xattr(s: &Session, action: XattrCmd) -> Result<(), Failed> {
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
