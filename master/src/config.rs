//! Configuration of the master: one serde struct, each field documented with its default.
//!
//! Sources, later ones winning: built-in defaults ([`MasterConfig::default`], the one table of
//! them), the TOML file given with `--config`, command line flags; `kfs_common::config::load`
//! layers them for both daemons. [`MasterConfig::validate`] checks the result before anything
//! starts.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything the master can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MasterConfig {
    /// Address clients and chunkservers connect to. Default `127.0.0.1:20000`.
    pub listen: SocketAddr,
    /// Address of the HTTP status page (`/`), its JSON (`/status.json`) and Prometheus metrics
    /// (`/metrics`). Default none (not served); e.g. `127.0.0.1:20080`.
    pub http: Option<SocketAddr>,
    /// Directory of the operation log and checkpoints. Required.
    pub meta_dir: PathBuf,
    /// Replication factor of files created without one. Default 3.
    pub default_replication: u8,
    /// Write a checkpoint after this many logged ops. Default 200,000.
    pub checkpoint_every_ops: u64,
    /// ... or after this many seconds, if anything was logged since the last one. Default 600.
    pub checkpoint_interval_secs: u64,
    /// Checkpoints kept on disk, with the log since the oldest of them. Default 2.
    pub keep_checkpoints: usize,
    /// A log segment is closed and a new one started past this size. Default 64 MiB.
    pub log_segment_bytes: u64,
    /// How often chunkservers send heartbeats, in milliseconds. Default 3,000.
    pub heartbeat_interval_ms: u64,
    /// A chunkserver silent for this many milliseconds is declared dead and its replicas no
    /// longer count. Default 30,000.
    pub chunkserver_timeout_ms: u64,
    /// Bytes per chunk, a multiple of 64 KiB up to 64 MiB. Fixed for the life of a cluster: the
    /// chunks already written keep the size they were written with. Default 64 MiB.
    pub chunk_size: u64,
    /// How long a write lease lasts, in milliseconds (writers renew it while they write). After a
    /// restart the master grants no lease for this long. Default 60,000.
    pub lease_ms: u64,
    /// How long a capability the master signs for chunkservers lasts, in milliseconds (clients
    /// ask again before it runs out; docs/security.md says why 10 minutes). Default 600,000.
    pub capability_ms: u64,
    /// A new chunk needs at least this many replicas to be written (fewer live chunkservers than
    /// a file's replication factor then give a degraded write, repaired later). Default 1.
    pub min_write_replicas: u8,
    /// How often the master looks for chunks to repair (copy, trim, rebalance), in
    /// milliseconds. Default 3,000.
    pub heal_interval_ms: u64,
    /// After a restart, safe mode (no deletion, no repair) ends once this fraction of chunks
    /// has reported a replica... Default 0.999.
    pub safe_mode_fraction: f64,
    /// ... or after this many seconds at the latest. Default 120.
    pub safe_mode_max_secs: u64,
    /// Repair copies in flight per chunkserver (as source or target), at most. Default 2.
    pub copies_per_server: usize,
    /// Repair copies in flight in the whole cluster, at most. Default 64.
    pub copies_total: usize,
    /// Replicas move from the fullest chunkserver to the emptiest while their space use (used /
    /// capacity) differs by more than this fraction. Default 0.10.
    pub rebalance_threshold: f64,
    /// A sealed volume of small files is compacted (its live records copied to another, then
    /// it is freed) once this fraction of its bytes is records no file holds any more; 1.0
    /// never compacts. Default 0.5.
    pub compact_dead_fraction: f64,
    /// How often the master looks for volumes to compact, in milliseconds. Default 30,000.
    pub compact_interval_ms: u64,
    /// An upload's temporary file (`.kfs-upload-...`, of a `kfs put` or a gateway `PUT`) whose
    /// writer has renewed no lease for this long is removed with its chunks, in milliseconds
    /// (at least two lease periods). Default 600,000 (10 minutes).
    pub abandoned_upload_ms: u64,
    /// How often the status page's graphs (the last hour of activity) take a sample, in
    /// milliseconds. Default 10,000.
    pub status_sample_ms: u64,
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
    /// The cluster's secrets directory (`kfs init-cluster DIR`): the CA, and this master's
    /// certificate or the CA key to make one. Default none: `KFS_SECRETS`, else refused.
    pub secrets: Option<PathBuf>,
    /// Plain TCP, no authentication: anyone who reaches the port owns the cluster. For
    /// throwaway tests and measuring what TLS costs only. Default false.
    pub insecure: bool,
}

