//! Path rules of the KFS namespace.
//!
//! A valid path is absolute and `/`-separated: `/` alone is the root; every other path is `/`
//! followed by one or more names joined by `/`. No name is empty (no `//`, no trailing `/`), `.` or
//! `..`; a name is at most [`MAX_NAME_LEN`] bytes, a path at most [`MAX_PATH_LEN`] bytes, and neither
//! holds a NUL byte. The master accepts only such paths; tools that take user input (the shell, the
//! client's helpers) normalise it first with [`normalize`].

use crate::error::{KfsError, KfsResult};

/// Longest name of one path component, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Longest path, in bytes. Above Linux's `PATH_MAX` (4096, the longest path one system call
/// takes): a mount of a KFS directory below the root (or a process's working directory deep
/// in a mount) reaches KFS paths longer than any one call names.
pub const MAX_PATH_LEN: usize = 16384;

/// Prefix of the temporary file an upload (a `kfs put`, a gateway `PUT`) writes beside its
/// target before renaming it over the target: listings that hide uploads in progress skip these
/// names, and the master removes one whose writer is gone (`abandoned_upload_ms`).
pub const UPLOAD_PREFIX: &str = ".kfs-upload-";

/// Checks one name (a path component, or an extended attribute's name).
pub fn validate_name(path: &str, name: &str) -> KfsResult<()> {
    let reason = if name.is_empty() {
        "empty name"
    } else if name == "." || name == ".." {
        "'.' and '..' are not names"
    } else if name.len() > MAX_NAME_LEN {
        "name longer than 255 bytes"
    } else if name.contains('\0') {
        "NUL byte in name"
    } else if name.contains('/') {
        "'/' in name"
    } else {
        return Ok(());
    };
    Err(KfsError::invalid_path(path, reason))
}

/// Checks that `path` is a valid absolute path.
pub fn validate(path: &str) -> KfsResult<()> {
    components(path).map(|_| ())
}

/// The names of a valid path, root first; empty for `/`.
pub fn components(path: &str) -> KfsResult<Vec<&str>> {
    if !path.starts_with('/') {
        return Err(KfsError::invalid_path(path, "not absolute"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(KfsError::invalid_path(path, "longer than 4096 bytes"));
    }
    if path == "/" {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = path[1..].split('/').collect();
    for name in &names {
        validate_name(path, name)?;
    }
    Ok(names)
}

/// Splits a valid path into its parent path and last name; `None` for the root.
pub fn split_parent(path: &str) -> KfsResult<Option<(&str, &str)>> {
    validate(path)?;
    if path == "/" {
        return Ok(None);
    }
    let cut = path.rfind('/').expect("a valid path starts with '/'");
    let parent = if cut == 0 { "/" } else { &path[..cut] };
    Ok(Some((parent, &path[cut + 1..])))
}

/// Joins a valid directory path and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Whether `path` is `ancestor` itself or lies below it.
pub fn is_same_or_below(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// Turns user input into a valid absolute path: relative input is taken from `cwd`, repeated and
/// trailing slashes are dropped, `.` is skipped and `..` goes up (never above the root).
pub fn normalize(cwd: &str, input: &str) -> KfsResult<String> {
    let mut names: Vec<&str> = if input.starts_with('/') {
        Vec::new()
    } else {
        components(cwd)?
    };
    for name in input.split('/') {
        match name {
            "" | "." => {}
            ".." => {
                names.pop();
            }
            name => names.push(name),
        }
    }
    let path = if names.is_empty() {
        "/".to_string()
    } else {
        names.iter().fold(String::new(), |acc, n| acc + "/" + n)
    };
    validate(&path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_paths() {
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(components("/a").unwrap(), vec!["a"]);
        assert_eq!(
            components("/a/b c/d.jpg").unwrap(),
            vec!["a", "b c", "d.jpg"]
        );
        assert_eq!(components("/...").unwrap(), vec!["..."]);
        let long_name = "x".repeat(255);
        assert!(validate(&format!("/{long_name}")).is_ok());
    }

    #[test]
    fn rejects_bad_paths_with_a_reason() {
        let cases = [
            ("", "not absolute"),
            ("a/b", "not absolute"),
            ("//a", "empty name"),
            ("/a/", "empty name"),
            ("/a//b", "empty name"),
            ("/a/./b", "'.' and '..' are not names"),
            ("/a/..", "'.' and '..' are not names"),
            ("/a\0b", "NUL byte in name"),
        ];
        for (path, reason) in cases {
            match validate(path) {
                Err(KfsError::InvalidPath { path: p, reason: r }) => {
                    assert_eq!(p, path);
                    assert_eq!(r, reason, "for {path:?}");
                }
                other => panic!("{path:?} gave {other:?}"),
            }
        }
        assert!(validate(&format!("/{}", "x".repeat(256))).is_err());
        let deep = "/abcdefg".repeat(MAX_PATH_LEN / 8 + 1);
        assert!(deep.len() > MAX_PATH_LEN);
        assert!(validate(&deep).is_err());
    }

    #[test]
    fn splits_parent_and_name() {
        assert_eq!(split_parent("/").unwrap(), None);
        assert_eq!(split_parent("/a").unwrap(), Some(("/", "a")));
        assert_eq!(split_parent("/a/b/c").unwrap(), Some(("/a/b", "c")));
        assert!(split_parent("/a/").is_err());
    }

    #[test]
    fn ancestry() {
        assert!(is_same_or_below("/a/b", "/a"));
        assert!(is_same_or_below("/a", "/a"));
        assert!(is_same_or_below("/a", "/"));
        assert!(!is_same_or_below("/ab", "/a"));
        assert!(!is_same_or_below("/a", "/a/b"));
    }

    #[test]
    fn normalizes_user_input() {
        assert_eq!(normalize("/", "a//b/").unwrap(), "/a/b");
        assert_eq!(normalize("/x/y", "../z").unwrap(), "/x/z");
        assert_eq!(normalize("/x", "./.").unwrap(), "/x");
        assert_eq!(normalize("/x", "../../..").unwrap(), "/");
        assert_eq!(normalize("/x", "/abs").unwrap(), "/abs");
        assert!(normalize("/", "a\0").is_err());
    }
}
