//! The namespace commands: `mkdir`, `rm`, `rmdir`, `touch`, `stat`, `test`, `count`, `du`,
//! `setrep` and `xattr`.
//!
//! Each asks only the master (no file's bytes are read) and goes on past a failed argument,
//! reporting it. Patterns in arguments are expanded against listings (`touch` and `xattr` take
//! paths as written; `rm -f` skips a pattern that matches nothing). `rm` removes a directory
//! only with `-r`, and `setrep` sets every file below one only with `-R`; `setrep -w` then waits
//! until every chunk of those files has that many live replicas. `du` prints each path's bytes
//! and the space they take with every replica, as HDFS's `du` does.

use super::{Failed, each_path, out, outln, report};
use crate::cli::XattrCmd;
use crate::format::{self, failure};
use crate::session::Session;
use futures::StreamExt;
use kfs_common::proto::master::{MkdirOptions, SetAttr};
use kfs_common::{FileKind, KfsError, KfsResult, path};

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

/// `ln [-s] TARGET LINK`: a hard link, or with `-s` a symbolic one.
pub(super) async fn ln(
    s: &Session,
    symbolic: bool,
    target: &str,
    link: &str,
) -> Result<(), Failed> {
    let made = async {
        let at = s.resolve(link)?;
        if symbolic {
            s.client.symlink(&at, target).await
        } else {
            s.client.link(&s.resolve(target)?, &at).await
        }
    };
    match made.await {
        Ok(_) => Ok(()),
        Err(e) => {
            report(failure("ln", link, &e));
            Err(Failed)
        }
    }
}

/// `readlink`: each link's target, one a line.
pub(super) async fn readlink(s: &Session, paths: &[String]) -> Result<(), Failed> {
    each_path(s, paths, "readlink", |p| async move {
        outln(s.client.readlink(&p).await?);
        Ok(())
    })
    .await
}

/// `stat`: what the master holds of each path (`-c FORMAT`: as stat(1) formats it; `--json`).
pub(super) async fn stat(
    s: &Session,
    paths: &[String],
    format: Option<&str>,
    json: bool,
) -> Result<(), Failed> {
    let found = std::sync::Mutex::new(Vec::new());
    let found = &found;
    let result = each_path(s, paths, "stat", |p| {
        let client = s.client.clone();
        async move {
            let a = client.stat(&p).await?;
            if json {
                let name = p.rsplit('/').next().unwrap_or("").to_string();
                found
                    .lock()
                    .expect("json lock")
                    .push(crate::json::attr(&p, &name, &a));
                return Ok(());
            }
            if let Some(f) = format {
                outln(format::stat_format(f, &p, &a, client.chunk_size()));
                return Ok(());
            }
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
                "  Mode: {:04o} ({})  Owner: {} ({})  Group: {} ({})  Id: {}",
                a.mode,
                format::mode(a.kind, a.mode),
                a.owner,
                format::user_name(a.owner),
                a.group,
                format::group_name(a.group),
                a.fid
            ));
            outln(format!("Modify: {}", format::time_precise(a.mtime)));
            outln(format!("Access: {}", format::time_precise(a.atime)));
            Ok(())
        }
    })
    .await;
    if json {
        let found = std::mem::take(&mut *found.lock().expect("json lock"));
        crate::json::print(&serde_json::Value::Array(found));
    }
    result
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
                _ => (0, 1, 0),
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

/// A path's bytes, and the space they take with every replica.
#[derive(Clone, Copy, Default)]
struct Usage {
    bytes: u64,
    replicated: u64,
}

impl Usage {
    fn of(attr: &kfs_common::proto::master::FileAttr) -> Usage {
        Usage {
            bytes: attr.size,
            replicated: attr.size.saturating_mul(u64::from(attr.replication)),
        }
    }

    fn add(&mut self, other: Usage) {
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.replicated = self.replicated.saturating_add(other.replicated);
    }
}

