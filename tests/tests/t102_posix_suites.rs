//! Suites and programs that others wrote, run through a real mount: pjdfstest (every test
//! file; the few that cannot pass on KFS are listed in [`PJDFSTEST_EXPECTED_FAILURES`] with
//! the reason, and a listed file that passes fails the test too, so the list stays true), fsx
//! with several seeds, git (init, commits, fsck) and SQLite (a database written, checked,
//! and checked again after a remount).
//!
//! Needs `/dev/fuse`, root, and what test.sh installs: autoconf and automake (to build
//! pjdfstest from `../shared/third_party/pjdfstest` in a temp dir), perl, sqlite3, git, and
//! fsx (`cargo install fsx`, into `target/tools/fsx`). Each result is also written to
//! `target/artifacts/` (the pjdfstest counts go in docs/testing.md).

use kfs_tests::mounts::{MountedCluster, blocking};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// pjdfstest files that fail on KFS, with the reason: none (every file passes since hard links,
/// special files and the change time). A file that fails must be fixed or listed here with
/// why it cannot pass on KFS; a listed file that passes fails the test, so the list stays true.
const PJDFSTEST_EXPECTED_FAILURES: &[(&str, &[&str])] = &[];

/// The workspace's root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The suites others wrote, kept beside the repository (`../shared/third_party`), or where
/// `KFS_THIRD_PARTY` says.
fn third_party() -> PathBuf {
    let candidates = [
        std::env::var_os("KFS_THIRD_PARTY").map(PathBuf::from),
        Some(workspace().join("../shared/third_party")),
        Some(PathBuf::from("/work/shared/third_party")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("pjdfstest/pjdfstest.c").exists())
        .expect("pjdfstest's source: ../shared/third_party/pjdfstest (or set KFS_THIRD_PARTY)")
}

fn artifact(name: &str, text: &str) {
    let dir = workspace().join("target/artifacts");
    std::fs::create_dir_all(&dir).expect("target/artifacts");
    std::fs::write(dir.join(name), text).expect("write an artifact");
}

/// Runs `command` to its end (at most `limit`: then it and everything it started are killed),
/// failing the test with its output if it fails.
fn run(command: &mut Command, limit: Duration) -> String {
    use std::os::unix::process::CommandExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    let shown = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let group = child.id().to_string();
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if done.load(Ordering::Acquire) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // The whole group: helpers it started may hold its output open.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
            true
        })
    };
    let output = child.wait_with_output().expect("wait for the command");
    done.store(true, Ordering::Release);
    let killed = watcher.join().expect("the watcher thread");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!killed, "{shown} did not finish within {limit:?}:\n{text}");
    assert!(
        output.status.success(),
        "{shown} failed ({}):\n{text}",
        output.status
    );
    text
}

/// Builds pjdfstest from its source in a temp dir, as its README says.
fn build_pjdfstest(into: &Path) -> PathBuf {
    let source = third_party().join("pjdfstest");
    let dir = into.join("pjdfstest");
    run(
        Command::new("cp").arg("-r").arg(&source).arg(&dir),
        Duration::from_secs(60),
    );
    let sh = |script: &str| {
        run(
            Command::new("sh").arg("-c").arg(script).current_dir(&dir),
            Duration::from_secs(300),
        )
    };
    sh("autoreconf -ifs && ./configure && make pjdfstest");
    dir
}

/// One pjdfstest file's outcome: its TAP plan and the checks that failed.
struct FileResult {
    planned: usize,
    passed: usize,
    /// Checks pjdfstest itself marks `TODO` on this system (allowed to fail).
    todo: usize,
    failures: Vec<String>,
}

