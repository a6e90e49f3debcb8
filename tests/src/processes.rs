//! [`ProcessCluster`]: a real `kfs-master` and N real `kfs-chunkserver` processes on loopback,
//! configured by TOML files the way operators configure them, for tests that `kill -9`.
//!
//! The master keeps its first address across restarts (chunkservers find it again); a
//! chunkserver keeps its data dir (and so its identity) across restarts but gets a new port.

use crate::{Process, ctx, wait_until};
use kfs_common::proto::master::{self, ChunkserverInfo, ServerState};
use kfs_common::{ChunkId, ChunkVersion, ServerId};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Master settings every process test uses: fast heartbeats and repairs, small chunks.
pub const TEST_MASTER_CONFIG: &str = "\
heartbeat_interval_ms = 100
chunkserver_timeout_ms = 1000
chunk_size = 262144
lease_ms = 2000
heal_interval_ms = 100
safe_mode_max_secs = 5
";

/// One chunkserver process and the dir it keeps across restarts.
struct Slot {
    data: tempfile::TempDir,
    config: PathBuf,
    process: Option<Process>,
    /// Its identity, learned from the master's table once it registered.
    id: Option<ServerId>,
}

/// Real processes; see the module docs. Dropping it kills them all.
pub struct ProcessCluster {
    _dir: tempfile::TempDir,
    meta: PathBuf,
    master_config: PathBuf,
    master: Option<Process>,
    /// The master's address, the same across its restarts.
    pub addr: SocketAddr,
    slots: Vec<Slot>,
    /// The admin user's credentials: what clients of the cluster connect with.
    security: kfs_common::security::Security,
}

