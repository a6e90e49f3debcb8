//! The files security lives in: a cluster's secrets directory and credentials files.
//!
//! A **secrets directory** (`kfs init-cluster DIR`; servers find it with `--secrets DIR` or
//! `KFS_SECRETS`) holds:
//! - `ca.crt`: the cluster CA's certificate, the one trust anchor of every connection;
//! - `ca.key`: its private key. A server whose directory holds it makes itself a certificate at
//!   start (valid [`pki::MINTED_VALID_DAYS`]); a host enrolled without it uses
//! - `ROLE.credentials` (`master.credentials`, `chunkserver.credentials`,
//!   `gateway.credentials`): a certificate issued for that host by `kfs init-cluster DIR
//!   --node HOST --role ROLE`;
//! - `admin.credentials`: the admin user's credentials.
//!
//! A **credentials file** is PEM: the holder's certificate, then the CA's certificate, then the
//! holder's private key, after a `#` comment line saying whose it is. Clients find theirs at
//! `KFS_CREDENTIALS`, else [`default_credentials_path`] (`~/.config/kfs/credentials`); with
//! neither, or `KFS_CREDENTIALS=none`, a client speaks plain TCP, which a secured server refuses
//! with an error saying so.
//!
//! Every file holding a private key is written 0600 (through a temporary file, synced, then
//! renamed) and refused when its mode lets the group or others read it.

use super::pki::{self, Pem};
use super::{Identity, Role, Security, SecurityError, TlsContext};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const ADMIN_CREDENTIALS: &str = "admin.credentials";
/// Where servers look for their secrets directory when not told `--secrets`.
pub const SECRETS_ENV: &str = "KFS_SECRETS";
/// Where clients look for their credentials file first.
pub const CREDENTIALS_ENV: &str = "KFS_CREDENTIALS";
/// The value of [`CREDENTIALS_ENV`] that means: no credentials, plain TCP.
pub const NO_CREDENTIALS: &str = "none";