fn run_tap_file(file: &Path, cwd: &Path) -> FileResult {
    let output = Command::new("timeout")
        .args(["-s", "KILL", "300", "sh"])
        .arg(file)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run a pjdfstest file");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut result = FileResult {
        planned: 0,
        passed: 0,
        todo: 0,
        failures: Vec::new(),
    };
    for line in text.lines() {
        if let Some(plan) = line.strip_prefix("1..") {
            result.planned = plan.trim().parse().unwrap_or(0);
        } else if line.contains("# TODO") {
            result.todo += 1;
        } else if line.starts_with("ok ") {
            result.passed += 1;
        } else if line.starts_with("not ok ") {
            result.failures.push(line.to_string());
        }
    }
    if !output.status.success() && result.failures.is_empty() {
        result
            .failures
            .push(format!("the file exited with {}", output.status));
    }
    if result.planned != result.passed + result.todo + result.failures.len()
        && result.failures.is_empty()
    {
        result.failures.push(format!(
            "planned {} checks, {} passed",
            result.planned, result.passed
        ));
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pjdfstest_passes_but_for_the_listed_files() {
    let options = kfs_fuse::Parsed {
        allow_other: true,
        ..kfs_fuse::Parsed::default()
    };
    let m = MountedCluster::start_with(&options).await;
    let build = tempfile::tempdir().expect("temp dir");
    let work = m.at("pjdfstest");
    let (report, failed) = blocking(move || {
        let suite = build_pjdfstest(build.path());
        std::fs::create_dir(&work).expect("a directory in the mount");
        // pjdfstest switches to other users (-u/-g): they must be able to reach its directory.
        std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod");
        let mut files: Vec<PathBuf> = Vec::new();
        let mut dirs = vec![suite.join("tests")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)
                .expect("pjdfstest's tests")
                .flatten()
            {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "t") {
                    files.push(path);
                }
            }
        }
        files.sort();
        // Two at a time (each file works in names of its own).
        let queue = std::sync::Mutex::new(files.clone());
        let results = std::sync::Mutex::new(BTreeMap::new());
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    loop {
                        let Some(file) = queue.lock().unwrap().pop() else {
                            return;
                        };
                        let result = run_tap_file(&file, &work);
                        let name = file
                            .strip_prefix(suite.join("tests"))
                            .unwrap()
                            .display()
                            .to_string();
                        results.lock().unwrap().insert(name, result);
                    }
                });
            }
        });
        let results = results.into_inner().unwrap();
        let (mut checks, mut passed, mut report, mut failed) = (0, 0, String::new(), Vec::new());
        for (name, r) in &results {
            checks += r.passed + r.failures.len();
            passed += r.passed;
            if !r.failures.is_empty() {
                failed.push(name.clone());
                report.push_str(&format!("{name}: {} failed\n", r.failures.len()));
                for line in &r.failures {
                    let short: String = line.chars().take(240).collect();
                    report.push_str(&format!("    {short}\n"));
                }
            }
        }
        let summary = format!(
            "pjdfstest: {} of {} files pass; {passed} of {checks} checks pass\n",
            results.len() - failed.len(),
            results.len()
        );
        (format!("{summary}{report}"), failed)
    })
    .await;
    artifact("pjdfstest.txt", &report);
    println!("{report}");
    let expected: Vec<&str> = PJDFSTEST_EXPECTED_FAILURES
        .iter()
        .flat_map(|(_, files)| files.iter().copied())
        .collect();
    let unexpected: Vec<&String> = failed
        .iter()
        .filter(|f| !expected.contains(&f.as_str()))
        .collect();
    let now_passing: Vec<&&str> = expected
        .iter()
        .filter(|f| !failed.iter().any(|g| g == *f))
        .collect();
    assert!(
        unexpected.is_empty() && now_passing.is_empty(),
        "pjdfstest files failing that are not listed: {unexpected:?}; listed files that pass \
         (take them off the list): {now_passing:?}\n{report}"
    );
    m.stop().await;
}

/// fsx's settings: every operation a POSIX file system has to get right (reads and writes by
/// pread/pwrite and through mmap, truncation both ways, close and reopen, fsync), on a file
/// of up to 3 MiB so chunk boundaries (1 MiB here) are crossed.
const FSX_CONFIG: &str = "\
flen = 3145728
[opsize]
max = 262144
[weights]
close_open = 2
read = 10
write = 10
mapread = 5
mapwrite = 5
invalidate = 1
truncate = 3
fsync = 1
fdatasync = 1
";