impl ProcessCluster {
    /// Starts a master with `TEST_MASTER_CONFIG` plus `master_extra` (TOML lines), and
    /// `chunkservers` chunkservers with `chunkserver_extra`; waits until all are alive.
    pub async fn start(
        chunkservers: usize,
        master_extra: &str,
        chunkserver_extra: &str,
    ) -> ProcessCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = dir.path().join("meta");
        std::fs::create_dir(&meta).expect("meta dir");
        // Secure, as a real cluster: every server finds the secrets from its config file.
        let secrets = kfs_common::security::ClusterFiles::new(dir.path().join("secrets"));
        secrets.init("test").expect("cluster secrets");
        let secrets_line = format!("secrets = \"{}\"\n", secrets.dir().display());
        let security = kfs_common::security::Security::Tls(Arc::new(
            kfs_common::security::files::load_credentials(
                &secrets.path(kfs_common::security::ADMIN_CREDENTIALS),
            )
            .expect("admin credentials"),
        ));
        let master_config = dir.path().join("master.toml");
        std::fs::write(
            &master_config,
            format!("{TEST_MASTER_CONFIG}{secrets_line}{master_extra}\n"),
        )
        .expect("write the master config");
        let mut cluster = ProcessCluster {
            meta,
            master_config,
            master: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            slots: Vec::new(),
            security,
            _dir: dir,
        };
        cluster.start_master();
        for i in 0..chunkservers {
            let data = tempfile::tempdir().expect("temp dir");
            let config = cluster._dir.path().join(format!("chunkserver{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    // No reserve: the tests do not depend on the machine's free space.
                    "master = \"{}\"\nlisten = \"127.0.0.1:0\"\ndata = [\"{}\"]\nreserve_bytes = 0\n{secrets_line}{chunkserver_extra}\n",
                    cluster.addr,
                    data.path().display()
                ),
            )
            .expect("write a chunkserver config");
            cluster.slots.push(Slot {
                data,
                config,
                process: None,
                id: None,
            });
            cluster.start_chunkserver(i);
        }
        cluster.wait_for_alive(chunkservers).await;
        cluster
    }

    /// Starts the master (on its first address, if it ran before).
    pub fn start_master(&mut self) {
        assert!(self.master.is_none(), "the master is running");
        let args = vec![
            "--config".to_string(),
            self.master_config.display().to_string(),
            "--listen".into(),
            self.addr.to_string(),
            "--meta-dir".into(),
            self.meta.display().to_string(),
        ];
        let process = Process::spawn("kfs-master", &args);
        self.addr = process.addr;
        self.master = Some(process);
    }

    /// `kill -9` of the master.
    pub fn kill_master(&mut self) {
        self.master.take().expect("the master is running").kill9();
    }

    pub fn start_chunkserver(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        assert!(slot.process.is_none(), "chunkserver {i} is running");
        let args = vec!["--config".to_string(), slot.config.display().to_string()];
        slot.process = Some(Process::spawn("kfs-chunkserver", &args));
    }

    /// `kill -9` of chunkserver `i`.
    pub fn kill_chunkserver(&mut self, i: usize) {
        self.slots[i]
            .process
            .take()
            .expect("the chunkserver is running")
            .kill9();
    }

    /// The address chunkserver `i` serves on now.
    pub fn chunkserver_addr(&self, i: usize) -> SocketAddr {
        self.slots[i]
            .process
            .as_ref()
            .expect("the chunkserver is running")
            .addr
    }

    /// Chunkserver `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> &Path {
        self.slots[i].data.path()
    }

    /// Chunkserver `i`'s identity (known once it has registered).
    pub fn server_id(&self, i: usize) -> ServerId {
        self.slots[i].id.expect("the chunkserver registered")
    }

    /// The file of the replica of `chunk` at `version` on chunkserver `i`, if there is one.
    pub fn replica_file(&self, i: usize, chunk: ChunkId, version: ChunkVersion) -> Option<PathBuf> {
        let path = kfs_chunkserver::store::data_dir::replica_path(self.data_dir(i), chunk, version);
        path.exists().then_some(path)
    }

    /// The admin user's credentials file: `KFS_CREDENTIALS` for `kfs` commands run against
    /// this cluster.
    pub fn credentials(&self) -> PathBuf {
        self._dir
            .path()
            .join("secrets")
            .join(kfs_common::security::ADMIN_CREDENTIALS)
    }

    /// The admin user's security, what this cluster's clients connect with.
    pub fn security(&self) -> &kfs_common::security::Security {
        &self.security
    }

    /// A client of the cluster.
    pub async fn client(&self) -> kfs_client::Client {
        let options = kfs_client::ClientOptions::default().with_security(self.security.clone());
        kfs_client::Client::connect_with(self.addr, options)
            .await
            .expect("connect to the master")
    }

    /// A client that gives every file chunks of its own (packs no small file into a volume).
    pub async fn unpacked_client(&self) -> kfs_client::Client {
        let options = kfs_client::ClientOptions::default()
            .with_pack_threshold(0)
            .with_security(self.security.clone());
        kfs_client::Client::connect_with(self.addr, options)
            .await
            .expect("connect to the master")
    }

    /// The master's chunkserver table (empty while it cannot be reached).
    pub async fn servers(&self) -> Vec<ChunkserverInfo> {
        let Ok(client) = master::connect(self.addr, &self.security).await else {
            return Vec::new();
        };
        match client.chunkservers(ctx()).await {
            Ok(Ok(list)) => list,
            _ => Vec::new(),
        }
    }

    /// Waits (60 s at most) until the master lists `n` chunkservers alive.
    pub async fn wait_for_alive(&mut self, n: usize) {
        let this = &*self;
        // Every running server at its current address: a restarted one is on a new port, and
        // its old entry stays alive until its new hello or its timeout.
        let running: Vec<SocketAddr> = self
            .slots
            .iter()
            .filter_map(|s| s.process.as_ref().map(|p| p.addr))
            .collect();
        let running = &running;
        wait_until(
            &format!("{n} chunkservers alive"),
            Duration::from_secs(60),
            || async move {
                let alive: Vec<SocketAddr> = this
                    .servers()
                    .await
                    .iter()
                    .filter(|s| s.state == ServerState::Alive)
                    .map(|s| s.addr)
                    .collect();
                alive.len() == n && running.iter().all(|a| alive.contains(a))
            },
        )
        .await;
        let servers = self.servers().await;
        for slot in &mut self.slots {
            if let Some(p) = &slot.process
                && let Some(s) = servers.iter().find(|s| s.addr == p.addr)
            {
                slot.id = Some(s.server);
            }
        }
    }
}
