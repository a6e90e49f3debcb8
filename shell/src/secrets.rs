//! `kfs init-cluster`, and the secrets of `kfs local`.
//!
//! `kfs local` keeps its cluster's secrets in `DATA/secrets` (made on first start) and puts its
//! admin user's credentials where clients look by default (`~/.config/kfs/credentials`), so
//! `kfs ls /` from another terminal works unchanged. It writes that file only when there is
//! none, or when the one there is a `kfs local`'s (its first line says so): credentials a person
//! put there for another cluster are never replaced, and the start-up message then says how to
//! point `KFS_CREDENTIALS` at this cluster's.

use crate::cli::InitClusterArgs;
use anyhow::Context as _;
use kfs_common::security::{self, ClusterFiles, Identity, Security, files};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first line of credentials `kfs local` installed.
const LOCAL_MARK: &str = "# installed by kfs local for ";

/// `kfs init-cluster`: exit status.
pub fn init_cluster(args: &InitClusterArgs) -> i32 {
    match run(args) {
        Ok(message) => {
            println!("{message}");
            0
        }
        Err(e) => {
            eprintln!("kfs: init-cluster: {e:#}");
            1
        }
    }
}

fn run(args: &InitClusterArgs) -> anyhow::Result<String> {
    let cluster = ClusterFiles::new(&args.dir);
    let Some(node) = &args.node else {
        cluster.init(&args.name)?;
        return Ok(format!(
            "made cluster '{}' in {dir}: start servers with --secrets {dir} (or \
             KFS_SECRETS={dir}); clients use KFS_CREDENTIALS={}",
            args.name,
            cluster.path(security::ADMIN_CREDENTIALS).display(),
            dir = args.dir.display(),
        ));
    };
    anyhow::ensure!(
        args.role != security::Role::User,
        "--node issues host certificates (master, chunkserver or gateway)"
    );
    let who = Identity {
        role: args.role,
        name: node.clone(),
    };
    let text = cluster.enroll(&who, args.days)?;
    let out = ClusterFiles::new(args.dir.join("nodes").join(node));
    std::fs::create_dir_all(out.dir())
        .with_context(|| format!("cannot create {}", out.dir().display()))?;
    set_private(out.dir())?;
    let ca = std::fs::read_to_string(cluster.path(security::CA_CERT))
        .with_context(|| format!("cannot read {}", cluster.path(security::CA_CERT).display()))?;
    files::write_secret(&out.path(security::CA_CERT), &ca)?;
    files::write_secret(&out.path(&files::role_credentials(args.role)), &text)?;
    Ok(format!(
        "issued {who}'s certificate ({} days): copy {} to that host (mode 0700, owned by the \
         service's user) and start it with --secrets pointing there",
        args.days,
        out.dir().display()
    ))
}

fn set_private(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))
}

/// How `kfs local` secures its cluster.
pub struct LocalSecurity {
    /// The secrets directory the servers use; `None` when insecure.
    pub secrets: Option<PathBuf>,
    /// What the shell's own client connects with (the admin's credentials).
    pub client: Security,
    /// Where other terminals find the admin's credentials, or how to point them at it.
    pub note: Option<String>,
}

/// The secrets of the local cluster in `data` (made on first start), unless `insecure`; with
/// `install`, the admin's credentials also go to the default path (see the module docs).
pub fn local(data: &Path, insecure: bool, install: bool) -> anyhow::Result<LocalSecurity> {
    if insecure {
        return Ok(LocalSecurity {
            secrets: None,
            client: Security::Insecure,
            note: Some(
                "INSECURE: plain TCP, no authentication; other terminals need \
                 KFS_CREDENTIALS=none"
                    .into(),
            ),
        });
    }
    let dir = data.join("secrets");
    let cluster = ClusterFiles::new(&dir);
    cluster
        .ensure("local")
        .with_context(|| format!("cannot make the cluster's secrets in {}", dir.display()))?;
    let admin = cluster.path(security::ADMIN_CREDENTIALS);
    let client = Security::Tls(Arc::new(files::load_credentials(&admin)?));
    let note = install.then(|| install_credentials(data, &admin));
    Ok(LocalSecurity {
        secrets: Some(dir),
        client,
        note,
    })
}

/// Puts the admin's credentials at the default path when that is free or a `kfs local`'s;
/// says where they are.
fn install_credentials(data: &Path, admin: &Path) -> String {
    let use_env = format!(
        "from other terminals: KFS_CREDENTIALS={} kfs ...",
        admin.display()
    );
    if std::env::var_os(security::CREDENTIALS_ENV).is_some_and(|v| !v.is_empty()) {
        return format!("Credentials: KFS_CREDENTIALS is set; {use_env}");
    }
    let Some(target) = security::default_credentials_path() else {
        return format!("Credentials: {use_env}");
    };
    let ours = std::fs::read_to_string(&target)
        .map(|text| text.starts_with(LOCAL_MARK))
        .unwrap_or(false);
    if target.exists() && !ours {
        return format!(
            "Credentials: {} holds another cluster's; {use_env}",
            target.display()
        );
    }
    let installed = (|| {
        let text = files::read_secret(admin)?;
        let data = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|source| security::SecurityError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        files::write_secret(&target, &format!("{LOCAL_MARK}{}\n{text}", data.display()))
    })();
    match installed {
        Ok(()) => format!(
            "Credentials: the admin's, at {} (other terminals use them as they are)",
            target.display()
        ),
        Err(e) => format!("Credentials: cannot install them ({e}); {use_env}"),
    }
}
