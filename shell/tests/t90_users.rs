//! `kfs admin user` and `kfs whoami` as an operator and a user meet them, one-shot against a
//! secured in-process cluster: an administrator adds a confined user and a read-only one, hands
//! over their credentials files, and each is held to its rights; a removed user is refused.

use assert_cmd::Command;
use kfs_tests::{ClusterOptions, TestCluster};
use predicates::prelude::*;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn kfs(cluster: &TestCluster, credentials: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::cargo_bin("kfs").unwrap();
    cmd.env("KFS_MASTER", cluster.master_addr().to_string())
        .env("KFS_CREDENTIALS", credentials)
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(120));
    cmd
}

fn json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_adds_users_who_are_held_to_their_rights() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let admin = cluster.credentials();
    let dir = tempfile::tempdir().unwrap();
    let alice = dir.path().join("alice.credentials");
    let bob = dir.path().join("bob.credentials");
    let local = dir.path().join("hello.txt");
    std::fs::write(&local, b"hello\n").unwrap();

    kfs(&cluster, &admin)
        .args(["mkdir", "-p", "/home/alice", "/shared"])
        .assert()
        .success();
    kfs(&cluster, &admin)
        .args(["chmod", "777", "/shared"])
        .assert()
        .success();
    kfs(&cluster, &admin)
        .args(["whoami"])
        .assert()
        .success()
        .stdout(predicate::str::contains("admin").and(predicate::str::contains("administrator")));

    // A confined user, its certificate issued by the master; then a read-only one issued here
    // from the CA key (only the certificate goes to the master).
    kfs(&cluster, &admin)
        .args([
            "admin",
            "user",
            "add",
            "alice",
            "--root",
            "/home/alice",
            "-o",
        ])
        .arg(&alice)
        .assert()
        .success()
        .stdout(predicate::str::contains("user 'alice' (uid 1000) added"));
    kfs(&cluster, &admin)
        .args(["chown", "1000:1000", "/home/alice"])
        .assert()
        .success();
    let mode = std::fs::metadata(&alice).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials are private");
    kfs(&cluster, &admin)
        .args([
            "admin",
            "user",
            "add",
            "bob",
            "--read-only",
            "--uid",
            "2000",
        ])
        .args(["--groups", "10,20", "-o"])
        .arg(&bob)
        .arg("--ca")
        .arg(cluster.secrets_dir().unwrap())
        .assert()
        .success();
    let bob_text = std::fs::read_to_string(&bob).unwrap();
    assert!(bob_text.contains("PRIVATE KEY"), "bob's file holds his key");

    // Never over an existing file, and the master is not asked (no user 'carol' appears).
    kfs(&cluster, &admin)
        .args(["admin", "user", "add", "carol", "-o"])
        .arg(&alice)
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("cannot add user 'carol'")
                .and(predicate::str::contains("never written over")),
        );
    let users = json(kfs(&cluster, &admin).args(["admin", "user", "list", "--json"]));
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(users[1]["uid"], 2000);
    assert_eq!(users[1]["groups"], serde_json::json!([10, 20]));
    assert_eq!(users[1]["read_only"], true);
    assert_eq!(users[0]["root"], "/home/alice");

    // Alice: at home she writes, and her files are hers; outside, nothing.
    let me = json(kfs(&cluster, &alice).args(["whoami", "--json"]));
    assert_eq!(me["name"], "alice");
    assert_eq!(me["uid"], 1000);
    kfs(&cluster, &alice)
        .args(["put"])
        .arg(&local)
        .arg("/home/alice/hello.txt")
        .assert()
        .success();
    let stat = json(kfs(&cluster, &admin).args(["stat", "--json", "/home/alice/hello.txt"]));
    assert_eq!(stat[0]["owner"], 1000, "{stat}");
    kfs(&cluster, &alice)
        .args(["put"])
        .arg(&local)
        .arg("/shared/hello.txt")
        .assert()
        .failure()
        .stderr(predicate::str::contains("Permission denied"));
    kfs(&cluster, &alice)
        .args(["ls", "/"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("Permission denied"));

    // Bob reads what he may and writes nothing, even where the mode would let him.
    kfs(&cluster, &bob)
        .args(["cat", "/home/alice/hello.txt"])
        .assert()
        .success()
        .stdout("hello\n");
    kfs(&cluster, &bob)
        .args(["mkdir", "/shared/bob"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("Permission denied"));
    kfs(&cluster, &bob)
        .args(["admin", "user", "list"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("Permission denied"));

    // Removed: bob's certificate no longer gets him anything.
    kfs(&cluster, &admin)
        .args(["admin", "user", "remove", "bob"])
        .assert()
        .success();
    kfs(&cluster, &bob)
        .args(["cat", "/home/alice/hello.txt"])
        .assert()
        .failure();
    kfs(&cluster, &admin)
        .args(["admin", "user", "remove", "bob"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("there is no user 'bob'"));
}