fn fsx_binary() -> PathBuf {
    let installed = workspace().join("target/tools/fsx/bin/fsx");
    if installed.exists() {
        return installed;
    }
    PathBuf::from("fsx")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsx_finds_nothing_wrong_with_several_seeds() {
    let m = MountedCluster::start().await;
    let root = m.root().to_path_buf();
    let log = blocking(move || {
        let config = root.join("fsx.toml");
        std::fs::write(&config, FSX_CONFIG).expect("write fsx's config");
        let mut log = String::new();
        for seed in [1, 7, 42, 1234] {
            let file = root.join(format!("fsx-{seed}.bin"));
            let out = run(
                Command::new(fsx_binary())
                    .args(["-N", "2000", "-S", &seed.to_string(), "-f"])
                    .arg(&config)
                    .arg(&file),
                Duration::from_secs(600),
            );
            log.push_str(&format!("seed {seed}:\n{out}\n"));
        }
        log
    })
    .await;
    artifact("fsx.txt", &log);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn git_commits_and_fscks_in_the_mount() {
    let m = MountedCluster::start().await;
    let repo = m.at("repo");
    let source = workspace().join("common/src");
    blocking(move || {
        std::fs::create_dir(&repo).unwrap();
        let git = |args: &[&str]| {
            run(
                Command::new("git")
                    .args([
                        "-c",
                        "user.name=KFS",
                        "-c",
                        "user.email=kfs@example.invalid",
                    ])
                    .args(["-c", "init.defaultBranch=main", "-c", "safe.directory=*"])
                    .args(args)
                    .current_dir(&repo),
                Duration::from_secs(120),
            )
        };
        git(&["init", "-q"]);
        run(
            Command::new("cp")
                .arg("-r")
                .arg(&source)
                .arg(repo.join("src")),
            Duration::from_secs(60),
        );
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "first"]);
        std::fs::write(repo.join("src/NOTES"), "a second commit\n").unwrap();
        std::fs::rename(repo.join("src/lib.rs"), repo.join("src/lib2.rs")).unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "second"]);
        git(&["gc", "-q"]);
        git(&["fsck", "--full", "--strict"]);
        let log = git(&["log", "--oneline"]);
        assert_eq!(log.lines().count(), 2, "{log}");
        let status = git(&["status", "--porcelain"]);
        assert!(status.is_empty(), "a clean tree after commit: {status}");
    })
    .await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_sqlite_database_survives_a_remount() {
    let m = MountedCluster::start().await;
    let db = m.at("app.db");
    let sql = |db: &Path, script: &str| {
        run(
            Command::new("sqlite3").arg(db).arg(script),
            Duration::from_secs(300),
        )
    };
    let path = db.clone();
    blocking(move || {
        sql(
            &path,
            "PRAGMA journal_mode=DELETE; CREATE TABLE photos(id INTEGER PRIMARY KEY, name TEXT, \
             body BLOB); CREATE INDEX by_name ON photos(name);",
        );
        for batch in 0..20 {
            let mut script = String::from("BEGIN;");
            for i in 0..500 {
                let id = batch * 500 + i;
                script.push_str(&format!(
                    "INSERT INTO photos(name, body) VALUES('p{id}', randomblob({}));",
                    100 + id % 3000
                ));
            }
            script.push_str("COMMIT;");
            sql(&path, &script);
        }
        sql(&path, "DELETE FROM photos WHERE id % 7 = 0; VACUUM;");
        let check = sql(&path, "PRAGMA integrity_check;");
        assert_eq!(check.trim(), "ok");
    })
    .await;
    let m = m.remount(&kfs_fuse::Parsed::default()).await;
    let path = m.at("app.db");
    blocking(move || {
        let check = sql(&path, "PRAGMA integrity_check;");
        assert_eq!(check.trim(), "ok");
        let count = sql(&path, "SELECT count(*) FROM photos;");
        assert_eq!(count.trim(), (10_000 - 10_000 / 7).to_string());
        // WAL mode (shared memory through mmap of the -shm file) works too.
        sql(
            &path,
            "PRAGMA journal_mode=WAL; INSERT INTO photos(name) VALUES('wal');",
        );
        let count = sql(&path, "SELECT count(*) FROM photos WHERE name = 'wal';");
        assert_eq!(count.trim(), "1");
    })
    .await;
    m.stop().await;
}
