//! The gateway's flags, the gateway's own type: `kfs gateway` flattens [`GatewayOptions`] into
//! its subcommand (the master's address is the shell's global `--master`, passed to
//! [`crate::run`] beside them), and [`GatewayOptions::config`] turns them into what
//! [`crate::http::start`] takes, reading the write token from its file or the environment.

use crate::config_error;
use crate::http::GatewayConfig;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable holding the write token when `--write-token-file` is not given.
pub const TOKEN_ENV: &str = "KFS_GATEWAY_TOKEN";

/// The flags of `kfs gateway` (every one is in `docs/http.md`). The subcommand's about text is
/// the shell's; clap shows the variant's, not this.
#[derive(Args, Debug, Clone)]
pub struct GatewayOptions {
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The KFS directory served as `/`.
    #[arg(long, default_value = "/")]
    pub root: String,
    /// A file holding the bearer token that allows PUT and DELETE (also the
    /// KFS_GATEWAY_TOKEN environment variable). Without one the gateway is read-only.
    #[arg(long, value_name = "FILE")]
    pub write_token_file: Option<PathBuf>,
    /// Largest upload (e.g. 512MiB).
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub max_body: bytesize::ByteSize,
    /// Responses and uploads streaming at once; more wait in the queue (--max-queued).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_streams: usize,
    /// Bytes the streams in flight may hold buffered at once (a small file's response holds
    /// its size, a large one's its read-ahead); more wait in the queue.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub max_stream_bytes: bytesize::ByteSize,
    /// Requests waiting for a stream, at most; more get 503 (Retry-After: 1) at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_queued: usize,
    /// How long a request waits for a stream before it gets 503 (ms).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub queue_timeout_ms: u64,
    /// A client that reads nothing of its response for this long is cut off, freeing its
    /// stream (ms).
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub stall_timeout_ms: u64,
    /// How long file metadata is reused without asking the master (ms; 0 turns it off). A
    /// change made through another client shows at most this late.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub cache_ttl_ms: u64,
    /// Paths the metadata cache holds at most.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub cache_entries: usize,
    /// Entries per page of a directory listing, at most (`?limit=` asks for fewer).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub list_limit: u32,
    /// Replication factor of uploaded files (default: the cluster's).
    #[arg(long, value_name = "N")]
    pub replication: Option<u8>,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Serve HTTPS (TLS 1.3) with this certificate chain (PEM), with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM, readable by its owner only) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The credentials the gateway talks to the cluster with (default: KFS_CREDENTIALS, else
    /// ~/.config/kfs/credentials): every request gets that user's rights, e.g. one made with
    /// `kfs admin user add web --root /www --read-only`.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
}

impl GatewayOptions {
    /// The HTTP gateway's configuration, with the write token read from `--write-token-file`
    /// or else [`TOKEN_ENV`] (set but empty, as the example environment file has it: read-only).
    /// An unreadable or empty token file is a [`crate::ConfigError`].
    pub fn config(&self) -> anyhow::Result<GatewayConfig> {
        let write_token = match (&self.write_token_file, std::env::var(TOKEN_ENV)) {
            (Some(file), _) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    config_error(format!("--write-token-file {}: {e}", file.display()))
                })?;
                Some(text.trim().to_string())
            }
            (None, Ok(token)) if token.trim().is_empty() => None,
            (None, Ok(token)) => Some(token.trim().to_string()),
            (None, Err(_)) => None,
        };
        if self.stall_timeout_ms < 100 {
            return Err(config_error(format!(
                "--stall-timeout-ms {} is below 100: healthy clients would be cut off",
                self.stall_timeout_ms
            )));
        }
        if write_token.as_deref() == Some("") {
            return Err(config_error("the write token file is empty"));
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                kfs_common::security::https_config(cert, key)
                    .map_err(|e| config_error(format!("--tls-cert/--tls-key: {e}")))?,
            ),
            _ => None,
        };
        Ok(GatewayConfig {
            listen: self.listen,
            metrics: self.metrics,
            root: self.root.clone(),
            write_token,
            max_body: self.max_body.as_u64(),
            max_streams: self.max_streams,
            max_stream_bytes: self.max_stream_bytes.as_u64(),
            max_queued: self.max_queued,
            queue_timeout: Duration::from_millis(self.queue_timeout_ms),
            stall_timeout: Duration::from_millis(self.stall_timeout_ms),
            cache_ttl: Duration::from_millis(self.cache_ttl_ms),
            cache_entries: self.cache_entries,
            list_limit: self.list_limit,
            replication: self.replication,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: GatewayOptions,
    }

    fn parse(args: &[&str]) -> GatewayOptions {
        Cli::try_parse_from(std::iter::once("kfs-gateway").chain(args.iter().copied()))
            .expect("the flags parse")
            .options
    }

    #[test]
    fn the_flags_defaults_are_the_configs() {
        let flags = parse(&[]);
        let (got, want) = (flags.config().unwrap(), GatewayConfig::default());
        assert_eq!(got.listen, want.listen);
        assert_eq!(got.metrics, want.metrics);
        assert_eq!(got.root, want.root);
        assert_eq!(got.max_body, want.max_body);
        assert_eq!(got.max_streams, want.max_streams);
        assert_eq!(got.max_stream_bytes, want.max_stream_bytes);
        assert_eq!(got.max_queued, want.max_queued);
        assert_eq!(got.queue_timeout, want.queue_timeout);
        assert_eq!(got.stall_timeout, want.stall_timeout);
        assert_eq!(got.cache_ttl, want.cache_ttl);
        assert_eq!(got.cache_entries, want.cache_entries);
        assert_eq!(got.list_limit, want.list_limit);
        assert_eq!(got.replication, want.replication);
    }

    #[test]
    fn flags_become_the_config_and_a_token_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let flags = parse(&[
            "--listen",
            "127.0.0.1:9000",
            "--root",
            "/site",
            "--max-body",
            "512MiB",
            "--cache-ttl-ms",
            "0",
            "--replication",
            "2",
            "--metrics",
            "127.0.0.1:9001",
            "--write-token-file",
            token.to_str().unwrap(),
        ]);
        let config = flags.config().unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.metrics, Some("127.0.0.1:9001".parse().unwrap()));
        assert_eq!(config.root, "/site");
        assert_eq!(config.max_body, 512 << 20);
        assert_eq!(config.cache_ttl, Duration::ZERO);
        assert_eq!(config.replication, Some(2));
        assert_eq!(config.write_token.as_deref(), Some("s3cret"));

        for file in [empty, dir.path().join("missing")] {
            let flags = parse(&["--write-token-file", file.to_str().unwrap()]);
            let e = flags.config().unwrap_err();
            assert!(e.downcast_ref::<crate::ConfigError>().is_some(), "{e:#}");
        }
    }
}
