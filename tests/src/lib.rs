//! Cross-crate tests of KFS. This library is the in-process cluster harness, [`TestCluster`]:
//! a master and N chunkservers on loopback port 0 with temp dirs, and controls to stop, kill,
//! restart and corrupt them. Every integration test in `tests/tests/` uses it; tests of real
//! processes use [`Process`] to run the built binaries, and [`ProcessCluster`] for a whole
//! cluster of them; tests through a FUSE mount use [`mounts::MountedCluster`].
//!
//! Waits are bounded: [`wait_until`] polls a condition with a timeout and names what it waited
//! for when it gives up.

mod links;
pub mod mounts;
mod processes;
pub use links::{Captured, Link, LinkState};
pub use processes::{ProcessCluster, TEST_MASTER_CONFIG};

use kfs_chunkserver::store::io::FaultyIo;
use kfs_chunkserver::{ChunkserverConfig, ChunkserverHandle};
use kfs_common::proto::chunk::{self, ChunkServiceClient};
use kfs_common::proto::master::{self, MasterServiceClient, ServerState};
use kfs_common::{ChunkId, ChunkVersion};
use kfs_master::{MasterConfig, MasterHandle};
use std::ffi::OsStr;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of a [`TestCluster`]; the defaults suit tests (fast heartbeats, short timeouts).
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub chunkservers: usize,
    pub data_dirs_per_server: usize,
    pub heartbeat_interval_ms: u64,
    pub chunkserver_timeout_ms: u64,
    /// Scrubber rate of every chunkserver (0: off).
    pub scrub_bytes_per_sec: u64,
    pub scrub_pause_secs: u64,
    /// Bytes per chunk: small, so files cross chunk boundaries often.
    pub chunk_size: u64,
    pub lease_ms: u64,
    /// How long the master's capabilities last (the product's default; short ones test
    /// renewal).
    pub capability_ms: u64,
    /// How often the master repairs replication.
    pub heal_interval_ms: u64,
    /// Longest safe mode after a master restart.
    pub safe_mode_max_secs: u64,
    /// Bytes each chunkserver offers (0: the whole file system).
    pub capacity_bytes: u64,
    /// Bytes each chunkserver keeps free on its data dirs' file system (0 here, so tests do not
    /// depend on the machine's free space; the product's default is 256 MiB).
    pub reserve_bytes: u64,
    /// Serve the master's status page and every server's `/metrics` (on loopback port 0).
    pub http: bool,
    /// The transport limits of the master and every chunkserver (small ones test the limits).
    pub rpc_limits: kfs_common::rpc::Limits,
    /// Put every chunkserver behind [`Link`]s (to the master, and inbound), so tests can cut
    /// it off or slow it ([`TestCluster::cut_off`], [`TestCluster::cut_from_master`],
    /// [`TestCluster::slow`], [`TestCluster::heal`]).
    pub links: bool,
    /// How often the master looks for volumes to compact, and the dead fraction that has one
    /// compacted (the product's defaults: tests about compaction make it quick).
    pub compact_interval_ms: u64,
    pub abandoned_upload_ms: u64,
    pub compact_dead_fraction: f64,
    /// TLS with mutual authentication on every connection, from a cluster made for the test
    /// (the default, as `kfs local`'s); `false` runs every server `--insecure`.
    pub secure: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            chunkservers: 3,
            data_dirs_per_server: 1,
            heartbeat_interval_ms: 100,
            chunkserver_timeout_ms: 1_000,
            scrub_bytes_per_sec: 0,
            scrub_pause_secs: 3600,
            chunk_size: 256 * 1024,
            lease_ms: 2_000,
            capability_ms: kfs_common::security::capability::LIFETIME_MS,
            heal_interval_ms: 100,
            safe_mode_max_secs: 5,
            capacity_bytes: 0,
            reserve_bytes: 0,
            http: false,
            rpc_limits: kfs_common::rpc::Limits::default(),
            links: false,
            compact_interval_ms: 30_000,
            abandoned_upload_ms: 600_000,
            compact_dead_fraction: 0.5,
            secure: true,
        }
    }
}

