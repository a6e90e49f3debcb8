//! Records the git commit `kfs` is built from (`kfs bench` reports carry it); `unknown` outside
//! a git checkout, with `-dirty` when the tree has uncommitted changes.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    // No index refresh: `git status` would otherwise rewrite .git/index and run this again.
    let out = Command::new("git")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let suffix = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=KFS_GIT_COMMIT={commit}{suffix}");
    // Any change to the code of the workspace runs this again, so `-dirty` is current.
    for src in [
        "src",
        "../common/src",
        "../master/src",
        "../chunkserver/src",
        "../client-lib/src",
    ] {
        println!("cargo:rerun-if-changed={src}");
    }
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head_ref}");
        }
    }
}
