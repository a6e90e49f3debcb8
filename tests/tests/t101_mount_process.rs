//! `kfs mount` as users run it, against real server processes: it detaches and returns once
//! the mount serves; SIGTERM and `umount` end it cleanly; `kill -9` of the daemon leaves no
//! stale mount (its watchdog detaches it); `mount.kfs` (the /etc/fstab helper) mounts a
//! subdirectory; a bad option fails at once with exit status 78.
//!
//! Needs `/dev/fuse` and root, as t100 does.

use kfs_tests::{ProcessCluster, binary, wait_until};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Whether `path` is a mount point now (per /proc/self/mountinfo).
fn mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let want = path.to_str().expect("a UTF-8 temp path");
    info.lines()
        .any(|line| line.split(' ').nth(4) == Some(want))
}

/// The pid of the mount daemon serving `mountpoint` (its command line names it and
/// `--foreground`), if one runs.
fn daemon_pid(mountpoint: &Path) -> Option<i32> {
    let want = mountpoint.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let serves = args.contains(&want)
                && args.contains(&&b"--foreground"[..])
                && args.contains(&&b"mount"[..]);
            // The watchdog is a fork of the daemon: it has the same command line; the daemon is
            // the one whose parent is not another such process.
            let parent = std::fs::read_to_string(entry.path().join("stat"))
                .ok()?
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<i32>()
                .ok()?;
            let parent_cmdline =
                std::fs::read(format!("/proc/{parent}/cmdline")).unwrap_or_default();
            (serves && parent_cmdline != cmdline).then_some(pid)
        })
}

fn signal(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

struct Setup {
    cluster: ProcessCluster,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let cluster = ProcessCluster::start(2, "default_replication = 2\n", "").await;
        Setup {
            cluster,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn mountpoint(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("mount point");
        path
    }

    /// Runs `program args` with the cluster's credentials; returns its status and output.
    async fn run(&self, program: &Path, args: &[&str]) -> (i32, String) {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env("KFS_CREDENTIALS", self.cluster.credentials())
            .env("KFS", binary("kfs"))
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let output = tokio::time::timeout(WAIT, command.output())
            .await
            .unwrap_or_else(|_| panic!("{} {args:?} did not return within 30 s", program.display()))
            .expect("run the command");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    /// `kfs --master ADDR mount ARGS...`.
    async fn kfs_mount(&self, args: &[&str]) -> (i32, String) {
        let master = self.cluster.addr.to_string();
        let mut all = vec!["--master", master.as_str(), "mount"];
        all.extend_from_slice(args);
        self.run(&binary("kfs"), &all).await
    }
}

impl Drop for Setup {
    /// A test that failed midway leaves no daemon and no mount behind.
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(pid) = daemon_pid(&path) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            if mounted(&path) {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&path)
                    .status();
            }
        }
    }
}

async fn wait_unmounted(mountpoint: &Path, what: &str) {
    let at = mountpoint.to_path_buf();
    wait_until(what, WAIT, || {
        let at = at.clone();
        async move { !mounted(&at) && daemon_pid(&at).is_none() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kfs_mount_detaches_serves_and_ends_on_sigterm_umount_and_kill_9() {
    let s = Setup::start().await;
    let client = s.cluster.client().await;
    let mnt = s.mountpoint("mnt");
    let at = mnt.to_str().unwrap();

    // Detached: it returns once the mount serves, and says so.
    let (code, out) = s.kfs_mount(&[at]).await;
    assert_eq!(code, 0, "kfs mount failed: {out}");
    assert!(out.contains("mounted"), "{out}");
    assert!(mounted(&mnt), "kfs mount returned before {at} was mounted");
    let data = kfs_tests::content(3, 300_000);
    let file = mnt.join("hello.bin");
    let (write_to, expect) = (file.clone(), data.clone());
    tokio::task::spawn_blocking(move || std::fs::write(write_to, expect))
        .await
        .unwrap()
        .expect("write through the mount");
    let f = client.open("/hello.bin").await.unwrap();
    assert_eq!(f.read_at(0, data.len() + 1).await.unwrap(), data);

    // SIGTERM (systemctl stop): unmounted, the daemon gone.
    let pid = daemon_pid(&mnt).expect("the mount daemon runs");
    signal(pid, "-TERM");
    wait_unmounted(&mnt, "the mount to end on SIGTERM").await;

    // umount(8): the daemon sees its mount go and exits.
    let (code, out) = s.kfs_mount(&[at]).await;
    assert_eq!(code, 0, "kfs mount failed: {out}");
    let status = std::process::Command::new("umount")
        .arg(&mnt)
        .status()
        .expect("run umount");
    assert!(status.success());
    wait_unmounted(&mnt, "the daemon to exit after umount").await;

    // kill -9: the watchdog detaches the dead daemon's mount; the mount point is usable again
    // (no "Transport endpoint is not connected") and can be mounted anew.
    let (code, out) = s.kfs_mount(&[at]).await;
    assert_eq!(code, 0, "kfs mount failed: {out}");
    let pid = daemon_pid(&mnt).expect("the mount daemon runs");
    signal(pid, "-KILL");
    wait_unmounted(&mnt, "the watchdog to detach a killed daemon's mount").await;
    let entries = std::fs::read_dir(&mnt)
        .expect("the mount point reads")
        .count();
    assert_eq!(entries, 0, "the bare mount point shows through");
    let (code, out) = s.kfs_mount(&[at]).await;
    assert_eq!(code, 0, "mounting again after kill -9 failed: {out}");
    assert_eq!(std::fs::read(&file).unwrap(), data);
    signal(daemon_pid(&mnt).unwrap(), "-TERM");
    wait_unmounted(&mnt, "the mount to end").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_kfs_mounts_a_subdirectory_as_fstab_does_and_bad_options_fail_at_once() {
    let s = Setup::start().await;
    let client = s.cluster.client().await;
    client.mkdir_all("/photos/2026").await.unwrap();
    let mut f = client.create("/photos/2026/cat.jpg").await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut f, b"not really a jpeg")
        .await
        .unwrap();
    f.close().await.unwrap();
    let mnt = s.mountpoint("photos");
    let at = mnt.to_str().unwrap();
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mount.kfs");
    let spec = format!("{}:/photos", s.cluster.addr);

    // As mount(8) runs it for `ADDR:/photos /mnt/photos kfs _netdev,ro 0 0`.
    let (code, out) = s
        .run(
            &helper,
            &[&spec, at, "-o", "rw,_netdev,ro,x-systemd.automount"],
        )
        .await;
    assert_eq!(code, 0, "mount.kfs failed: {out}");
    let cat = mnt.join("2026/cat.jpg");
    assert_eq!(std::fs::read(&cat).unwrap(), b"not really a jpeg");
    let refused = std::fs::write(mnt.join("2026/dog.jpg"), b"x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS), "{refused}");
    let status = std::process::Command::new("umount")
        .arg(&mnt)
        .status()
        .expect("run umount");
    assert!(status.success());
    wait_unmounted(&mnt, "the mount to end after umount").await;

    // A bad option: status 78 (the unit does not restart on it), the option named, no mount.
    let (code, out) = s.kfs_mount(&["-o", "allow_other,bogus=1", at]).await;
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("bogus=1"), "{out}");
    assert!(!mounted(&mnt));
    // A root that does not exist: the daemon's error reaches the caller.
    let (code, out) = s.kfs_mount(&["--root", "/nowhere", at]).await;
    assert_ne!(code, 0);
    assert!(out.contains("/nowhere"), "{out}");
    assert!(!mounted(&mnt));
}
