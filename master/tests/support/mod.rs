//! Helpers shared by the master's integration tests (and `benches/master_rss.rs`).
#![allow(dead_code)] // each test file uses some of these

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Proptest case count: `PROPTEST_CASES` if set, else `default` (bounded for CI).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A call context with a 30 s deadline.
pub fn ctx() -> tarpc::context::Context {
    kfs_common::rpc::context(Duration::from_secs(30))
}

/// Starts the `kfs-master` binary on a free loopback port; returns the child and the address it
/// printed. Fails if it does not report within 30 s.
pub fn spawn_master(binary: &str, meta_dir: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(binary)
        // The master's own tests speak to it directly, without the cluster's credentials.
        .args(["--insecure", "--listen", "127.0.0.1:0", "--meta-dir"])
        .arg(meta_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kfs-master");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("kfs-master did not report its address within 30 s");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");
    (child, addr)
}