impl Default for MasterConfig {
    fn default() -> Self {
        let limits = kfs_common::rpc::Limits::default();
        MasterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 20000)),
            http: None,
            meta_dir: PathBuf::new(),
            default_replication: 3,
            checkpoint_every_ops: 200_000,
            checkpoint_interval_secs: 600,
            keep_checkpoints: 2,
            log_segment_bytes: 64 << 20,
            heartbeat_interval_ms: 3_000,
            chunkserver_timeout_ms: 30_000,
            chunk_size: kfs_common::proto::chunk::MAX_CHUNK_SIZE,
            lease_ms: 60_000,
            capability_ms: kfs_common::security::capability::LIFETIME_MS,
            min_write_replicas: 1,
            heal_interval_ms: 3_000,
            safe_mode_fraction: 0.999,
            safe_mode_max_secs: 120,
            copies_per_server: 2,
            copies_total: 64,
            rebalance_threshold: 0.10,
            compact_dead_fraction: 0.5,
            compact_interval_ms: 30_000,
            abandoned_upload_ms: 600_000,
            status_sample_ms: 10_000,
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

impl MasterConfig {
    /// How replication is repaired, from these settings: the one place the repair defaults come
    /// from ([`RepairConfig::default`] is `MasterConfig::default().repair()`).
    pub fn repair(&self) -> crate::chunks::RepairConfig {
        crate::chunks::RepairConfig {
            safe_mode_fraction: self.safe_mode_fraction,
            safe_mode_max: std::time::Duration::from_secs(self.safe_mode_max_secs),
            copies_per_server: self.copies_per_server,
            copies_total: self.copies_total,
            rebalance_threshold: self.rebalance_threshold,
        }
    }

    /// Timing of chunkservers' reports, from these settings.
    pub fn timing(&self) -> crate::chunks::ChunkTiming {
        crate::chunks::ChunkTiming {
            heartbeat_interval: std::time::Duration::from_millis(self.heartbeat_interval_ms),
            server_timeout: std::time::Duration::from_millis(self.chunkserver_timeout_ms),
        }
    }

    /// How this master's connections are protected (see `kfs_common::security`).
    pub fn security(
        &self,
    ) -> Result<kfs_common::security::Security, kfs_common::security::SecurityError> {
        kfs_common::security::server_security(
            self.secrets.as_deref(),
            self.insecure,
            kfs_common::security::Role::Master,
            &kfs_common::security::host_name(),
        )
    }

