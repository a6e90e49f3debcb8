//! What `--json` prints: the shell's own, stable field names (not the wire's), ids as strings
//! (a chunkserver's is 128 bits, more than a JSON number holds exactly), times both as RFC 3339
//! text and as nanoseconds since the epoch (a string too: past 2^53), sizes in bytes.

use kfs_common::FileKind;
use kfs_common::proto::Timestamp;
use kfs_common::proto::master::{ChunkserverInfo, FileAttr};
use serde_json::{Value, json};

/// `"file"`, `"dir"`, `"symlink"`, `"fifo"`, `"socket"`, `"char"` or `"block"`.
pub fn kind(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "file",
        FileKind::Dir => "dir",
        FileKind::Symlink => "symlink",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "socket",
        FileKind::CharDevice => "char",
        FileKind::BlockDevice => "block",
    }
}

/// A time as RFC 3339 (UTC, nanoseconds).
pub fn time(ts: Timestamp) -> String {
    chrono::DateTime::from_timestamp_nanos(ts).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// One path's attributes (`ls --json`, `stat --json`).
pub fn attr(path: &str, name: &str, a: &FileAttr) -> Value {
    json!({
        "path": path,
        "name": name,
        "type": kind(a.kind),
        "size": a.size,
        "replication": a.replication,
        "mode": format!("{:04o}", a.mode),
        "permissions": crate::format::mode(a.kind, a.mode),
        "owner": a.owner,
        "owner_name": crate::format::user_name(a.owner),
        "group": a.group,
        "group_name": crate::format::group_name(a.group),
        "id": a.fid.0.to_string(),
        "mtime": time(a.mtime),
        "mtime_ns": a.mtime.to_string(),
        "atime": time(a.atime),
        "atime_ns": a.atime.to_string(),
    })
}

/// One chunkserver (`servers --json`).
pub fn server(x: &ChunkserverInfo) -> Value {
    json!({
        "id": x.server.to_string(),
        "address": x.addr.to_string(),
        "state": crate::commands::state_name(x.state),
        "chunks": x.chunks,
        "corrupt": x.corrupt,
        "used": x.space.used,
        "available": x.space.available,
        "capacity": x.space.capacity,
        "since_heartbeat_ms": x.since_heartbeat_ms,
    })
}

/// Prints `value` on standard output, pretty, one newline after it.
pub fn print(value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("a JSON value serializes");
    crate::commands::print_line(&text);
}
