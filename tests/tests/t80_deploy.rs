//! The deployment files under `deploy/` hold: the example configs pass `--check-config` (and bad
//! ones fail it naming what is wrong), and the binaries started exactly as the systemd units
//! start them (the units' `ExecStartPre=`/`ExecStart=` arguments, the example configs with only
//! addresses and directories moved into a temp dir) tell a notify socket `READY=1` once they
//! serve and `STOPPING=1` on SIGTERM, then exit cleanly. `deploy/check-units` runs
//! `systemd-analyze verify` on the units themselves.

use kfs_common::proto::master::{self, ServerState};
use kfs_tests::{Process, binary, ctx, wait_until};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::net::UnixDatagram;

const WAIT: Duration = Duration::from_secs(30);

fn deploy_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy_file(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

/// `text` with the line `key = ...` replaced by `key = value` (or dropped when `value` is
/// `None`); every other line, comments included, kept as it is.
fn set_key(text: &str, key: &str, value: Option<&str>) -> String {
    let prefix = format!("{key} = ");
    assert!(
        text.lines().any(|l| l.starts_with(&prefix)),
        "the example config has no `{key}` line"
    );
    text.lines()
        .filter_map(|line| match (line.starts_with(&prefix), value) {
            (false, _) => Some(line.to_string()),
            (true, Some(v)) => Some(format!("{prefix}{v}")),
            (true, None) => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `kfs-<name> --check-config path`: (success, stdout + stderr). A failure must exit with
/// 78 (`EX_CONFIG`), which the units do not restart on.
fn check_config(name: &str, path: &Path) -> (bool, String) {
    let out = Command::new(binary(name))
        .arg("--check-config")
        .arg(path)
        .output()
        .expect("run --check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || out.status.code() == Some(78),
        "{name} --check-config exited with {}: {text}",
        out.status
    );
    (out.status.success(), text)
}

/// The example master config with its directory under `root` and a free loopback port.
/// The cluster's secrets under `root` (made once), as `kfs init-cluster` makes them.
fn secrets(root: &Path) -> std::path::PathBuf {
    let dir = root.join("secrets");
    kfs_common::security::ClusterFiles::new(&dir)
        .ensure("t80")
        .unwrap();
    dir
}

/// The admin's credentials of the cluster under `root`.
fn admin(root: &Path) -> kfs_common::security::Security {
    let path = secrets(root).join(kfs_common::security::ADMIN_CREDENTIALS);
    kfs_common::security::Security::Tls(std::sync::Arc::new(
        kfs_common::security::files::load_credentials(&path).unwrap(),
    ))
}

/// A client of the cluster under `root`, as its admin.
async fn admin_client(root: &Path, addr: std::net::SocketAddr) -> kfs_client::Client {
    let options = kfs_client::ClientOptions::default().with_security(admin(root));
    kfs_client::Client::connect_with(addr, options)
        .await
        .unwrap()
}

fn master_config(root: &Path) -> String {
    let meta = root.join("meta");
    std::fs::create_dir_all(&meta).unwrap();
    let text = set_key(
        &read("config/master.toml"),
        "meta_dir",
        Some(&format!("{:?}", meta.display().to_string())),
    );
    let text = set_key(
        &text,
        "secrets",
        Some(&format!("{:?}", secrets(root).display().to_string())),
    );
    let text = set_key(&text, "http", Some("\"127.0.0.1:0\""));
    set_key(&text, "listen", Some("\"127.0.0.1:0\""))
}

/// The example chunkserver config with its data dir under `root`, serving on a free loopback
/// port, reporting to `master`.
fn chunkserver_config(root: &Path, master: &str) -> String {
    let data = root.join("chunkserver-1");
    std::fs::create_dir_all(&data).unwrap();
    let text = set_key(
        &read("config/chunkserver.toml"),
        "data",
        Some(&format!("[{:?}]", data.display().to_string())),
    );
    let text = set_key(&text, "listen", Some("\"127.0.0.1:0\""));
    let text = set_key(&text, "http", Some("\"127.0.0.1:0\""));
    let text = set_key(&text, "advertise", None);
    let text = set_key(
        &text,
        "secrets",
        Some(&format!("{:?}", secrets(root).display().to_string())),
    );
    set_key(&text, "master", Some(&format!("\"{master}\"")))
}

#[test]
fn example_configs_pass_check_config_and_bad_ones_name_the_problem() {
    let root = tempfile::tempdir().unwrap();
    let master_path = root.path().join("master.toml");
    std::fs::write(&master_path, master_config(root.path())).unwrap();
    let (ok, out) = check_config("kfs-master", &master_path);
    assert!(ok, "{out}");
    assert!(out.contains(": ok"), "{out}");

    let cs_path = root.path().join("chunkserver-1.toml");
    std::fs::write(&cs_path, chunkserver_config(root.path(), "10.0.0.1:20000")).unwrap();
    let (ok, out) = check_config("kfs-chunkserver", &cs_path);
    assert!(ok, "{out}");

    // The examples as shipped differ only in directories that this machine lacks.
    for (name, rel, missing) in [
        ("kfs-master", "config/master.toml", "/var/lib/kfs/meta"),
        (
            "kfs-chunkserver",
            "config/chunkserver.toml",
            "/var/lib/kfs/chunkserver-1",
        ),
    ] {
        if !Path::new(missing).exists() {
            let (ok, out) = check_config(name, &deploy_file(rel));
            assert!(!ok, "{out}");
            assert!(
                out.contains(missing) && out.contains("does not exist"),
                "{out}"
            );
        }
    }

    let bad = |name: &str, text: &str, expect: &[&str]| {
        let path = root.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let (ok, out) = check_config(name, &path);
        assert!(!ok, "{text:?} passed: {out}");
        assert!(out.contains("bad.toml"), "{out}");
        for word in expect {
            assert!(out.contains(word), "{text:?}: {out} lacks {word:?}");
        }
    };
    let meta = root.path().join("meta").display().to_string();
    bad(
        "kfs-master",
        &format!("meta_dir = {meta:?}\nlisten_on = \"127.0.0.1:1\"\n"),
        &["unknown field", "listen_on"],
    );
    bad(
        "kfs-master",
        &format!("meta_dir = {meta:?}\nlisten = \"127.0.0.1\"\n"),
        &["listen", "socket address"],
    );
    bad(
        "kfs-master",
        &format!("meta_dir = {meta:?}\nchunk_size = 1000\n"),
        &["chunk_size"],
    );
    bad(
        "kfs-master",
        "meta_dir = \"/nonexistent/kfs/meta\"\n",
        &["meta_dir", "/nonexistent/kfs/meta", "does not exist"],
    );
    bad(
        "kfs-chunkserver",
        "data = [\"/nonexistent/kfs/disk1\"]\n",
        &["data directory", "/nonexistent/kfs/disk1", "does not exist"],
    );
    bad(
        "kfs-chunkserver",
        &format!("data = [{meta:?}]\nmaster = \"0.0.0.0:20000\"\n"),
        &["master address"],
    );
    let (ok, out) = check_config("kfs-master", &root.path().join("absent.toml"));
    assert!(!ok && out.contains("absent.toml"), "{out}");
}

/// The words of the unit's `key=` line, with `/usr/bin/kfs-*` made the built binary, `%i` the
/// instance name and the config path `config`.
fn unit_command(unit: &str, key: &str, instance: &str, config: &Path) -> (String, Vec<String>) {
    let text = read(&format!("systemd/{unit}"));
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{unit} has no {key}="));
    let mut words = line
        .replace("%i", instance)
        .split_whitespace()
        .map(String::from)
        .collect::<Vec<_>>();
    let program = words.remove(0);
    let name = program
        .strip_prefix("/usr/bin/")
        .unwrap_or_else(|| panic!("{unit}: {key} runs {program}, not an installed kfs binary"))
        .to_string();
    let config_flag = words
        .iter()
        .position(|w| w.starts_with("/etc/kfs/"))
        .unwrap_or_else(|| panic!("{unit}: {key} names no /etc/kfs config"));
    words[config_flag] = config.display().to_string();
    (name, words)
}

/// Receives notifications until one has `wanted` among its lines; panics after [`WAIT`].
async fn expect_notification(socket: &UnixDatagram, wanted: &str) -> String {
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {wanted} notification within {WAIT:?}"))
            .expect("receive a notification");
        let message = String::from_utf8_lossy(&buf[..n]).to_string();
        if message.lines().any(|l| l == wanted) {
            return message;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binaries_started_as_the_units_do_notify_ready_and_stop_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let socket_path = root.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let notify_env: [(&str, &OsStr); 1] = [("NOTIFY_SOCKET", socket_path.as_os_str())];

    // The master: ExecStartPre checks the config, ExecStart serves.
    let master_path = root.path().join("master.toml");
    std::fs::write(&master_path, master_config(root.path())).unwrap();
    let (name, args) = unit_command("kfs-master.service", "ExecStartPre", "", &master_path);
    assert_eq!(args.first().map(String::as_str), Some("--check-config"));
    let status = Command::new(binary(&name)).args(&args).status().unwrap();
    assert!(status.success(), "{name} {args:?}: {status}");
    let (name, args) = unit_command("kfs-master.service", "ExecStart", "", &master_path);
    let mut master = Process::spawn_with_env(&name, &args, &notify_env);
    let ready = expect_notification(&socket, "READY=1").await;
    assert!(ready.contains(&master.addr.to_string()), "{ready}");
    // Ready means serving: a client call succeeds now.
    let client = master::connect(master.addr, &admin(root.path()))
        .await
        .expect("connect after READY");
    client.chunkservers(ctx()).await.unwrap().unwrap();

    // A chunkserver instance "1", reporting to that master.
    let cs_path = root.path().join("chunkserver-1.toml");
    std::fs::write(
        &cs_path,
        chunkserver_config(root.path(), &master.addr.to_string()),
    )
    .unwrap();
    let unit = "kfs-chunkserver@.service";
    let (name, args) = unit_command(unit, "ExecStartPre", "1", &cs_path);
    let status = Command::new(binary(&name)).args(&args).status().unwrap();
    assert!(status.success(), "{name} {args:?}: {status}");
    let (name, args) = unit_command(unit, "ExecStart", "1", &cs_path);
    let mut chunkserver = Process::spawn_with_env(&name, &args, &notify_env);
    let ready = expect_notification(&socket, "READY=1").await;
    assert!(ready.contains(&chunkserver.addr.to_string()), "{ready}");
    wait_until("the chunkserver to register", WAIT, || async {
        match client.chunkservers(ctx()).await {
            Ok(Ok(list)) => list.iter().any(|s| s.state == ServerState::Alive),
            _ => false,
        }
    })
    .await;
    // The example configs serve the status page and metrics.
    for (process, path, wanted) in [
        (&master, "/", "class=\"server alive\""),
        (&master, "/metrics", "kfs_files "),
        (&chunkserver, "/metrics", "kfs_chunkserver_replicas "),
    ] {
        let url = format!("http://{}{path}", process.http.expect("an http address"));
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        assert!(body.contains(wanted), "{url}: {body}");
    }

    // The gateway as kfs-gateway.service runs it: ExecStart's words with $KFS_GATEWAY_ARGS and
    // the environment from the example gateway.env (addresses moved to free loopback ports).
    let env_file = read("config/gateway.env");
    let setting = |key: &str| {
        env_file
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("gateway.env sets no {key}"))
            .to_string()
    };
    let text = read("systemd/kfs-gateway.service");
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("kfs-gateway.service has ExecStart=");
    let mut words: Vec<String> = Vec::new();
    for word in exec.split_whitespace() {
        match word {
            "$KFS_GATEWAY_ARGS" => words.extend(
                setting("KFS_GATEWAY_ARGS")
                    .split_whitespace()
                    .map(String::from),
            ),
            _ => words.push(word.to_string()),
        }
    }
    assert_eq!(words.remove(0), "/usr/bin/kfs");
    for flag in ["--listen", "--metrics"] {
        let at = words.iter().position(|w| w == flag).expect(flag) + 1;
        words[at] = "127.0.0.1:0".into();
    }
    let master_addr = master.addr.to_string();
    let token = setting("KFS_GATEWAY_TOKEN");
    // What LoadCredential= hands the unit: credentials of this cluster.
    let credentials = secrets(root.path()).join(kfs_common::security::ADMIN_CREDENTIALS);
    let gateway_env: [(&str, &OsStr); 4] = [
        ("NOTIFY_SOCKET", socket_path.as_os_str()),
        ("KFS_MASTER", OsStr::new(&master_addr)),
        ("KFS_GATEWAY_TOKEN", OsStr::new(&token)),
        ("KFS_CREDENTIALS", credentials.as_os_str()),
    ];
    let mut gateway = Process::spawn_with_env("kfs", &words, &gateway_env);
    let ready = expect_notification(&socket, "READY=1").await;
    assert!(ready.contains(&gateway.addr.to_string()), "{ready}");
    let files = admin_client(root.path(), master.addr).await;
    let mut f = files.create("/hello.txt").await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut f, b"served as the unit runs it\n")
        .await
        .unwrap();
    f.close().await.unwrap();
    let url = format!("http://{}/hello.txt", gateway.addr);
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert_eq!(body, "served as the unit runs it\n");
    let put = reqwest::Client::new()
        .put(&url)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.status(),
        403,
        "the example gateway.env makes a read-only gateway"
    );
    let status = gateway.terminate();
    expect_notification(&socket, "STOPPING=1").await;
    assert!(status.success(), "gateway exited with {status}");

    // systemctl stop: SIGTERM, STOPPING=1, a clean exit (Restart=on-failure leaves it down).
    let status = chunkserver.terminate();
    expect_notification(&socket, "STOPPING=1").await;
    assert!(status.success(), "chunkserver exited with {status}");
    let status = master.terminate();
    expect_notification(&socket, "STOPPING=1").await;
    assert!(status.success(), "master exited with {status}");
}

/// The names `d0`, `d1`, ... in `/` as numbers, sorted.
async fn numbered_dirs(client: &kfs_client::Client) -> Vec<u64> {
    let mut numbers: Vec<u64> = client
        .list_all("/")
        .await
        .expect("list /")
        .iter()
        .map(|e| e.name[1..].parse().expect("a dN name"))
        .collect();
    numbers.sort_unstable();
    numbers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_backup_taken_while_running_restores_every_op_up_to_a_point() {
    let root = tempfile::tempdir().unwrap();
    let meta = root.path().join("meta");
    let master_bin = binary("kfs-master");
    // Checkpoints (which rotate the log and remove old files) every 300 ops, so backups race
    // them.
    let secrets_dir = secrets(root.path());
    let master_args: Vec<String> = [
        "--secrets",
        secrets_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--meta-dir",
        meta.to_str().unwrap(),
        "--checkpoint-every-ops",
        "300",
    ]
    .map(String::from)
    .to_vec();
    let master = Process::spawn("kfs-master", &master_args);
    let client = admin_client(root.path(), master.addr).await;

    // One writer: mkdir /d0, /d1, ... in order; `acked` is how many were acknowledged.
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client.mkdir(&format!("/d{i}")).await.expect("mkdir");
                i += 1;
                acked.store(i, std::sync::atomic::Ordering::Release);
            }
        })
    };

    // A live directory is refused by --verify-meta (the master holds its lock).
    let out = Command::new(&master_bin)
        .arg("--verify-meta")
        .arg(&meta)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another kfs-master"), "{err}");

    let script = deploy_file("kfs-meta-backup");
    for n in 0..3 {
        wait_until("the writer to make progress", WAIT, || {
            let target = (n + 1) * 400;
            let acked = acked.clone();
            async move { acked.load(std::sync::atomic::Ordering::Acquire) >= target }
        })
        .await;
        let before = acked.load(std::sync::atomic::Ordering::Acquire);
        let backup = root.path().join(format!("backup-{n}"));
        let mut command = Command::new(&script);
        command
            .arg(&meta)
            .arg(&backup)
            .env("KFS_MASTER_BIN", &master_bin);
        let out = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        let after = acked.load(std::sync::atomic::Ordering::Acquire);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("backup {n} ({before}..{after} acknowledged meanwhile): {text}");
        assert!(out.status.success(), "backup {n}: {text}");
        assert!(text.contains(": ok: ops up to"), "{text}");

        // Restore: a master started on the copy holds /d0 .. /dk with no hole, k at least what
        // was acknowledged when the backup started and at most what was sent when it ended.
        let restored_args: Vec<String> = [
            "--secrets",
            secrets_dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--meta-dir",
            backup.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        let restored = Process::spawn("kfs-master", &restored_args);
        let restored_client = admin_client(root.path(), restored.addr).await;
        let dirs = numbered_dirs(&restored_client).await;
        let count = dirs.len() as u64;
        assert!(
            dirs.iter().copied().eq(0..count),
            "backup {n} has a hole: {:?}",
            dirs.iter().zip(0..).find(|(d, i)| *d != i).map(|(d, _)| d)
        );
        assert!(
            (before..=after + 1).contains(&count),
            "backup {n} holds {count} dirs; {before} were acknowledged before it, {after} after"
        );
        drop(restored);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    // The backups left nothing behind in the live directory, and the master still serves.
    assert_eq!(
        numbered_dirs(&client).await.len() as u64,
        acked.load(std::sync::atomic::Ordering::Acquire)
    );
}
