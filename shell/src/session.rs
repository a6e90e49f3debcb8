//! A shell session: the client, the working directory, and how arguments become paths.
//!
//! Arguments are relative to the working directory unless they start with `/`; `.` and `..`
//! work as usual. A component with `*`, `?` or `[...]` is a glob pattern, expanded against the
//! directory listings (`ls /photos/*.jpg`); a pattern that matches nothing is an error.

use futures::StreamExt;
use kfs_client::Client;
use kfs_common::{FileKind, KfsError, KfsResult, path};

pub struct Session {
    pub client: Client,
    pub cwd: String,
    /// Whether a person is typing (progress bars, `cd`).
    pub interactive: bool,
}

fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Session {
    pub fn new(client: Client, interactive: bool) -> Session {
        Session {
            client,
            cwd: "/".to_string(),
            interactive,
        }
    }

    /// The absolute path an argument names.
    pub fn resolve(&self, arg: &str) -> KfsResult<String> {
        path::normalize(&self.cwd, arg)
    }

    /// The paths an argument names: one, or every match of a glob pattern.
    pub async fn expand(&self, arg: &str) -> KfsResult<Vec<String>> {
        let full = self.resolve(arg)?;
        if !is_pattern(&full) {
            return Ok(vec![full]);
        }
        let mut matches = vec!["/".to_string()];
        for component in path::components(&full)? {
            let mut next = Vec::new();
            for dir in &matches {
                if !is_pattern(component) {
                    next.push(path::join(dir, component));
                    continue;
                }
                let pattern = glob::Pattern::new(component).map_err(|e| {
                    KfsError::invalid_argument(format!("bad pattern '{component}': {e}"))
                })?;
                let mut entries = self.client.list(dir);
                while let Some(entry) = entries.next().await {
                    let entry = match entry {
                        Ok(e) => e,
                        // A non-directory along a pattern simply matches nothing.
                        Err(KfsError::NotADirectory { .. }) => break,
                        Err(e) => return Err(e),
                    };
                    if pattern.matches(&entry.name) {
                        next.push(path::join(dir, &entry.name));
                    }
                }
            }
            matches = next;
        }
        if matches.is_empty() {
            return Err(KfsError::not_found(full));
        }
        Ok(matches)
    }

    /// Whether `path` is an existing directory.
    pub async fn is_dir(&self, path: &str) -> bool {
        matches!(self.client.stat(path).await, Ok(a) if a.kind == FileKind::Dir)
    }
}
