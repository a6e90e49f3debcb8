//! [`MountedCluster`]: a [`TestCluster`] with its root mounted through FUSE (`kfs-fuse`) in
//! the test's own process, for tests that drive the kernel with `std::fs` and real programs.
//! Needs `/dev/fuse` and root (CI runs as root); without them it fails loudly.

use crate::{ClusterOptions, TestCluster};
use std::path::{Path, PathBuf};

/// A cluster and a mount of it; see the module docs.
pub struct MountedCluster {
    pub cluster: TestCluster,
    pub mounted: kfs_fuse::Mounted,
    _dir: tempfile::TempDir,
}

impl MountedCluster {
    /// A cluster with 1 MiB chunks (files cross chunks often), mounted with the defaults.
    pub async fn start() -> MountedCluster {
        MountedCluster::start_with(&kfs_fuse::Parsed::default()).await
    }

    /// [`start`](Self::start) with mount options (`allow_other` for programs that switch
    /// users, as pjdfstest does).
    pub async fn start_with(options: &kfs_fuse::Parsed) -> MountedCluster {
        let cluster = TestCluster::start(ClusterOptions {
            chunk_size: 1 << 20,
            ..ClusterOptions::default()
        })
        .await;
        let dir = tempfile::tempdir().expect("temp dir");
        let client = mount_client(&cluster, options).await;
        let mounted = kfs_fuse::mount(client, "/", dir.path(), options)
            .await
            .expect("mount (needs /dev/fuse and root)");
        MountedCluster {
            cluster,
            mounted,
            _dir: dir,
        }
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        self.mounted.mountpoint()
    }

    /// `rel` inside the mount.
    pub fn at(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Unmounts, then mounts the cluster anew at the same place (what a restarted mount
    /// daemon sees: nothing cached).
    pub async fn remount(self, options: &kfs_fuse::Parsed) -> MountedCluster {
        let MountedCluster {
            cluster,
            mounted,
            _dir,
        } = self;
        unmount(mounted).await;
        let client = mount_client(&cluster, options).await;
        let mounted = kfs_fuse::mount(client, "/", _dir.path(), options)
            .await
            .expect("mount again");
        MountedCluster {
            cluster,
            mounted,
            _dir,
        }
    }

    pub async fn stop(self) {
        unmount(self.mounted).await;
        self.cluster.shutdown().await;
    }
}

/// Unmounts, waiting 30 s at most for the session to end.
/// A client as `kfs mount` makes one for `options` (changes answered once logged, unless
/// `-o sync`).
async fn mount_client(cluster: &TestCluster, options: &kfs_fuse::Parsed) -> kfs_client::Client {
    let client_options = kfs_client::ClientOptions::default().with_durability(options.durability());
    cluster.client_with(client_options).await
}

async fn unmount(mounted: kfs_fuse::Mounted) {
    tokio::time::timeout(std::time::Duration::from_secs(30), mounted.unmount())
        .await
        .expect("the mount did not end within 30 s of its unmount")
        .expect("unmount");
}

/// Runs blocking file system calls off the runtime (whose tasks serve them).
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking task")
}