/// The name of the credentials file of a host of `role` in a secrets directory.
pub fn role_credentials(role: Role) -> String {
    format!("{}.credentials", role.name())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SecurityError + '_ {
    move |source| SecurityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path` with mode 0600, atomically and durably.
pub fn write_secret(path: &Path, contents: &str) -> Result<(), SecurityError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        // A new file of our own (O_CREAT|O_EXCL: never one planted at the name, and no link
        // followed), 0600 from its creation whatever the umask.
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io_error(path))
}

/// Reads a file holding a secret, refusing it when the group or others may read it. The mode
/// checked is the open file's, so the file cannot be swapped between the check and the read.
pub fn read_secret(path: &Path) -> Result<String, SecurityError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let mode = file
        .metadata()
        .map_err(io_error(path))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecurityError::Readable {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io_error(path))?;
    Ok(text)
}

/// A credentials file's text: `leaf`'s certificate, the CA's, then `leaf`'s key.
pub fn credentials_text(leaf: &Pem, ca_cert: &str, who: &Identity) -> String {
    format!(
        "# KFS credentials of {who}: this certificate, the cluster CA's, this private key.\n{}{}{}",
        leaf.cert, ca_cert, leaf.key
    )
}

/// Reads a credentials file into a TLS context: exactly two certificates (the holder's, then
/// the CA's) and one private key (PKCS#8, SEC1 or PKCS#1), in that order; anything else (a
/// second key, say the CA's appended by mistake) is refused, naming the file.
pub fn load_credentials(path: &Path) -> Result<TlsContext, SecurityError> {
    let text = read_secret(path)?.replace("\r\n", "\n");
    let bad = |why: String| SecurityError::BadFile {
        path: path.to_path_buf(),
        why,
    };
    const CERT: &str = "-----BEGIN CERTIFICATE-----";
    let sections: Vec<(usize, &str)> = text
        .match_indices("-----BEGIN ")
        .map(|(at, _)| (at, text[at..].lines().next().unwrap_or_default()))
        .collect();
    let labels: Vec<&str> = sections.iter().map(|(_, line)| *line).collect();
    let shape_ok = labels.len() == 3
        && labels[0] == CERT
        && labels[1] == CERT
        && labels[2].ends_with("PRIVATE KEY-----");
    if !shape_ok {
        return Err(bad(format!(
            "a credentials file holds the holder's certificate, the CA's certificate and the \
             holder's private key, in that order; this one holds {labels:?}"
        )));
    }
    let (leaf_at, ca_at, key_at) = (sections[0].0, sections[1].0, sections[2].0);
    let own = Pem {
        cert: text[leaf_at..ca_at].to_string(),
        key: text[key_at..].to_string(),
    };
    TlsContext::new(&text[ca_at..key_at], &own).map_err(|e| bad(e.to_string()))
}

/// `$XDG_CONFIG_HOME/kfs/credentials`, else `~/.config/kfs/credentials`.
pub fn default_credentials_path() -> Option<PathBuf> {
    if let Some(config) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(config).join("kfs/credentials"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".config/kfs/credentials"))
}

/// The security of a client process: the credentials at `KFS_CREDENTIALS` (which must load),
/// else at the default path if that file exists, else none (plain TCP).
pub fn client_security() -> Result<Security, SecurityError> {
    match std::env::var_os(CREDENTIALS_ENV).filter(|v| !v.is_empty()) {
        Some(v) if v == NO_CREDENTIALS => Ok(Security::Insecure),
        Some(path) => Ok(Security::Tls(Arc::new(load_credentials(Path::new(&path))?))),
        None => match default_credentials_path().filter(|p| p.exists()) {
            Some(path) => Ok(Security::Tls(Arc::new(load_credentials(&path)?))),
            None => Ok(Security::Insecure),
        },
    }
}

/// This host's name, as certificates a server makes itself carry it (letters, digits, `.`, `-`
/// kept; anything else becomes `-`).
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The name a chunkserver's own certificate carries: `cs-` and its id's 32 hex digits.
pub fn chunkserver_name(server: crate::ServerId) -> String {
    format!("cs-{server}")
}

/// The chunkserver id a certificate's name proves, when it is of the form
/// [`chunkserver_name`] makes.
pub fn named_chunkserver(name: &str) -> Option<crate::ServerId> {
    let hex = name.strip_prefix("cs-")?;
    (hex.len() == 32)
        .then(|| u128::from_str_radix(hex, 16).ok())
        .flatten()
        .map(crate::ServerId)
}

/// A server's security from its settings: plain TCP when `insecure` (logged loudly), else TLS
/// from the secrets directory `secrets` (or `KFS_SECRETS`), as `role` named `name`. Without
/// either it is an error that says what to do: a server never falls back to plain TCP.
pub fn server_security(
    secrets: Option<&Path>,
    insecure: bool,
    role: Role,
    name: &str,
) -> Result<Security, SecurityError> {
    if insecure {
        tracing::warn!(
            %role,
            "RUNNING INSECURE (--insecure): plain TCP, no authentication; anyone who reaches \
             this port owns the cluster. For throwaway tests only."
        );
        return Ok(Security::Insecure);
    }
    let Some(files) = ClusterFiles::from_flag_or_env(secrets) else {
        return Err(SecurityError::BadFile {
            path: PathBuf::from("(no secrets directory)"),
            why: format!(
                "a {role} needs the cluster's secrets: pass --secrets DIR or set {SECRETS_ENV} \
                 (make one with `kfs init-cluster DIR`), or --insecure for a throwaway test"
            ),
        });
    };
    let context = files.server_context(role, name)?;
    tracing::info!(who = %context.identity(), secrets = %files.dir().display(), "TLS with mutual authentication");
    Ok(Security::Tls(Arc::new(context)))
}

/// A cluster's secrets directory.
#[derive(Clone, Debug)]
pub struct ClusterFiles {
    dir: PathBuf,
}

impl ClusterFiles {
    pub fn new(dir: impl Into<PathBuf>) -> ClusterFiles {
        ClusterFiles { dir: dir.into() }
    }

    /// The directory from `--secrets` if given, else `KFS_SECRETS`.
    pub fn from_flag_or_env(flag: Option<&Path>) -> Option<ClusterFiles> {
        flag.map(Path::to_path_buf)
            .or_else(|| {
                std::env::var_os(SECRETS_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .map(ClusterFiles::new)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether the directory holds a cluster (its CA certificate).
    pub fn exists(&self) -> bool {
        self.path(CA_CERT).exists()
    }

    /// `kfs init-cluster DIR`: a new CA, and the admin user's credentials. Refuses a directory
    /// that already holds a cluster's files (a CA, its key, credentials), so a host's secrets
    /// are never replaced by a new cluster's.
    pub fn init(&self, cluster: &str) -> Result<(), SecurityError> {
        let taken = [CA_KEY, CA_CERT, ADMIN_CREDENTIALS]
            .into_iter()
            .map(String::from)
            .chain(Role::ALL.into_iter().map(role_credentials))
            .any(|name| self.path(&name).exists());
        if taken {
            return Err(SecurityError::AlreadyInitialised {
                dir: self.dir.clone(),
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_error(&self.dir))?;
        let ca = pki::new_ca(cluster)?;
        let admin = Identity {
            role: Role::User,
            name: "admin".into(),
        };
        let leaf = pki::issue(&ca, &admin, pki::LEAF_VALID_DAYS)?;
        // The key first: a crash part-way leaves a directory `init` refuses, never a CA
        // certificate without its key.
        write_secret(&self.path(CA_KEY), &ca.key)?;
        write_secret(&self.path(CA_CERT), &ca.cert)?;
        write_secret(
            &self.path(ADMIN_CREDENTIALS),
            &credentials_text(&leaf, &ca.cert, &admin),
        )?;
        Ok(())
    }

    /// [`ClusterFiles::init`] unless the directory holds a cluster already; whether it made one.
    pub fn ensure(&self, cluster: &str) -> Result<bool, SecurityError> {
        if self.exists() {
            return Ok(false);
        }
        self.init(cluster).map(|()| true)
    }

    fn ca_cert(&self) -> Result<String, SecurityError> {
        let path = self.path(CA_CERT);
        std::fs::read_to_string(&path).map_err(io_error(&path))
    }

    /// The CA's certificate and key (the key must be here).
    pub fn ca(&self) -> Result<Pem, SecurityError> {
        Ok(Pem {
            cert: self.ca_cert()?,
            key: read_secret(&self.path(CA_KEY))?,
        })
    }

    /// The text of a credentials file for `who`, issued by this directory's CA.
    pub fn enroll(&self, who: &Identity, days: i64) -> Result<String, SecurityError> {
        let ca = self.ca()?;
        let leaf = pki::issue(&ca, who, days)?;
        Ok(credentials_text(&leaf, &ca.cert, who))
    }

    /// A server's TLS context: `ROLE.credentials` if the directory holds it, else a
    /// certificate for `role` and `name` made now from the CA key.
    pub fn server_context(&self, role: Role, name: &str) -> Result<TlsContext, SecurityError> {
        let enrolled = self.path(&role_credentials(role));
        if enrolled.exists() {
            let context = load_credentials(&enrolled)?;
            if context.identity().role != role {
                return Err(SecurityError::BadFile {
                    path: enrolled,
                    why: format!(
                        "it holds a certificate of {}, not of a {role}",
                        context.identity()
                    ),
                });
            }
            return Ok(context);
        }
        if !self.path(CA_KEY).exists() {
            return Err(SecurityError::BadFile {
                path: self.dir.clone(),
                why: format!(
                    "holds neither {} nor {CA_KEY} (make a cluster with `kfs init-cluster DIR`, \
                     or issue this host a certificate with `kfs init-cluster DIR --node HOST \
                     --role {role}`)",
                    role_credentials(role)
                ),
            });
        }
        let ca = self.ca()?;
        let who = Identity {
            role,
            name: name.to_string(),
        };
        let leaf = pki::issue(&ca, &who, pki::MINTED_VALID_DAYS)?;
        tracing::info!(
            %who,
            days = pki::MINTED_VALID_DAYS,
            "made this server's certificate from the CA key (a restart makes a new one)"
        );
        TlsContext::new(&ca.cert, &leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_cluster_has_its_files_private_and_its_admin_credentials_load() {
        let dir = tempfile::tempdir().unwrap();
        let files = ClusterFiles::new(dir.path().join("secrets"));
        assert!(files.ensure("t").unwrap());
        assert!(
            !files.ensure("t").unwrap(),
            "a second ensure keeps the cluster"
        );
        for name in [CA_CERT, CA_KEY, ADMIN_CREDENTIALS] {
            let mode = std::fs::metadata(files.path(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let admin = load_credentials(&files.path(ADMIN_CREDENTIALS)).unwrap();
        assert_eq!(admin.identity().role, Role::User);
        // The CA's key appended by mistake makes the file refused, not silently accepted.
        let with_key = dir.path().join("with-ca-key.credentials");
        let text = read_secret(&files.path(ADMIN_CREDENTIALS)).unwrap()
            + &read_secret(&files.path(CA_KEY)).unwrap();
        write_secret(&with_key, &text).unwrap();
        let e = load_credentials(&with_key).err().expect("refused");
        assert!(e.to_string().contains("in that order"), "{e}");
        assert_eq!(admin.identity().name, "admin");
        assert!(matches!(
            files.init("t"),
            Err(SecurityError::AlreadyInitialised { .. })
        ));
    }

    #[test]
    fn secrets_others_can_read_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = ClusterFiles::new(dir.path());
        files.init("t").unwrap();
        let path = files.path(ADMIN_CREDENTIALS);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_credentials(&path).err().expect("refused");
        assert!(e.to_string().contains("mode 0644"), "{e}");
        std::fs::set_permissions(files.path(CA_KEY), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        assert!(matches!(
            files.server_context(Role::Master, "m"),
            Err(SecurityError::Readable { .. })
        ));
    }

    #[test]
    fn an_enrolled_host_uses_its_own_certificate_without_the_ca_key() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = ClusterFiles::new(dir.path().join("cluster"));
        cluster.init("t").unwrap();
        let host = ClusterFiles::new(dir.path().join("host"));
        std::fs::create_dir(host.dir()).unwrap();
        let who = Identity {
            role: Role::Chunkserver,
            name: "host2".into(),
        };
        let text = cluster.enroll(&who, 30).unwrap();
        write_secret(&host.path(&role_credentials(Role::Chunkserver)), &text).unwrap();
        let context = host.server_context(Role::Chunkserver, "ignored").unwrap();
        assert_eq!(context.identity(), &who);
        let e = host.server_context(Role::Master, "m").err().unwrap();
        assert!(e.to_string().contains("neither"), "{e}");
    }
}
