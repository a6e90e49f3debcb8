//! One-shot commands (`kfs --master ADDR COMMAND ...`) against an in-process cluster: output,
//! exit codes, and the error messages users see.

use assert_cmd::Command;
use kfs_tests::{ClusterOptions, TestCluster};
use predicates::prelude::*;

fn kfs(cluster: &TestCluster) -> Command {
    let mut cmd = Command::cargo_bin("kfs").unwrap();
    cmd.env("KFS_MASTER", cluster.master_addr().to_string())
        .env("KFS_CREDENTIALS", cluster.credentials())
        .env("NO_COLOR", "1");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_print_what_they_did_and_exit_zero() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let local = tempfile::tempdir().unwrap();
    let photo = local.path().join("cat.jpg");
    std::fs::write(&photo, b"not really a jpeg\nsecond line\n").unwrap();

    kfs(&cluster)
        .args(["mkdir", "-p", "/photos/2024"])
        .assert()
        .success()
        .stdout("");
    kfs(&cluster)
        .arg("put")
        .arg(&photo)
        .arg("/photos/2024/")
        .assert()
        .success();
    kfs(&cluster)
        .args(["ls", "/photos/2024"])
        .assert()
        .success()
        .stdout("cat.jpg\n");
    kfs(&cluster)
        .args(["ls", "-l", "/photos/2024"])
        .assert()
        .success()
        .stdout(predicate::str::contains("-rw-r--r--   3"))
        .stdout(predicate::str::contains("cat.jpg"));
    kfs(&cluster)
        .args(["cat", "/photos/2024/cat.jpg"])
        .assert()
        .success()
        .stdout("not really a jpeg\nsecond line\n");
    kfs(&cluster)
        .args(["tail", "-n", "1", "/photos/2024/cat.jpg"])
        .assert()
        .success()
        .stdout("second line\n");
    kfs(&cluster)
        .args(["head", "-n", "1", "/photos/2024/cat.jpg"])
        .assert()
        .success()
        .stdout("not really a jpeg\n");
    kfs(&cluster)
        .args(["ls", "/photos/*/*.jpg"])
        .assert()
        .success()
        .stdout("/photos/2024/cat.jpg\n");
    kfs(&cluster)
        .args(["xattr", "set", "/photos/2024/cat.jpg", "width", "1024"])
        .assert()
        .success();
    kfs(&cluster)
        .args(["xattr", "list", "/photos/2024/cat.jpg"])
        .assert()
        .success()
        .stdout("width=1024\n");
    kfs(&cluster)
        .args(["setrep", "2", "/photos/2024/cat.jpg"])
        .assert()
        .success();
    kfs(&cluster)
        .args(["chunks", "/photos/2024/cat.jpg"])
        .assert()
        .success()
        .stdout(predicate::str::contains("chunk:").and(predicate::str::contains("replication 2")));
    kfs(&cluster)
        .args(["servers"])
        .assert()
        .success()
        .stdout(predicate::str::contains("alive").count(3));
    kfs(&cluster)
        .args(["fsck"])
        .assert()
        .success()
        .stdout(predicate::str::contains("status: HEALTHY"));
    kfs(&cluster)
        .args(["df", "-h"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 of 3 chunkservers alive"));
    kfs(&cluster)
        .args(["du", "-s", "/photos"])
        .assert()
        .success()
        .stdout("30\t60\t/photos\n");
    kfs(&cluster)
        .args(["cp", "/photos/2024/cat.jpg", "/photos/copy.jpg"])
        .assert()
        .success();
    kfs(&cluster)
        .args(["mv", "/photos/copy.jpg", "/photos/moved.jpg"])
        .assert()
        .success();
    kfs(&cluster)
        .args(["touch", "/photos/empty"])
        .assert()
        .success();
    kfs(&cluster)
        .args(["ls", "/photos"])
        .assert()
        .success()
        .stdout("2024/\nempty\nmoved.jpg\n");
    kfs(&cluster)
        .args(["stat", "/photos/empty"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Size: 0"));
    let back = local.path().join("back.jpg");
    kfs(&cluster)
        .arg("get")
        .arg("/photos/moved.jpg")
        .arg(&back)
        .assert()
        .success();
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&photo).unwrap()
    );
    kfs(&cluster)
        .args(["rm", "-r", "/photos"])
        .assert()
        .success();
    kfs(&cluster)
        .args(["ls", "/"])
        .assert()
        .success()
        .stdout("");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero_with_coreutils_messages() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    kfs(&cluster)
        .args(["mkdir", "-p", "/a/b"])
        .assert()
        .success();
    kfs(&cluster)
        .args(["rm", "/nope"])
        .assert()
        .code(1)
        .stderr("kfs: cannot remove '/nope': No such file or directory\n");
    kfs(&cluster).args(["rm", "-f", "/nope"]).assert().success();
    kfs(&cluster)
        .args(["rmdir", "/a"])
        .assert()
        .code(1)
        .stderr("kfs: cannot remove directory '/a': Directory not empty\n");
    kfs(&cluster)
        .args(["rm", "/a"])
        .assert()
        .code(1)
        .stderr("kfs: cannot remove '/a': Is a directory\n");
    kfs(&cluster)
        .args(["mkdir", "/a"])
        .assert()
        .code(1)
        .stderr("kfs: cannot create directory '/a': File exists\n");
    kfs(&cluster)
        .args(["cat", "/a"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("'/a': Is a directory"));
    kfs(&cluster)
        .args(["ls", "/a/*.none"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("No such file"));
    kfs(&cluster)
        .args(["setrep", "99", "/a"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("99 is not in 1..=16"));
    kfs(&cluster)
        .args(["setrep", "2", "/a"])
        .assert()
        .code(1)
        .stderr("kfs: cannot set the replication of '/a': Is a directory\n");
    kfs(&cluster)
        .args(["frobnicate"])
        .assert()
        .code(2)
        .stderr("kfs: unknown command 'frobnicate' (try 'kfs --help')\n");
    // Local files are named as cp(1) names them.
    kfs(&cluster)
        .args(["put", "/no/such/local.file", "/a/"])
        .assert()
        .code(1)
        .stderr("kfs: cannot stat '/no/such/local.file': No such file or directory\n");
    kfs(&cluster).args(["touch", "/a/f"]).assert().success();
    kfs(&cluster)
        .args(["get", "/a/f", "/no/such/dir/f"])
        .assert()
        .code(1)
        .stderr("kfs: cannot create '/no/such/dir/f': No such file or directory\n");
    // A tree put names what it leaves out (symbolic links, FIFOs) and copies the rest.
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("kept.txt"), b"kept").unwrap();
    std::os::unix::fs::symlink("kept.txt", tree.path().join("link")).unwrap();
    let fifo = tree.path().join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    kfs(&cluster)
        .arg("put")
        .arg(tree.path())
        .arg("/tree")
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "kfs: skipped '{}': a symbolic link (not copied)",
            tree.path().join("link").display()
        )))
        .stderr(predicate::str::contains(format!(
            "kfs: skipped '{}': a FIFO (not copied)",
            fifo.display()
        )));
    kfs(&cluster)
        .args(["ls", "/tree"])
        .assert()
        .success()
        .stdout("kept.txt\n");
    // Several arguments: the good ones are done, the bad one reported, the status says so.
    kfs(&cluster)
        .args(["mkdir", "/x", "/missing/y", "/z"])
        .assert()
        .code(1)
        .stderr("kfs: cannot create directory '/missing/y': No such file or directory\n");
    kfs(&cluster)
        .args(["ls", "/"])
        .assert()
        .success()
        .stdout("a/\ntree/\nx/\nz/\n");
    cluster.shutdown().await;
}

#[test]
fn an_unreachable_master_is_named_with_what_to_check() {
    let mut cmd = Command::cargo_bin("kfs").unwrap();
    cmd.args(["--master", "127.0.0.1:9", "ls", "/"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("127.0.0.1:9").and(predicate::str::contains("kfs local")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_setting_that_cannot_work_exits_78() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // 78 (EX_CONFIG): kfs-gateway.service does not restart on it.
    kfs(&cluster)
        .args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--root",
            "/no/such/dir",
        ])
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .code(78)
        .stderr(predicate::str::contains("--root /no/such/dir"));
    kfs(&cluster)
        .args(["gateway", "--listen", "127.0.0.1:0", "--write-token-file"])
        .arg(dir.path().join("missing-token"))
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .code(78)
        .stderr(predicate::str::contains("missing-token"));
    // Flags that do not parse: clap's 2, which the unit does not restart on either.
    kfs(&cluster)
        .args(["gateway", "--max-streams", "many"])
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .code(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_workers_lists_the_masters_background_loops() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let listing = || {
        let out = kfs(&cluster)
            .args(["admin", "workers"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap()
    };
    // The healer and the heartbeat timeouts run rounds from the start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        let out = listing();
        let rounds = |name: &str| {
            out.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l[20..].split_whitespace().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if rounds("healer") >= 1 && rounds("heartbeat timeouts") >= 1 {
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "{out}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(out.starts_with("worker "), "{out}");
    for name in ["heartbeat timeouts", "healer", "checkpointer"] {
        let line = out.lines().find(|l| l.starts_with(name));
        assert!(
            line.is_some_and(|l| l.contains("running")),
            "{name} in {out}"
        );
    }
    cluster.shutdown().await;
}

/// `put`, `get`, `cp` and `mv` never replace a target that exists unless `-f`: the refusal names
/// both sides, exits 1, and leaves source and target as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_need_force() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let local = tempfile::tempdir().unwrap();
    let (old, new) = (local.path().join("old.txt"), local.path().join("new.txt"));
    std::fs::write(&old, b"old\n").unwrap();
    std::fs::write(&new, b"new\n").unwrap();
    kfs(&cluster)
        .arg("put")
        .arg(&old)
        .arg("/a.txt")
        .assert()
        .success();
    let refused = predicate::str::contains("File exists (-f replaces it)");
    kfs(&cluster)
        .arg("put")
        .arg(&new)
        .arg("/a.txt")
        .assert()
        .code(1)
        .stderr(refused.clone().and(predicate::str::contains("'/a.txt'")));
    kfs(&cluster)
        .args(["cat", "/a.txt"])
        .assert()
        .stdout("old\n");
    kfs(&cluster)
        .args(["put", "-f"])
        .arg(&new)
        .arg("/a.txt")
        .assert()
        .success();
    kfs(&cluster)
        .args(["cat", "/a.txt"])
        .assert()
        .stdout("new\n");

    kfs(&cluster)
        .arg("put")
        .arg(&old)
        .arg("/b.txt")
        .assert()
        .success();
    for verb in ["cp", "mv"] {
        kfs(&cluster)
            .args([verb, "/b.txt", "/a.txt"])
            .assert()
            .code(1)
            .stderr(refused.clone());
        kfs(&cluster)
            .args(["cat", "/a.txt"])
            .assert()
            .stdout("new\n");
    }
    kfs(&cluster)
        .args(["cp", "-f", "/b.txt", "/a.txt"])
        .assert()
        .success();
    kfs(&cluster)
        .args(["cat", "/a.txt"])
        .assert()
        .stdout("old\n");
    kfs(&cluster)
        .args(["put", "-f"])
        .arg(&new)
        .arg("/b.txt")
        .assert()
        .success();
    kfs(&cluster)
        .args(["mv", "-f", "/b.txt", "/a.txt"])
        .assert()
        .success();
    kfs(&cluster)
        .args(["cat", "/a.txt"])
        .assert()
        .stdout("new\n");
    kfs(&cluster).args(["stat", "/b.txt"]).assert().failure();

    kfs(&cluster)
        .args(["get", "/a.txt"])
        .arg(&old)
        .assert()
        .code(1)
        .stderr(refused);
    assert_eq!(std::fs::read(&old).unwrap(), b"old\n");
    kfs(&cluster)
        .args(["get", "-f", "/a.txt"])
        .arg(&old)
        .assert()
        .success();
    assert_eq!(std::fs::read(&old).unwrap(), b"new\n");
    cluster.shutdown().await;
}

/// An unknown command or option reads as one line naming it and where help is, never clap's
/// raw usage; one-shot (exit 2) and in the shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commands_and_options_say_so_in_one_line() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    kfs(&cluster)
        .arg("clear")
        .assert()
        .code(2)
        .stderr("kfs: unknown command 'clear' (try 'kfs --help')\n");
    kfs(&cluster)
        .args(["ls", "--bogus"])
        .assert()
        .code(2)
        .stderr("kfs: ls: unknown option '--bogus' (try 'kfs ls --help')\n");
    kfs(&cluster)
        .args(["shell", "-k"])
        .write_stdin("clear\nls --bogus\nmkdir /ok\n")
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("kfs: unknown command 'clear' (try 'help')\n")
                .and(predicate::str::contains(
                    "kfs: ls: unknown option '--bogus' (try 'help ls')\n",
                ))
                .and(predicate::str::contains("Usage").not()),
        );
    kfs(&cluster).args(["stat", "/ok"]).assert().success();
    cluster.shutdown().await;
}

/// `test` answers with its exit status only; `count` prints directories, files and bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_answers_by_status_and_count_counts() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let local = tempfile::tempdir().unwrap();
    let (full, empty) = (local.path().join("full"), local.path().join("empty"));
    std::fs::write(&full, b"12345").unwrap();
    std::fs::write(&empty, b"").unwrap();
    kfs(&cluster)
        .args(["mkdir", "-p", "/t/sub"])
        .assert()
        .success();
    kfs(&cluster)
        .arg("put")
        .arg(&full)
        .arg("/t/full")
        .assert()
        .success();
    kfs(&cluster)
        .arg("put")
        .arg(&empty)
        .arg("/t/sub/empty")
        .assert()
        .success();
    for (args, code) in [
        (vec!["test", "/t"], 0),
        (vec!["test", "-e", "/nope"], 1),
        (vec!["test", "-d", "/t"], 0),
        (vec!["test", "-d", "/t/full"], 1),
        (vec!["test", "-f", "/t/full"], 0),
        (vec!["test", "-f", "/t"], 1),
        (vec!["test", "-z", "/t/sub/empty"], 0),
        (vec!["test", "-z", "/t/full"], 1),
        (vec!["test", "-z", "/nope"], 1),
    ] {
        kfs(&cluster)
            .args(&args)
            .assert()
            .code(code)
            .stdout("")
            .stderr("");
    }
    kfs(&cluster)
        .args(["count", "/t", "/t/full"])
        .assert()
        .success()
        .stdout(format!(
            "{:>12} {:>12} {:>18} /t\n{:>12} {:>12} {:>18} /t/full\n",
            2, 2, 5, 0, 1, 5
        ));
    kfs(&cluster)
        .args(["count", "/nope"])
        .assert()
        .code(1)
        .stderr("kfs: cannot count '/nope': No such file or directory\n");
    cluster.shutdown().await;
}

/// `kfs completions SHELL` prints a script for that shell and `kfs man` the kfs(1) page, both
/// from the same definitions as the flags (no master needed).
#[test]
fn completions_and_the_man_page_come_from_the_flags() {
    let run = |args: &[&str]| {
        let out = Command::cargo_bin("kfs")
            .unwrap()
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("complete -F _kfs"), "{bash}");
    assert!(bash.contains("--replication"), "put's flags complete");
    assert!(run(&["completions", "zsh"]).contains("#compdef kfs"));
    assert!(run(&["completions", "fish"]).contains("complete -c kfs"));
    let man = run(&["man"]);
    assert!(man.starts_with(".ie") || man.contains(".TH kfs 1"), "{man}");
    assert!(man.contains(".TH kfs 1"));
    Command::cargo_bin("kfs")
        .unwrap()
        .args(["completions", "tcsh"])
        .assert()
        .code(2);
}
