//! `kfs mount`: a KFS directory as a FUSE file system (the `fuser` crate, `/dev/fuse`), so any
//! program reads and writes KFS through POSIX calls. docs/fuse.md says what is and is not POSIX
//! here.
//!
//! The map of this crate:
//! - `fs.rs`: the `fuser::Filesystem` the kernel calls; each request runs as a task.
//! - `ops/`: the requests' work: `names.rs` (lookup, mkdir, unlink, rmdir, rename), `data.rs`
//!   (create, open, read, write, flush, fsync, release, truncate), `attrs.rs` (getattr,
//!   setattr, statfs, xattrs), `dirs.rs` (listings).
//! - `state.rs`: what every request shares ([`MountState`]); `inodes.rs`: inode numbers and
//!   the path each stands for; `open_files.rs`: one KFS `File` per open inode; `dirs.rs`: open
//!   directories' listings, fetched a page at a time; `dir_attrs.rs`: directories'
//!   attributes kept through this mount's own changes; `known_names.rs`: listed names for
//!   `-o negative_timeout`; `convert.rs`: attributes and errnos.
//! - `daemon.rs`: detaching, readiness, and the watchdog that unmounts a killed daemon's mount.
//! - `options.rs`: the command line and `-o` options.
//!
//! Consistency is close-to-open (docs/consistency.md): `close` and `fsync` put every write
//! on every replica and its length at the master; an `open` asks the master for the file
//! again. The master answers the mount's namespace changes once they are in its log file
//! (`Durability::Logged`: they survive a crash of any process), and `fsync` of a file or a
//! directory makes them durable against power loss (`-o sync`: each one when answered). The
//! kernel caches attributes and names for `attr_timeout` / `entry_timeout` (1 s by default),
//! and a file's pages while it is unchanged; the mount's copy of a directory's attributes is
//! no older than `attr_timeout` and holds this mount's changes; a missing name is asked for
//! every time unless `negative_timeout` is set.

mod convert;
mod daemon;
mod dir_attrs;
mod dirs;
mod fs;
mod inodes;
mod known_names;
mod open_files;
mod ops;
mod options;
mod state;

pub use options::{MountOptions, OptionError, Parsed};
pub use state::{MountState, Settings};

use anyhow::Context as _;
use kfs_client::{Client, ClientOptions};
use kfs_common::FileKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A live mount: unmount it with [`Mounted::unmount`], or wait until someone else does.
pub struct Mounted {
    mountpoint: PathBuf,
    unmounter: fuser::SessionUnmounter,
    ended: tokio::sync::oneshot::Receiver<std::io::Result<()>>,
    state: Arc<MountState>,
}

impl Mounted {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// What the mount's requests share (for tests: its open files and inodes).
    pub fn state(&self) -> &Arc<MountState> {
        &self.state
    }

    /// Waits until the mount is gone (`umount`, `fusermount3 -u`).
    pub async fn ended(&mut self) -> std::io::Result<()> {
        (&mut self.ended)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the FUSE session thread died")))
    }

    /// Unmounts; a mount still in use is detached (it goes once its last user is done) and
    /// served until then.
    pub async fn unmount(mut self) -> anyhow::Result<()> {
        if let Err(e) = self.unmounter.unmount() {
            tracing::info!(error = %e, "the mount is busy: detaching it");
            rustix::mount::unmount(&self.mountpoint, rustix::mount::UnmountFlags::DETACH)
                .with_context(|| format!("cannot unmount {}", self.mountpoint.display()))?;
        }
        self.ended().await.context("the FUSE session failed")
    }
}

impl Drop for Mounted {
    /// A mount dropped without [`Mounted::unmount`] (a panic, an early return) is detached, so
    /// no stale mount is left behind.
    fn drop(&mut self) {
        if self.ended.try_recv().is_err() {
            let _ = self.unmounter.unmount().or_else(|_| {
                rustix::mount::unmount(&self.mountpoint, rustix::mount::UnmountFlags::DETACH)
                    .map_err(std::io::Error::from)
            });
        }
    }
}

