//! The commands about users of a secured cluster: `admin user add|remove|list` and `whoami`.
//!
//! `admin user add` writes the new user's credentials to a file of its own (0600, never over
//! an existing file: that is checked before the master is asked, so a refused name costs
//! nothing). The certificate in it is issued by the master when its secrets hold the CA key,
//! else here with `--ca DIR`, and then only the certificate goes to the master.

use super::{Failed, one_path, outln, report};
use crate::cli::{UserAdd, UserCmd};
use crate::format::failure;
use crate::session::Session;
use kfs_common::KfsError;
use kfs_common::proto::users::{NewUser, UserInfo};
use kfs_common::security::{ClusterFiles, Identity, Role, files, pki};
use std::path::{Path, PathBuf};

/// `admin user ...`.
pub(super) async fn user(s: &Session, action: UserCmd) -> Result<(), Failed> {
    match action {
        UserCmd::Add(args) => {
            let output = args
                .output
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.credentials", args.name)));
            let name = args.name.clone();
            match add(s, args, &output).await {
                Ok(user) => {
                    outln(format!(
                        "user '{}' (uid {}) added; its credentials are in {} (give them to the \
                         user: KFS_CREDENTIALS={})",
                        user.name,
                        user.uid,
                        output.display(),
                        output.display()
                    ));
                    Ok(())
                }
                Err(e) => {
                    report(failure("add user", &name, &e));
                    Err(Failed)
                }
            }
        }
        UserCmd::Remove { name } => match s.client.remove_user(&name).await {
            Ok(()) => {
                outln(format!("user '{name}' removed: its certificate is refused"));
                Ok(())
            }
            Err(e) => {
                report(failure("remove user", &name, &e));
                Err(Failed)
            }
        },
        UserCmd::List { json } => match s.client.users().await {
            Ok(users) => {
                if json {
                    crate::json::print(&serde_json::json!(
                        users.iter().map(user_json).collect::<Vec<_>>()
                    ));
                } else {
                    print_users(&users);
                }
                Ok(())
            }
            Err(e) => {
                report(failure("list", "the users", &e));
                Err(Failed)
            }
        },
    }
}

/// `whoami`.
pub(super) async fn whoami(s: &Session, json: bool) -> Result<(), Failed> {
    match s.client.whoami().await {
        Ok(me) => {
            if json {
                let mut value = user_json(&me.user);
                value["identity"] = me.identity.into();
                crate::json::print(&value);
            } else {
                outln(format!("{} ({})", me.user.name, me.identity));
                outln(format!("  {}", rights(&me.user)));
            }
            Ok(())
        }
        Err(e) => {
            report(failure("ask", "who this is", &e));
            Err(Failed)
        }
    }
}

async fn add(s: &Session, asked: UserAdd, output: &Path) -> Result<UserInfo, KfsError> {
    if output.exists() {
        return Err(KfsError::InvalidArgument(format!(
            "{} exists: the credentials are never written over a file (-o FILE)",
            output.display()
        )));
    }
    let root = match &asked.root {
        Some(r) => Some(one_path(s, r).await?),
        None => None,
    };
    let who = Identity {
        role: Role::User,
        name: asked.name.clone(),
    };
    // Issued here: the credentials are known before the master is asked; only the
    // certificate is sent.
    let local = match &asked.ca {
        Some(dir) => Some(
            ClusterFiles::new(dir)
                .enroll(&who, pki::LEAF_VALID_DAYS)
                .map_err(|e| KfsError::InvalidArgument(e.to_string()))?,
        ),
        None => None,
    };
    let certificate = match &local {
        Some(text) => Some(leaf_certificate(text).ok_or_else(|| {
            KfsError::Internal("the credentials just issued hold no certificate".into())
        })?),
        None => None,
    };
    let added = s
        .client
        .add_user(NewUser {
            name: asked.name,
            uid: asked.uid,
            gid: asked.gid,
            groups: asked.groups,
            read_only: asked.read_only,
            root,
            admin: asked.admin,
            certificate,
            replace: asked.replace,
        })
        .await?;
    let text = match (local, added.credentials) {
        (Some(text), _) => text,
        (None, Some(bytes)) => String::from_utf8(bytes.into_vec())
            .map_err(|_| KfsError::Internal("the master's credentials are not text".to_string()))?,
        (None, None) => {
            return Err(KfsError::Internal(
                "the master recorded the user but sent no credentials".into(),
            ));
        }
    };
    files::write_secret(output, &text).map_err(|e| {
        KfsError::Internal(format!(
            "the user is recorded but its credentials could not be written ({e}); \
             `admin user add --replace` issues new ones"
        ))
    })?;
    Ok(added.user)
}

/// The first certificate of a credentials file's text (the holder's), in PEM: what goes to
/// the master, never the private key after it.
fn leaf_certificate(text: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN)?;
    let end = start + text[start..].find(END)? + END.len();
    Some(format!("{}\n", &text[start..end]))
}

fn rights(u: &UserInfo) -> String {
    let groups: Vec<String> = u.groups.iter().map(u32::to_string).collect();
    let mut parts = vec![format!("uid {} gid {}", u.uid, u.gid)];
    if !groups.is_empty() {
        parts.push(format!("groups {}", groups.join(",")));
    }
    parts.push(format!("root {}", u.root));
    parts.push(
        if u.read_only {
            "read-only"
        } else {
            "read-write"
        }
        .into(),
    );
    if u.admin {
        parts.push("administrator".into());
    }
    parts.join(", ")
}

fn print_users(users: &[UserInfo]) {
    let mut rows = vec![vec![
        "name".to_string(),
        "uid".into(),
        "gid".into(),
        "groups".into(),
        "root".into(),
        "access".into(),
    ]];
    for u in users {
        let groups: Vec<String> = u.groups.iter().map(u32::to_string).collect();
        let access = match (u.admin, u.read_only) {
            (true, _) => "admin",
            (false, true) => "read-only",
            (false, false) => "read-write",
        };
        rows.push(vec![
            u.name.clone(),
            u.uid.to_string(),
            u.gid.to_string(),
            if groups.is_empty() {
                "-".into()
            } else {
                groups.join(",")
            },
            u.root.clone(),
            access.into(),
        ]);
    }
    crate::commands::out(crate::format::table(&rows).as_bytes());
}

fn user_json(u: &UserInfo) -> serde_json::Value {
    serde_json::json!({
        "name": u.name,
        "uid": u.uid,
        "gid": u.gid,
        "groups": u.groups,
        "root": u.root,
        "read_only": u.read_only,
        "admin": u.admin,
    })
}
