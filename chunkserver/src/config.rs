//! Configuration of a chunkserver: one serde struct, each field documented with its default.
//!
//! Sources, later ones winning: built-in defaults, the TOML file given with `--config`, command
//! line flags. [`ChunkserverConfig::validate`] checks the result before anything starts.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything a chunkserver can be told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkserverConfig {
    /// Address of the master. Default `127.0.0.1:20000`.
    pub master: SocketAddr,
    /// Address to serve chunks on. Default `127.0.0.1:21000`.
    pub listen: SocketAddr,
    /// Address clients should use to reach this server, when it differs from `listen` (e.g.
    /// listening on `0.0.0.0`). Default: the address actually listened on.
    pub advertise: Option<SocketAddr>,
    /// Address of Prometheus metrics (`/metrics`). Default none (not served); e.g.
    /// `127.0.0.1:21080`.
    pub http: Option<SocketAddr>,
    /// Data directories, one per disk. Required.
    pub data: Vec<PathBuf>,
    /// Background verification reads at most this many bytes per second; 0 turns it off.
    /// Default 32 MiB/s.
    pub scrub_bytes_per_sec: u64,
    /// Pause between two full verification passes, in seconds. Default 3,600.
    pub scrub_pause_secs: u64,
    /// Bytes this server offers for chunks, over all its data dirs; 0 offers the whole file
    /// systems. Caps the capacity reported to the master (which places and rebalances by
    /// used / capacity); new replicas and writes are refused past it. Default 0.
    pub capacity_bytes: u64,
    /// Bytes kept free on each data dir's file system: no new replica goes to a dir with less
    /// free, and the space reported to the master as available leaves them out (they are room
    /// for the replicas already there to grow). Default 256 MiB.
    pub reserve_bytes: u64,
    /// Connections served at once; one more is refused with an error the client shows ("at its
    /// connection limit"). Default 4,096.
    pub max_connections: usize,
    /// A connection with no call in flight is closed after this many milliseconds without a
    /// request (clients dial again by themselves). Default 300,000.
    pub idle_timeout_ms: u64,
    /// Bytes of large requests (over 16 KiB) being received at once, over all connections;
    /// more wait. Default 256 MiB.
    pub rpc_buffer_bytes: usize,
    /// Once it may be buffered, a request must arrive whole within this many milliseconds, or
    /// its connection is closed. Default 60,000.
    pub frame_timeout_ms: u64,
    /// The cluster's secrets directory (`kfs init-cluster DIR`): the CA, and this server's
    /// certificate (`chunkserver.credentials`) or the CA key to make one. Default none:
    /// `KFS_SECRETS`, else refused.
    pub secrets: Option<PathBuf>,
    /// Plain TCP, no authentication: anyone who reaches the port reads and writes every chunk.
    /// For throwaway tests and measuring what TLS costs only. Default false.
    pub insecure: bool,
}

impl Default for ChunkserverConfig {
    fn default() -> Self {
        let limits = kfs_common::rpc::Limits::default();
        ChunkserverConfig {
            master: SocketAddr::from(([127, 0, 0, 1], 20000)),
            listen: SocketAddr::from(([127, 0, 0, 1], 21000)),
            advertise: None,
            http: None,
            data: Vec::new(),
            scrub_bytes_per_sec: 32 << 20,
            scrub_pause_secs: 3600,
            capacity_bytes: 0,
            reserve_bytes: 256 << 20,
            max_connections: limits.max_connections,
            idle_timeout_ms: limits.idle_timeout.as_millis() as u64,
            rpc_buffer_bytes: limits.buffer_bytes,
            frame_timeout_ms: limits.frame_timeout.as_millis() as u64,
            secrets: None,
            insecure: false,
        }
    }
}

pub use kfs_common::config::ConfigError;

impl ChunkserverConfig {
    /// How this server's connections are protected, as chunkserver `server` (a certificate it
    /// makes itself from the CA key names it `cs-ID`, so the master knows the id is its own).
    pub fn security(
        &self,
        server: kfs_common::ServerId,
    ) -> Result<kfs_common::security::Security, kfs_common::security::SecurityError> {
        kfs_common::security::server_security(
            self.secrets.as_deref(),
            self.insecure,
            kfs_common::security::Role::Chunkserver,
            &kfs_common::security::chunkserver_name(server),
        )
    }

    /// Reads a TOML file; keys it does not set keep their defaults, unknown keys are refused.
    pub fn from_file(path: &Path) -> Result<ChunkserverConfig, ConfigError> {
        kfs_common::config::from_file(path)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data.is_empty() {
            return Err(ConfigError::Invalid(
                "no data directory: pass --data DIR (once per disk) or set data in the config file"
                    .into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for dir in &self.data {
            if !seen.insert(dir) {
                return Err(ConfigError::Invalid(format!(
                    "data directory {} is listed twice",
                    dir.display()
                )));
            }
        }
        if let Some(addr) = self.advertise
            && addr.ip().is_unspecified()
        {
            return Err(ConfigError::Invalid(format!(
                "advertise address {addr} is not one clients can reach"
            )));
        }
        self.rpc_limits()?;
        if self.master.ip().is_unspecified() {
            return Err(ConfigError::Invalid(format!(
                "master address {} is not one this server can connect to",
                self.master
            )));
        }
        Ok(())
    }

    /// The transport's limits this configuration sets, checked.
    pub fn rpc_limits(&self) -> Result<kfs_common::rpc::Limits, ConfigError> {
        kfs_common::rpc::Limits::from_settings(
            self.max_connections,
            self.idle_timeout_ms,
            self.rpc_buffer_bytes,
            self.frame_timeout_ms,
        )
        .map_err(ConfigError::Invalid)
    }

    /// What `kfs-chunkserver --check-config` adds to [`validate`](Self::validate): every data
    /// directory must exist and be a directory this user can write. (At start the chunkserver
    /// would create a missing one, filling the root disk when a data disk is not mounted.)
    pub fn check_dirs(&self) -> Result<(), ConfigError> {
        for dir in &self.data {
            kfs_common::config_check::writable_dir("data directory", dir)
                .map_err(ConfigError::Invalid)?;
        }
        // The secrets must load as they will at start (present, private, of a chunkserver).
        self.security(kfs_common::ServerId(0))
            .map(drop)
            .map_err(|e| ConfigError::Invalid(format!("secrets: {e}")))
    }
}

impl kfs_common::config::DaemonConfig for ChunkserverConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ChunkserverConfig::validate(self)
    }

    fn check_dirs(&self) -> Result<(), ConfigError> {
        ChunkserverConfig::check_dirs(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cs.toml");
        std::fs::write(
            &path,
            "data = [\"/d1\", \"/d2\"]\nscrub_bytes_per_sec = 0\n",
        )
        .unwrap();
        let config = ChunkserverConfig::from_file(&path).unwrap();
        assert_eq!(config.data.len(), 2);
        config.validate().unwrap();
        assert!(
            ChunkserverConfig::default()
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--data")
        );
        std::fs::write(&path, "dta = [\"/d1\"]\n").unwrap();
        assert!(
            ChunkserverConfig::from_file(&path)
                .unwrap_err()
                .to_string()
                .contains("dta")
        );
        let twice = ChunkserverConfig {
            data: vec!["/a".into(), "/a".into()],
            ..Default::default()
        };
        assert!(twice.validate().unwrap_err().to_string().contains("twice"));
    }
}
