//! The `kfs-chunkserver` binary: it serves without a master (and keeps trying to reach one),
//! stops cleanly on SIGTERM, and refuses data dirs that belong to different servers.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn chunkserver(dirs: &[&Path]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfs-chunkserver"));
    // Nothing listens on port 9 of loopback: the master is away.
    cmd.args(["--listen", "127.0.0.1:0", "--master", "127.0.0.1:9"]);
    for d in dirs {
        cmd.arg("--data").arg(d);
    }
    cmd
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "kfs-chunkserver did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serves_without_a_master_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = chunkserver(&[dir.path()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("it reports its address");
    assert!(line.starts_with("listening on 127.0.0.1:"), "{line:?}");
    assert!(
        dir.path().join("kfs-chunkserver.id").exists(),
        "its identity is written on first start"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
}

#[test]
fn data_dirs_of_different_servers_are_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    std::fs::write(
        a.path().join("kfs-chunkserver.id"),
        "0000000000000000000000000000000a\n",
    )
    .unwrap();
    std::fs::write(
        b.path().join("kfs-chunkserver.id"),
        "0000000000000000000000000000000b\n",
    )
    .unwrap();
    let mut child = chunkserver(&[a.path(), b.path()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(stderr.contains("different servers"), "{stderr}");
}
