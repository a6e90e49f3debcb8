//! How the shell prints things: sizes, times, modes, tables, error messages.

use kfs_common::proto::Timestamp;
use kfs_common::proto::master::FileAttr;
use kfs_common::{FileKind, KfsError};

/// A size in bytes, or with `human` in KiB, MiB, ... (binary units).
pub fn size(bytes: u64, human: bool) -> String {
    if human {
        bytesize::ByteSize::b(bytes).display().iec().to_string()
    } else {
        bytes.to_string()
    }
}

/// A time as local `YYYY-MM-DD HH:MM`.
pub fn time(ts: Timestamp) -> String {
    chrono::DateTime::from_timestamp_nanos(ts)
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// A time with seconds and milliseconds.
pub fn time_precise(ts: Timestamp) -> String {
    chrono::DateTime::from_timestamp_nanos(ts)
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S%.3f %z")
        .to_string()
}

/// `drwxr-xr-x` / `-rw-r--r--`.
pub fn mode(kind: FileKind, mode: u16) -> String {
    let mut s = String::with_capacity(10);
    s.push(if kind == FileKind::Dir { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// One `ls -l` line.
pub fn long_entry(name: &str, attr: &FileAttr, human: bool) -> String {
    let replication = match attr.kind {
        FileKind::Dir => "-".to_string(),
        FileKind::File => attr.replication.to_string(),
    };
    let suffix = if attr.kind == FileKind::Dir { "/" } else { "" };
    format!(
        "{} {:>3} {:>12} {} {name}{suffix}",
        mode(attr.kind, attr.mode),
        replication,
        size(attr.size, human),
        time(attr.mtime)
    )
}

/// Rows as columns padded to their widest cell.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `cannot VERB 'ARG': REASON`, as coreutils says it; errors about servers (not about a path)
/// keep their own words, which name the server and what to check.
pub fn failure(verb: &str, arg: &str, error: &KfsError) -> String {
    match error {
        KfsError::Unavailable(_)
        | KfsError::ChunkUnavailable { .. }
        | KfsError::IncompatibleProtocol { .. } => {
            format!("cannot {verb} '{arg}': {error}")
        }
        e => match e.path() {
            Some(path) => format!("cannot {verb} '{path}': {}", e.reason()),
            None => format!("cannot {verb} '{arg}': {}", e.reason()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_sizes_and_tables() {
        assert_eq!(mode(FileKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode(FileKind::File, 0o640), "-rw-r-----");
        assert_eq!(size(1536, false), "1536");
        assert_eq!(size(1536, true), "1.5 KiB");
        let t = table(&[
            vec!["a".into(), "bbb".into()],
            vec!["cc".into(), "d".into()],
        ]);
        assert_eq!(t, "a   bbb\ncc  d\n");
    }

    #[test]
    fn failures_read_like_coreutils() {
        let e = KfsError::directory_not_empty("/a");
        assert_eq!(
            failure("remove", "/a", &e),
            "cannot remove '/a': Directory not empty"
        );
        let e = KfsError::Unavailable("the master at 127.0.0.1:1 did not answer".into());
        assert!(failure("list", "/", &e).contains("127.0.0.1:1"));
    }
}
