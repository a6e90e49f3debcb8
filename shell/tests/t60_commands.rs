//! The commands people reach for (HDFS's FsShell and qfs sets) and `--json`, one-shot against
//! an in-process cluster: what they print, what they change, their exit status.

use assert_cmd::Command;
use kfs_tests::{ClusterOptions, TestCluster};
use predicates::prelude::*;
use std::time::Duration;

fn kfs(cluster: &TestCluster) -> Command {
    let mut cmd = Command::cargo_bin("kfs").unwrap();
    cmd.env("KFS_MASTER", cluster.master_addr().to_string())
        .env("KFS_CREDENTIALS", cluster.credentials())
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(120));
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(cmd: &mut Command) -> serde_json::Value {
    let text = stdout(cmd);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{cmd:?} printed no JSON ({e}): {text}"))
}

/// Bytes that differ from chunk to chunk and from any other test's.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn put(cluster: &TestCluster, local: &std::path::Path, bytes: &[u8], remote: &str) {
    std::fs::write(local, bytes).unwrap();
    kfs(cluster)
        .arg("put")
        .arg(local)
        .arg(remote)
        .assert()
        .success();
}

fn get(cluster: &TestCluster, remote: &str, dir: &std::path::Path) -> Vec<u8> {
    let local = dir.join("fetched");
    kfs(cluster)
        .args(["get", "-f", remote])
        .arg(&local)
        .assert()
        .success();
    std::fs::read(&local).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_and_owners_change_as_chmod_and_chown_do() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let local = tempfile::tempdir().unwrap();
    kfs(&cluster)
        .args(["mkdir", "-p", "/p/sub"])
        .assert()
        .success();
    put(&cluster, &local.path().join("f"), b"hello", "/p/f");
    put(&cluster, &local.path().join("g"), b"below", "/p/sub/g");
    let mode = |p: &str| stdout(kfs(&cluster).args(["stat", "-c", "%a %A", p]));

    kfs(&cluster)
        .args(["chmod", "600", "/p/f"])
        .assert()
        .success();
    assert_eq!(mode("/p/f"), "600 -rw-------\n");
    kfs(&cluster)
        .args(["chmod", "g+r,o+r", "/p/f"])
        .assert()
        .success();
    assert_eq!(mode("/p/f"), "644 -rw-r--r--\n");
    kfs(&cluster)
        .args(["chmod", "-R", "a+X,go-r", "/p"])
        .assert()
        .success();
    assert_eq!(mode("/p/sub"), "711 drwx--x--x\n");
    assert_eq!(mode("/p/sub/g"), "600 -rw-------\n");
    kfs(&cluster)
        .args(["chmod", "-w", "/p/f"])
        .assert()
        .success();
    assert_eq!(mode("/p/f"), "400 -r--------\n");
    kfs(&cluster)
        .args(["chmod", "u+w,g=u", "/p/f"])
        .assert()
        .success();
    assert_eq!(mode("/p/f"), "660 -rw-rw----\n");
    kfs(&cluster)
        .args(["chmod", "0644", "/p/f"])
        .assert()
        .success();
    assert_eq!(mode("/p/f"), "644 -rw-r--r--\n");
    kfs(&cluster)
        .args(["chmod", "u+q", "/p/f"])
        .assert()
        .code(1)
        .stderr("kfs: invalid mode: 'u+q'\n");

    kfs(&cluster)
        .args(["chown", "4000001:4000002", "/p/f"])
        .assert()
        .success();
    assert_eq!(
        stdout(kfs(&cluster).args(["stat", "-c", "%u:%g %n", "/p/f"])),
        "4000001:4000002 /p/f\n"
    );
    kfs(&cluster)
        .args(["chgrp", "-R", "4000003", "/p"])
        .assert()
        .success();
    assert_eq!(
        stdout(kfs(&cluster).args(["stat", "-c", "%u:%g", "/p/f", "/p/sub/g"])),
        "4000001:4000003\n0:4000003\n"
    );
    // ls -l has the owner and group columns (the local system knows no names for these ids).
    kfs(&cluster)
        .args(["ls", "-l", "/p"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"-rw-r--r--\s+3 4000001\s+4000003\s+5 .* f\n").unwrap());
    // `OWNER:` takes the owner's login group (root's is 0).
    kfs(&cluster)
        .args(["chown", "root:", "/p/sub/g"])
        .assert()
        .success();
    assert_eq!(
        stdout(kfs(&cluster).args(["stat", "-c", "%u:%g %U", "/p/sub/g"])),
        "0:0 root\n"
    );
    kfs(&cluster)
        .args(["chown", "no-such-user-here", "/p/f"])
        .assert()
        .code(1)
        .stderr("kfs: invalid user: 'no-such-user-here'\n");
    kfs(&cluster)
        .args(["chmod", "644", "/p/missing"])
        .assert()
        .code(1)
        .stderr("kfs: cannot change the mode of '/p/missing': No such file or directory\n");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_sort_find_and_draw_trees() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let local = tempfile::tempdir().unwrap();
    kfs(&cluster).args(["mkdir", "/t"]).assert().success();
    put(&cluster, &local.path().join("a"), b"abc", "/t/a");
    put(&cluster, &local.path().join("bb"), b"0123456789", "/t/bb");
    kfs(&cluster).args(["mkdir", "/t/sub"]).assert().success();
    put(&cluster, &local.path().join("c"), b"c", "/t/sub/c.jpg");
    put(&cluster, &local.path().join("d"), b"d", "/t/sub/d.PNG");

    let ls = |args: &[&str]| stdout(kfs(&cluster).arg("ls").args(args));
    assert_eq!(ls(&["/t"]), "a\nbb\nsub/\n");
    // sub changed last (its entries were made after bb).
    assert_eq!(ls(&["-t", "/t"]), "sub/\nbb\na\n");
    assert_eq!(ls(&["-S", "/t"]), "bb\na\nsub/\n");
    assert_eq!(ls(&["-S", "-r", "/t"]), "sub/\na\nbb\n");
    assert_eq!(ls(&["-d", "/t"]), "/t\n");
    assert_eq!(
        ls(&["-R", "/t"]),
        "/t:\na\nbb\nsub/\n\n/t/sub:\nc.jpg\nd.PNG\n"
    );
    let listed = json(kfs(&cluster).args(["ls", "--json", "/t"]));
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "bb", "sub"]);
    assert_eq!(listed[1]["size"], 10);
    assert_eq!(listed[1]["path"], "/t/bb");
    assert_eq!(listed[2]["type"], "dir");

    let find = |args: &[&str]| stdout(kfs(&cluster).arg("find").args(args));
    assert_eq!(find(&["/t", "-name", "*.jpg"]), "/t/sub/c.jpg\n");
    assert_eq!(find(&["/t", "-type", "d"]), "/t\n/t/sub\n");
    assert_eq!(
        find(&["/t", "-iname", "*.png", "-type", "f"]),
        "/t/sub/d.PNG\n"
    );
    assert_eq!(
        find(&["/t", "-maxdepth", "1", "-type", "f"]),
        "/t/a\n/t/bb\n"
    );
    kfs(&cluster)
        .args(["find", "/t", "-size", "3"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown test '-size'"));

    assert_eq!(
        stdout(kfs(&cluster).args(["tree", "/t"])),
        "/t\n├── a\n├── bb\n└── sub/\n    ├── c.jpg\n    └── d.PNG\n\n1 directory, 4 files\n"
    );
    assert_eq!(
        stdout(kfs(&cluster).args(["tree", "-L", "1", "/t"])),
        "/t\n├── a\n├── bb\n└── sub/\n\n1 directory, 2 files\n"
    );

    // Symbolic links: made, read back, listed and found by kind; never followed here.
    kfs(&cluster)
        .args(["ln", "-s", "sub/c.jpg", "/t/link"])
        .assert()
        .success();
    assert_eq!(
        stdout(kfs(&cluster).args(["readlink", "/t/link"])),
        "sub/c.jpg\n"
    );
    let long = ls(&["-l", "/t"]);
    let line = long.lines().find(|l| l.ends_with("link@")).unwrap();
    assert!(line.starts_with("lrwxrwxrwx "), "{line}");
    assert_eq!(find(&["/t", "-type", "l"]), "/t/link\n");
    kfs(&cluster)
        .args(["ln", "-s", "x", "/t/link"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot ln '/t/link': File exists"));
    kfs(&cluster)
        .args(["readlink", "/t/a"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a symbolic link"));
    // A hard link: one file, two names.
    kfs(&cluster)
        .args(["ln", "/t/a", "/t/sub/hard"])
        .assert()
        .success();
    assert_eq!(
        stdout(kfs(&cluster).args(["stat", "-c", "%h %s %i", "/t/a"])),
        stdout(kfs(&cluster).args(["stat", "-c", "%h %s %i", "/t/sub/hard"]))
    );
    assert_eq!(
        stdout(kfs(&cluster).args(["stat", "-c", "%h", "/t/a"])),
        "2\n"
    );
    assert_eq!(
        stdout(kfs(&cluster).args(["stat", "-c", "%h", "/t"])),
        "3\n"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_truncates_and_appends_keep_the_bytes_right() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let local = tempfile::tempdir().unwrap();
    // Three chunks of 256 KiB (the last one short), and a small file packed into a volume.
    let big = data(700_000, 1);
    let small = data(5_000, 2);
    put(&cluster, &local.path().join("big"), &big, "/big");
    put(&cluster, &local.path().join("small"), &small, "/small");
    let checksum = |p: &str| stdout(kfs(&cluster).args(["checksum", p]));
    assert_eq!(
        checksum("/big"),
        format!("/big\tCRC32C\t{:08x}\t700000\n", crc32c::crc32c(&big))
    );
    assert_eq!(
        checksum("/small"),
        format!("/small\tCRC32C\t{:08x}\t5000\n", crc32c::crc32c(&small))
    );

    // Cut inside the second chunk, then grow again: the cut-off bytes read as zeros.
    kfs(&cluster)
        .args(["truncate", "300000", "/big"])
        .assert()
        .success();
    assert_eq!(get(&cluster, "/big", local.path()), &big[..300_000]);
    kfs(&cluster)
        .args(["truncate", "-w", "600000", "/big"])
        .assert()
        .success();
    let mut want = big[..300_000].to_vec();
    want.resize(600_000, 0);
    assert_eq!(get(&cluster, "/big", local.path()), want);
    assert_eq!(
        checksum("/big"),
        format!("/big\tCRC32C\t{:08x}\t600000\n", crc32c::crc32c(&want))
    );
    assert_eq!(
        stdout(kfs(&cluster).args(["stat", "-c", "%n %s %F %r", "/big"])),
        "/big 600000 regular file 3\n"
    );
    kfs(&cluster)
        .args(["truncate", "0", "/big"])
        .assert()
        .success();
    assert_eq!(get(&cluster, "/big", local.path()), b"");
    let chunks = json(kfs(&cluster).args(["chunks", "--json", "/big"]));
    assert_eq!(chunks["chunks"].as_array().unwrap().len(), 0, "{chunks}");

    // The small file is rewritten as one record of the new length.
    kfs(&cluster)
        .args(["truncate", "100", "/small"])
        .assert()
        .success();
    assert_eq!(get(&cluster, "/small", local.path()), &small[..100]);
    kfs(&cluster)
        .args(["truncate", "8KiB", "/small"])
        .assert()
        .success();
    let mut want = small[..100].to_vec();
    want.resize(8192, 0);
    assert_eq!(get(&cluster, "/small", local.path()), want);
    kfs(&cluster)
        .args(["truncate", "5", "/"])
        .assert()
        .code(1)
        .stderr("kfs: cannot truncate '/': Is a directory\n");

    // Appends: local files in order, then standard input; a missing file is created.
    let one = local.path().join("one");
    let two = local.path().join("two");
    std::fs::write(&one, b"first\n").unwrap();
    std::fs::write(&two, data(400_000, 3)).unwrap();
    kfs(&cluster)
        .arg("appendToFile")
        .arg(&one)
        .arg(&two)
        .arg("/log")
        .assert()
        .success();
    kfs(&cluster)
        .args(["appendToFile", "-", "/log"])
        .write_stdin("from stdin\n")
        .assert()
        .success();
    let mut want = b"first\n".to_vec();
    want.extend(data(400_000, 3));
    want.extend(b"from stdin\n");
    assert_eq!(get(&cluster, "/log", local.path()), want);
    kfs(&cluster)
        .args(["appendToFile", "/no/such/local/file", "/log"])
        .assert()
        .code(1)
        .stderr("kfs: cannot open '/no/such/local/file': No such file or directory\n");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_health_and_replication_in_text_and_json() {
    let cluster = TestCluster::start(ClusterOptions::default()).await;
    let local = tempfile::tempdir().unwrap();
    kfs(&cluster)
        .args(["mkdir", "-p", "/d/e"])
        .assert()
        .success();
    put(&cluster, &local.path().join("x"), &data(1000, 4), "/d/x");
    std::fs::write(local.path().join("y"), data(300_000, 5)).unwrap();
    kfs(&cluster)
        .args(["put", "--replication", "2"])
        .arg(local.path().join("y"))
        .arg("/d/e/y")
        .assert()
        .success();

    assert_eq!(
        stdout(kfs(&cluster).args(["du", "/d"])),
        "300000\t600000\t/d/e\n301000\t603000\t/d\n"
    );
    assert_eq!(
        stdout(kfs(&cluster).args(["du", "-s", "/d"])),
        "301000\t603000\t/d\n"
    );
    let du = json(kfs(&cluster).args(["du", "-s", "--json", "/d"]));
    assert_eq!(du[0]["bytes"], 301_000);
    assert_eq!(du[0]["with_replicas"], 603_000);

    let df = stdout(kfs(&cluster).args(["df"]));
    assert!(df.contains("raw") && df.contains("logical (x3)"), "{df}");
    assert!(df.contains("3 of 3 chunkservers alive"), "{df}");
    let df = json(kfs(&cluster).args(["df", "--json"]));
    assert!(df["raw"]["capacity"].as_u64().unwrap() > 0, "{df}");
    assert_eq!(df["logical"]["bytes"], 301_000);
    assert_eq!(df["chunkservers"]["alive"], 3);

    let servers = json(kfs(&cluster).args(["servers", "--json"]));
    assert_eq!(servers.as_array().unwrap().len(), 3);
    assert!(
        servers
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "alive")
    );
    assert_eq!(servers[0]["id"].as_str().unwrap().len(), 32);
    let fsck = json(kfs(&cluster).args(["fsck", "--json"]));
    assert_eq!(fsck["status"], "HEALTHY", "{fsck}");
    // fsck of a path counts what is below it only.
    let below = json(kfs(&cluster).args(["fsck", "--json", "/d/e"]));
    assert_eq!(
        (below["files"].as_u64(), below["chunks"].as_u64()),
        (Some(1), Some(2)),
        "{below}"
    );
    kfs(&cluster)
        .args(["fsck", "/d"])
        .assert()
        .success()
        .stdout(predicate::str::contains("status: HEALTHY"));
    kfs(&cluster)
        .args(["fsck", "/nope"])
        .assert()
        .code(1)
        .stderr("kfs: cannot check '/nope': No such file or directory\n");
    let stat = json(kfs(&cluster).args(["stat", "--json", "/d/x", "/d/e"]));
    assert_eq!(stat[0]["size"], 1000);
    assert_eq!(stat[0]["replication"], 3);
    assert_eq!(stat[1]["type"], "dir");

    // setrep -w returns once every chunk has the new number of replicas.
    kfs(&cluster)
        .args(["setrep", "-w", "3", "/d/e/y"])
        .assert()
        .success();
    let chunks = json(kfs(&cluster).args(["chunks", "--json", "/d/e/y"]));
    let chunks = chunks["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 2);
    for c in chunks {
        assert_eq!(c["replicas"].as_array().unwrap().len(), 3, "{c}");
    }
    kfs(&cluster)
        .args(["setrep", "-w", "5", "/d/x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("only 3 chunkservers are alive"));
    cluster.shutdown().await;
}
