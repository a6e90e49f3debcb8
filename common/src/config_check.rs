//! Checks that `--check-config` runs on the places a configuration names, shared by the master
//! and the chunkserver. Each returns a message that names the key, the path and what is wrong.

use std::path::Path;

/// `dir` exists, is a directory, and this process may create files in it.
pub fn writable_dir(key: &str, dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    if !dir.is_absolute() {
        return Err(format!(
            "{key} {shown} is a relative path; give an absolute one"
        ));
    }
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{key} {shown} does not exist (create it, or mount its disk, before starting)"
        )),
        Err(e) => Err(format!("{key} {shown}: {e}")),
        Ok(meta) if !meta.is_dir() => Err(format!("{key} {shown} is not a directory")),
        Ok(_) => rustix::fs::access(
            dir,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        )
        .map_err(|e| {
            format!(
                "{key} {shown} is not writable by this user: {}",
                std::io::Error::from(e)
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_key_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        writable_dir("meta_dir", dir.path()).unwrap();
        let missing = dir.path().join("nope");
        let err = writable_dir("meta_dir", &missing).unwrap_err();
        assert!(
            err.contains("meta_dir") && err.contains("does not exist"),
            "{err}"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = writable_dir("data directory", &file).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        let err = writable_dir("meta_dir", Path::new("rel/dir")).unwrap_err();
        assert!(err.contains("relative"), "{err}");
    }
}