    /// Reads a TOML file; keys it does not set keep their defaults, unknown keys are refused.
    pub fn from_file(path: &Path) -> Result<MasterConfig, ConfigError> {
        kfs_common::config::from_file(path)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.meta_dir.as_os_str().is_empty() {
            return invalid(
                "meta_dir is not set: pass --meta-dir DIR or set meta_dir in the config file"
                    .into(),
            );
        }
        if !kfs_common::proto::master::REPLICATION_RANGE.contains(&self.default_replication) {
            return invalid(format!(
                "default_replication {} is outside 1..=16",
                self.default_replication
            ));
        }
        if self.checkpoint_every_ops == 0 {
            return invalid("checkpoint_every_ops must be at least 1".into());
        }
        if self.keep_checkpoints == 0 {
            return invalid("keep_checkpoints must be at least 1".into());
        }
        if self.heartbeat_interval_ms == 0 {
            return invalid("heartbeat_interval_ms must be at least 1".into());
        }
        if self.chunkserver_timeout_ms <= self.heartbeat_interval_ms {
            return invalid(format!(
                "chunkserver_timeout_ms {} must exceed heartbeat_interval_ms {}",
                self.chunkserver_timeout_ms, self.heartbeat_interval_ms
            ));
        }
        let block = kfs_common::proto::chunk::BLOCK_SIZE;
        if self.chunk_size == 0
            || !self.chunk_size.is_multiple_of(block)
            || self.chunk_size > kfs_common::proto::chunk::MAX_CHUNK_SIZE
        {
            return invalid(format!(
                "chunk_size {} is not a multiple of 64 KiB between 64 KiB and 64 MiB",
                self.chunk_size
            ));
        }
        if self.lease_ms < 100 {
            return invalid(format!("lease_ms {} is below 100", self.lease_ms));
        }
        if self.capability_ms < 1_000 || self.capability_ms > 24 * 3_600_000 {
            return invalid(format!(
                "capability_ms {} is not between 1,000 (a second) and 86,400,000 (a day)",
                self.capability_ms
            ));
        }
        if !kfs_common::proto::master::REPLICATION_RANGE.contains(&self.min_write_replicas) {
            return invalid(format!(
                "min_write_replicas {} is outside 1..=16",
                self.min_write_replicas
            ));
        }
        if self.heal_interval_ms == 0 {
            return invalid("heal_interval_ms must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.safe_mode_fraction) {
            return invalid(format!(
                "safe_mode_fraction {} is outside 0..=1",
                self.safe_mode_fraction
            ));
        }
        if self.copies_per_server == 0 || self.copies_total == 0 {
            return invalid("copies_per_server and copies_total must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.rebalance_threshold) {
            return invalid(format!(
                "rebalance_threshold {} is outside 0..=1",
                self.rebalance_threshold
            ));
        }
        if !(self.compact_dead_fraction > 0.0 && self.compact_dead_fraction <= 1.0) {
            return invalid(format!(
                "compact_dead_fraction {} is outside (0, 1] (0 would copy every volume every round)",
                self.compact_dead_fraction
            ));
        }
        if self.abandoned_upload_ms < 2 * self.lease_ms {
            return invalid(format!(
                "abandoned_upload_ms {} is below two lease periods ({} ms): a live upload could \
                 be removed",
                self.abandoned_upload_ms,
                2 * self.lease_ms
            ));
        }
        if self.status_sample_ms < 10 {
            return invalid(format!(
                "status_sample_ms {} is below 10",
                self.status_sample_ms
            ));
        }
        if self.compact_interval_ms == 0 {
            return invalid("compact_interval_ms must be at least 1".into());
        }
        self.rpc_limits()?;
        if self.idle_timeout_ms <= 2 * self.heartbeat_interval_ms {
            return invalid(format!(
                "idle_timeout_ms {} must exceed twice heartbeat_interval_ms {} (heartbeats keep \
                 chunkservers' links open)",
                self.idle_timeout_ms, self.heartbeat_interval_ms
            ));
        }
        if self.log_segment_bytes < 1 << 20 {
            return invalid(format!(
                "log_segment_bytes {} is below 1 MiB",
                self.log_segment_bytes
            ));
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

    /// What `kfs-master --check-config` adds to [`validate`](Self::validate): `meta_dir` must
    /// exist and be a directory this user can write (at start the master would create it, but
    /// a missing one usually means a typo or an unmounted disk).
    pub fn check_dirs(&self) -> Result<(), ConfigError> {
        kfs_common::config_check::writable_dir("meta_dir", &self.meta_dir)
            .map_err(ConfigError::Invalid)?;
        // The secrets must load as they will at start (present, private, of a master).
        self.security()
            .map(drop)
            .map_err(|e| ConfigError::Invalid(format!("secrets: {e}")))
    }
}

impl kfs_common::config::DaemonConfig for MasterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        MasterConfig::validate(self)
    }

    fn check_dirs(&self) -> Result<(), ConfigError> {
        MasterConfig::check_dirs(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.toml");
        std::fs::write(&path, "meta_dir = \"/srv/kfs\"\ndefault_replication = 2\n").unwrap();
        let config = MasterConfig::from_file(&path).unwrap();
        assert_eq!(config.meta_dir, PathBuf::from("/srv/kfs"));
        assert_eq!(config.default_replication, 2);
        assert_eq!(config.listen, MasterConfig::default().listen);
        config.validate().unwrap();

        std::fs::write(&path, "meta_dri = \"/srv/kfs\"\n").unwrap();
        let err = MasterConfig::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("meta_dri") && err.contains("master.toml"),
            "{err}"
        );
    }

    #[test]
    fn validation_names_the_bad_key() {
        let config = MasterConfig::default();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("meta_dir")
        );
        let config = MasterConfig {
            meta_dir: "/x".into(),
            default_replication: 0,
            ..Default::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("default_replication")
        );
    }
}
