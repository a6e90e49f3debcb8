//! The commands that change who may do what: `chmod`, `chown` and `chgrp`.
//!
//! Modes are octal (`644`, `1777`) or symbolic as chmod(1) writes them (`u+x`, `go-w`, `a=rX`,
//! comma separated; no `who` means all). Owners and groups are names the local system knows
//! (looked up through its user database, as NFS clients do) or numeric ids. With `-R`, every
//! file and directory below a directory changes too. The master checks and logs each change.

use super::{Failed, report};
use crate::session::Session;
use kfs_common::proto::master::SetAttr;
use kfs_common::{FileKind, KfsError, KfsResult, path};

/// The mode `spec` gives a file of `kind` whose mode is `mode`.
pub(crate) fn apply_mode(spec: &str, mode: u16, kind: FileKind) -> Result<u16, String> {
    if !spec.is_empty() && spec.len() <= 4 && spec.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return u16::from_str_radix(spec, 8).map_err(|e| e.to_string());
    }
    let bad = || format!("invalid mode: '{spec}'");
    let mut mode = mode & 0o7777;
    for clause in spec.split(',') {
        let ops_at = clause.find(['+', '-', '=']).ok_or_else(bad)?;
        let (who, mut rest) = clause.split_at(ops_at);
        let mut classes = 0u16; // bits of the classes named: u 0o4700, g 0o2070, o 0o1007
        for c in who.chars() {
            classes |= match c {
                'u' => 0o4700,
                'g' => 0o2070,
                'o' => 0o1007,
                'a' => 0o7777,
                _ => return Err(bad()),
            };
        }
        if classes == 0 {
            classes = 0o7777;
        }
        while !rest.is_empty() {
            let op = rest.as_bytes()[0];
            rest = &rest[1..];
            let end = rest.find(['+', '-', '=']).unwrap_or(rest.len());
            let (perms, next) = rest.split_at(end);
            rest = next;
            let any_x = kind == FileKind::Dir || mode & 0o111 != 0;
            let mut bits = 0u16;
            for p in perms.chars() {
                bits |= match p {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' if any_x => 0o111,
                    'X' => 0,
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => return Err(bad()),
                };
            }
            let bits = bits & classes;
            mode = match op {
                b'+' => mode | bits,
                b'-' => mode & !bits,
                _ => (mode & !classes) | bits,
            };
        }
    }
    Ok(mode)
}

/// A user name or numeric id.
fn user_id(name: &str) -> Result<u32, String> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        _ => Err(format!("invalid user: '{name}'")),
    }
}

/// A group name or numeric id.
fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(format!("invalid group: '{name}'")),
    }
}

/// What to change on every path.
enum Change {
    Mode(String),
    Owner(Option<u32>, Option<u32>),
}

/// Changes one path (and with `recursive` everything below it).
async fn change(s: &Session, p: &str, what: &Change, recursive: bool) -> KfsResult<()> {
    let mut todo = vec![p.to_string()];
    while let Some(p) = todo.pop() {
        let attr = s.client.stat(&p).await?;
        let set = match what {
            Change::Mode(spec) => SetAttr {
                mode: Some(
                    apply_mode(spec, attr.mode, attr.kind).map_err(KfsError::invalid_argument)?,
                ),
                ..Default::default()
            },
            Change::Owner(owner, group) => SetAttr {
                owner: *owner,
                group: *group,
                ..Default::default()
            },
        };
        s.client.set_attr(&p, set).await?;
        if recursive && attr.kind == FileKind::Dir {
            for e in s.client.list_all(&p).await?.into_iter().rev() {
                todo.push(path::join(&p, &e.name));
            }
        }
    }
    Ok(())
}

async fn change_each(
    s: &Session,
    paths: &[String],
    what: Change,
    verb: &str,
    recursive: bool,
) -> Result<(), Failed> {
    let what = &what;
    super::each_path(s, paths, verb, |p| async move {
        change(s, &p, what, recursive).await
    })
    .await
}

/// `chmod [-R] MODE PATH...`
pub(super) async fn chmod(
    s: &Session,
    mode: String,
    paths: &[String],
    recursive: bool,
) -> Result<(), Failed> {
    // A bad mode is found before anything changes.
    if let Err(e) = apply_mode(&mode, 0, FileKind::File) {
        report(e);
        return Err(Failed);
    }
    change_each(
        s,
        paths,
        Change::Mode(mode),
        "change the mode of",
        recursive,
    )
    .await
}

/// `chown [-R] OWNER[:GROUP] PATH...`
pub(super) async fn chown(
    s: &Session,
    spec: &str,
    paths: &[String],
    recursive: bool,
) -> Result<(), Failed> {
    let (owner, group) = match spec.split_once(':') {
        Some((o, g)) => (o, Some(g)),
        None => (spec, None),
    };
    let parsed = (|| {
        let owner = (!owner.is_empty()).then(|| user_id(owner)).transpose()?;
        let group = group.filter(|g| !g.is_empty()).map(group_id).transpose()?;
        if owner.is_none() && group.is_none() {
            return Err(format!("invalid owner: '{spec}'"));
        }
        Ok((owner, group))
    })();
    let (owner, group) = match parsed {
        Ok(ids) => ids,
        Err(e) => {
            report(e);
            return Err(Failed);
        }
    };
    change_each(
        s,
        paths,
        Change::Owner(owner, group),
        "change the owner of",
        recursive,
    )
    .await
}

/// `chgrp [-R] GROUP PATH...`
pub(super) async fn chgrp(
    s: &Session,
    group: &str,
    paths: &[String],
    recursive: bool,
) -> Result<(), Failed> {
    let gid = match group_id(group) {
        Ok(g) => g,
        Err(e) => {
            report(e);
            return Err(Failed);
        }
    };
    change_each(
        s,
        paths,
        Change::Owner(None, Some(gid)),
        "change the group of",
        recursive,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_chmod_1_reads_them() {
        let f = FileKind::File;
        assert_eq!(apply_mode("644", 0o777, f), Ok(0o644));
        assert_eq!(apply_mode("1777", 0, FileKind::Dir), Ok(0o1777));
        assert_eq!(apply_mode("u+x", 0o644, f), Ok(0o744));
        assert_eq!(apply_mode("go-w", 0o666, f), Ok(0o644));
        assert_eq!(apply_mode("a=r", 0o777, f), Ok(0o444));
        assert_eq!(apply_mode("=rw,o-w", 0o7, f), Ok(0o664));
        assert_eq!(apply_mode("a+X", 0o644, f), Ok(0o644));
        assert_eq!(apply_mode("a+X", 0o644, FileKind::Dir), Ok(0o755));
        assert_eq!(apply_mode("u+s,+t", 0o755, f), Ok(0o5755));
        assert_eq!(apply_mode("o=", 0o777, f), Ok(0o770));
        for bad in ["", "8", "u+q", "z+x", "u", "12345"] {
            assert!(apply_mode(bad, 0o644, f).is_err(), "{bad}");
        }
    }
}
