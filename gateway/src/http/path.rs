//! The one place a request's URL path becomes a KFS path.
//!
//! The raw path (still percent-encoded) is split on `/` first, then each segment is decoded
//! exactly once, so an encoded slash (`%2F`) can never make a new segment and an encoded dot
//! segment (`%2e%2e`) is seen as the `..` it is. Refused with 400, naming the reason: `.` and `..`
//! segments, NUL, a decoded `/` inside a segment, bytes that are not UTF-8, names over 255 bytes,
//! paths over 4,096 bytes. Empty segments (`a//b`, a trailing `/`) are dropped. The result is the
//! gateway's root joined with the segments, and it always lies under the root.

use kfs_common::path::{MAX_NAME_LEN, MAX_PATH_LEN};
use percent_encoding::percent_decode_str;

/// Why a URL path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("a path segment is '.' or '..'")]
    DotSegment,
    #[error("a path segment holds a NUL byte")]
    Nul,
    #[error("a path segment holds an encoded '/'")]
    EncodedSlash,
    #[error("a path segment is not UTF-8 once decoded")]
    NotUtf8,
    #[error("a name is longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    #[error("the path is longer than {MAX_PATH_LEN} bytes")]
    PathTooLong,
}

/// Maps the raw URL path `raw` to a KFS path under `root` (an absolute KFS path, `/` for the
/// whole namespace).
pub fn to_kfs_path(root: &str, raw: &str) -> Result<String, BadPath> {
    // Checked before decoding, too, so a huge path costs nothing to refuse.
    if raw.len() > 3 * MAX_PATH_LEN {
        return Err(BadPath::PathTooLong);
    }
    let mut path = root.trim_end_matches('/').to_string();
    for segment in raw.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| BadPath::NotUtf8)?;
        let name: &str = &decoded;
        if name == "." || name == ".." {
            return Err(BadPath::DotSegment);
        }
        if name.contains('\0') {
            return Err(BadPath::Nul);
        }
        if name.contains('/') {
            return Err(BadPath::EncodedSlash);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(BadPath::NameTooLong);
        }
        path.push('/');
        path.push_str(name);
        if path.len() > MAX_PATH_LEN {
            return Err(BadPath::PathTooLong);
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_and_encoded_paths_map_under_the_root() {
        assert_eq!(to_kfs_path("/", "/").unwrap(), "/");
        assert_eq!(to_kfs_path("/", "").unwrap(), "/");
        assert_eq!(to_kfs_path("/", "/a/b.jpg").unwrap(), "/a/b.jpg");
        assert_eq!(to_kfs_path("/", "/a//b/").unwrap(), "/a/b");
        assert_eq!(to_kfs_path("/site", "/a%20b.jpg").unwrap(), "/site/a b.jpg");
        assert_eq!(to_kfs_path("/site/", "/").unwrap(), "/site");
        assert_eq!(to_kfs_path("/", "/%C3%A9t%C3%A9").unwrap(), "/été");
        // A literal '%25' decodes once, to '%', and stays that.
        assert_eq!(to_kfs_path("/", "/100%252e").unwrap(), "/100%2e");
        // Three dots are a name.
        assert_eq!(to_kfs_path("/", "/.../x").unwrap(), "/.../x");
    }

    #[test]
    fn traversal_nul_and_long_names_are_refused() {
        for raw in [
            "/..",
            "/a/../b",
            "/%2e%2e/etc/passwd",
            "/%2E%2E",
            "/.%2e/x",
            "/./a",
            "/%2e",
        ] {
            assert_eq!(to_kfs_path("/site", raw), Err(BadPath::DotSegment), "{raw}");
        }
        assert_eq!(to_kfs_path("/", "/a%00b"), Err(BadPath::Nul));
        assert_eq!(to_kfs_path("/", "/a%2f..%2fb"), Err(BadPath::EncodedSlash));
        assert_eq!(to_kfs_path("/", "/%ff"), Err(BadPath::NotUtf8));
        let long = "n".repeat(256);
        assert_eq!(
            to_kfs_path("/", &format!("/{long}")),
            Err(BadPath::NameTooLong)
        );
        let deep = "/abcdefgh".repeat(MAX_PATH_LEN / 9 + 1);
        assert_eq!(to_kfs_path("/", &deep), Err(BadPath::PathTooLong));
    }

    proptest! {
        /// Whatever the URL, an accepted path is a valid KFS path under the root.
        #[test]
        fn accepted_paths_stay_under_the_root(raw in "(/([a-z.]{0,3}|%2[eEfF]|%00|%25|\\.\\.)){0,6}") {
            if let Ok(path) = to_kfs_path("/site", &raw) {
                prop_assert!(path == "/site" || path.starts_with("/site/"), "{path}");
                prop_assert!(kfs_common::path::components(&path).is_ok(), "{path}");
                prop_assert!(!path.split('/').any(|c| c == ".." || c == "."), "{path}");
            }
        }
    }
}
