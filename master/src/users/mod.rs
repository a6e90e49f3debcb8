//! The users of a secured cluster: their records, kept in `USERS.json` in the metadata
//! directory, and who a connection's certificate makes its caller ([`access`]).
//!
//! Invariants: a record's certificate digest is the one certificate that speaks for its user
//! (a replaced or removed user's old certificate is refused from the next call on); a change
//! is saved durably (temp file, fsync, rename, directory fsync) before it takes effect and
//! before it is answered; uids are unique among the records and never 0 (admin's).
//!
//! The records are not in the operation log: they are few, rarely change and are not part of
//! the namespace (a replicated master will carry them in its log, issue 23).

pub mod access;

use crate::storage::{StorageError, sync_dir};
use kfs_common::proto::users::{ADMIN_USER, FIRST_UID, NewUser, UserInfo};
use kfs_common::security::{CertDigest, digest_hex};
use kfs_common::{KfsError, KfsResult, path};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

const FILE_NAME: &str = "USERS.json";

/// One user as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub info: UserInfo,
    /// SHA-256 of the user's certificate, 64 hex digits.
    pub certificate: String,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    users: Vec<UserRecord>,
}

/// The recorded users.
pub struct Users {
    dir: PathBuf,
    records: RwLock<BTreeMap<String, UserRecord>>,
    /// One change at a time, saved before it is seen.
    changes: std::sync::Mutex<()>,
}

impl Users {
    /// The users recorded in the metadata directory `dir` (none if it holds no file).
    pub fn load(dir: &Path) -> Result<Users, StorageError> {
        let path = dir.join(FILE_NAME);
        let records = match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: Stored = serde_json::from_slice(&bytes)
                    .map_err(|e| StorageError::corrupt(&path, e.column() as u64, e.to_string()))?;
                stored
                    .users
                    .into_iter()
                    .map(|r| (r.info.name.clone(), r))
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(StorageError::io(&path)(e)),
        };
        Ok(Users {
            dir: dir.to_path_buf(),
            records: RwLock::new(records),
            changes: std::sync::Mutex::new(()),
        })
    }

    /// The record of `name`, if any.
    pub fn get(&self, name: &str) -> Option<UserRecord> {
        self.records.read().expect("users lock").get(name).cloned()
    }

    /// Every record, by name.
    pub fn list(&self) -> Vec<UserInfo> {
        let records = self.records.read().expect("users lock");
        records.values().map(|r| r.info.clone()).collect()
    }

    /// Checks `new` and fills in what it left out, for a certificate that is yet to be made.
    pub fn plan(&self, new: &NewUser) -> KfsResult<UserInfo> {
        kfs_common::security::pki::check_name(&new.name)
            .map_err(|e| KfsError::InvalidArgument(e.to_string()))?;
        if new.name == ADMIN_USER {
            return Err(KfsError::InvalidArgument(format!(
                "'{ADMIN_USER}' is built in: it needs no record and cannot be changed"
            )));
        }
        let root = new.root.clone().unwrap_or_else(|| "/".into());
        path::validate(&root)?;
        let records = self.records.read().expect("users lock");
        let existing = records.get(&new.name);
        if existing.is_some() && !new.replace {
            return Err(KfsError::InvalidArgument(format!(
                "user '{}' exists already (kfs admin user add --replace gives it a new \
                 certificate)",
                new.name
            )));
        }
        let uid = match (new.uid, existing) {
            (Some(uid), _) => uid,
            (None, Some(old)) => old.info.uid,
            (None, None) => records
                .values()
                .map(|r| r.info.uid + 1)
                .max()
                .unwrap_or(FIRST_UID)
                .max(FIRST_UID),
        };
        if uid == 0 {
            return Err(KfsError::InvalidArgument(
                "uid 0 is the administrator's; give the user --admin instead".into(),
            ));
        }
        if let Some(other) = records
            .values()
            .find(|r| r.info.uid == uid && r.info.name != new.name)
        {
            return Err(KfsError::InvalidArgument(format!(
                "uid {uid} is taken (user '{}' has it)",
                other.info.name
            )));
        }
        Ok(UserInfo {
            name: new.name.clone(),
            uid,
            gid: new.gid.unwrap_or(uid),
            groups: new.groups.clone(),
            read_only: new.read_only,
            root,
            admin: new.admin,
        })
    }

    /// Records `info` with its certificate (replacing a record of the same name), durably.
    pub fn put(&self, info: UserInfo, certificate: &CertDigest) -> Result<(), StorageError> {
        let _one = self.changes.lock().expect("users change lock");
        let mut next = self.records.read().expect("users lock").clone();
        next.insert(
            info.name.clone(),
            UserRecord {
                info,
                certificate: digest_hex(certificate),
            },
        );
        self.save(&next)?;
        *self.records.write().expect("users lock") = next;
        Ok(())
    }

    /// Forgets `name`, durably; whether it was known.
    pub fn remove(&self, name: &str) -> Result<bool, StorageError> {
        let _one = self.changes.lock().expect("users change lock");
        let mut next = self.records.read().expect("users lock").clone();
        if next.remove(name).is_none() {
            return Ok(false);
        }
        self.save(&next)?;
        *self.records.write().expect("users lock") = next;
        Ok(true)
    }

    fn save(&self, records: &BTreeMap<String, UserRecord>) -> Result<(), StorageError> {
        let path = self.dir.join(FILE_NAME);
        let temp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let stored = Stored {
            version: 1,
            users: records.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&stored).expect("records encode");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&temp)?;
            f.write_all(&bytes)?;
            f.sync_all()
        };
        write().map_err(StorageError::io(&temp))?;
        std::fs::rename(&temp, &path).map_err(StorageError::io(&path))?;
        sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str) -> NewUser {
        NewUser {
            name: name.into(),
            ..NewUser::default()
        }
    }

    #[test]
    fn users_get_free_uids_survive_a_reload_and_are_removed_durably() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::load(dir.path()).unwrap();
        let alice = users.plan(&new("alice")).unwrap();
        assert_eq!(
            (alice.uid, alice.gid, alice.root.as_str()),
            (FIRST_UID, FIRST_UID, "/")
        );
        users.put(alice, &[1; 32]).unwrap();
        let bob = users.plan(&new("bob")).unwrap();
        assert_eq!(bob.uid, FIRST_UID + 1);
        users.put(bob, &[2; 32]).unwrap();
        let again = Users::load(dir.path()).unwrap();
        assert_eq!(again.list(), users.list());
        assert_eq!(again.get("bob").unwrap().certificate, "02".repeat(32));
        let e = again.plan(&new("alice")).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        let taken = NewUser {
            uid: Some(FIRST_UID),
            ..new("carol")
        };
        assert!(
            again
                .plan(&taken)
                .unwrap_err()
                .to_string()
                .contains("alice")
        );
        assert!(again.plan(&new("admin")).is_err());
        assert!(again.plan(&new("../x")).is_err());
        assert!(again.remove("alice").unwrap());
        assert!(!again.remove("alice").unwrap());
        assert!(Users::load(dir.path()).unwrap().get("alice").is_none());
    }
}
