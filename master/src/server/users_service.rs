//! The bodies of the user calls (`add_user`, `remove_user`, `users`, `whoami`): administrators
//! manage the records of [`crate::users::Users`]; a new user's certificate is issued here when
//! the master holds the CA key, or brought by the administrator, who issued it elsewhere.

use super::MasterServer;
use kfs_common::proto::users::{NewUser, UserAdded, UserInfo, WhoAmI};
use kfs_common::security::{Identity, Role, pki};
use kfs_common::{KfsError, KfsResult};
use serde_bytes::ByteBuf;

impl MasterServer {
    fn need_secured(&self) -> KfsResult<()> {
        if self.peer.is_none() {
            return Err(KfsError::InvalidArgument(
                "this master runs --insecure: it has no users (every caller may do anything)"
                    .into(),
            ));
        }
        Ok(())
    }

    pub(super) async fn add_user_call(&self, new: NewUser) -> KfsResult<UserAdded> {
        self.caller()?.need_admin("adding users")?;
        self.need_secured()?;
        let info = self.state.users.plan(&new)?;
        let bad = |e: kfs_common::security::SecurityError| KfsError::InvalidArgument(e.to_string());
        let (der, credentials) = match &new.certificate {
            Some(pem) => {
                let der = pki::first_cert_der(pem).map_err(bad)?;
                let named = pki::identity_of(&der).map_err(bad)?;
                if named.role != Role::User || named.name != new.name {
                    return Err(KfsError::InvalidArgument(format!(
                        "the certificate is of {named}, not of user '{}'",
                        new.name
                    )));
                }
                (der, None)
            }
            None => {
                let files = self.state.secrets.as_ref().ok_or_else(|| {
                    KfsError::InvalidArgument("this master has no secrets directory".into())
                })?;
                if !files.path(kfs_common::security::CA_KEY).exists() {
                    return Err(KfsError::InvalidArgument(format!(
                        "this master's secrets ({}) hold no CA key: issue the certificate where \
                         the key is (kfs admin user add {} --ca DIR)",
                        files.dir().display(),
                        new.name
                    )));
                }
                let who = Identity {
                    role: Role::User,
                    name: new.name.clone(),
                };
                let text = files
                    .enroll(&who, pki::LEAF_VALID_DAYS)
                    .map_err(|e| KfsError::Internal(format!("issuing a certificate: {e}")))?;
                let der = pki::first_cert_der(&text).map_err(bad)?;
                (der, Some(ByteBuf::from(text.into_bytes())))
            }
        };
        let digest = pki::cert_digest(&der);
        let state = self.state.clone();
        let record = info.clone();
        tokio::task::spawn_blocking(move || state.users.put(record, &digest))
            .await
            .map_err(|e| KfsError::Internal(format!("saving the users: {e}")))?
            .map_err(|e| KfsError::Internal(format!("saving the users: {e}")))?;
        tracing::info!(user = %info.name, uid = info.uid, root = %info.root, read_only = info.read_only, admin = info.admin, "user recorded");
        Ok(UserAdded {
            user: info,
            credentials,
        })
    }

    pub(super) async fn remove_user_call(&self, name: String) -> KfsResult<()> {
        self.caller()?.need_admin("removing users")?;
        self.need_secured()?;
        let state = self.state.clone();
        let who = name.clone();
        let known = tokio::task::spawn_blocking(move || state.users.remove(&who))
            .await
            .map_err(|e| KfsError::Internal(format!("saving the users: {e}")))?
            .map_err(|e| KfsError::Internal(format!("saving the users: {e}")))?;
        if !known {
            return Err(KfsError::InvalidArgument(format!(
                "there is no user '{name}' (kfs admin user list)"
            )));
        }
        tracing::info!(user = %name, "user removed");
        Ok(())
    }

    pub(super) fn users_call(&self) -> KfsResult<Vec<UserInfo>> {
        self.caller()?.need_admin("listing users")?;
        Ok(self.state.users.list())
    }

    pub(super) fn whoami_call(&self) -> KfsResult<WhoAmI> {
        let caller = self.caller()?;
        Ok(WhoAmI {
            identity: caller.identity,
            user: caller.user,
        })
    }
}
