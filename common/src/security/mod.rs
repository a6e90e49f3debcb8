//! Who may talk to whom: the cluster's certificate authority, the certificates it issues, and the
//! TLS 1.3 with mutual authentication that every RPC connection runs in.
//!
//! - [`pki`]: the cluster CA and the certificates it issues (`rcgen`).
//! - [`files`]: the secrets directory, credentials files, and the permission checks on them.
//! - [`tls`]: `rustls` configurations, and the identity a peer's certificate proves.
//!
//! # Identities
//! Every certificate the cluster CA issues names a [`Role`], as a DNS name among its subject
//! alternative names (`master.kfs`, `chunkserver.kfs`, `gateway.kfs`, `user.kfs`), and a name, as
//! its common name (a host's, a server's or a user's). A process dialling a master verifies the
//! server's certificate for the name `master.kfs`, one dialling a chunkserver for
//! `chunkserver.kfs`, so no certificate of another role can pose as either; a server reads the
//! client's role and name from the certificate the client presented ([`Identity`]), and the
//! transport admits each role only to the services it may use (`rpc::Service::admits`).
//!
//! # Invariants
//! - With [`Security::Tls`], no byte of an RPC crosses a connection before a TLS 1.3 handshake
//!   in which both sides presented a certificate chained to the cluster CA; a peer without one
//!   is refused during the handshake.
//! - Secret files (private keys, credentials) are written 0600 and refused when the group or
//!   others may read them.
//! - [`Security::Insecure`] (plain TCP) exists for throwaway tests and to measure what TLS costs;
//!   servers run it only when told `--insecure`, and say so loudly.

pub mod capability;
pub mod files;
pub mod pki;
pub mod tls;

pub use files::{
    ADMIN_CREDENTIALS, CA_CERT, CA_KEY, CREDENTIALS_ENV, ClusterFiles, SECRETS_ENV,
    chunkserver_name, client_security, default_credentials_path, host_name, named_chunkserver,
    server_security,
};
pub use tls::{TlsContext, https_config};

use std::path::PathBuf;
use std::sync::Arc;

/// What a certificate allows its holder to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    /// A master: serves the namespace and the cluster service.
    Master,
    /// A chunkserver: joins the cluster (registers with the master) and serves chunk data.
    Chunkserver,
    /// An HTTP or S3 gateway: a client of the cluster that serves others.
    Gateway,
    /// A person or program using the cluster through `kfs`, `kfs-client` or a mount.
    User,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Master, Role::Chunkserver, Role::Gateway, Role::User];

    /// The DNS name a certificate of this role carries, and a peer verifies it for.
    pub const fn dns_name(self) -> &'static str {
        match self {
            Role::Master => "master.kfs",
            Role::Chunkserver => "chunkserver.kfs",
            Role::Gateway => "gateway.kfs",
            Role::User => "user.kfs",
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Chunkserver => "chunkserver",
            Role::Gateway => "gateway",
            Role::User => "user",
        }
    }

    fn from_dns_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.dns_name() == name)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown role '{s}' (master, chunkserver, gateway or user)"))
    }
}

/// Who a peer is, as its certificate says: proved by the TLS handshake.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub role: Role,
    /// The certificate's common name: a host's, a server's or a user's name.
    pub name: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} '{}'", self.role, self.name)
    }
}

/// A certificate's SHA-256 ([`pki::cert_digest`]).
pub type CertDigest = [u8; 32];

/// Who a connection's client proved to be in the TLS handshake: the identity its certificate
/// names, and which certificate it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub identity: Identity,
    pub certificate: CertDigest,
}

/// `digest` as 64 lowercase hex digits.
pub fn digest_hex(digest: &CertDigest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a process's RPC connections are protected. Cheap to clone.
#[derive(Clone)]
pub enum Security {
    /// Plain TCP: anyone who reaches a port is served (`--insecure`).
    Insecure,
    /// TLS 1.3, both sides presenting a certificate of the cluster CA.
    Tls(Arc<TlsContext>),
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Security::Insecure => f.write_str("Insecure"),
            Security::Tls(tls) => write!(f, "Tls({})", tls.identity()),
        }
    }
}

/// What went wrong setting up security; each names the file or certificate at fault.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: mode {mode:04o} gives the group or others access to a secret (chmod 600 it)",
        path.display()
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("{}: {why}", path.display())]
    BadFile { path: PathBuf, why: String },
    #[error("{}: already holds a cluster's files (a CA, its key or credentials); nothing was changed", dir.display())]
    AlreadyInitialised { dir: PathBuf },
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("certificate: {0}")]
    Certificate(String),
}
