//! The commands that walk listings: `ls`, `find` and `tree`.
//!
//! `ls` prints the files named first, then each directory's entries: in name order, or newest
//! first (`-t`), or largest first (`-S`), reversed with `-r`; `-d` lists a directory itself;
//! `-R` walks below, depth first in name order; `--json` prints one array of every entry with
//! all its attributes. `find` takes the start paths, then its tests (`-name`, `-iname`,
//! `-type`), as find(1) does, and prints each match's full path, the start included. `tree`
//! draws a directory's entries below it and ends with the counts, as tree(1) does.

use super::{Failed, outln, report};
use crate::cli::LsFlags;
use crate::format::{self, failure};
use crate::json;
use crate::session::Session;
use kfs_common::proto::master::FileAttr;
use kfs_common::{FileKind, KfsError, KfsResult, path};

/// One entry to print: its name as shown, its full path, its attributes.
struct Entry {
    name: String,
    path: String,
    attr: FileAttr,
}

fn sort(entries: &mut [Entry], flags: &LsFlags) {
    if flags.by_time {
        entries.sort_by(|a, b| b.attr.mtime.cmp(&a.attr.mtime).then(a.name.cmp(&b.name)));
    } else if flags.by_size {
        entries.sort_by(|a, b| b.attr.size.cmp(&a.attr.size).then(a.name.cmp(&b.name)));
    } else {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if flags.reverse {
        entries.reverse();
    }
}

fn print_entries(entries: &[Entry], flags: &LsFlags) {
    for e in entries {
        if flags.long {
            outln(format::long_entry(&e.name, &e.attr, flags.human));
        } else if e.attr.kind == FileKind::Dir && !flags.directory {
            outln(format!("{}/", e.name));
        } else {
            outln(&e.name);
        }
    }
}

/// A directory's entries with their attributes.
async fn entries_of(s: &Session, dir: &str) -> KfsResult<Vec<Entry>> {
    use futures::StreamExt;
    let mut listing = s.client.list_with_attrs(dir);
    let mut out = Vec::new();
    while let Some(e) = listing.next().await {
        let e = e?;
        let attr = e.attr.clone().expect("listed with attributes");
        out.push(Entry {
            path: path::join(dir, &e.name),
            name: e.name,
            attr,
        });
    }
    Ok(out)
}

/// `ls`: see the module docs.
pub(super) async fn ls(s: &Session, args: Vec<String>, flags: LsFlags) -> Result<(), Failed> {
    let args = if args.is_empty() {
        vec![s.cwd.clone()]
    } else {
        args
    };
    let mut failed = false;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
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
                Ok(attr) => {
                    let entry = Entry {
                        name: p.clone(),
                        path: p,
                        attr,
                    };
                    if entry.attr.kind == FileKind::Dir && !flags.directory {
                        dirs.push(entry);
                    } else {
                        files.push(entry);
                    }
                }
                Err(e) => {
                    report(failure("access", &p, &e));
                    failed = true;
                }
            }
        }
    }
    sort(&mut files, &flags);
    sort(&mut dirs, &flags);
    let mut json_out = Vec::new();
    if flags.json {
        json_out.extend(files.iter().map(|e| json::attr(&e.path, &e.name, &e.attr)));
    } else {
        print_entries(&files, &flags);
    }
    let several = files.len() + dirs.len() > 1 || flags.recursive;
    let mut first = files.is_empty();
    // Depth first: a stack, the next directory on top.
    let mut stack: Vec<String> = dirs.into_iter().rev().map(|d| d.path).collect();
    while let Some(dir) = stack.pop() {
        let mut entries = match entries_of(s, &dir).await {
            Ok(entries) => entries,
            Err(e) => {
                report(failure("list", &dir, &e));
                failed = true;
                continue;
            }
        };
        sort(&mut entries, &flags);
        if flags.json {
            json_out.extend(
                entries
                    .iter()
                    .map(|e| json::attr(&e.path, &e.name, &e.attr)),
            );
        } else {
            if several {
                if !first {
                    outln("");
                }
                outln(format!("{dir}:"));
            }
            print_entries(&entries, &flags);
        }
        first = false;
        if flags.recursive {
            let mut subdirs: Vec<&Entry> = entries
                .iter()
                .filter(|e| e.attr.kind == FileKind::Dir)
                .collect();
            subdirs.sort_by(|a, b| a.name.cmp(&b.name));
            stack.extend(subdirs.into_iter().rev().map(|e| e.path.clone()));
        }
    }
    if flags.json {
        json::print(&serde_json::Value::Array(json_out));
    }
    if failed { Err(Failed) } else { Ok(()) }
}

