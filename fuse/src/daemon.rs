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
//! mount point still shows a dead FUSE mount or the same device. The forked child makes only
//! raw system calls (read, stat, umount2, _exit), which are safe after `fork` in a threaded
//! process.

use anyhow::Context as _;
use std::ffi::CString;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// The environment variable naming the descriptor a detached daemon reports readiness on.
pub const READY_FD_ENV: &str = "KFS_MOUNT_READY_FD";

/// Starts this program again with `--foreground` in a new session and waits until it says it
/// is mounted (or exits).
pub fn detach() -> anyhow::Result<()> {
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
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = command.spawn().context("starting the mount daemon")?;
    drop(writer);
    // One line, not to the end: whatever the daemon forks may still hold the pipe open.
    let mut said = String::new();
    std::io::BufReader::new(std::fs::File::from(reader))
        .read_line(&mut said)
        .ok();
    if said.trim() == "ready" {
        return Ok(());
    }
    let status = child.wait().context("waiting for the mount daemon")?;
    anyhow::bail!("the mount daemon could not mount ({status}; its error is above)")
}

/// Tells the process that started this daemon (if any) that the mount serves.
pub fn report_ready() {
    let Some(fd) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    // SAFETY: the descriptor was inherited for this one use and is not used elsewhere.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = pipe.write_all(b"ready\n");
    // SAFETY: only the variable's reader (this function) looks at it, once.
    unsafe { std::env::remove_var(READY_FD_ENV) };
}

/// The daemon's end of the watchdog's pipe: [`Watchdog::disarm`] when the daemon unmounted
/// by itself; dropping it otherwise (the daemon's death) makes the watchdog unmount.
pub struct Watchdog {
    pipe: Option<OwnedFd>,
}

impl Watchdog {
    /// Forks the watchdog of the FUSE mount at `mountpoint`, served through `/dev/fuse`
    /// descriptor `fuse_fd` (which the watchdog closes at once: it must not keep the dead
    /// daemon's connection alive). Call once the mount serves (it `stat`s the mount point).
    pub fn start(mountpoint: &Path, fuse_fd: i32) -> anyhow::Result<Watchdog> {
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
            unsafe {
                watch(
                    reader.as_raw_fd(),
                    writer.as_raw_fd(),
                    fuse_fd,
                    &target,
                    device,
                )
            }
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
unsafe fn watch(reader: i32, writer: i32, fuse_fd: i32, target: &CString, device: u64) -> ! {
    unsafe {
        libc::close(writer);
        libc::close(fuse_fd);
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
