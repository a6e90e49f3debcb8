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
    s.push(match kind {
        FileKind::File => '-',
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        FileKind::Fifo => 'p',
        FileKind::Socket => 's',
        FileKind::CharDevice => 'c',
        FileKind::BlockDevice => 'b',
    });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// The local system's name for user id `uid` (KFS keeps ids, as NFS does), or the number.
pub fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

/// The local system's name for group id `gid`, or the number.
pub fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(group)) => group.name,
        _ => gid.to_string(),
    }
}

/// What `ls -F` puts after a name of this kind: `/` a directory, `@` a symbolic link, `|` a
/// FIFO, `=` a socket.
pub fn kind_suffix(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Dir => "/",
        FileKind::Symlink => "@",
        FileKind::Fifo => "|",
        FileKind::Socket => "=",
        FileKind::File | FileKind::CharDevice | FileKind::BlockDevice => "",
    }
}

/// One `ls -l` line: mode, replication, owner, group, size, time, name.
pub fn long_entry(name: &str, attr: &FileAttr, human: bool) -> String {
    let replication = match attr.kind {
        FileKind::File => attr.replication.to_string(),
        _ => "-".to_string(),
    };
    let suffix = kind_suffix(attr.kind);
    format!(
        "{} {:>3} {:<8} {:<8} {:>12} {} {name}{suffix}",
        mode(attr.kind, attr.mode),
        replication,
        user_name(attr.owner),
        group_name(attr.group),
        size(attr.length(), human),
        time(attr.mtime)
    )
}

/// `stat -c FORMAT`: `%n` name, `%s` size, `%F` type, `%a` octal mode, `%A` `-rw-r--r--`, `%h`
/// names (hard links; a directory's 2 and its subdirectories), `%u`
/// / `%U` owner id / name, `%g` / `%G` group, `%r` replication, `%o` chunk size, `%i` file id,
/// `%y` / `%Y` modification time (text / seconds since the epoch), `%x` / `%X` access time,
/// `%%` a percent sign; `\n` and `\t` as in stat(1). An unknown directive is kept as written.
pub fn stat_format(format: &str, path: &str, a: &FileAttr, chunk_size: u64) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('n') => out.push_str(path),
                Some('s') => out.push_str(&a.size.to_string()),
                Some('F') => out.push_str(match a.kind {
                    FileKind::File if a.size == 0 => "regular empty file",
                    FileKind::File => "regular file",
                    FileKind::Dir => "directory",
                    FileKind::Fifo => "fifo",
                    other => other.name(),
                }),
                Some('a') => out.push_str(&format!("{:o}", a.mode)),
                Some('h') => out.push_str(&a.nlink.to_string()),
                Some('A') => out.push_str(&mode(a.kind, a.mode)),
                Some('u') => out.push_str(&a.owner.to_string()),
                Some('U') => out.push_str(&user_name(a.owner)),
                Some('g') => out.push_str(&a.group.to_string()),
                Some('G') => out.push_str(&group_name(a.group)),
                Some('r') => out.push_str(&a.replication.to_string()),
                Some('o') => out.push_str(&chunk_size.to_string()),
                Some('i') => out.push_str(&a.fid.0.to_string()),
                Some('y') => out.push_str(&time_precise(a.mtime)),
                Some('Y') => out.push_str(&a.mtime.div_euclid(1_000_000_000).to_string()),
                Some('x') => out.push_str(&time_precise(a.atime)),
                Some('X') => out.push_str(&a.atime.div_euclid(1_000_000_000).to_string()),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
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

/// A local I/O error in coreutils' words: `No such file or directory`, without Rust's
/// `(os error 2)`.
pub fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
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
    fn stat_formats_like_stat_1() {
        let a = FileAttr {
            fid: kfs_common::FileId(42),
            kind: FileKind::File,
            size: 1234,
            mode: 0o640,
            owner: 4_000_001,
            group: 4_000_002,
            replication: 3,
            mtime: 1_700_000_000_123_000_000,
            atime: 0,
            nlink: 1,
            ctime: 1_700_000_000_123_000_000,
        };
        assert_eq!(
            stat_format(
                "%n %s %F %a %A %u:%g %U %r %o %i %Y %% %q\\t|",
                "/f",
                &a,
                64
            ),
            "/f 1234 regular file 640 -rw-r----- 4000001:4000002 4000001 3 64 42 1700000000 % %q\t|"
        );
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