/// What `find` looks for.
#[derive(Debug, Default)]
struct FindTests {
    starts: Vec<String>,
    names: Vec<glob::Pattern>,
    inames: Vec<glob::Pattern>,
    kind: Option<FileKind>,
    max_depth: Option<usize>,
}

fn parse_find(words: &[String]) -> KfsResult<FindTests> {
    let mut tests = FindTests::default();
    let mut words = words.iter();
    let pattern = |p: &str, lower: bool| {
        let p = if lower {
            p.to_lowercase()
        } else {
            p.to_string()
        };
        glob::Pattern::new(&p)
            .map_err(|e| KfsError::invalid_argument(format!("find: bad pattern '{p}': {e}")))
    };
    let mut tests_begun = false;
    while let Some(w) = words.next() {
        tests_begun |= w.starts_with('-');
        let mut value = |test: &str| {
            words
                .next()
                .ok_or_else(|| KfsError::invalid_argument(format!("find: {test} needs a value")))
        };
        match w.as_str() {
            "-name" => tests.names.push(pattern(value("-name")?, false)?),
            "-iname" => tests.inames.push(pattern(value("-iname")?, true)?),
            "-type" => {
                tests.kind = Some(match value("-type")?.as_str() {
                    "f" => FileKind::File,
                    "d" => FileKind::Dir,
                    "l" => FileKind::Symlink,
                    "p" => FileKind::Fifo,
                    "s" => FileKind::Socket,
                    "c" => FileKind::CharDevice,
                    "b" => FileKind::BlockDevice,
                    other => {
                        return Err(KfsError::invalid_argument(format!(
                            "find: -type {other}: one of f, d, l, p, s, c, b"
                        )));
                    }
                })
            }
            "-maxdepth" => {
                let v = value("-maxdepth")?;
                tests.max_depth = Some(v.parse().map_err(|_| {
                    KfsError::invalid_argument(format!("find: -maxdepth {v}: not a number"))
                })?);
            }
            "-print" => {}
            w if w.starts_with('-') => {
                return Err(KfsError::invalid_argument(format!(
                    "find: unknown test '{w}' (KFS's find knows -name, -iname, -type, -maxdepth)"
                )));
            }
            w if !tests_begun => tests.starts.push(w.to_string()),
            w => {
                return Err(KfsError::invalid_argument(format!(
                    "find: paths must come before the tests ('{w}')"
                )));
            }
        }
    }
    Ok(tests)
}

impl FindTests {
    fn matches(&self, name: &str, kind: FileKind) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && self.names.iter().all(|p| p.matches(name))
            && self.inames.iter().all(|p| p.matches(&name.to_lowercase()))
    }
}

/// `find [PATH...] [-name P] [-iname P] [-type f|d] [-maxdepth N]`.
pub(super) async fn find(s: &Session, expression: &[String]) -> Result<(), Failed> {
    let tests = match parse_find(expression) {
        Ok(t) => t,
        Err(e) => {
            report(e.reason());
            return Err(Failed);
        }
    };
    let starts = if tests.starts.is_empty() {
        vec![s.cwd.clone()]
    } else {
        tests.starts.clone()
    };
    let mut failed = false;
    for arg in &starts {
        let paths = match s.expand(arg).await {
            Ok(p) => p,
            Err(e) => {
                report(failure("find", arg, &e));
                failed = true;
                continue;
            }
        };
        for start in paths {
            let attr = match s.client.stat(&start).await {
                Ok(a) => a,
                Err(e) => {
                    report(failure("find", &start, &e));
                    failed = true;
                    continue;
                }
            };
            // Depth first, pre-order, names in order.
            let mut stack = vec![(start.clone(), attr.kind, 0usize)];
            while let Some((p, kind, depth)) = stack.pop() {
                let name = p
                    .rsplit('/')
                    .next()
                    .filter(|n| !n.is_empty())
                    .unwrap_or("/");
                if tests.matches(name, kind) {
                    outln(&p);
                }
                if kind != FileKind::Dir || tests.max_depth.is_some_and(|m| depth >= m) {
                    continue;
                }
                match s.client.list_all(&p).await {
                    Ok(entries) => stack.extend(
                        entries
                            .into_iter()
                            .rev()
                            .map(|e| (path::join(&p, &e.name), e.kind, depth + 1)),
                    ),
                    Err(e) => {
                        report(failure("find", &p, &e));
                        failed = true;
                    }
                }
            }
        }
    }
    if failed { Err(Failed) } else { Ok(()) }
}