/// One chunkserver of the cluster: its dirs outlive its restarts.
pub struct ServerSlot {
    pub handle: Option<ChunkserverHandle>,
    pub dirs: Vec<tempfile::TempDir>,
    /// The server's file I/O, for injecting faults.
    pub io: Arc<FaultyIo>,
    config: ChunkserverConfig,
    /// With `ClusterOptions::links`: its link to the master, and everyone's link to it.
    links: Option<(Link, Link)>,
}

/// A master and chunkservers in this process; see the crate docs.
pub struct TestCluster {
    pub options: ClusterOptions,
    master: Option<MasterHandle>,
    master_config: MasterConfig,
    _meta: tempfile::TempDir,
    /// The cluster's secrets directory, when secure.
    secrets: Option<tempfile::TempDir>,
    /// The admin user's credentials (or none, when insecure): what clients connect with.
    security: kfs_common::security::Security,
    pub servers: Vec<ServerSlot>,
}

/// Sets up logging for tests once (`RUST_LOG` picks the level; off by default).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `condition` every 10 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Test data: bytes that differ at every position and between seeds (xorshift64).
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A call context with a 30 s deadline.
pub fn ctx() -> tarpc::context::Context {
    kfs_common::rpc::context(Duration::from_secs(30))
}

impl TestCluster {
    /// Starts a master and `options.chunkservers` chunkservers, and waits until the master
    /// lists every chunkserver alive.
    pub async fn start(options: ClusterOptions) -> TestCluster {
        init_logging();
        let meta = tempfile::tempdir().expect("temp dir");
        let secrets = options.secure.then(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            kfs_common::security::ClusterFiles::new(dir.path())
                .init("test")
                .expect("cluster secrets");
            dir
        });
        let security = match &secrets {
            Some(dir) => kfs_common::security::Security::Tls(Arc::new(
                kfs_common::security::files::load_credentials(
                    &dir.path().join(kfs_common::security::ADMIN_CREDENTIALS),
                )
                .expect("admin credentials"),
            )),
            None => kfs_common::security::Security::Insecure,
        };
        let master_config = MasterConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            meta_dir: meta.path().to_path_buf(),
            heartbeat_interval_ms: options.heartbeat_interval_ms,
            chunkserver_timeout_ms: options.chunkserver_timeout_ms,
            chunk_size: options.chunk_size,
            lease_ms: options.lease_ms,
            capability_ms: options.capability_ms,
            heal_interval_ms: options.heal_interval_ms,
            safe_mode_max_secs: options.safe_mode_max_secs,
            compact_interval_ms: options.compact_interval_ms,
            abandoned_upload_ms: options.abandoned_upload_ms,
            compact_dead_fraction: options.compact_dead_fraction,
            // The status page's graphs fill within a test's time.
            status_sample_ms: 200,
            http: options.http.then(|| "127.0.0.1:0".parse().unwrap()),
            max_connections: options.rpc_limits.max_connections,
            idle_timeout_ms: options.rpc_limits.idle_timeout.as_millis() as u64,
            rpc_buffer_bytes: options.rpc_limits.buffer_bytes,
            frame_timeout_ms: options.rpc_limits.frame_timeout.as_millis() as u64,
            secrets: secrets.as_ref().map(|d| d.path().to_path_buf()),
            insecure: !options.secure,
            ..Default::default()
        };
        let master = kfs_master::start(&master_config)
            .await
            .expect("master starts");
        let mut cluster = TestCluster {
            master_config: MasterConfig {
                listen: master.local_addr(),
                ..master_config
            },
            master: Some(master),
            _meta: meta,
            secrets,
            security,
            servers: Vec::new(),
            options: options.clone(),
        };
        for _ in 0..options.chunkservers {
            let dirs: Vec<tempfile::TempDir> = (0..options.data_dirs_per_server)
                .map(|_| tempfile::tempdir().expect("temp dir"))
                .collect();
            let links = match options.links {
                true => Some((
                    Link::start(Some(cluster.master_addr())).await,
                    Link::start(None).await,
                )),
                false => None,
            };
            let config = ChunkserverConfig {
                master: links
                    .as_ref()
                    .map_or(cluster.master_addr(), |(to_master, _)| to_master.addr()),
                listen: "127.0.0.1:0".parse().unwrap(),
                advertise: links.as_ref().map(|(_, inbound)| inbound.addr()),
                http: options.http.then(|| "127.0.0.1:0".parse().unwrap()),
                data: dirs.iter().map(|d| d.path().to_path_buf()).collect(),
                scrub_bytes_per_sec: options.scrub_bytes_per_sec,
                scrub_pause_secs: options.scrub_pause_secs,
                capacity_bytes: options.capacity_bytes,
                reserve_bytes: options.reserve_bytes,
                max_connections: options.rpc_limits.max_connections,
                idle_timeout_ms: options.rpc_limits.idle_timeout.as_millis() as u64,
                rpc_buffer_bytes: options.rpc_limits.buffer_bytes,
                frame_timeout_ms: options.rpc_limits.frame_timeout.as_millis() as u64,
                secrets: cluster.secrets_dir().map(PathBuf::from),
                insecure: !options.secure,
            };
            cluster.servers.push(ServerSlot {
                handle: None,
                dirs,
                io: Arc::new(FaultyIo::new()),
                config,
                links,
            });
        }
        for i in 0..options.chunkservers {
            cluster.start_chunkserver(i).await;
        }
        cluster.wait_for_alive(options.chunkservers).await;
        cluster
    }

    pub fn master(&self) -> &MasterHandle {
        self.master.as_ref().expect("the master is running")
    }

    pub fn master_addr(&self) -> SocketAddr {
        self.master_config.listen
    }

    pub async fn master_client(&self) -> MasterServiceClient {
        master::connect(self.master_addr(), &self.security)
            .await
            .expect("connect to the master")
    }

    /// The cluster's secrets directory (`kfs init-cluster`'s), when secure.
    pub fn secrets_dir(&self) -> Option<&std::path::Path> {
        self.secrets.as_ref().map(|d| d.path())
    }

    /// What `KFS_CREDENTIALS` is for `kfs` commands run against this cluster: the admin's
    /// credentials file, or `none` when insecure.
    pub fn credentials(&self) -> std::ffi::OsString {
        match self.secrets_dir() {
            Some(dir) => dir.join(kfs_common::security::ADMIN_CREDENTIALS).into(),
            None => "none".into(),
        }
    }

    /// The admin user's security (its credentials), what [`TestCluster::client`] connects with.
    pub fn security(&self) -> &kfs_common::security::Security {
        &self.security
    }

    /// A certificate of this cluster's CA for `role` named `name` (a process posing as a
    /// server, or a user other than the admin); insecure when the cluster is.
    pub fn peer_security(
        &self,
        role: kfs_common::security::Role,
        name: &str,
    ) -> kfs_common::security::Security {
        match self.secrets_dir() {
            Some(dir) => kfs_common::security::Security::Tls(Arc::new(
                kfs_common::security::ClusterFiles::new(dir)
                    .server_context(role, name)
                    .expect("a certificate of the cluster's CA"),
            )),
            None => kfs_common::security::Security::Insecure,
        }
    }

    /// A `kfs-client` connected to the cluster (as the admin user, when secure).
    pub async fn client(&self) -> kfs_client::Client {
        self.client_with(kfs_client::ClientOptions::default()).await
    }

    /// A `kfs-client` that gives every file chunks of its own (packs no small file into a
    /// volume), for the suites about chunks, leases and replicas.
    pub async fn unpacked_client(&self) -> kfs_client::Client {
        self.unpacked_client_with(kfs_client::ClientOptions::default())
            .await
    }

    /// [`TestCluster::unpacked_client`] with the given options.
    pub async fn unpacked_client_with(
        &self,
        options: kfs_client::ClientOptions,
    ) -> kfs_client::Client {
        self.client_with(options.with_pack_threshold(0)).await
    }

    /// A `kfs-client` with the given options (the admin's security unless they set one).
    pub async fn client_with(&self, options: kfs_client::ClientOptions) -> kfs_client::Client {
        self.client_with_result(options)
            .await
            .expect("connect a client")
    }

    /// [`TestCluster::client_with`], the error when the client cannot connect.
    pub async fn client_with_result(
        &self,
        options: kfs_client::ClientOptions,
    ) -> kfs_common::KfsResult<kfs_client::Client> {
        let options = match options.security {
            Some(_) => options,
            None => options.with_security(self.security.clone()),
        };
        kfs_client::Client::connect_with(self.master_addr(), options).await
    }

    pub fn chunkserver(&self, i: usize) -> &ChunkserverHandle {
        self.servers[i]
            .handle
            .as_ref()
            .expect("the chunkserver is running")
    }

    /// A chunk-service client of chunkserver `i` for tests that look at replicas directly (it
    /// holds a chunkserver's certificate on a secured cluster: a user's would need the master's
    /// capabilities for every call).
    pub async fn chunk_client(&self, i: usize) -> ChunkServiceClient {
        let security =
            self.peer_security(kfs_common::security::Role::Chunkserver, "test-chunkserver");
        chunk::connect(self.chunkserver(i).local_addr(), &security)
            .await
            .expect("connect to the chunkserver")
    }

    /// A chunk-service client of chunkserver `i` holding a master's certificate (of this
    /// cluster's CA), for tests that play the master's part (creating volumes, moving versions).
    pub async fn chunk_client_as_master(&self, i: usize) -> ChunkServiceClient {
        let security = self.peer_security(kfs_common::security::Role::Master, "test-master");
        chunk::connect(self.chunkserver(i).local_addr(), &security)
            .await
            .expect("connect to the chunkserver")
    }

    /// The data dirs of chunkserver `i`.
    pub fn data_dirs(&self, i: usize) -> Vec<PathBuf> {
        self.servers[i]
            .dirs
            .iter()
            .map(|d| d.path().to_path_buf())
            .collect()
    }

    /// Starts (or restarts) chunkserver `i` on its data dirs, on a new port.
    pub async fn start_chunkserver(&mut self, i: usize) {
        let slot = &mut self.servers[i];
        assert!(slot.handle.is_none(), "chunkserver {i} is already running");
        let handle = kfs_chunkserver::start_with_io(&slot.config, slot.io.clone())
            .await
            .expect("chunkserver starts");
        if let Some((_, inbound)) = &slot.links {
            inbound.set_target(handle.local_addr());
        }
        slot.handle = Some(handle);
    }

    /// Chunkserver `i`'s links: (to the master, inbound).
    pub fn links(&self, i: usize) -> &(Link, Link) {
        self.servers[i]
            .links
            .as_ref()
            .expect("the cluster was started with ClusterOptions::links")
    }

    /// Cuts chunkserver `i` off from everyone: its link to the master and every connection to
    /// it hold their bytes (see [`Link`]). Its own calls to other chunkservers still pass.
    pub fn cut_off(&self, i: usize) {
        let (to_master, inbound) = self.links(i);
        to_master.set(LinkState::Cut);
        inbound.set(LinkState::Cut);
    }

    /// Cuts chunkserver `i`'s link to the master (its hellos and heartbeats); clients, other
    /// chunkservers and the master's own calls still reach it.
    pub fn cut_from_master(&self, i: usize) {
        self.links(i).0.set(LinkState::Cut);
    }

    /// Delays every piece of data to and from chunkserver `i` by `delay`.
    pub fn slow(&self, i: usize, delay: Duration) {
        let (to_master, inbound) = self.links(i);
        to_master.set(LinkState::Delayed(delay));
        inbound.set(LinkState::Delayed(delay));
    }

    /// Delays every piece of data to chunkserver `i` and back by `delay` (calls to it answer
    /// late), while its own hellos and heartbeats reach the master at once.
    pub fn slow_inbound(&self, i: usize, delay: Duration) {
        self.links(i).1.set(LinkState::Delayed(delay));
    }

    /// Ends any cut or delay of chunkserver `i`.
    pub fn heal(&self, i: usize) {
        let (to_master, inbound) = self.links(i);
        to_master.set(LinkState::Open);
        inbound.set(LinkState::Open);
    }

    /// The address others reach chunkserver `i` at (its inbound link's, with links).
    pub fn chunkserver_addr(&self, i: usize) -> SocketAddr {
        match &self.servers[i].links {
            Some((_, inbound)) => inbound.addr(),
            None => self.chunkserver(i).local_addr(),
        }
    }

    /// Stops chunkserver `i` cleanly.
    pub async fn stop_chunkserver(&mut self, i: usize) {
        let handle = self.servers[i]
            .handle
            .take()
            .expect("the chunkserver is running");
        handle.shutdown().await;
    }

    /// Stops chunkserver `i` at once, as a crash would (its in-flight work is dropped).
    pub fn kill_chunkserver(&mut self, i: usize) {
        drop(
            self.servers[i]
                .handle
                .take()
                .expect("the chunkserver is running"),
        );
    }

    /// Keeps chunkserver `i` on the port it has now across later restarts, as a deployment with
    /// a fixed `listen` address does (by default each start takes a new port).
    pub fn keep_chunkserver_port(&mut self, i: usize) {
        let addr = self.chunkserver(i).local_addr();
        self.servers[i].config.listen = addr;
    }

    pub async fn restart_chunkserver(&mut self, i: usize) {
        if self.servers[i].handle.is_some() {
            self.stop_chunkserver(i).await;
        }
        self.start_chunkserver(i).await;
    }

    /// Stops the master and starts it again on the same address and metadata directory.
    pub async fn restart_master(&mut self) {
        self.stop_master().await;
        self.start_master().await;
    }

    /// The index of the running chunkserver listening at `addr`.
    pub fn chunkserver_at(&self, addr: SocketAddr) -> usize {
        (0..self.servers.len())
            .find(|&i| {
                self.servers[i].handle.is_some()
                    && (self.chunkserver(i).local_addr() == addr
                        || self.chunkserver_addr(i) == addr)
            })
            .unwrap_or_else(|| panic!("no running chunkserver at {addr}"))
    }

    /// The master's lease on the chunk of `path` at `chunk_offset`: the writer's own while it
    /// is valid (otherwise this call moves the chunk to a new version).
    pub async fn lease_of(
        &self,
        path: &str,
        chunk_offset: u64,
    ) -> kfs_common::proto::master::WriteLease {
        let master = self.master_client().await;
        let fid = master
            .stat(ctx(), path.to_string())
            .await
            .unwrap()
            .unwrap()
            .fid;
        master
            .lease(ctx(), fid, chunk_offset)
            .await
            .unwrap()
            .unwrap()
    }

    /// The master's metadata directory (its log and checkpoints), to damage or cut while it is
    /// stopped.
    pub fn meta_dir(&self) -> &std::path::Path {
        &self.master_config.meta_dir
    }

    /// Stops the master cleanly (as SIGTERM does).
    pub async fn stop_master(&mut self) {
        let master = self.master.take().expect("the master is running");
        master.shutdown().await;
    }

    /// Starts the master (stopped by [`stop_master`](Self::stop_master)) on its old address.
    pub async fn start_master(&mut self) {
        assert!(self.master.is_none(), "the master is running");
        // A child process this test spawned (a `kfs` command) may hold a copy of the old
        // master's LOCK descriptor between its fork and its exec: wait that out, briefly.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let master = loop {
            match kfs_master::start(&self.master_config).await {
                Ok(master) => break master,
                Err(kfs_master::server::StartError::Storage(
                    kfs_master::storage::StorageError::Locked { .. },
                )) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("master restarts: {e:?}"),
            }
        };
        self.master = Some(master);
    }

    /// Waits (bounded by 10 chunkserver timeouts) until the master lists `n` chunkservers alive,
    /// every running one at its current address (a restarted server is on a new port, and its
    /// old entry stays alive until its new hello or its timeout: counting alone could pass
    /// before the hello).
    pub async fn wait_for_alive(&self, n: usize) {
        let client = self.master_client().await;
        let timeout = Duration::from_millis(self.options.chunkserver_timeout_ms * 10);
        let running: Vec<SocketAddr> = (0..self.servers.len())
            .filter(|&i| self.servers[i].handle.is_some())
            .map(|i| self.chunkserver_addr(i))
            .collect();
        wait_until(&format!("{n} chunkservers alive"), timeout, || {
            let client = client.clone();
            let running = running.clone();
            async move {
                match client.chunkservers(ctx()).await {
                    Ok(Ok(servers)) => {
                        let alive: Vec<SocketAddr> = servers
                            .iter()
                            .filter(|s| s.state == ServerState::Alive)
                            .map(|s| s.addr)
                            .collect();
                        alive.len() == n && running.iter().all(|a| alive.contains(a))
                    }
                    _ => false,
                }
            }
        })
        .await;
    }

    /// The path of a replica's file on chunkserver `i`, if it holds one.
    pub fn replica_file(&self, i: usize, chunk: ChunkId) -> Option<PathBuf> {
        let (version, _) = self.chunkserver(i).store().replica(chunk)?;
        self.replica_file_at(i, chunk, version)
    }

    fn replica_file_at(&self, i: usize, chunk: ChunkId, version: ChunkVersion) -> Option<PathBuf> {
        self.data_dirs(i)
            .into_iter()
            .map(|d| kfs_chunkserver::store::data_dir::replica_path(&d, chunk, version))
            .find(|p| p.exists())
    }

    /// Flips one bit of a replica's data on disk (byte `offset` of the chunk's data).
    pub fn corrupt_replica(&self, i: usize, chunk: ChunkId, offset: u64) {
        let path = self
            .replica_file(i, chunk)
            .expect("the server holds the replica");
        let mut bytes = std::fs::read(&path).expect("read the replica");
        let at = (kfs_chunkserver::store::chunk_file::HEADER_LEN + offset) as usize;
        bytes[at] ^= 0x10;
        std::fs::write(&path, bytes).expect("write the replica");
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        for i in 0..self.servers.len() {
            if self.servers[i].handle.is_some() {
                self.stop_chunkserver(i).await;
            }
        }
        if let Some(master) = self.master.take() {
            master.shutdown().await;
        }
    }
}

