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
        .env("KFS_CREDENTIALS", cluster.credentials())
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
        // On a terminal, a copy ends with what it moved and how fast.
        shell.expect(" B in ").unwrap();
        shell.expect(" s, ").unwrap();
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

/// Ctrl-C during a command cancels the command, not the shell: a put of a large file is
/// stopped midway, leaves neither its target nor its temporary file behind, and the shell goes
/// on at its prompt. History is saved after every command, so a shell killed with `kill -9`
/// keeps what was typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_command_and_history_survives_a_kill() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let home = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    // Sparse: reading it costs no disk, writing it into KFS takes seconds.
    let big = local.path().join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfs"));
    cmd.args(["--master", &cluster.master_addr().to_string()])
        .env("KFS_CREDENTIALS", cluster.credentials())
        .env("HOME", home.path())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1");
    let big_arg = big.display().to_string();
    tokio::task::spawn_blocking(move || {
        let mut shell = Session::spawn(cmd).expect("spawn kfs in a pty");
        shell.set_expect_timeout(Some(Duration::from_secs(60)));
        shell.expect("kfs:/> ").unwrap();
        shell.send_line(format!("put {big_arg} /big.bin")).unwrap();
        // Midway (the progress bar has drawn), Ctrl-C.
        shell.expect("B/").unwrap();
        shell.send(expectrl::ControlCode::EndOfText).unwrap();
        shell.expect("kfs: cancelled").unwrap();
        shell.expect("kfs:/> ").unwrap();
        shell.send_line("mkdir /still-here").unwrap();
        shell.expect("kfs:/> ").unwrap();
        // Killed without a chance to save anything.
        let pid = shell.get_process().pid().to_string();
        let killed = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(killed.success());
        shell.expect(Eof).unwrap();
    })
    .await
    .unwrap();
    let history = std::fs::read_to_string(home.path().join(".kfs_history")).unwrap();
    assert!(history.contains("put "), "{history}");
    assert!(history.contains("mkdir /still-here"), "{history}");
    let client = cluster.client().await;
    client.stat("/still-here").await.unwrap();
    let c = &client;
    kfs_tests::wait_until(
        "neither the target nor the temporary file is left",
        Duration::from_secs(30),
        || async move {
            c.list_all("/")
                .await
                .unwrap()
                .iter()
                .all(|e| e.name == "still-here")
        },
    )
    .await;
    cluster.shutdown().await;
}

/// Tab as in bash: the first completes what the candidates share, the second lists them;
/// names with spaces complete escaped; `put`'s source completes against the local disk, flags
/// against the command's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tab_lists_candidates_and_completes_local_paths_flags_and_spaces() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let client = cluster.client().await;
    client.mkdir("/d").await.unwrap();
    for name in ["my photo.jpg", "my notes.txt"] {
        client
            .create(&format!("/d/{name}"))
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("local file.txt"), "from the local disk\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfs"));
    cmd.args(["--master", &cluster.master_addr().to_string()])
        .env("KFS_CREDENTIALS", cluster.credentials())
        .env("HOME", home.path())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1");
    let local_dir = local.path().display().to_string();
    tokio::task::spawn_blocking(move || {
        let mut shell = Session::spawn(cmd).expect("spawn kfs in a pty");
        shell.set_expect_timeout(Some(Duration::from_secs(30)));
        shell.expect("kfs:/> ").unwrap();
        // Two names share "my ": the first Tab completes that much, escaped...
        shell.send("cat /d/m\t").unwrap();
        shell.expect("/d/my\\ ").unwrap();
        // ... the second lists both.
        shell.send("\t").unwrap();
        shell.expect("my notes.txt").unwrap();
        shell.expect("my photo.jpg").unwrap();
        // One more letter makes it one name; Enter runs it.
        shell.send("n\t").unwrap();
        shell.expect("notes.txt ").unwrap();
        shell.send_line("").unwrap();
        shell.expect("kfs:/> ").unwrap();
        // put's source completes on the local disk.
        shell.send(format!("put {local_dir}/lo\t")).unwrap();
        shell.expect("local\\ file.txt ").unwrap();
        shell.send_line("/d/").unwrap();
        shell.expect("kfs:/> ").unwrap();
        shell.send_line("cat '/d/local file.txt'").unwrap();
        shell.expect("from the local disk").unwrap();
        shell.expect("kfs:/> ").unwrap();
        // A flag completes from the command's own.
        shell.send("ls --js\t").unwrap();
        shell.expect("--json ").unwrap();
        shell.send_line("/d").unwrap();
        shell.expect("\"name\": \"local file.txt\"").unwrap();
        shell.expect("kfs:/> ").unwrap();
        shell.send_line("exit").unwrap();
        shell.expect(Eof).unwrap();
    })
    .await
    .unwrap();
    cluster.shutdown().await;
}
