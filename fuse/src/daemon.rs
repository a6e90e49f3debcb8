//! Running as a mount daemon: detaching from the terminal, telling whoever started it that the
//! mount is ready, and the watchdog that unmounts when the daemon dies.
//!
//! Detaching: `kfs mount` without `--foreground` starts itself again with `--foreground`, in
//! a new session (no terminal: a closed terminal or Ctrl-C does not touch it), and waits until
//! that copy writes `ready` to a pipe (`KFS_MOUNT_READY_FD`), so `kfs mount` returns only once
//! the mount serves, and fails with the daemon's status if it could not mount.
//!
//! The watchdog: a kernel FUSE mount outlives a daemon killed by a signal (reads then fail
//! with "Transport endpoint is not connected"). So after mounting, the daemon forks a process
//! that only waits on a pipe: when the daemon exits without saying it unmounted (`kill -9`, a
//! crash), the pipe closes and the watchdog detaches the mount (`umount2(MNT_DETACH)`), if the
//! mount point still shows a dead FUSE mount or the same device. The watchdog first closes
//! every descriptor but its pipe: a copy of the daemon's `/dev/fuse` descriptor kept open would
//! keep the dead daemon's connection alive, and its own `stat` of the mount point would then
//! wait forever for an answer no one gives. The forked child makes only raw system calls
//! (close_range, read, stat, umount2, _exit), which are safe after `fork` in a threaded process.

use anyhow::Context as _;
use std::ffi::CString;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// The environment variable naming the descriptor a detached daemon reports readiness on.
pub const READY_FD_ENV: &str = "KFS_MOUNT_READY_FD";

/// How long `kfs mount` waits for its daemon to serve (reaching the master included).
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether this process is a daemon `kfs mount` started (and waits on).
pub fn detached() -> bool {
    std::env::var_os(READY_FD_ENV).is_some()
}

/// Starts this program again with `--foreground` in a new session and waits until it says it
/// is mounted (or exits). The daemon's log goes to `log` (appended) when given; otherwise to
/// this program's standard error until the daemon is ready (so a failure to mount shows), and
/// nowhere after (a terminal closed later must not matter to it).
pub fn detach(log: Option<&Path>) -> anyhow::Result<()> {
    let (reader, writer) = rustix::pipe::pipe().context("making the readiness pipe")?;
    rustix::io::fcntl_setfd(&reader, rustix::io::FdFlags::CLOEXEC)?;
    let exe = std::env::current_exe().context("finding this program")?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    args.push("--foreground".into());
    let mut command = std::process::Command::new(exe);
    command
        .args(args)
        .env(READY_FD_ENV, writer.as_raw_fd().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    if let Some(log) = log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open the log file {}", log.display()))?;
        command.stderr(file).env(LOG_ENV, "1");
    }
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = command.spawn().context("starting the mount daemon")?;
    drop(writer);
    // One line, not to the end, read on a thread so the wait is bounded.
    let (said_tx, said_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = String::new();
        std::io::BufReader::new(std::fs::File::from(reader))
            .read_line(&mut said)
            .ok();
        let _ = said_tx.send(said);
    });
    match said_rx.recv_timeout(READY_WITHIN) {
        Ok(said) if said.trim() == "ready" => return Ok(()),
        Ok(_) => {}
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "the mount daemon was not ready within {} s (killed; its log is above)",
                READY_WITHIN.as_secs()
            );
        }
    }
    let status = child.wait().context("waiting for the mount daemon")?;
    anyhow::bail!("the mount daemon could not mount ({status}; its error is above)")
}

/// Set for a detached daemon whose standard error is its log file.
const LOG_ENV: &str = "KFS_MOUNT_LOGGING";

/// Tells the process that started this daemon (if any) that the mount serves; a detached
/// daemon without a log file then stops writing to the standard error it inherited.
pub fn report_ready() {
    static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if REPORTED.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return; // the descriptor is closed (its number may name another file by now)
    }
    let logging = std::env::var_os(LOG_ENV).is_some();
    let Some(fd) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    // SAFETY: the descriptor was inherited for this one use (once, above) and is used nowhere
    // else.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = pipe.write_all(b"ready\n");
    drop(pipe);
    // (The variables stay: changing the environment while other threads run is unsound.)
    if !logging && let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto descriptor 2 replaces it atomically; `null` stays owned here.
        unsafe { libc::dup2(null.as_raw_fd(), 2) };
    }
}

/// The daemon's end of the watchdog's pipe: [`Watchdog::disarm`] when the daemon unmounted
/// by itself; dropping it otherwise (the daemon's death) makes the watchdog unmount.
pub struct Watchdog {
    pipe: Option<OwnedFd>,
}

impl Watchdog {
    /// Forks the watchdog of the FUSE mount at `mountpoint`. Call once the mount serves (it
    /// `stat`s the mount point).
    pub fn start(mountpoint: &Path) -> anyhow::Result<Watchdog> {
        let target = CString::new(mountpoint.as_os_str().as_bytes())?;
        let device = rustix::fs::stat(mountpoint)
            .context("reading the mount point")?
            .st_dev;
        let (reader, writer) = rustix::pipe::pipe().context("making the watchdog's pipe")?;
        rustix::io::fcntl_setfd(&writer, rustix::io::FdFlags::CLOEXEC)?;
        // SAFETY: the child makes only async-signal-safe system calls, then `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            anyhow::bail!(
                "cannot fork the watchdog: {}",
                std::io::Error::last_os_error()
            );
        }
        if pid == 0 {
            // SAFETY: raw system calls on values prepared before the fork.
            unsafe { watch(reader.as_raw_fd(), &target, device) }
        }
        drop(reader);
        Ok(Watchdog { pipe: Some(writer) })
    }

    /// The daemon unmounted cleanly: the watchdog exits without touching the mount point.
    pub fn disarm(mut self) {
        if let Some(pipe) = self.pipe.take() {
            let _ = rustix::io::write(&pipe, b"x");
        }
    }
}

/// The watchdog's whole life, in the forked child.
///
/// # Safety
/// Only after `fork`; makes only async-signal-safe calls and never returns.
unsafe fn watch(reader: i32, target: &CString, device: u64) -> ! {
    unsafe {
        close_all_but(reader);
        // The daemon's signal handlers write to descriptors just closed: the default instead.
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        let mut byte = [0u8; 1];
        let n = loop {
            let n = libc::read(reader, byte.as_mut_ptr().cast(), 1);
            if n >= 0 || *libc::__errno_location() != libc::EINTR {
                break n;
            }
        };
        if n <= 0 {
            let mut st: libc::stat = std::mem::zeroed();
            let found = libc::stat(target.as_ptr(), &mut st);
            let dead = found != 0 && *libc::__errno_location() == libc::ENOTCONN;
            if dead || (found == 0 && st.st_dev == device) {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
        libc::_exit(0)
    }
}

/// Closes every descriptor but `keep` (standard input, output and error included).
///
/// # Safety
/// Only in the forked watchdog: it owns none of the descriptors it closes.
unsafe fn close_all_but(keep: i32) {
    unsafe {
        let closed = (keep == 0
            || libc::syscall(libc::SYS_close_range, 0u32, (keep - 1) as u32, 0u32) == 0)
            && libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32) == 0;
        if !closed {
            // A kernel before close_range (5.9): every descriptor up to the limit.
            let limit = libc::sysconf(libc::_SC_OPEN_MAX).clamp(1024, 1 << 20) as i32;
            for fd in (0..limit).filter(|fd| *fd != keep) {
                libc::close(fd);
            }
        }
    }
}