/// The path of a binary of this workspace, built next to the running test (`cargo test
/// --workspace` builds every binary before running tests).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` first (`cargo test --workspace` builds it)",
        path.display()
    );
    path
}

/// A KFS binary running as a child process; killed when dropped.
pub struct Process {
    child: Child,
    /// The address it printed (`listening on ADDR`).
    pub addr: SocketAddr,
    /// The HTTP address it printed (`http on ADDR`), if it serves one.
    pub http: Option<SocketAddr>,
    name: String,
}

impl Process {
    /// Starts binary `name` with `args` and waits (30 s at most) for it to print its address.
    /// Its log (standard error) goes to a file in `$KFS_TEST_LOGS` if that variable is set.
    pub fn spawn(name: &str, args: &[String]) -> Process {
        Process::spawn_with_env(name, args, &[])
    }

    /// [`spawn`](Self::spawn) with extra environment variables (e.g. `NOTIFY_SOCKET`).
    pub fn spawn_with_env(name: &str, args: &[String], env: &[(&str, &OsStr)]) -> Process {
        let log = match std::env::var_os("KFS_TEST_LOGS") {
            Some(dir) => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                let path = PathBuf::from(dir).join(format!("{name}-{stamp}.log"));
                Stdio::from(std::fs::File::create(&path).expect("create the log file"))
            }
            None => Stdio::null(),
        };
        let mut child = Command::new(binary(name))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // `listening on ADDR` ends the start-up lines; `http on ADDR` may come before it,
            // and other lines (a banner) are passed over.
            let mut reader = BufReader::new(stdout);
            let mut http = None;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line.starts_with("listening on ") {
                    break;
                }
                if let Some(addr) = line.trim().strip_prefix("http on ") {
                    http = addr.parse().ok();
                }
                line.clear();
            }
            let _ = tx.send((line, http));
        });
        let (line, http) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{name} did not report its address within 30 s"));
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name} printed {line:?}"))
            .parse()
            .expect("an address");
        Process {
            child,
            addr,
            http,
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: the process dies at once, mid-work.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (30 s at most) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "could not signal {}", self.name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within 30 s of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
