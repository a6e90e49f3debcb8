//! Tab completion in the interactive shell: the command, then each argument by what it is: a
//! flag of the command (from its clap definition), a subcommand (`xattr get`, `admin safemode
//! wait`), a command name (`help`), a local path (`put`'s and `appendToFile`'s sources, `get`'s
//! target) or a remote path (the rest). Tab completes what all candidates share, and a second
//! Tab lists them (rustyline's `CompletionType::List`, as bash does).
//!
//! Words are split as the shell splits a line (quotes and backslashes: `shell_words`), and
//! names are completed escaped with backslashes, so names with spaces and quotes work.
//!
//! Where an argument could be either side (`put LOCAL... REMOTE`: the last word is remote, but
//! which word is last is not known while typing), the first positional of `put` is local and
//! later ones are local if anything local matches, else remote; `get` the other way round.

use crate::cli::{COMMANDS, Line};
use clap::CommandFactory;
use futures::StreamExt;
use kfs_common::{FileKind, path};
use rustyline::Helper;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;

/// What the shell's line editor completes with.
pub struct KfsHelper {
    pub rt: Handle,
    pub client: kfs_client::Client,
    /// The shell's working directory, kept current by the shell.
    pub cwd: Arc<Mutex<String>>,
}

/// The word under the cursor: where it starts in the line (its opening quote included), its
/// text as the shell will read it, and the words before it.
#[derive(Debug, PartialEq)]
struct Current {
    start: usize,
    text: String,
    before: Vec<String>,
}

/// Splits `line` (up to the cursor) as `shell_words` would, keeping where the last word starts.
fn current_word(line: &str) -> Current {
    let mut before = Vec::new();
    let (mut text, mut start, mut in_word) = (String::new(), 0, false);
    let (mut single, mut double, mut escaped) = (false, false, false);
    for (i, c) in line.char_indices() {
        if !in_word {
            if c.is_whitespace() {
                continue;
            }
            in_word = true;
            start = i;
        }
        match c {
            _ if escaped => {
                text.push(c);
                escaped = false;
            }
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            c if c.is_whitespace() && !single && !double => {
                before.push(std::mem::take(&mut text));
                in_word = false;
            }
            c => text.push(c),
        }
    }
    if !in_word {
        start = line.len();
    }
    Current {
        start,
        text,
        before,
    }
}

/// `name` as the shell reads it back: backslashes before spaces, quotes and the characters
/// the shell would take apart.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_whitespace() || "\\'\"$`;&|<>()#".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What the word under the cursor is.
#[derive(Debug, PartialEq)]
enum Kind {
    Command,
    Flag(String),
    Words(Vec<String>),
    Local,
    Remote,
    /// `put`'s later words: local if anything local matches, else remote.
    LocalFirst,
    /// `get`'s later words: remote if anything remote matches, else local.
    RemoteFirst,
    Nothing,
}

/// The positional words after the command (flags, and the values of flags that take one,
/// left out).
fn positionals(command: &clap::Command, words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for w in words {
        if skip_value {
            skip_value = false;
            continue;
        }
        if let Some(flag) = w.strip_prefix('-').filter(|f| !f.is_empty()) {
            let takes_value = command.get_arguments().any(|a| {
                let named = match flag.strip_prefix('-') {
                    Some(long) => a.get_long() == Some(long),
                    None => flag.len() == 1 && a.get_short() == flag.chars().next(),
                };
                named && a.get_action().takes_values() && !flag.contains('=')
            });
            skip_value = takes_value;
            continue;
        }
        out.push(w.clone());
    }
    out
}

fn kind_of(current: &Current) -> Kind {
    let Some((name, args)) = current.before.split_first() else {
        return Kind::Command;
    };
    let line = Line::command();
    let Some(command) = line.find_subcommand(name) else {
        return Kind::Nothing;
    };
    if current.text.starts_with('-') {
        return Kind::Flag(name.clone());
    }
    let words = |w: &[&str]| Kind::Words(w.iter().map(|s| s.to_string()).collect());
    let args = positionals(command, args);
    match (command.get_name(), args.as_slice()) {
        ("help", []) => words(COMMANDS),
        ("help", _) => Kind::Nothing,
        ("xattr", []) => words(&["get", "set", "list", "rm"]),
        ("admin", []) => words(&["decommission", "workers", "safemode", "checkpoint"]),
        ("admin", [sub]) if sub == "safemode" => words(&["get", "leave", "wait"]),
        ("admin", _) => Kind::Nothing,
        ("put" | "appendToFile", []) => Kind::Local,
        ("put" | "appendToFile", _) => Kind::LocalFirst,
        ("get", []) => Kind::Remote,
        ("get", _) => Kind::RemoteFirst,
        // The first word is a mode, an owner, a factor or a length.
        ("chmod" | "chown" | "chgrp" | "setrep" | "truncate", []) => Kind::Nothing,
        _ => Kind::Remote,
    }
}

/// Candidates completing `text` from `names` (`(name, is a directory)`): the part of `text` up
/// to its last `/` is kept, each name escaped, directories ending in `/`, others in a space.
fn candidates(text: &str, names: Vec<(String, bool)>) -> Vec<Pair> {
    let dir_part = text.rfind('/').map_or("", |i| &text[..=i]);
    let mut out: Vec<Pair> = names
        .into_iter()
        .map(|(name, is_dir)| Pair {
            display: if is_dir {
                format!("{name}/")
            } else {
                name.clone()
            },
            replacement: format!(
                "{}{}{}",
                escape(dir_part),
                escape(&name),
                if is_dir { "/" } else { " " }
            ),
        })
        .collect();
    out.sort_by(|a, b| a.display.cmp(&b.display));
    out
}

