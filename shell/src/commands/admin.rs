//! The commands about the cluster rather than files: `df`, `chunks`, `servers`, `admin`
//! (`decommission`, `workers`, `safemode`, `checkpoint`) and `fsck`.
//!
//! They print what the master knows (chunkservers, their space and state, where a file's
//! chunks are, the health of every chunk), mostly as tables. `df` counts only live
//! chunkservers; of what `fsck` finds, only a chunk with no live replica fails it (exit
//! status 1).

use super::{Failed, one_path, out, outln, report};
use crate::cli::{AdminCmd, SafemodeAction};
use crate::format::{self, failure};
use crate::session::Session;
use kfs_common::KfsError;
use kfs_common::proto::master::{Layout, ServerState};

/// `df`: the space of the cluster's live chunkservers (raw: every replica), and what files
/// hold (logical: each byte once), with what is left at the default replication factor.
pub(super) async fn df(s: &Session, human: bool, json: bool) -> Result<(), Failed> {
    let answer = async {
        let servers = s.client.chunkservers().await?;
        let counters = s.client.counters().await?;
        Ok::<_, KfsError>((servers, counters))
    };
    let (servers, counters) = match answer.await {
        Ok(found) => found,
        Err(e) => {
            report(failure("read the space of", "the cluster", &e));
            return Err(Failed);
        }
    };
    let alive: Vec<_> = servers
        .iter()
        .filter(|x| x.state == ServerState::Alive)
        .collect();
    let capacity: u64 = alive.iter().map(|x| x.space.capacity).sum();
    let used: u64 = alive.iter().map(|x| x.space.used).sum();
    let available: u64 = alive.iter().map(|x| x.space.available).sum();
    let factor = u64::from(s.client.master_info().default_replication.max(1));
    let percent = (used.saturating_mul(100))
        .checked_div(capacity)
        .unwrap_or(0);
    let logical_percent = (counters.bytes.saturating_mul(100))
        .checked_div(capacity / factor)
        .unwrap_or(0);
    if json {
        crate::json::print(&serde_json::json!({
            "raw": { "capacity": capacity, "used": used, "available": available },
            "logical": {
                "bytes": counters.bytes,
                "files": counters.files,
                "dirs": counters.dirs,
                "available": available / factor,
                "default_replication": factor,
            },
            "chunkservers": { "alive": alive.len(), "known": servers.len() },
        }));
        return Ok(());
    }
    out(format::table(&[
        vec![
            "".into(),
            "Size".into(),
            "Used".into(),
            "Available".into(),
            "Use%".into(),
        ],
        vec![
            "raw".into(),
            format::size(capacity, human),
            format::size(used, human),
            format::size(available, human),
            format!("{percent}%"),
        ],
        vec![
            format!("logical (x{factor})"),
            format::size(capacity / factor, human),
            format::size(counters.bytes, human),
            format::size(available / factor, human),
            format!("{logical_percent}%"),
        ],
    ])
    .as_bytes());
    outln(format!(
        "{} of {} chunkservers alive; {} files, {} directories; raw counts every replica, logical each byte once",
        alive.len(),
        servers.len(),
        counters.files,
        counters.dirs
    ));
    Ok(())
}

/// `chunks`: where each chunk of a file is.
pub(super) async fn chunks(s: &Session, arg: &str, json: bool) -> Result<(), Failed> {
    let result = async {
        let p = one_path(s, arg).await?;
        let (attr, layout) = s.client.file_layout(&p).await?;
        if json {
            return chunks_json(s, &p, &attr, layout).await;
        }
        if let Layout::Packed(e) = layout {
            let replicas: Vec<String> = e.replicas.iter().map(|r| r.addr.to_string()).collect();
            let rows = vec![
                vec![
                    "VOLUME".into(),
                    "VERSION".into(),
                    "OFFSET".into(),
                    "LENGTH".into(),
                    "REPLICAS".into(),
                ],
                vec![
                    e.volume.to_string(),
                    e.version.to_string(),
                    e.offset.to_string(),
                    e.len.to_string(),
                    if replicas.is_empty() {
                        "(none live)".to_string()
                    } else {
                        replicas.join(" ")
                    },
                ],
            ];
            out(format::table(&rows).as_bytes());
            outln(format!(
                "packed: one record of a volume of small files (replication {}); the file's replication {}",
                e.replication, attr.replication
            ));
            return Ok(());
        }
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

/// `chunks --json`.
async fn chunks_json(
    s: &Session,
    p: &str,
    attr: &kfs_common::proto::master::FileAttr,
    layout: Layout,
) -> Result<(), KfsError> {
    use serde_json::json;
    let replicas = |list: &[kfs_common::proto::master::ReplicaLocation]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|r| json!({ "server": r.server.to_string(), "address": r.addr.to_string() }))
            .collect()
    };
    let value = match layout {
        Layout::Packed(e) => json!({
            "path": p,
            "size": attr.size,
            "replication": attr.replication,
            "packed": {
                "volume": e.volume.0.to_string(),
                "version": e.version.0,
                "offset": e.offset,
                "length": e.len,
                "volume_replication": e.replication,
                "replicas": replicas(&e.replicas),
            },
        }),
        Layout::Chunks(_) => {
            let chunk_size = s.client.chunk_size();
            let chunks: Vec<serde_json::Value> = s
                .client
                .file_chunks(p)
                .await?
                .iter()
                .map(|c| {
                    json!({
                        "offset": c.offset,
                        "chunk": c.chunk.0.to_string(),
                        "version": c.version.0,
                        "length": attr.size.saturating_sub(c.offset).min(chunk_size),
                        "replicas": replicas(&c.replicas),
                    })
                })
                .collect();
            json!({
                "path": p,
                "size": attr.size,
                "replication": attr.replication,
                "chunk_size": chunk_size,
                "chunks": chunks,
            })
        }
    };
    crate::json::print(&value);
    Ok(())
}