/// What `tree` counted, and whether a listing failed.
#[derive(Default)]
struct Drawn {
    dirs: u64,
    files: u64,
    failed: bool,
}

/// Draws the entries of `dir`, each line after `prefix`, then theirs below them.
async fn draw(
    s: &Session,
    dir: &str,
    prefix: &str,
    depth: usize,
    levels: Option<usize>,
    dirs_only: bool,
    drawn: &mut Drawn,
) {
    let entries = match s.client.list_all(dir).await {
        Ok(entries) => entries,
        Err(e) => {
            report(failure("list", dir, &e));
            drawn.failed = true;
            return;
        }
    };
    let shown: Vec<_> = entries
        .into_iter()
        .filter(|e| !dirs_only || e.kind == FileKind::Dir)
        .collect();
    let count = shown.len();
    for (i, entry) in shown.into_iter().enumerate() {
        let last = i + 1 == count;
        let branch = if last { "└── " } else { "├── " };
        match entry.kind {
            FileKind::File => {
                drawn.files += 1;
                outln(format!("{prefix}{branch}{}", entry.name));
            }
            kind @ (FileKind::Symlink
            | FileKind::Fifo
            | FileKind::Socket
            | FileKind::CharDevice
            | FileKind::BlockDevice) => {
                drawn.files += 1;
                outln(format!(
                    "{prefix}{branch}{}{}",
                    entry.name,
                    format::kind_suffix(kind)
                ));
            }
            FileKind::Dir => {
                drawn.dirs += 1;
                outln(format!("{prefix}{branch}{}/", entry.name));
                if levels.is_none_or(|l| depth < l) {
                    let child = path::join(dir, &entry.name);
                    let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
                    Box::pin(draw(
                        s,
                        &child,
                        &child_prefix,
                        depth + 1,
                        levels,
                        dirs_only,
                        drawn,
                    ))
                    .await;
                }
            }
        }
    }
}

/// `tree [-L LEVELS] [-d] [DIR]`.
pub(super) async fn tree(
    s: &Session,
    arg: Option<String>,
    levels: Option<usize>,
    dirs_only: bool,
) -> Result<(), Failed> {
    let arg = arg.unwrap_or_else(|| s.cwd.clone());
    let top = match super::one_path(s, &arg).await {
        Ok(p) => p,
        Err(e) => {
            report(failure("list", &arg, &e));
            return Err(Failed);
        }
    };
    match s.client.stat(&top).await {
        Ok(a) if a.kind == FileKind::Dir => {}
        Ok(_) => {
            report(failure(
                "list",
                &top,
                &KfsError::not_a_directory(top.as_str()),
            ));
            return Err(Failed);
        }
        Err(e) => {
            report(failure("list", &top, &e));
            return Err(Failed);
        }
    }
    outln(&top);
    let mut drawn = Drawn::default();
    draw(s, &top, "", 1, levels, dirs_only, &mut drawn).await;
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    outln("");
    if dirs_only {
        outln(plural(drawn.dirs, "directory", "directories"));
    } else {
        outln(format!(
            "{}, {}",
            plural(drawn.dirs, "directory", "directories"),
            plural(drawn.files, "file", "files")
        ));
    }
    if drawn.failed { Err(Failed) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn find_reads_its_expression_as_find_1_does() {
        let t = parse_find(&words("/a /b -name *.jpg -type f")).unwrap();
        assert_eq!(t.starts, ["/a", "/b"]);
        assert!(t.matches("x.jpg", FileKind::File));
        assert!(!t.matches("x.jpg", FileKind::Dir));
        assert!(!t.matches("x.png", FileKind::File));
        let t = parse_find(&words("-iname *.JPG")).unwrap();
        assert!(t.starts.is_empty());
        assert!(t.matches("Y.jpg", FileKind::Dir));
        for bad in [
            "-name",
            "-type x",
            "-size 3",
            "-name a /late",
            "-maxdepth 1 /late",
            "-print /x",
        ] {
            assert!(parse_find(&words(bad)).is_err(), "{bad}");
        }
    }
}
