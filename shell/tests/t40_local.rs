//! `kfs local`: a whole cluster in one process, driven by commands on standard input; run again
//! on the same data directory, everything written is still there.

use assert_cmd::Command;
use predicates::prelude::*;

/// Where `kfs local` puts the admin's credentials for other terminals: a config directory of
/// the test's own (`XDG_CONFIG_HOME`), beside the data, so tests never touch the user's.
fn config_home(data: &std::path::Path) -> std::path::PathBuf {
    data.with_file_name("config")
}

fn local(data: &std::path::Path, script: &str) -> assert_cmd::assert::Assert {
    Command::cargo_bin("kfs")
        .unwrap()
        .env("XDG_CONFIG_HOME", config_home(data))
        .env_remove("KFS_CREDENTIALS")
        .args([
            "local",
            "--listen",
            "127.0.0.1:0",
            "--chunkservers",
            "2",
            "--data",
        ])
        .arg(data)
        .write_stdin(script)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
}

#[test]
fn a_local_cluster_keeps_its_data_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kfs-data");
    let file = dir.path().join("greeting.txt");
    std::fs::write(&file, "hello again\n").unwrap();
    let script = format!("mkdir -p /docs\nput {} /docs/\nls /docs\n", file.display());
    local(&data, &script)
        .success()
        .stdout(predicate::str::contains(
            "KFS local cluster: master 127.0.0.1:",
        ))
        .stdout(predicate::str::contains("2 chunkservers"))
        .stdout(predicate::str::contains("greeting.txt"));
    local(&data, "cat /docs/greeting.txt\nservers\n")
        .success()
        .stdout(predicate::str::contains("hello again"))
        .stdout(predicate::str::contains("alive").count(2));
}

#[test]
fn a_script_stops_at_the_first_failure_unless_told_to_keep_going() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kfs-data");
    local(&data, "mkdir /a\nrmdir /nope\nmkdir /b\n")
        .code(1)
        .stderr(predicate::str::contains("cannot remove directory '/nope'"));
    Command::cargo_bin("kfs")
        .unwrap()
        .env("XDG_CONFIG_HOME", config_home(&data))
        .env_remove("KFS_CREDENTIALS")
        .args([
            "local",
            "-k",
            "--listen",
            "127.0.0.1:0",
            "--chunkservers",
            "1",
            "--data",
        ])
        .arg(&data)
        .write_stdin("rmdir /nope\nmkdir /b\nls /\n")
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("a/\nb/\n"));
}

/// Reads lines until one passes `wanted` (the process's output ending first fails).
fn read_until(out: &mut impl std::io::BufRead, wanted: impl Fn(&str) -> bool) {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "output ended: {seen}"
        );
        if wanted(&line) {
            return;
        }
        seen.push_str(&line);
    }
}

#[test]
fn sigterm_stops_the_servers_cleanly_and_keeps_the_data() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kfs-data");
    for no_shell in [false, true] {
        let mut args = vec!["local", "--listen", "127.0.0.1:0", "--chunkservers", "1"];
        if no_shell {
            args.push("--no-shell");
        }
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kfs"))
            .env("XDG_CONFIG_HOME", config_home(&data))
            .env_remove("KFS_CREDENTIALS")
            .args(&args)
            .arg("--data")
            .arg(&data)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("KFS local cluster: master"), "{line}");
        let master = line
            .trim_start_matches("KFS local cluster: master ")
            .split(',')
            .next()
            .unwrap()
            .to_string();
        let mut stdin = child.stdin.take().unwrap();
        if !no_shell {
            // A command through the shell, then its answer, before the signal.
            writeln!(stdin, "mkdir /made-before-sigterm\npwd").unwrap();
            read_until(&mut stdout, |l| l == "/\n");
        } else {
            read_until(&mut stdout, |l| {
                l.starts_with("Serving until Ctrl-C or SIGTERM")
            });
            // Another terminal, as the README says: no flags beyond the master's address, the
            // credentials found where `kfs local` put them.
            Command::cargo_bin("kfs")
                .unwrap()
                .env("XDG_CONFIG_HOME", config_home(&data))
                .env_remove("KFS_CREDENTIALS")
                .args(["--master", &master, "mkdir", "/made-while-serving"])
                .timeout(std::time::Duration::from_secs(30))
                .assert()
                .success();
        }
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kfs local ignored SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("SIGTERM: stopping the servers"), "{stderr}");
        drop(stdin);
    }
    // Both directories are there on the next run: everything was committed.
    local(&data, "ls /\n")
        .success()
        .stdout(predicate::str::contains("made-before-sigterm/"))
        .stdout(predicate::str::contains("made-while-serving/"));
}
