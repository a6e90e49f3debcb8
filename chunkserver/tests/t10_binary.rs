//! The `kfs-chunkserver` binary: it serves without a master (and keeps trying to reach one),
//! stops cleanly on SIGTERM, and refuses data dirs that belong to different servers.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A cluster's secrets directory, made for one test.
fn secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    kfs_common::security::ClusterFiles::new(dir.path())
        .init("t10")
        .unwrap();
    dir
}

fn chunkserver(dirs: &[&Path]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfs-chunkserver"));
    cmd.env_remove("KFS_SECRETS");
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
    let secrets = secrets();
    let mut child = chunkserver(&[dir.path()])
        .arg("--secrets")
        .arg(secrets.path())
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
    let secrets = secrets();
    let mut cmd = chunkserver(&[a.path(), b.path()]);
    cmd.arg("--secrets").arg(secrets.path());
    let (status, stderr) = run_to_exit(cmd);
    assert!(!status.success());
    assert!(stderr.contains("different servers"), "{stderr}");
}

/// Runs the chunkserver to its exit; (status, standard error).
fn run_to_exit(mut cmd: Command) -> (std::process::ExitStatus, String) {
    let mut child = cmd
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
    (status, stderr)
}

#[test]
fn no_start_without_secrets_or_with_secrets_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = run_to_exit(chunkserver(&[dir.path()]));
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("--secrets DIR") && stderr.contains("kfs init-cluster"),
        "{stderr}"
    );
    use std::os::unix::fs::PermissionsExt;
    let secrets = secrets();
    let key = secrets.path().join(kfs_common::security::CA_KEY);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut cmd = chunkserver(&[dir.path()]);
    cmd.env("KFS_SECRETS", secrets.path());
    let (status, stderr) = run_to_exit(cmd);
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("mode 0640") && stderr.contains("ca.key"),
        "{stderr}"
    );
}
