//! `kfs local`: a master and chunkservers in this process, on loopback, with their data under
//! one directory; running it again on the same directory brings back everything written.
//!
//! ```text
//! <data>/master/       the master's log and checkpoints
//! <data>/cs1/, cs2/ …  one data dir per chunkserver
//! <data>/secrets/      the cluster's CA and the admin's credentials (see `secrets.rs`)
//! ```
//!
//! Secure by default: every connection is TLS with mutual authentication, as on any cluster;
//! `--insecure` runs plain TCP (to measure what TLS costs).

use crate::cli::LocalArgs;
use anyhow::Context as _;
use kfs_chunkserver::{ChunkserverConfig, ChunkserverHandle};
use kfs_common::proto::master::ServerState;
use kfs_master::{MasterConfig, MasterHandle};
use std::time::{Duration, Instant};

/// A running local cluster, shared by the shell and the SIGTERM handler (whichever stops it
/// first takes it).
pub type SharedCluster = std::sync::Arc<tokio::sync::Mutex<Option<LocalCluster>>>;

/// Stops the cluster if nobody has yet: every chunkserver, then the master (log committed,
/// checkpoint finished).
pub async fn stop(cluster: &SharedCluster) {
    if let Some(c) = cluster.lock().await.take() {
        c.shutdown().await;
    }
}

/// On SIGTERM, while the shell reads or runs a command: the servers are stopped cleanly, the
/// terminal is put back as it was (the line editor may have it in raw mode), and the process
/// exits 0. History is already saved (after every command).
pub fn stop_on_sigterm(rt: &tokio::runtime::Runtime, cluster: SharedCluster) {
    let terminal = crate::repl::SavedTerminal::save();
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            tracing::warn!("cannot install the SIGTERM handler; SIGTERM will not stop cleanly");
            return;
        };
        term.recv().await;
        let mut held = cluster.lock().await;
        let Some(c) = held.take() else {
            // The shell ended and its cluster is being stopped already.
            return;
        };
        terminal.restore();
        eprintln!("\nkfs local: SIGTERM: stopping the servers");
        c.shutdown().await;
        eprintln!("kfs local: stopped");
        std::process::exit(0);
    });
}

/// A running local cluster.
pub struct LocalCluster {
    pub master: MasterHandle,
    pub chunkservers: Vec<ChunkserverHandle>,
    /// How the cluster is secured, and what the shell's client connects with.
    pub security: crate::secrets::LocalSecurity,
}

impl LocalCluster {
    /// Starts the master and the chunkservers and waits (10 s at most) until every chunkserver
    /// has registered.
    pub async fn start(args: &LocalArgs) -> anyhow::Result<LocalCluster> {
        anyhow::ensure!(
            args.chunkservers >= 1,
            "a cluster needs at least one chunkserver"
        );
        std::fs::create_dir_all(&args.data)
            .with_context(|| format!("cannot create the data directory {}", args.data.display()))?;
        let security = crate::secrets::local(&args.data, args.insecure, !args.no_install)?;
        // The status page 80 ports above the master (20000 -> 20080), or a free port.
        let http = args.http.unwrap_or_else(|| {
            let port = match args.listen.port() {
                0 => 0,
                p => p.checked_add(80).unwrap_or(0),
            };
            std::net::SocketAddr::new(args.listen.ip(), port)
        });
        let config = MasterConfig {
            listen: args.listen,
            http: Some(http),
            meta_dir: args.data.join("master"),
            default_replication: args.chunkservers.min(3) as u8,
            heartbeat_interval_ms: 1_000,
            chunkserver_timeout_ms: 10_000,
            secrets: security.secrets.clone(),
            insecure: args.insecure,
            ..Default::default()
        };
        let master = kfs_master::start(&config).await.with_context(|| {
            format!(
                "cannot start the master on {} (is another `kfs local` or kfs-master running? \
                 pick another address with --listen)",
                args.listen
            )
        })?;
        let chunkservers = Self::start_chunkservers(
            master.local_addr(),
            args.chunkservers,
            &args.data,
            security.secrets.as_deref(),
            &security.client,
        )
        .await?;
        let cluster = LocalCluster {
            master,
            chunkservers,
            security,
        };
        Ok(cluster)
    }

    /// One line saying where everything is.
    pub fn describe(&self, args: &LocalArgs) -> String {
        let servers: Vec<String> = self
            .chunkservers
            .iter()
            .map(|c| c.local_addr().to_string())
            .collect();
        let mut text = format!(
            "KFS local cluster: master {}, {} chunkservers ({}), data in {}",
            self.master.local_addr(),
            servers.len(),
            servers.join(", "),
            args.data.display()
        );
        if let Some(http) = self.master.http_addr() {
            text.push_str(&format!("\nStatus page: http://{http}/"));
        }
        if let Some(note) = &self.security.note {
            text.push('\n');
            text.push_str(note);
        }
        text
    }

    /// Starts `n` chunkservers in this process with data dirs `<data>/cs1 ...`, reporting to the
    /// master at `master`, secured with the secrets directory `secrets` (insecure without);
    /// waits for them as a client of `security`.
    pub async fn start_chunkservers(
        master: std::net::SocketAddr,
        n: usize,
        data: &std::path::Path,
        secrets: Option<&std::path::Path>,
        security: &kfs_common::security::Security,
    ) -> anyhow::Result<Vec<ChunkserverHandle>> {
        let mut chunkservers = Vec::new();
        for i in 1..=n {
            let config = ChunkserverConfig {
                master,
                listen: "127.0.0.1:0".parse().expect("an address"),
                data: vec![data.join(format!("cs{i}"))],
                secrets: secrets.map(std::path::Path::to_path_buf),
                insecure: secrets.is_none(),
                ..Default::default()
            };
            let cs = kfs_chunkserver::start(&config)
                .await
                .with_context(|| format!("cannot start chunkserver {i}"))?;
            chunkservers.push(cs);
        }
        wait_registered(master, n, Duration::from_secs(10), security).await;
        Ok(chunkservers)
    }

    pub async fn shutdown(self) {
        for cs in self.chunkservers {
            cs.shutdown().await;
        }
        self.master.shutdown().await;
    }
}

/// Waits (at most `limit`) until the master at `master` lists `n` chunkservers alive.
pub async fn wait_registered(
    master: std::net::SocketAddr,
    n: usize,
    limit: Duration,
    security: &kfs_common::security::Security,
) {
    let deadline = Instant::now() + limit;
    let Ok(client) = kfs_common::proto::master::connect(master, security).await else {
        return;
    };
    while Instant::now() < deadline {
        if let Ok(Ok(servers)) = client
            .chunkservers(kfs_common::rpc::context(Duration::from_secs(5)))
            .await
            && servers
                .iter()
                .filter(|s| s.state == ServerState::Alive)
                .count()
                >= n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!("not every chunkserver registered within {limit:?}");
}