/// The names in local directory of `text` that start as its last part does.
fn local_names(text: &str) -> Vec<(String, bool)> {
    let (dir, prefix) = match text.rfind('/') {
        Some(i) => (if i == 0 { "/" } else { &text[..i] }, &text[i + 1..]),
        None => (".", text),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let is_dir = std::fs::metadata(e.path()).is_ok_and(|m| m.is_dir());
            (name.starts_with(prefix) && (!name.starts_with('.') || prefix.starts_with('.')))
                .then_some((name, is_dir))
        })
        .collect()
}

impl KfsHelper {
    /// The names in the remote directory of `text` that start as its last part does.
    fn remote_names(&self, text: &str) -> Vec<(String, bool)> {
        let (dir_part, prefix) = match text.rfind('/') {
            Some(i) => (&text[..=i], &text[i + 1..]),
            None => ("", text),
        };
        let cwd = self.cwd.lock().expect("cwd lock").clone();
        let Ok(dir) = path::normalize(&cwd, if dir_part.is_empty() { "." } else { dir_part })
        else {
            return Vec::new();
        };
        let client = self.client.clone();
        let prefix = prefix.to_string();
        self.rt.block_on(async move {
            let mut out = Vec::new();
            let mut entries = client.list(&dir);
            while let Some(Ok(e)) = entries.next().await {
                if e.name.starts_with(&prefix) {
                    out.push((e.name, e.kind == FileKind::Dir));
                }
            }
            out
        })
    }

    /// The flags of the command `name` that start with `text`.
    fn flags(name: &str, text: &str) -> Vec<Pair> {
        let line = Line::command();
        let Some(command) = line.find_subcommand(name) else {
            return Vec::new();
        };
        let mut out: Vec<Pair> = command
            .get_arguments()
            .filter(|a| !a.is_positional() && !a.is_hide_set())
            .flat_map(|a| {
                let long = a.get_long().map(|l| format!("--{l}"));
                let short = a.get_short().map(|s| format!("-{s}"));
                long.into_iter().chain(short)
            })
            .filter(|f| f.starts_with(text))
            .map(|f| Pair {
                display: f.clone(),
                replacement: format!("{f} "),
            })
            .collect();
        out.sort_by(|a, b| a.display.cmp(&b.display));
        out.dedup_by(|a, b| a.display == b.display);
        out
    }
}

impl Completer for KfsHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let current = current_word(&line[..pos]);
        let text = current.text.clone();
        let words = |names: Vec<String>| -> Vec<Pair> {
            names
                .into_iter()
                .filter(|n| n.starts_with(&text))
                .map(|n| Pair {
                    display: n.clone(),
                    replacement: format!("{n} "),
                })
                .collect()
        };
        let found = match kind_of(&current) {
            Kind::Command => words(COMMANDS.iter().map(|c| c.to_string()).collect()),
            Kind::Words(names) => words(names),
            Kind::Flag(command) => Self::flags(&command, &text),
            Kind::Local => candidates(&text, local_names(&text)),
            Kind::Remote => candidates(&text, self.remote_names(&text)),
            Kind::LocalFirst => match local_names(&text) {
                local if !local.is_empty() => candidates(&text, local),
                _ => candidates(&text, self.remote_names(&text)),
            },
            Kind::RemoteFirst => match self.remote_names(&text) {
                remote if !remote.is_empty() => candidates(&text, remote),
                _ => candidates(&text, local_names(&text)),
            },
            Kind::Nothing => Vec::new(),
        };
        Ok((current.start, found))
    }
}

impl Hinter for KfsHelper {
    type Hint = String;
}

impl Highlighter for KfsHelper {}

impl Validator for KfsHelper {}

impl Helper for KfsHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_word_under_the_cursor_is_read_as_the_shell_reads_it() {
        let c = current_word("put my\\ ph");
        assert_eq!((c.start, c.text.as_str()), (4, "my ph"));
        assert_eq!(c.before, words(&["put"]));
        let c = current_word("cat 'two words' \"a b");
        assert_eq!((c.start, c.text.as_str()), (16, "a b"));
        assert_eq!(c.before, words(&["cat", "two words"]));
        let c = current_word("ls ");
        assert_eq!((c.start, c.text.as_str()), (3, ""));
        assert_eq!(escape("it's a \"b\""), "it\\'s\\ a\\ \\\"b\\\"");
        assert_eq!(shell_words::split(&escape("a b'c")).unwrap(), ["a b'c"]);
    }

    #[test]
    fn each_argument_completes_by_what_it_is() {
        let kind = |line: &str| kind_of(&current_word(line));
        assert_eq!(kind("l"), Kind::Command);
        assert_eq!(kind("ls --j"), Kind::Flag("ls".into()));
        assert_eq!(kind("put "), Kind::Local);
        assert_eq!(kind("put --replication 2 "), Kind::Local);
        assert_eq!(kind("put a "), Kind::LocalFirst);
        assert_eq!(kind("get "), Kind::Remote);
        assert_eq!(kind("get a "), Kind::RemoteFirst);
        assert_eq!(kind("chmod "), Kind::Nothing);
        assert_eq!(kind("chmod 644 "), Kind::Remote);
        assert_eq!(kind("cat "), Kind::Remote);
        assert!(matches!(kind("admin safemode "), Kind::Words(w) if w.len() == 3));
        assert!(matches!(kind("help "), Kind::Words(_)));
        let flags = KfsHelper::flags("ls", "--j");
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].replacement, "--json ");
        let c = candidates(
            "d/my",
            vec![("my photo.jpg".into(), false), ("my dir".into(), true)],
        );
        assert_eq!(c[0].replacement, "d/my\\ dir/");
        assert_eq!(c[1].replacement, "d/my\\ photo.jpg ");
    }
}