/// `servers`: every chunkserver the master knows.
pub(super) async fn servers(s: &Session, json: bool) -> Result<(), Failed> {
    match s.client.chunkservers().await {
        Ok(list) if json => {
            let all: Vec<serde_json::Value> = list.iter().map(crate::json::server).collect();
            crate::json::print(&serde_json::Value::Array(all));
            Ok(())
        }
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
                    x.server.short(),
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

pub(crate) fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Alive => "alive",
        ServerState::Dead => "dead",
        ServerState::Draining => "draining",
        ServerState::Drained => "drained (safe to remove)",
    }
}

/// `admin decommission` (`--cancel`: stop draining).
pub(super) async fn admin(s: &Session, action: AdminCmd) -> Result<(), Failed> {
    match action {
        AdminCmd::Decommission { server, cancel } => {
            match s.client.decommission(&server, !cancel).await {
                Ok(info) => {
                    outln(format!(
                        "{} {}: {}, {} chunks left on it",
                        info.server.short(),
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
        AdminCmd::Safemode { action } => safemode(s, action).await,
        AdminCmd::User { action } => super::users::user(s, action).await,
        AdminCmd::Checkpoint => match s.client.checkpoint().await {
            Ok(seq) => {
                outln(format!("checkpoint written: it holds every op up to {seq}"));
                Ok(())
            }
            Err(e) => {
                report(failure("write", "a checkpoint", &e));
                Err(Failed)
            }
        },
        AdminCmd::Workers => match s.client.workers().await {
            Ok(workers) => {
                outln(format!(
                    "{:<20} {:<8} {:>8} {:>12}  last",
                    "worker", "state", "rounds", "last round"
                ));
                for w in workers {
                    let ago = w
                        .since_last_round_ms
                        .map_or_else(|| "-".into(), |ms| format!("{:.1}s ago", ms as f64 / 1e3));
                    outln(format!(
                        "{:<20} {:<8} {:>8} {:>12}  {}",
                        w.name,
                        format!("{:?}", w.state).to_lowercase(),
                        w.rounds,
                        ago,
                        w.note
                    ));
                }
                Ok(())
            }
            Err(e) => {
                report(failure("admin workers", "", &e));
                Err(Failed)
            }
        },
    }
}

/// `admin safemode get|leave|wait`.
async fn safemode(s: &Session, action: SafemodeAction) -> Result<(), Failed> {
    let result = async {
        let mut status = s.client.safe_mode(action == SafemodeAction::Leave).await?;
        if action == SafemodeAction::Wait {
            // Safe mode ends by itself at the latest when its time is up: a bounded wait.
            while status.on {
                let pause = std::time::Duration::from_millis(status.remaining_ms.clamp(50, 500));
                tokio::time::sleep(pause).await;
                status = s.client.safe_mode(false).await?;
            }
        }
        Ok::<_, KfsError>(status)
    };
    match result.await {
        Ok(status) if status.on => {
            let percent = (status.reported * 100)
                .checked_div(status.total)
                .unwrap_or(100);
            outln(format!(
                "safe mode is ON: {} of {} chunks reported ({percent}%, it ends at {:.1}%), at most {:.1}s more; no deletion or repair until then",
                status.reported,
                status.total,
                status.threshold * 100.0,
                status.remaining_ms as f64 / 1000.0
            ));
            Ok(())
        }
        Ok(status) => {
            outln(format!(
                "safe mode is OFF ({} chunks); deletions and repairs run",
                status.total
            ));
            Ok(())
        }
        Err(e) => {
            report(failure("use", "safe mode", &e));
            Err(Failed)
        }
    }
}

/// `fsck --open-files`: the files open for write.
pub(super) async fn open_files(s: &Session, json: bool) -> Result<(), Failed> {
    let files = match s.client.open_files().await {
        Ok(files) => files,
        Err(e) => {
            report(failure("list", "the files open for write", &e));
            return Err(Failed);
        }
    };
    if json {
        let all: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path,
                    "id": f.fid.0.to_string(),
                    "size": f.size,
                    "since_write_ms": f.since_write_ms,
                    "state": if f.writing { "writing" } else { "writer_gone" },
                })
            })
            .collect();
        crate::json::print(&serde_json::Value::Array(all));
        return Ok(());
    }
    let mut rows = vec![vec![
        "PATH".to_string(),
        "SIZE".into(),
        "STATE".into(),
        "LAST LEASE".into(),
    ]];
    for f in &files {
        rows.push(vec![
            f.path.clone(),
            f.size.to_string(),
            if f.writing {
                "writing".into()
            } else {
                "writer gone: to be finished".into()
            },
            format!("{:.1}s ago", f.since_write_ms as f64 / 1000.0),
        ]);
    }
    if files.is_empty() {
        outln("no file is open for write");
    } else {
        out(format::table(&rows).as_bytes());
        outln(format!("{} files open for write", files.len()));
    }
    Ok(())
}

/// Problems `fsck` prints without `--list`.
const FIRST_PROBLEMS: u32 = 20;

/// `fsck [PATH] [--list] [--json]`: the health of the chunks below a path; exit status 1 when
/// data is missing.
pub(super) async fn fsck(
    s: &Session,
    path: Option<String>,
    list: bool,
    json: bool,
) -> Result<(), Failed> {
    let arg = path.unwrap_or_else(|| s.cwd.clone());
    let result = async {
        let p = one_path(s, &arg).await?;
        s.client
            .fsck_path(&p, if list { 0 } else { FIRST_PROBLEMS })
            .await
    };
    let r = match result.await {
        Ok(r) => r,
        Err(e) => {
            report(failure("check", &arg, &e));
            return Err(Failed);
        }
    };
    let status = if r.missing > 0 {
        "CORRUPT (chunks with no live replica cannot be read)"
    } else if r.under_replicated > 0 {
        "HEALTHY, some chunks under-replicated"
    } else {
        "HEALTHY"
    };
    if json {
        let problems: Vec<serde_json::Value> = r
            .problems
            .iter()
            .map(|p| {
                serde_json::json!({
                    "path": p.path,
                    "offset": p.offset,
                    "chunk": p.chunk.0.to_string(),
                    "live": p.live,
                    "replication": p.replication,
                    "state": p.state,
                })
            })
            .collect();
        crate::json::print(&serde_json::json!({
            "path": r.path,
            "status": if r.missing > 0 { "CORRUPT" } else { "HEALTHY" },
            "files": r.files,
            "chunks": r.chunks,
            "healthy": r.healthy,
            "under_replicated": r.under_replicated,
            "waiting": r.waiting,
            "short_of_servers": r.short_of_servers,
            "over_replicated": r.over_replicated,
            "missing": r.missing,
            "corrupt_replicas": r.corrupt_replicas,
            "copies_in_flight": r.copies_in_flight,
            "safe_mode": r.safe_mode,
            "live_servers": r.live_servers,
            "problems": problems,
            "more_problems": r.more,
        }));
    } else {
        out(format::table(&[
            vec!["path".into(), r.path.clone()],
            vec!["files".into(), r.files.to_string()],
            vec!["chunks".into(), r.chunks.to_string()],
            vec!["healthy".into(), r.healthy.to_string()],
            vec!["under-replicated".into(), r.under_replicated.to_string()],
            vec![
                "  waiting for a lease or copy".into(),
                r.waiting.to_string(),
            ],
            vec![
                "  short of chunkservers".into(),
                r.short_of_servers.to_string(),
            ],
            vec!["over-replicated".into(), r.over_replicated.to_string()],
            vec!["missing".into(), r.missing.to_string()],
            vec!["corrupt replicas".into(), r.corrupt_replicas.to_string()],
            vec!["copies in flight".into(), r.copies_in_flight.to_string()],
            vec![
                "chunkservers".into(),
                format!("{} alive and taking replicas", r.live_servers),
            ],
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
            let what = match p.state.as_str() {
                "missing" => "MISSING",
                "waiting" => "under-replicated, waiting for its lease to run out",
                "short_of_servers" => "under-replicated, too few chunkservers to repair",
                _ => "under-replicated",
            };
            outln(format!(
                "{what}: {} chunk at byte {} ({}): {} of {} replicas",
                p.path, p.offset, p.chunk, p.live, p.replication
            ));
        }
        if r.more {
            outln("... and more (`fsck --list` shows every one)");
        }
        outln(format!("status: {status}"));
    }
    if r.missing > 0 { Err(Failed) } else { Ok(()) }
}
