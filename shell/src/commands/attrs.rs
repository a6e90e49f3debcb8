//! The commands that change who may do what: `chmod`, `chown` and `chgrp`.
//!
//! Modes are octal (`644`, `1777`) or symbolic as chmod(1) writes them (`u+x`, `go-w`, `a=rX`,
//! comma separated; no `who` means all). Owners and groups are names the local system knows
//! (looked up through its user database, as NFS clients do) or numeric ids. With `-R`, every
//! file and directory below a directory changes too. The master checks and logs each change.

use super::{Failed, report};
use crate::format::failure;
use crate::session::Session;
use kfs_common::proto::master::SetAttr;
use kfs_common::{FileKind, KfsError, path};

/// The mode `spec` gives a file of `kind` whose mode is `mode`.
pub(crate) fn apply_mode(spec: &str, mode: u16, kind: FileKind) -> Result<u16, String> {
    if !spec.is_empty() && spec.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return match u32::from_str_radix(spec, 8) {
            Ok(bits) if bits <= 0o7777 => Ok(bits as u16),
            _ => Err(format!("invalid mode: '{spec}'")),
        };
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
            // `g=u`, `o+g`...: the permissions another class has now.
            let copied = match perms {
                "u" => Some((mode >> 6) & 7),
                "g" => Some((mode >> 3) & 7),
                "o" => Some(mode & 7),
                _ => None,
            };
            if let Some(class_bits) = copied {
                bits = class_bits * 0o111;
            }
            for p in perms.chars().filter(|_| copied.is_none()) {
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

/// The login group of the user `name` (a name or id the local system knows).
fn login_group(name: &str) -> Result<u32, String> {
    let user = match name.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
        Err(_) => nix::unistd::User::from_name(name),
    };
    match user {
        Ok(Some(u)) => Ok(u.gid.as_raw()),
        _ => Err(format!(
            "invalid user: '{name}' (no login group known for it)"
        )),
    }
}

/// What to change on every path.
enum Change {
    Mode(String),
    Owner(Option<u32>, Option<u32>),
}

/// Changes one path (and with `recursive` everything below it, going on past a failure);
/// each failure is reported, naming the path that failed. `Err` if anything failed.
async fn change(
    s: &Session,
    top: &str,
    what: &Change,
    recursive: bool,
    verb: &str,
) -> Result<(), Failed> {
    let mut failed = false;
    let mut todo = vec![top.to_string()];
    while let Some(p) = todo.pop() {
        let done = async {
            let attr = s.client.stat(&p).await?;
            let set = match what {
                Change::Mode(spec) => SetAttr {
                    mode: Some(
                        apply_mode(spec, attr.mode, attr.kind)
                            .map_err(KfsError::invalid_argument)?,
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
            Ok::<(), KfsError>(())
        };
        if let Err(e) = done.await {
            report(failure(verb, &p, &e));
            failed = true;
        }
    }
    if failed { Err(Failed) } else { Ok(()) }
}

async fn change_each(
    s: &Session,
    paths: &[String],
    what: Change,
    verb: &str,
    recursive: bool,
) -> Result<(), Failed> {
    let mut failed = false;
    for arg in paths {
        match s.expand(arg).await {
            Ok(expanded) => {
                for p in expanded {
                    failed |= change(s, &p, &what, recursive, verb).await.is_err();
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
        let owner_id = (!owner.is_empty()).then(|| user_id(owner)).transpose()?;
        let group = match group {
            // `OWNER:`: the owner's login group, as chown(1) does.
            Some("") if !owner.is_empty() => Some(login_group(owner)?),
            Some("") | None => None,
            Some(g) => Some(group_id(g)?),
        };
        if owner_id.is_none() && group.is_none() && spec != ":" {
            return Err(format!("invalid owner: '{spec}'"));
        }
        Ok((owner_id, group))
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
        assert_eq!(apply_mode("00755", 0, f), Ok(0o755));
        assert_eq!(apply_mode("g=u", 0o640, f), Ok(0o660));
        assert_eq!(apply_mode("o+g", 0o650, f), Ok(0o655));
        assert_eq!(apply_mode("-w", 0o666, f), Ok(0o444));
        for bad in ["", "8", "u+q", "z+x", "u", "17777", "g=uw"] {
            assert!(apply_mode(bad, 0o644, f).is_err(), "{bad}");
        }
    }
}