/// `du` (`-s`: only each argument's total; `--json`): `BYTES  WITH_REPLICAS  PATH`.
pub(super) async fn du(
    s: &Session,
    args: Vec<String>,
    summarize: bool,
    human: bool,
    json: bool,
) -> Result<(), Failed> {
    let args = if args.is_empty() {
        vec![s.cwd.clone()]
    } else {
        args
    };
    let rows = std::sync::Mutex::new(Vec::new());
    let rows = &rows;
    let print = move |p: &str, u: Usage| {
        if json {
            rows.lock().expect("rows lock").push(serde_json::json!({
                "path": p, "bytes": u.bytes, "with_replicas": u.replicated,
            }));
        } else {
            outln(format!(
                "{}\t{}\t{p}",
                format::size(u.bytes, human),
                format::size(u.replicated, human)
            ));
        }
    };
    let print = &print;
    // Every directory's total, deepest first, then the argument's (only that with -s).
    async fn walk(
        s: &Session,
        p: &str,
        attr: kfs_common::proto::master::FileAttr,
        print: &(dyn Fn(&str, Usage) + Sync),
        every: bool,
    ) -> KfsResult<Usage> {
        if attr.kind == FileKind::File {
            return Ok(Usage::of(&attr));
        }
        let mut total = Usage::default();
        let mut entries = s.client.list_with_attrs(p);
        let mut subdirs = Vec::new();
        while let Some(e) = entries.next().await {
            let e = e?;
            let attr = e.attr.expect("listed with attributes");
            match e.kind {
                FileKind::Dir => subdirs.push((path::join(p, &e.name), attr)),
                _ => total.add(Usage::of(&attr)),
            }
        }
        for (child, attr) in subdirs {
            let below = Box::pin(walk(s, &child, attr, print, every)).await?;
            if every {
                print(&child, below);
            }
            total.add(below);
        }
        Ok(total)
    }
    let result = each_path(s, &args, "measure", |p| async move {
        let attr = s.client.stat(&p).await?;
        let total = walk(s, &p, attr, print, !summarize).await?;
        print(&p, total);
        Ok(())
    })
    .await;
    if json {
        let rows = std::mem::take(&mut *rows.lock().expect("rows lock"));
        crate::json::print(&serde_json::Value::Array(rows));
    }
    result
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
                _ => {}
            }
        }
    }
    Ok(total)
}

/// `setrep`: the replication factor of each path's files (`-w`: then wait for it).
pub(super) async fn setrep_each(
    s: &Session,
    paths: &[String],
    replication: u8,
    recursive: bool,
    wait: bool,
) -> Result<(), Failed> {
    each_path(s, paths, "set the replication of", |p| {
        let client = s.client.clone();
        async move {
            let files = setrep(&client, &p, replication, recursive).await?;
            if wait {
                outln(format!("Waiting for {} file(s) below {p} ...", files.len()));
                for file in &files {
                    wait_replicated(&client, file).await?;
                }
                outln(format!("Replication {replication} reached for {p}"));
            }
            Ok(())
        }
    })
    .await
}

/// Sets the factor; returns the files set.
async fn setrep(
    client: &kfs_client::Client,
    p: &str,
    replication: u8,
    recursive: bool,
) -> KfsResult<Vec<String>> {
    let attr = client.stat(p).await?;
    if attr.kind == FileKind::File {
        client.set_replication(p, replication).await?;
        return Ok(vec![p.to_string()]);
    }
    if !recursive {
        return Err(KfsError::is_a_directory(p));
    }
    let mut files = Vec::new();
    let mut dirs = vec![p.to_string()];
    while let Some(dir) = dirs.pop() {
        for e in client.list_all(&dir).await? {
            let child = path::join(&dir, &e.name);
            match e.kind {
                FileKind::Dir => dirs.push(child),
                FileKind::File => {
                    client.set_replication(&child, replication).await?;
                    files.push(child);
                }
                _ => {}
            }
        }
    }
    Ok(files)
}

/// Waits until every chunk of `p` has as many live replicas as its replication factor asks
/// (a packed file: its volume, as many as the volume's factor), asking once a second; Ctrl-C
/// stops the wait, not the change.
async fn wait_replicated(client: &kfs_client::Client, p: &str) -> KfsResult<()> {
    use kfs_common::proto::master::{Layout, ServerState};
    let alive = client
        .chunkservers()
        .await?
        .iter()
        .filter(|x| x.state == ServerState::Alive)
        .count();
    let wanted = client.stat(p).await?.replication;
    if alive < usize::from(wanted) {
        return Err(KfsError::invalid_argument(format!(
            "only {alive} chunkservers are alive: {p} cannot have {wanted} replicas (not waiting)"
        )));
    }
    loop {
        let (attr, layout) = client.file_layout(p).await?;
        let done = match layout {
            Layout::Packed(e) => e.replicas.len() >= usize::from(e.replication),
            Layout::Chunks(_) => {
                let chunks = client.file_chunks(p).await?;
                if let Some(lost) = chunks.iter().find(|c| c.replicas.is_empty()) {
                    return Err(KfsError::ChunkUnavailable {
                        chunk: lost.chunk,
                        reason: format!(
                            "the chunk of {p} at byte {} has no live replica to copy (not waiting)",
                            lost.offset
                        ),
                    });
                }
                chunks
                    .iter()
                    .all(|c| c.replicas.len() == usize::from(attr.replication))
            }
        };
        if done {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
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