/// Mounts the KFS directory `root` at `mountpoint`, served by tasks on the current runtime.
pub async fn mount(
    client: Client,
    root: &str,
    mountpoint: &Path,
    parsed: &Parsed,
) -> anyhow::Result<Mounted> {
    use fuser::MountOption as K;
    let root = kfs_common::path::normalize("/", root)?;
    let attr = client
        .stat(&root)
        .await
        .with_context(|| format!("cannot mount {root}"))?;
    if attr.kind != FileKind::Dir {
        anyhow::bail!("cannot mount {root}: not a directory");
    }
    let master = client.master_addr();
    let state = Arc::new(MountState::new(
        client,
        &root,
        attr.fid,
        parsed.settings.clone(),
    ));
    let fs = fs::KfsFs::new(state.clone(), tokio::runtime::Handle::current());
    let mut config = fuser::Config::default();
    let fsname = parsed
        .fsname
        .clone()
        .unwrap_or(format!("kfs:{master}:{root}"));
    config.mount_options = vec![
        K::FSName(fsname),
        K::Subtype("kfs".into()),
        K::DefaultPermissions,
        if parsed.settings.read_only {
            K::RO
        } else {
            K::RW
        },
    ];
    config.mount_options.extend(parsed.kernel.iter().cloned());
    if parsed.allow_other {
        config.acl = fuser::SessionACL::All;
    } else if parsed.allow_root {
        config.acl = fuser::SessionACL::RootAndOwner;
    }
    let at = mountpoint.to_path_buf();
    let mut session = tokio::task::spawn_blocking(move || fuser::Session::new(fs, &at, &config))
        .await
        .context("the mount task failed")?
        .with_context(|| format!("cannot mount at {}", mountpoint.display()))?;
    let unmounter = session.unmount_callable();
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kfs-fuse".into())
        .spawn(move || {
            let _ = done.send(session.run());
        })
        .context("starting the FUSE session thread")?;
    Ok(Mounted {
        mountpoint: mountpoint.to_path_buf(),
        unmounter,
        ended,
        state,
    })
}

/// `kfs mount`: mounts, detaches unless `--foreground`, serves until unmounted or SIGTERM.
pub async fn run(master: &str, options: MountOptions) -> anyhow::Result<()> {
    let parsed = options.parse()?;
    let master = parsed.master.clone().unwrap_or(master.to_string());
    let root = parsed.root.clone().unwrap_or(options.root.clone());
    let shown = format!("{master}:{root} at {}", options.mountpoint.display());
    if !options.foreground {
        // The main thread waits (no task of the runtime runs on it).
        daemon::detach(parsed.log.as_deref().or(options.log.as_deref()))?;
        println!("kfs mount: mounted {shown}");
        return Ok(());
    }
    let mut client_options = ClientOptions::default();
    if let Some(file) = parsed.credentials.as_ref().or(options.credentials.as_ref()) {
        let context = kfs_common::security::files::load_credentials(file)
            .with_context(|| format!("credentials {}", file.display()))?;
        client_options =
            client_options.with_security(kfs_common::security::Security::Tls(Arc::new(context)));
    }
    let client_options = client_options.with_durability(parsed.durability());
    let client = Client::connect_with(master.as_str(), client_options)
        .await
        .with_context(|| format!("cannot reach the master at {master}"))?;
    let mut signals = kfs_common::service::Signals::install()?;
    let mountpoint = std::path::absolute(&options.mountpoint)?;
    let mut mounted = mount(client, &root, &mountpoint, &parsed).await?;
    if daemon::detached() {
        // A daemon keeps no directory of its own busy (the one `kfs mount` ran in).
        let _ = std::env::set_current_dir("/");
    }
    // The watchdog before readiness: once `kfs mount` returns, a kill of the daemon must find
    // it there (it closes every descriptor it inherits, the readiness pipe's among them).
    let watchdog = daemon::Watchdog::start(&mountpoint)?;
    daemon::report_ready();
    kfs_common::service::announce_ready_status(&format!("serving {shown}"));
    println!("kfs mount: serving {shown}");
    let outcome = tokio::select! {
        signal = signals.wait() => {
            kfs_common::service::announce_stopping(signal);
            mounted.unmount().await
        }
        ended = mounted.ended() => ended.context("the FUSE session failed"),
    };
    watchdog.disarm();
    outcome
}
