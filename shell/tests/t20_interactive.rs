//! The interactive shell, driven through a real pseudo-terminal: the prompt follows `cd`,
//! relative paths work, tab completes remote paths, history is kept, `exit` leaves.

use expectrl::{Eof, Expect, Session};
use kfs_tests::{ClusterOptions, TestCluster};
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_at_the_terminal() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let home = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let notes = local.path().join("notes.txt");
    std::fs::write(&notes, "remember the milk\n").unwrap();
    let fetched = local.path().join("fetched.txt");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfs"));
    cmd.args(["--master", &cluster.master_addr().to_string()])
        .env("HOME", home.path())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1");
    let master_addr = cluster.master_addr();
    let notes_arg = notes.display().to_string();
    let fetched_arg = fetched.display().to_string();
    tokio::task::spawn_blocking(move || {
        let mut shell = Session::spawn(cmd).expect("spawn kfs in a pty");
        shell.set_expect_timeout(Some(Duration::from_secs(30)));
        shell
            .expect(format!("KFS shell on {master_addr}").as_str())
            .unwrap();
        shell.expect("kfs:/> ").unwrap();
        shell.send_line("mkdir /t").unwrap();
        shell.expect("kfs:/> ").unwrap();
        shell.send_line("cd /t").unwrap();
        shell.expect("kfs:/t> ").unwrap();
        shell.send_line(format!("put {notes_arg} .")).unwrap();
        shell.expect("kfs:/t> ").unwrap();
        shell.send_line("ls").unwrap();
        shell.expect("notes.txt").unwrap();
        shell.expect("kfs:/t> ").unwrap();
        // Tab completes the remote name.
        shell.send("cat no").unwrap();
        shell.send("\t").unwrap();
        shell.expect("notes.txt").unwrap();
        shell.send_line("").unwrap();
        shell.expect("remember the milk").unwrap();
        shell.expect("kfs:/t> ").unwrap();
        shell
            .send_line(format!("get notes.txt {fetched_arg}"))
            .unwrap();
        shell.expect("kfs:/t> ").unwrap();
        shell.send_line("rm notes.txt").unwrap();
        shell.expect("kfs:/t> ").unwrap();
        shell.send_line("rm notes.txt").unwrap();
        shell
            .expect("cannot remove '/t/notes.txt': No such file or directory")
            .unwrap();
        shell.expect("kfs:/t> ").unwrap();
        shell.send_line("help").unwrap();
        shell.expect("chunks").unwrap();
        shell.expect("kfs:/t> ").unwrap();
        shell.send_line("exit").unwrap();
        shell.expect(Eof).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&fetched).unwrap(),
        "remember the milk\n"
    );
    let history = std::fs::read_to_string(home.path().join(".kfs_history")).unwrap();
    assert!(history.contains("cd /t"), "{history}");
    assert!(
        cluster
            .client()
            .await
            .list_all("/t")
            .await
            .unwrap()
            .is_empty()
    );
    cluster.shutdown().await;
}
